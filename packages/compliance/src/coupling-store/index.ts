import { expect } from 'chai'
import {
  countRecords,
  encodeRecord,
  type CouplingStore,
  type CouplingStoreEvent,
  type DvipaRecord,
  type Fence,
  type RecordKind
} from '@vipsec/interface'
import type { TestSetup } from '../test-setup.js'
import {
  sampleConnection,
  sampleDeleteMessage,
  samplePhase1,
  samplePhase2,
  sampleRecords
} from './fixtures.js'

export * from './fixtures.js'
export * from './history.js'
export * from './history-workload.js'

/** Options of {@link couplingStoreSuite}. */
export interface CouplingStoreSuiteOptions extends TestSetup<CouplingStore> {
  /**
   * Overwrites the bytes the store holds for one record, bypassing validation, so the suite can
   * check that damaged records give typed errors. Optional: without it those tests are not
   * declared (say so in the adapter's docs).
   *
   * @param store - the store under test
   * @param dvipa - the DVIPA
   * @param kind - the record's kind
   * @param id - the record's id
   * @param bytes - what to store instead
   */
  corrupt?(
    store: CouplingStore,
    dvipa: string,
    kind: RecordKind,
    id: string,
    bytes: Uint8Array
  ): Promise<void>
}

const DVIPA = '10.0.0.100'
const OTHER_DVIPA = '10.0.0.200'

/** Resolves with the rejection of `promise`, or fails when it fulfils. */
async function rejection(promise: Promise<unknown>): Promise<Error & Record<string, unknown>> {
  try {
    await promise
  } catch (err) {
    return err as Error & Record<string, unknown>
  }
  throw new Error('expected the promise to reject, but it fulfilled')
}

function aborted(): { signal: AbortSignal } {
  const controller = new AbortController()
  controller.abort()
  return { signal: controller.signal }
}

/**
 * Declares the mocha tests every {@link CouplingStore} must pass: lifecycle, abort signals,
 * ownership by compare-and-set (one winner among 100 concurrent claimers), fencing of every
 * write by epoch, byte-exact record round trips, validation, atomic read-and-clear with its
 * journal, the mailbox (each message delivered once) and the change stream.
 *
 * Call it inside a `describe` of the adapter's test.
 *
 * @param options - how to make and dispose of a store
 */
