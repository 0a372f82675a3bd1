import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { runSuiteInChild } from '@vipsec/compliance'

const fixture = fileURLToPath(new URL('./broken-stores.fixture.ts', import.meta.url))

/** Runs the compliance suite over the broken stores in a child mocha; returns what failed. */
async function failedTitles(): Promise<string[]> {
  return (await runSuiteInChild(fixture)).failed
}

describe('couplingStoreSuite', () => {
  describe('when run against stores broken on purpose', function () {
    this.timeout(120_000)
    let failed: string[]

    before(async () => {
      failed = await failedTitles()
    })

    const expectFailure = (store: string, title: string): void => {
      const hit = failed.filter((t) => t.startsWith(store) && t.includes(title))
      expect(hit, `${store} should fail "${title}"; failures were:\n${failed.join('\n')}`).to.not.be
        .empty
    }

    it('should catch a claim that is not compare-and-set', () => {
      expectFailure('NonAtomicClaimStore', 'should let exactly one win')
    })

    it('should catch writes that ignore the fencing epoch', () => {
      expectFailure(
        'UnfencedStore',
        'should reject puts, deletes, takes and settles with StaleEpochError'
      )
      expectFailure('UnfencedStore', 'should reject writes for a DVIPA that has no owner')
    })

    it('should catch a read-and-clear that a reader can see half done', () => {
      expectFailure('NonAtomicTakeStore', 'should never let a reader see half of the records')
    })

    it('should catch a mailbox that delivers a message twice', () => {
      expectFailure('AtLeastOnceMailboxStore', 'should deliver each message to exactly one reader')
    })

    it('should catch a change stream that does not complete on stop', () => {
      expectFailure('OpenStreamStore', 'should complete on stop')
    })

    it('should fail only the tests that concern each defect', () => {
      const unrelated = failed.filter(
        (t) => t.startsWith('NonAtomicClaimStore') && !t.includes('exactly one win')
      )
      expect(unrelated).to.deep.equal([])
    })
  })
})
