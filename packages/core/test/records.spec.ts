import { expect } from 'chai'
import { emptyRecordSet } from '@vipsec/interface'
import { samplePhase1, samplePhase2, sampleCorrelation } from '@vipsec/compliance/coupling-store'
import { planRenegotiation } from '../src/index.js'

describe('planRenegotiation', () => {
  it('should join each IKE SA with the Child SAs its correlation names', () => {
    const set = emptyRecordSet()
    set.phase1.push(samplePhase1('10.0.0.100', 1), samplePhase1('10.0.0.100', 2))
    set.phase2.push(
      samplePhase2('10.0.0.100', 1),
      samplePhase2('10.0.0.100', 2),
      samplePhase2('10.0.0.100', 3)
    )
    set.correlation.push(sampleCorrelation('10.0.0.100', 1), sampleCorrelation('10.0.0.100', 2))
    const plan = planRenegotiation(set)
    expect(plan.sas.map((s) => [s.phase1.id, s.phase2.map((p) => p.id)])).to.deep.equal([
      ['ike-1', ['child-1']],
      ['ike-2', ['child-2']]
    ])
    expect(plan.orphans.map((p) => p.id)).to.deep.equal(['child-3'])
  })

  describe('when a chain of takeovers left two IKE SAs for one peer', () => {
    it('should renegotiate only the newest', () => {
      const set = emptyRecordSet()
      const older = samplePhase1('10.0.0.100', 1)
      const newer = {
        ...samplePhase1('10.0.0.100', 1),
        id: 'ike-1b',
        establishedAt: older.establishedAt + 1000
      }
      set.phase1.push(older, newer)
      const plan = planRenegotiation(set)
      expect(plan.sas.map((s) => s.phase1.id)).to.deep.equal(['ike-1b'])
      expect(plan.superseded.map((p) => p.id)).to.deep.equal(['ike-1'])
    })
  })
})
