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

  describe('fault 10: when the newest IKE SA of a peer is a leftover without a Child SA', () => {
    it('should renegotiate the working one with its Child SA and report the leftover as merged', () => {
      const set = emptyRecordSet()
      const working = samplePhase1('10.0.0.100', 1)
      const leftover = {
        ...samplePhase1('10.0.0.100', 1),
        id: 'ike-1b',
        establishedAt: working.establishedAt + 1000
      }
      set.phase1.push(working, leftover)
      set.phase2.push(samplePhase2('10.0.0.100', 1))
      set.correlation.push(sampleCorrelation('10.0.0.100', 1))
      const plan = planRenegotiation(set)
      expect(plan.sas.map((s) => [s.phase1.id, s.phase2.map((p) => p.id)])).to.deep.equal([
        ['ike-1', ['child-1']]
      ])
      expect(plan.merged).to.deep.equal([
        { phase1Id: 'ike-1b', into: 'ike-1', reason: 'no-child-sa', childSas: 0 }
      ])
      expect(plan.orphans).to.deep.equal([])
    })
  })

  describe('fault 10: when two IKE SAs of one peer both carry Child SAs', () => {
    it('should renegotiate one IKE SA carrying every Child SA, the other merged into it', () => {
      const set = emptyRecordSet()
      const older = samplePhase1('10.0.0.100', 1)
      const newer = {
        ...samplePhase1('10.0.0.100', 1),
        id: 'ike-1b',
        establishedAt: older.establishedAt + 1000
      }
      set.phase1.push(older, newer)
      set.phase2.push(samplePhase2('10.0.0.100', 1), samplePhase2('10.0.0.100', 2))
      set.correlation.push(sampleCorrelation('10.0.0.100', 1), {
        ...sampleCorrelation('10.0.0.100', 2),
        id: 'ike-1b',
        phase1Id: 'ike-1b'
      })
      const plan = planRenegotiation(set)
      expect(plan.sas.map((s) => [s.phase1.id, s.phase2.map((p) => p.id)])).to.deep.equal([
        ['ike-1b', ['child-2', 'child-1']]
      ])
      expect(plan.merged).to.deep.equal([
        { phase1Id: 'ike-1', into: 'ike-1b', reason: 'same-peer', childSas: 1 }
      ])
    })
  })

  describe('with many IKE SAs', () => {
    it('should look each correlation up once, not search them all per IKE SA', () => {
      const N = 2000
      const set = emptyRecordSet()
      let reads = 0
      for (let n = 0; n < N; n++) {
        set.phase1.push(samplePhase1('10.0.0.100', n))
        set.phase2.push(samplePhase2('10.0.0.100', n))
        const c = sampleCorrelation('10.0.0.100', n)
        const phase1Id = c.phase1Id
        set.correlation.push(
          Object.defineProperty(c, 'phase1Id', {
            enumerable: true,
            get: () => {
              reads++
              return phase1Id
            }
          })
        )
      }
      const plan = planRenegotiation(set)
      expect(plan.sas).to.have.length(N)
      expect(plan.orphans).to.deep.equal([])
      // a search per IKE SA reads N * N / 2 of them
      expect(reads).to.be.below(4 * N)
    })
  })
})