export function couplingStoreSuite(options: CouplingStoreSuiteOptions): void {
  describe('CouplingStore compliance', function () {
    this.timeout(30_000)
    let store: CouplingStore

    beforeEach(async () => {
      store = await options.setup()
      await store.start()
    })

    afterEach(async () => {
      await store.stop()
      await options.teardown?.(store)
    })

    /** Claims DVIPA for `owner` from whatever epoch it is at, and returns the fence. */
    async function claim(owner: string, dvipa = DVIPA): Promise<Fence> {
      let expectedEpoch = 0
      try {
        expectedEpoch = (await store.getOwnership(dvipa)).epoch
      } catch (err) {
        if ((err as Error).name !== 'NotFoundError') throw err
      }
      const ownership = await store.claimOwnership(dvipa, { owner, ranks: [], expectedEpoch })
      return { owner, epoch: ownership.epoch }
    }

    describe('lifecycle', () => {
      it('should report started after start and not after stop', async () => {
        expect(store.isStarted()).to.equal(true)
        await store.stop()
        expect(store.isStarted()).to.equal(false)
        await store.start()
        expect(store.isStarted()).to.equal(true)
      })

      it('should treat a second start and a second stop as no-ops', async () => {
        await store.start()
        expect(store.isStarted()).to.equal(true)
        await store.stop()
        await store.stop()
        expect(store.isStarted()).to.equal(false)
        await store.start()
      })

      it('should reject calls with NotStartedError while stopped', async () => {
        await store.stop()
        const err = await rejection(store.getOwnership(DVIPA))
        expect(err.name).to.equal('NotStartedError')
        await store.start()
      })

      it('should keep records across stop and start', async () => {
        const fence = await claim('dp-1')
        await store.putRecords(DVIPA, [samplePhase1(DVIPA, 1)], fence)
        await store.stop()
        await store.start()
        const got = await store.getRecord(DVIPA, 'phase1', 'ike-1')
        expect(got).to.deep.equal(samplePhase1(DVIPA, 1))
      })
    })

    describe('abort signals', () => {
      it('should reject every method with AbortError when the signal is already aborted', async () => {
        const fence = await claim('dp-1')
        const calls: Array<() => Promise<unknown>> = [
          async () => store.getOwnership(DVIPA, aborted()),
          async () =>
            store.claimOwnership(
              OTHER_DVIPA,
              { owner: 'dp-1', ranks: [], expectedEpoch: 0 },
              aborted()
            ),
          async () => store.releaseOwnership(DVIPA, fence, aborted()),
          async () => store.putRecords(DVIPA, [samplePhase1(DVIPA, 1)], fence, aborted()),
          async () =>
            store.deleteRecords(DVIPA, [{ kind: 'phase1', id: 'ike-1' }], fence, aborted()),
          async () => store.getRecord(DVIPA, 'phase1', 'ike-1', aborted()),
          async () => store.listRecords(DVIPA, aborted()),
          async () => store.takeRecords(DVIPA, fence, aborted()),
          async () => store.settleTakeover(DVIPA, fence, aborted()),
          async () => store.postMessage(sampleDeleteMessage('dp-1', 1), aborted()),
          async () => store.takeMessages('dp-1', aborted()),
          async () => store.renewLease('dp-1', 1000, aborted()),
          async () => store.readLeases(['dp-1'], aborted())
        ]
        for (const call of calls) {
          const err = await rejection(call())
          expect(err.name).to.equal('AbortError')
        }
        // nothing the aborted calls would have changed has changed
        const ownership = await store.getOwnership(DVIPA)
        expect(ownership.owner).to.equal('dp-1')
        expect(await store.takeMessages('dp-1')).to.deep.equal([])
        await rejection(store.getOwnership(OTHER_DVIPA))
      })
    })

    describe('.getOwnership', () => {
      it('should reject with NotFoundError for a DVIPA never claimed', async () => {
        const err = await rejection(store.getOwnership(DVIPA))
        expect(err.name).to.equal('NotFoundError')
      })
    })

    describe('.claimOwnership', () => {
      it('should give epoch 1 to the first claim and record owner and ranks', async () => {
        const ownership = await store.claimOwnership(DVIPA, {
          owner: 'dp-1',
          ranks: ['dp-2', 'dp-3'],
          expectedEpoch: 0
        })
        expect(ownership).to.include({ dvipa: DVIPA, owner: 'dp-1', epoch: 1, v: 1 })
        expect(ownership.ranks).to.deep.equal(['dp-2', 'dp-3'])
        expect(await store.getOwnership(DVIPA)).to.deep.equal(ownership)
      })

      it('should increment the epoch on every successful claim', async () => {
        await store.claimOwnership(DVIPA, { owner: 'dp-1', ranks: [], expectedEpoch: 0 })
        const second = await store.claimOwnership(DVIPA, {
          owner: 'dp-2',
          ranks: [],
          expectedEpoch: 1
        })
        expect(second.epoch).to.equal(2)
        expect(second.owner).to.equal('dp-2')
      })

      describe('when the expected epoch is stale', () => {
        it('should reject with OwnershipConflictError naming the current epoch and owner', async () => {
          await store.claimOwnership(DVIPA, { owner: 'dp-1', ranks: [], expectedEpoch: 0 })
          const err = await rejection(
            store.claimOwnership(DVIPA, { owner: 'dp-2', ranks: [], expectedEpoch: 0 })
          )
          expect(err.name).to.equal('OwnershipConflictError')
          expect(err.currentEpoch).to.equal(1)
          expect(err.currentOwner).to.equal('dp-1')
          expect((await store.getOwnership(DVIPA)).owner).to.equal('dp-1')
        })

        it('should reject a claim that expects a future epoch', async () => {
          const err = await rejection(
            store.claimOwnership(DVIPA, { owner: 'dp-2', ranks: [], expectedEpoch: 5 })
          )
          expect(err.name).to.equal('OwnershipConflictError')
        })
      })

      describe('when 100 claimers race for the same epoch', () => {
        it('should let exactly one win', async () => {
          const results = await Promise.allSettled(
            Array.from({ length: 100 }, async (_, i) =>
              store.claimOwnership(DVIPA, { owner: `dp-${i}`, ranks: [], expectedEpoch: 0 })
            )
          )
          const winners = results.filter((r) => r.status === 'fulfilled')
          const losers = results.filter((r) => r.status === 'rejected')
          expect(winners).to.have.length(1)
          for (const loser of losers) {
            expect((loser as PromiseRejectedResult).reason.name).to.equal('OwnershipConflictError')
          }
          const winner = (winners[0] as PromiseFulfilledResult<{ owner: string; epoch: number }>)
            .value
          const ownership = await store.getOwnership(DVIPA)
          expect(ownership.owner).to.equal(winner.owner)
          expect(ownership.epoch).to.equal(1)
        })
      })

      it('should keep DVIPAs independent', async () => {
        await store.claimOwnership(DVIPA, { owner: 'dp-1', ranks: [], expectedEpoch: 0 })
        const other = await store.claimOwnership(OTHER_DVIPA, {
          owner: 'dp-2',
          ranks: [],
          expectedEpoch: 0
        })
        expect(other.epoch).to.equal(1)
        expect((await store.getOwnership(DVIPA)).owner).to.equal('dp-1')
      })
    })

    describe('.releaseOwnership', () => {
      it('should leave the epoch and no owner, so the next claim gets a higher epoch', async () => {
        const fence = await claim('dp-1')
        await store.releaseOwnership(DVIPA, fence)
        const released = await store.getOwnership(DVIPA)
        expect(released.owner).to.equal(null)
        expect(released.epoch).to.equal(1)
        const next = await store.claimOwnership(DVIPA, {
          owner: 'dp-2',
          ranks: [],
          expectedEpoch: 1
        })
        expect(next.epoch).to.equal(2)
      })

      it("should name the releasing owner as previousOwner, and a claim in another node's name the one it replaced", async () => {
        const fence = await claim('dp-1')
        await store.releaseOwnership(DVIPA, fence)
        expect((await store.getOwnership(DVIPA)).previousOwner).to.equal('dp-1')
        // a node's own claim: the records will be its own
        const own = await store.claimOwnership(DVIPA, {
          owner: 'dp-2',
          ranks: [],
          expectedEpoch: 1
        })
        expect(own.previousOwner).to.equal(undefined)
        expect((await store.getOwnership(DVIPA)).previousOwner).to.equal(undefined)
        // a planned switchover names dp-3, whose takeover is from dp-2
        const handed = await store.claimOwnership(DVIPA, {
          owner: 'dp-3',
          ranks: [],
          expectedEpoch: 2,
          previousOwner: 'dp-2'
        })
        expect(handed.previousOwner).to.equal('dp-2')
        expect(await store.getOwnership(DVIPA)).to.include({ owner: 'dp-3', previousOwner: 'dp-2' })
        // released before dp-3 took over: the records are still dp-2's
        await store.releaseOwnership(DVIPA, { owner: 'dp-3', epoch: 3 })
        expect(await store.getOwnership(DVIPA)).to.include({ owner: null, previousOwner: 'dp-2' })
      })

      it('should reject a stale fence with StaleEpochError', async () => {
        const old = await claim('dp-1')
        await claim('dp-2')
        const err = await rejection(store.releaseOwnership(DVIPA, old))
        expect(err.name).to.equal('StaleEpochError')
        expect((await store.getOwnership(DVIPA)).owner).to.equal('dp-2')
      })
    })

    describe('fencing', () => {
      describe('when the writer presents an old epoch', () => {
        it('should reject puts, deletes, takes and settles with StaleEpochError and change nothing', async () => {
          const old = await claim('dp-1')
          await store.putRecords(DVIPA, [samplePhase1(DVIPA, 1)], old)
          const current = await claim('dp-2')
          for (const call of [
            async () => store.putRecords(DVIPA, [samplePhase1(DVIPA, 2)], old),
            async () => store.deleteRecords(DVIPA, [{ kind: 'phase1', id: 'ike-1' }], old),
            async () => store.takeRecords(DVIPA, old),
            async () => store.settleTakeover(DVIPA, old)
          ]) {
            const err = await rejection(call())
            expect(err.name).to.equal('StaleEpochError')
            expect(err.presented).to.equal(old.epoch)
            expect(err.current).to.equal(current.epoch)
          }
          const set = await store.listRecords(DVIPA)
          expect(set.phase1.map((r) => r.id)).to.deep.equal(['ike-1'])
        })
      })

      it('should reject a writer that presents the current epoch with another owner', async () => {
        const fence = await claim('dp-1')
        const err = await rejection(
          store.putRecords(DVIPA, [samplePhase1(DVIPA, 1)], { owner: 'dp-9', epoch: fence.epoch })
        )
        expect(err.name).to.equal('StaleEpochError')
        expect((await store.listRecords(DVIPA)).phase1).to.have.length(0)
      })

      it('should reject writes for a DVIPA that has no owner', async () => {
        const err = await rejection(
          store.putRecords(DVIPA, [samplePhase1(DVIPA, 1)], { owner: 'dp-1', epoch: 1 })
        )
        expect(err.name).to.equal('StaleEpochError')
        expect(err.current).to.equal(0)
      })

      it('should reject writes after the owner released the DVIPA', async () => {
        const fence = await claim('dp-1')
        await store.releaseOwnership(DVIPA, fence)
        const err = await rejection(store.putRecords(DVIPA, [samplePhase1(DVIPA, 1)], fence))
        expect(err.name).to.equal('StaleEpochError')
      })
    })

    describe('.putRecords and .getRecord', () => {
      it('should return every kind of record byte for byte as written', async () => {
        const fence = await claim('dp-1')
        const records = sampleRecords(DVIPA, 7)
        await store.putRecords(DVIPA, records, fence)
        for (const record of records) {
          const got = await store.getRecord(DVIPA, record.kind, record.id)
          expect(got).to.deep.equal(record)
          expect(encodeRecord(got)).to.deep.equal(encodeRecord(record))
        }
      })

      it('should replace a record written again under the same id', async () => {
        const fence = await claim('dp-1')
        await store.putRecords(DVIPA, [sampleConnection(DVIPA, 1, 'target-1')], fence)
        await store.putRecords(DVIPA, [sampleConnection(DVIPA, 1, 'target-2')], fence)
        const got = await store.getRecord(DVIPA, 'connection', 'conn-1')
        expect(got.target).to.equal('target-2')
      })

      it('should reject with NotFoundError, recognised by name, for a missing record', async () => {
        const err = await rejection(store.getRecord(DVIPA, 'phase2', 'nope'))
        expect(err.name).to.equal('NotFoundError')
      })

      describe('when one record of a batch is invalid', () => {
        it('should reject with CorruptRecordError and write none of the batch', async () => {
          const fence = await claim('dp-1')
          const bad = { ...samplePhase2(DVIPA, 2), inboundSpi: 'not-hex' } as DvipaRecord
          const err = await rejection(store.putRecords(DVIPA, [samplePhase1(DVIPA, 1), bad], fence))
          expect(err.name).to.equal('CorruptRecordError')
          expect(err.path).to.equal('phase2.inboundSpi')
          expect(countRecords(await store.listRecords(DVIPA))).to.equal(0)
        })
      })

      it('should reject a record whose dvipa differs from the one written under', async () => {
        const fence = await claim('dp-1')
        const err = await rejection(store.putRecords(DVIPA, [samplePhase1(OTHER_DVIPA, 1)], fence))
        expect(err.name).to.equal('InvalidParametersError')
        expect(countRecords(await store.listRecords(DVIPA))).to.equal(0)
      })

      it('should keep the records of different DVIPAs apart', async () => {
        const a = await claim('dp-1', DVIPA)
        const b = await claim('dp-2', OTHER_DVIPA)
        await store.putRecords(DVIPA, [samplePhase1(DVIPA, 1)], a)
        await store.putRecords(OTHER_DVIPA, [samplePhase1(OTHER_DVIPA, 2)], b)
        expect((await store.listRecords(DVIPA)).phase1.map((r) => r.id)).to.deep.equal(['ike-1'])
        expect((await store.listRecords(OTHER_DVIPA)).phase1.map((r) => r.id)).to.deep.equal([
          'ike-2'
        ])
      })
    })

    if (options.corrupt != null) {
      const corrupt = options.corrupt
      describe('when a stored record is damaged', () => {
        it('should reject getRecord with CorruptRecordError and report it in listRecords', async () => {
          const fence = await claim('dp-1')
          await store.putRecords(DVIPA, [samplePhase1(DVIPA, 1), samplePhase2(DVIPA, 1)], fence)
          await corrupt(
            store,
            DVIPA,
            'phase2',
            'child-1',
            new TextEncoder().encode('{"v":1,"kind":"phase2"')
          )
          const err = await rejection(store.getRecord(DVIPA, 'phase2', 'child-1'))
          expect(err.name).to.equal('CorruptRecordError')
          const set = await store.listRecords(DVIPA)
          expect(set.phase1).to.have.length(1)
          expect(set.phase2).to.have.length(0)
          expect(set.corrupt).to.have.length(1)
          expect(set.corrupt[0]).to.include({
            kind: 'phase2',
            id: 'child-1',
            error: 'CorruptRecordError'
          })
        })

        it('should reject a record of an unknown version with UnsupportedRecordVersionError', async () => {
          const fence = await claim('dp-1')
          await store.putRecords(DVIPA, [samplePhase1(DVIPA, 1)], fence)
          const v2 = { ...samplePhase1(DVIPA, 1), v: 2 }
          await corrupt(
            store,
            DVIPA,
            'phase1',
            'ike-1',
            new TextEncoder().encode(JSON.stringify(v2))
          )
          const err = await rejection(store.getRecord(DVIPA, 'phase1', 'ike-1'))
          expect(err.name).to.equal('UnsupportedRecordVersionError')
        })

        it('should hand damaged entries to the taker in corrupt and keep them in the journal', async () => {
          const owner = await claim('dp-1')
          await store.putRecords(DVIPA, sampleRecords(DVIPA, 1), owner)
          await corrupt(store, DVIPA, 'filter', 'filter-1', new Uint8Array([0xff, 0xfe]))
          const taker = await claim('dp-2')
          const taken = await store.takeRecords(DVIPA, taker)
          expect(countRecords(taken)).to.equal(4)
          expect(taken.corrupt.map((c) => c.id)).to.deep.equal(['filter-1'])
          // the taker dies before settling: the next taker still sees the damaged entry
          const next = await claim('dp-3')
          const again = await store.takeRecords(DVIPA, next)
          expect(countRecords(again)).to.equal(4)
          expect(again.corrupt.map((c) => c.id)).to.deep.equal(['filter-1'])
        })
      })
    }

    describe('.listRecords', () => {
      it('should group records by kind, sorted by id, and filter by kind', async () => {
        const fence = await claim('dp-1')
        await store.putRecords(
          DVIPA,
          [...sampleRecords(DVIPA, 2), ...sampleRecords(DVIPA, 1)],
          fence
        )
        const set = await store.listRecords(DVIPA)
        expect(set.phase1.map((r) => r.id)).to.deep.equal(['ike-1', 'ike-2'])
        expect(set.connection.map((r) => r.id)).to.deep.equal(['conn-1', 'conn-2'])
        expect(countRecords(set)).to.equal(10)
        const only = await store.listRecords(DVIPA, { kind: 'filter' })
        expect(only.filter).to.have.length(2)
        expect(countRecords(only)).to.equal(2)
      })

      it('should return an empty set for a DVIPA without records', async () => {
        const set = await store.listRecords(DVIPA)
        expect(countRecords(set)).to.equal(0)
        expect(set.corrupt).to.deep.equal([])
      })
    })

    describe('.deleteRecords', () => {
      it('should delete the named records and ignore missing ones', async () => {
        const fence = await claim('dp-1')
        await store.putRecords(DVIPA, sampleRecords(DVIPA, 1), fence)
        await store.deleteRecords(
          DVIPA,
          [
            { kind: 'phase1', id: 'ike-1' },
            { kind: 'phase2', id: 'does-not-exist' }
          ],
          fence
        )
        const set = await store.listRecords(DVIPA)
        expect(set.phase1).to.have.length(0)
        expect(countRecords(set)).to.equal(4)
      })
    })

    describe('.takeRecords', () => {
      it('should return every record and leave none behind', async () => {
        const owner = await claim('dp-1')
        const written = [...sampleRecords(DVIPA, 1), ...sampleRecords(DVIPA, 2)]
        await store.putRecords(DVIPA, written, owner)
        const taker = await claim('dp-2')
        const taken = await store.takeRecords(DVIPA, taker)
        expect(countRecords(taken)).to.equal(written.length)
        for (const record of written) {
          expect(taken[record.kind].find((r) => r.id === record.id)).to.deep.equal(record)
        }
        expect(countRecords(await store.listRecords(DVIPA))).to.equal(0)
        const err = await rejection(store.getRecord(DVIPA, 'phase1', 'ike-1'))
        expect(err.name).to.equal('NotFoundError')
      })

      describe('when readers run concurrently', () => {
        it('should never let a reader see half of the records', async () => {
          const owner = await claim('dp-1')
          const written: DvipaRecord[] = []
          for (let i = 0; i < 40; i++) written.push(...sampleRecords(DVIPA, i))
          await store.putRecords(DVIPA, written, owner)
          const taker = await claim('dp-2')
          // Readers keep reading, yielding to the event loop between reads, while the take runs.
          let done = false
          const take = store.takeRecords(DVIPA, taker).finally(() => (done = true))
          const counts: number[] = []
          for (let i = 0; i < 2000 && (!done || i < 5); i++) {
            counts.push(countRecords(await store.listRecords(DVIPA)))
            await new Promise((resolve) => setImmediate(resolve))
          }
          const taken = await take
          expect(countRecords(taken)).to.equal(written.length)
          for (const count of counts) expect([0, written.length]).to.include(count)
        })
      })

      describe('when two nodes race to take', () => {
        it('should let only the current owner take, once', async () => {
          const owner = await claim('dp-1')
          await store.putRecords(DVIPA, sampleRecords(DVIPA, 1), owner)
          const first = await claim('dp-2')
          const second = await claim('dp-3')
          const [a, b] = await Promise.allSettled([
            store.takeRecords(DVIPA, first),
            store.takeRecords(DVIPA, second)
          ])
          expect(a.status).to.equal('rejected')
          expect((a as PromiseRejectedResult).reason.name).to.equal('StaleEpochError')
          expect(b.status).to.equal('fulfilled')
          expect(countRecords((b as PromiseFulfilledResult<never>).value)).to.equal(5)
        })
      })

      describe('when the taker dies before settling', () => {
        it('should hand the journal to the next taker together with the live records', async () => {
          const owner = await claim('dp-1')
          await store.putRecords(DVIPA, sampleRecords(DVIPA, 1), owner)
          const taker = await claim('dp-2')
          expect(countRecords(await store.takeRecords(DVIPA, taker))).to.equal(5)
          // dp-2 writes one record of its own, then dies without settling
          await store.putRecords(DVIPA, [samplePhase1(DVIPA, 2)], taker)
          const next = await claim('dp-3')
          const taken = await store.takeRecords(DVIPA, next)
          expect(taken.phase1.map((r) => r.id)).to.deep.equal(['ike-1', 'ike-2'])
          expect(countRecords(taken)).to.equal(6)
        })

        it('should prefer the live record when the journal holds one with the same id', async () => {
          const owner = await claim('dp-1')
          await store.putRecords(DVIPA, [sampleConnection(DVIPA, 1, 'target-1')], owner)
          const taker = await claim('dp-2')
          await store.takeRecords(DVIPA, taker)
          await store.putRecords(DVIPA, [sampleConnection(DVIPA, 1, 'target-2')], taker)
          const next = await claim('dp-3')
          const taken = await store.takeRecords(DVIPA, next)
          expect(taken.connection).to.have.length(1)
          expect(taken.connection[0]?.target).to.equal('target-2')
        })
      })

      describe('when the taker settled', () => {
        it('should give the next taker only what the settled owner wrote', async () => {
          const owner = await claim('dp-1')
          await store.putRecords(DVIPA, sampleRecords(DVIPA, 1), owner)
          const taker = await claim('dp-2')
          await store.takeRecords(DVIPA, taker)
          await store.putRecords(DVIPA, sampleRecords(DVIPA, 2), taker)
          await store.settleTakeover(DVIPA, taker)
          const next = await claim('dp-3')
          const taken = await store.takeRecords(DVIPA, next)
          expect(taken.phase1.map((r) => r.id)).to.deep.equal(['ike-2'])
          expect(countRecords(taken)).to.equal(5)
        })
      })
    })

    describe('mailbox', () => {
      it('should deliver messages to their recipient, oldest first, once', async () => {
        for (let i = 1; i <= 3; i++) await store.postMessage(sampleDeleteMessage('dp-1', i))
        await store.postMessage(sampleDeleteMessage('dp-2', 9))
        const got = await store.takeMessages('dp-1')
        expect(got.map((m) => m.id)).to.deep.equal(['msg-1', 'msg-2', 'msg-3'])
        expect(got[0]).to.deep.equal(sampleDeleteMessage('dp-1', 1))
        expect(await store.takeMessages('dp-1')).to.deep.equal([])
        expect((await store.takeMessages('dp-2')).map((m) => m.id)).to.deep.equal(['msg-9'])
      })

      describe('when readers race', () => {
        it('should deliver each message to exactly one reader', async () => {
          for (let i = 1; i <= 20; i++) await store.postMessage(sampleDeleteMessage('dp-1', i))
          const batches = await Promise.all(
            Array.from({ length: 10 }, async () => store.takeMessages('dp-1'))
          )
          const ids = batches.flat().map((m) => m.id)
          expect(ids).to.have.length(20)
          expect(new Set(ids).size).to.equal(20)
        })
      })

      it('should reject an invalid message with CorruptRecordError and deliver nothing', async () => {
        const bad = { ...sampleDeleteMessage('dp-1', 1), epoch: 0 }
        const err = await rejection(store.postMessage(bad))
        expect(err.name).to.equal('CorruptRecordError')
        expect(await store.takeMessages('dp-1')).to.deep.equal([])
      })
    })

    describe('leases', () => {
      it('should report how long a renewed lease has left, and 0 for a node without one', async () => {
        await store.renewLease('dp-1', 5000)
        const leases = await store.readLeases(['dp-1', 'dp-2'])
        expect(leases['dp-1']).to.be.within(1, 5000)
        expect(leases['dp-2']).to.equal(0)
      })

      it('should let a lease expire when it is not renewed, and extend it when it is', async () => {
        await store.renewLease('dp-1', 200)
        await store.renewLease('dp-2', 60_000)
        // sleeps can only be late, so dp-1's lease has certainly expired after this one
        await new Promise((resolve) => setTimeout(resolve, 400))
        let leases = await store.readLeases(['dp-1', 'dp-2'])
        expect(leases['dp-1']).to.equal(0)
        expect(leases['dp-2']).to.be.greaterThan(0)
        await store.renewLease('dp-1', 60_000)
        leases = await store.readLeases(['dp-1'])
        expect(leases['dp-1']).to.be.greaterThan(0)
      })

      it('should refuse a lifetime below 1 ms with InvalidParametersError', async () => {
        for (const ttl of [0, -5, 1.5]) {
          const err = await rejection(store.renewLease('dp-1', ttl))
          expect(err.name).to.equal('InvalidParametersError')
        }
      })
    })

    describe('.events$', () => {
      it('should emit every change after start, in order', async () => {
        const events: CouplingStoreEvent[] = []
        const sub = store.events$.subscribe((e) => events.push(e))
        const owner = await claim('dp-1')
        await store.putRecords(DVIPA, [samplePhase1(DVIPA, 1)], owner)
        await store.deleteRecords(DVIPA, [{ kind: 'phase1', id: 'ike-1' }], owner)
        await store.putRecords(DVIPA, [samplePhase1(DVIPA, 2)], owner)
        const taker = await claim('dp-2')
        await store.takeRecords(DVIPA, taker)
        await store.postMessage(sampleDeleteMessage('dp-1', 1))
        await store.releaseOwnership(DVIPA, taker)
        // change streams backed by a server may deliver a moment later
        for (let i = 0; i < 100 && events.length < 8; i++)
          await new Promise((r) => setTimeout(r, 20))
        sub.unsubscribe()
        expect(events.map((e) => e.type)).to.deep.equal([
          'ownership:claimed',
          'record:put',
          'record:deleted',
          'record:put',
          'ownership:claimed',
          'records:taken',
          'mailbox:posted',
          'ownership:released'
        ])
        expect(events[5]).to.include({ type: 'records:taken', dvipa: DVIPA, epoch: 2, count: 1 })
      })

      it('should complete on stop', async () => {
        let completed = false
        store.events$.subscribe({ complete: () => (completed = true) })
        await store.stop()
        expect(completed).to.equal(true)
        await store.start()
      })
    })
  })
}
