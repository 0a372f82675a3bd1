/**
 * Test helper: the rule every store built on `BaseCouplingStore` keeps beyond the compliance
 * suite, that a take is applied at most once per epoch. A second take at the taker's epoch (a
 * retry under a new request id, or a duplicate the network delivered late) must not move the
 * owner's own records into a journal again: it returns the journal as it stands and changes
 * nothing. Call it inside a `describe`, with a factory of started stores on one fresh cluster.
 *
 * @module
 */
import { expect } from 'chai'
import { samplePhase1, sampleRecords } from '@vipsec/compliance/coupling-store'
import {
  countRecords,
  type CouplingStore,
  type CouplingStoreEvent,
  type Fence
} from '@vipsec/interface'

const DVIPA = '10.0.0.100'

/**
 * Declares the take-once tests.
 *
 * @param makeStore - a started store on a cluster (key prefix) no other test uses
 * @param stopStore - stops it and removes what it stored
 */
export function takeOnceTests(
  makeStore: () => Promise<CouplingStore>,
  stopStore: (store: CouplingStore) => Promise<void>
): void {
  let store: CouplingStore
  let events: CouplingStoreEvent[]
  let sub: { unsubscribe(): void } | undefined

  beforeEach(async () => {
    store = await makeStore()
    events = []
    sub = store.events$.subscribe((e) => events.push(e))
  })

  afterEach(async () => {
    sub?.unsubscribe()
    await stopStore(store)
  })

  const claim = async (owner: string, expectedEpoch: number): Promise<Fence> => {
    const { epoch } = await store.claimOwnership(DVIPA, { owner, ranks: [], expectedEpoch })
    return { owner, epoch }
  }

  /** The epochs of the takes on the change stream, once (bounded) the take at `last` is on it. */
  const takenEpochs = async (last: number): Promise<number[]> => {
    const epochs = (): number[] =>
      events.flatMap((e) => (e.type === 'records:taken' ? [e.epoch] : []))
    for (let i = 0; i < 100 && !epochs().includes(last); i++) {
      await new Promise((r) => setTimeout(r, 20))
    }
    return epochs()
  }

  it('should leave the owner its records when a take at its epoch comes again after the settle', async () => {
    const old = await claim('dp-1', 0)
    await store.putRecords(DVIPA, sampleRecords(DVIPA, 1), old)
    const taker = await claim('dp-2', 1)
    expect(countRecords(await store.takeRecords(DVIPA, taker))).to.equal(5)
    await store.putRecords(DVIPA, [samplePhase1(DVIPA, 2)], taker)
    await store.settleTakeover(DVIPA, taker)
    const again = await store.takeRecords(DVIPA, taker)
    expect(countRecords(again)).to.equal(0)
    const live = await store.listRecords(DVIPA)
    expect(live.phase1.map((r) => r.id)).to.deep.equal(['ike-2'])
    // the next owner still gets what dp-2 wrote
    const next = await claim('dp-3', 2)
    expect((await store.takeRecords(DVIPA, next)).phase1.map((r) => r.id)).to.deep.equal(['ike-2'])
    // a take that changed nothing says nothing on the change stream (which keeps commit order)
    expect(await takenEpochs(next.epoch)).to.deep.equal([taker.epoch, next.epoch])
  })

  it('should hand a second take before the settle the journal, and keep the live records', async () => {
    const old = await claim('dp-1', 0)
    await store.putRecords(DVIPA, sampleRecords(DVIPA, 1), old)
    const taker = await claim('dp-2', 1)
    await store.takeRecords(DVIPA, taker)
    await store.putRecords(DVIPA, [samplePhase1(DVIPA, 2)], taker)
    const again = await store.takeRecords(DVIPA, taker)
    expect(again.phase1.map((r) => r.id)).to.deep.equal(['ike-1'])
    expect(countRecords(again)).to.equal(5)
    expect((await store.listRecords(DVIPA)).phase1.map((r) => r.id)).to.deep.equal(['ike-2'])
  })
}
