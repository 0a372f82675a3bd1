import { expect } from 'chai'
import {
  checkHistory,
  checkRegister,
  findLostWrites,
  type HistoryEntry
} from '../src/coupling-store/history.js'

const D = '10.0.0.1'
let t = 0
/** An entry invoked at `from` and completed at `to` (Infinity: unknown). */
const at = (
  from: number,
  to: number,
  op: Omit<HistoryEntry, 'dvipa' | 'client' | 'invokedAt' | 'completedAt'>
): HistoryEntry =>
  ({ dvipa: D, client: `c${t++}`, invokedAt: from, completedAt: to, ...op }) as HistoryEntry
const claimOk = (owner: string, expected: number) =>
  ({ kind: 'claim', owner, expected, outcome: { type: 'ok' } }) as const
const conflict = (owner: string, expected: number, current: number) =>
  ({ kind: 'claim', owner, expected, outcome: { type: 'conflict', current } }) as const
const claimUnknown = (owner: string, expected: number) =>
  ({ kind: 'claim', owner, expected, outcome: { type: 'unknown' } }) as const
const read = (epoch: number, owner: string | null) =>
  ({ kind: 'read', seen: { epoch, owner } }) as const
const fenced = (owner: string, epoch: number, outcome: 'ok' | 'stale') =>
  ({ kind: 'fenced', call: 'put', fence: { owner, epoch }, outcome }) as const

describe('checkRegister', () => {
  describe('when the history is linearizable', () => {
    it('should accept sequential claims and reads', () => {
      const v = checkRegister([
        at(0, 1, claimOk('a', 0)),
        at(2, 3, read(1, 'a')),
        at(4, 5, claimOk('b', 1)),
        at(6, 7, fenced('a', 1, 'stale')),
        at(6, 7, fenced('b', 2, 'ok'))
      ])
      expect(v.linearizable).to.equal(true)
    })

    it('should order overlapping calls as the outcomes need', () => {
      // b's claim overlaps a read that already sees it, and a's conflicting claim
      const v = checkRegister([
        at(0, 1, claimOk('a', 0)),
        at(2, 10, claimOk('b', 1)),
        at(3, 4, read(2, 'b')),
        at(5, 6, conflict('c', 1, 2))
      ])
      expect(v.linearizable).to.equal(true)
    })

    it('should let a call of unknown outcome take effect late, or never', () => {
      expect(
        checkRegister([
          at(0, Infinity, claimUnknown('a', 0)),
          at(5, 6, read(0, null)),
          at(7, 8, read(1, 'a'))
        ]).linearizable
      ).to.equal(true)
      expect(
        checkRegister([at(0, Infinity, claimUnknown('a', 0)), at(5, 6, claimOk('b', 0))])
          .linearizable
      ).to.equal(true)
    })
  })

  describe('when the history is not linearizable', () => {
    it('should reject two winners of one epoch', () => {
      const v = checkRegister([at(0, 1, claimOk('a', 0)), at(0, 1, claimOk('b', 0))])
      expect(v.linearizable).to.equal(false)
    })

    it('should reject an epoch that goes backwards (a lost acknowledged claim)', () => {
      const v = checkRegister([
        at(0, 1, claimOk('a', 0)),
        at(2, 3, claimOk('b', 1)),
        at(4, 5, read(1, 'a'))
      ])
      expect(v.linearizable).to.equal(false)
    })

    it('should reject a stale read after a completed claim', () => {
      const v = checkRegister([at(0, 1, claimOk('a', 0)), at(2, 3, read(0, null))])
      expect(v.linearizable).to.equal(false)
    })

    it('should reject a fenced write accepted after its epoch was superseded', () => {
      const v = checkRegister([
        at(0, 1, claimOk('a', 0)),
        at(2, 3, claimOk('b', 1)),
        at(4, 5, fenced('a', 1, 'ok'))
      ])
      expect(v.linearizable).to.equal(false)
    })

    it('should reject a read that saw an unknown claim which a later read does not see', () => {
      const v = checkRegister([
        at(0, Infinity, claimUnknown('a', 0)),
        at(1, 2, read(1, 'a')),
        at(3, 4, read(0, null))
      ])
      expect(v.linearizable).to.equal(false)
    })
  })

  it('should check a few hundred concurrent calls quickly', () => {
    const entries: HistoryEntry[] = []
    let epoch = 0
    for (let i = 0; i < 100; i++) {
      const base = i * 10
      // four clients race with the same expected epoch; one wins
      entries.push(at(base, base + 5, claimOk(`w${i}`, epoch)))
      for (let k = 0; k < 3; k++)
        entries.push(at(base + k, base + 6, conflict(`l${k}`, epoch, epoch + 1)))
      epoch++
    }
    const v = checkRegister(entries)
    expect(v.linearizable).to.equal(true)
    expect(v.ops).to.equal(400)
  })
})

describe('findLostWrites', () => {
  it('should report a put acknowledged at an epoch that the next take did not return', () => {
    const puts = [
      { dvipa: D, epoch: 1, records: ['phase1/a', 'phase1/b'] },
      { dvipa: D, epoch: 3, records: ['phase1/c'] }
    ]
    const takes = [
      { dvipa: D, epoch: 2, records: ['phase1/a'] },
      { dvipa: D, epoch: 4, records: ['phase1/c'] }
    ]
    expect(findLostWrites(puts, takes)).to.deep.equal([
      `${D}: phase1/b put at epoch 1, not taken at epoch 2`
    ])
  })
})

describe('checkHistory', () => {
  it('should check each DVIPA on its own', () => {
    const other = { ...at(0, 1, claimOk('b', 0)), dvipa: '10.0.0.2' }
    const verdicts = checkHistory([at(0, 1, claimOk('a', 0)), other, at(2, 3, read(0, null))])
    expect(verdicts.map((v) => [v.dvipa, v.linearizable])).to.deep.equal([
      [D, false],
      ['10.0.0.2', true]
    ])
  })
})
