/**
 * Test helper: a store keeps warm mode's records (`warm`, `sequence`) like every other kind:
 * fenced writes, listed, and returned (and cleared) by the takeover's read-and-clear, with
 * the journal a later taker gets back. Call it inside a `describe`, with a factory of started
 * stores on one fresh cluster.
 *
 * @module
 */
import { expect } from 'chai'
import { samplePhase1 } from '@vipsec/compliance/coupling-store'
import type { CouplingStore, Fence, SequenceRecord, WarmRecord } from '@vipsec/interface'

const DVIPA = '10.0.0.100'

const warm = (n: number): WarmRecord => ({
  v: 1,
  kind: 'warm',
  id: `ike-${n}`,
  dvipa: DVIPA,
  phase1Id: `ike-${n}`,
  keyId: 'k1',
  version: n,
  epoch: 1,
  nonce: Buffer.alloc(12, n).toString('base64'),
  sealed: Buffer.alloc(48, n).toString('base64')
})

const sequence = (n: number, end: string): SequenceRecord => ({
  v: 1,
  kind: 'sequence',
  id: `child-${n}`,
  dvipa: DVIPA,
  phase2Id: `child-${n}`,
  outboundSpi: (0xd0000000 + n).toString(16),
  reservedEnd: end,
  inbound: '12',
  keyId: 'k1',
  mac: Buffer.alloc(16, n).toString('base64')
})

/**
 * Declares the warm-kind tests.
 *
 * @param makeStore - a started store on a cluster (key prefix) no other test uses
 * @param stopStore - stops it and removes what it stored
 */
export function warmKindsTests(
  makeStore: () => Promise<CouplingStore>,
  stopStore: (store: CouplingStore) => Promise<void>
): void {
  let store: CouplingStore

  beforeEach(async () => {
    store = await makeStore()
  })

  afterEach(async () => {
    await stopStore(store)
  })

  const claim = async (owner: string, expectedEpoch: number): Promise<Fence> => {
    const { epoch } = await store.claimOwnership(DVIPA, { owner, ranks: [], expectedEpoch })
    return { owner, epoch }
  }

  it('should return warm and sequence records from takeRecords, and clear them', async () => {
    const owner = await claim('dp-1', 0)
    await store.putRecords(DVIPA, [samplePhase1(DVIPA, 1), warm(1), sequence(1, '1048576')], owner)
    expect((await store.getRecord(DVIPA, 'sequence', 'child-1')).reservedEnd).to.equal('1048576')
    const heir = await claim('dp-2', owner.epoch)
    const taken = await store.takeRecords(DVIPA, heir)
    expect(taken.warm).to.deep.equal([warm(1)])
    expect(taken.sequence).to.deep.equal([sequence(1, '1048576')])
    expect(taken.corrupt).to.deep.equal([])
    const left = await store.listRecords(DVIPA)
    expect(left.warm).to.deep.equal([])
    expect(left.sequence).to.deep.equal([])
  })

  it('should give a later taker the heir reservation over the journal one', async () => {
    const owner = await claim('dp-1', 0)
    await store.putRecords(DVIPA, [warm(1), sequence(1, '100')], owner)
    const heir = await claim('dp-2', owner.epoch)
    await store.takeRecords(DVIPA, heir)
    // the heir reserves past the dead owner's end, then dies before it settles
    await store.putRecords(DVIPA, [sequence(1, '200')], heir)
    const next = await claim('dp-3', heir.epoch)
    const taken = await store.takeRecords(DVIPA, next)
    expect(taken.sequence.map((s) => s.reservedEnd)).to.deep.equal(['200'])
    expect(taken.warm).to.deep.equal([warm(1)])
  })

  it('should refuse a warm record under a stale fence', async () => {
    const owner = await claim('dp-1', 0)
    await claim('dp-2', owner.epoch)
    let error: Error | undefined
    await store.putRecords(DVIPA, [sequence(1, '300')], owner).catch((e: Error) => (error = e))
    expect(error?.name).to.equal('StaleEpochError')
  })
}
