import { expect } from 'chai'
import type { Ownership } from '@vipsec/interface'
import { formatStatus, type DvipaReport } from '../src/status-command.js'

// The table of `vipsec status` names owners as the ownership record does.
describe('formatStatus', () => {
  const report = (ownership: Partial<Ownership> | undefined): DvipaReport => ({
    dvipa: '10.0.0.100',
    ownership:
      ownership === undefined
        ? undefined
        : {
            v: 1,
            dvipa: '10.0.0.100',
            owner: 'dp-1',
            epoch: 4,
            ranks: ['dp-1', 'dp-2'],
            claimedAt: 0,
            ...ownership
          },
    ikeSas: 1,
    childSas: 1,
    connections: 0,
    filters: 0,
    corrupt: 0,
    records: 2,
    peers: []
  })
  const ownerOf = (r: DvipaReport): string => formatStatus([r])[1]!.split(/\s{2,}/)[1]!

  it('should name the owner, who released a DVIPA, and whom a named owner takes over from', () => {
    expect(ownerOf(report({}))).to.equal('dp-1')
    expect(ownerOf(report(undefined))).to.equal('-')
    expect(ownerOf(report({ owner: null }))).to.equal('(released)')
    expect(ownerOf(report({ owner: null, previousOwner: 'dp-1' }))).to.equal('(released by dp-1)')
    expect(ownerOf(report({ owner: 'dp-2', previousOwner: 'dp-1' }))).to.equal('dp-2 (from dp-1)')
  })
})
