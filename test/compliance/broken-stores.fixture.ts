// Coupling stores broken on purpose, each in one way, run through the compliance suite by
// suite-catches-broken-stores.spec.ts in a child mocha process. Not a spec file on its own.
import { couplingStoreSuite } from '@vipsec/compliance/coupling-store'
import {
  decodeRecordSet,
  encodeRecord,
  type AbortOptions,
  type DeleteMessage,
  type Dvipa,
  type DvipaRecord,
  type DvipaRecordSet,
  type Fence,
  type NodeId,
  type Ownership,
  type OwnershipClaim
} from '@vipsec/interface'
import { MemoryCouplingFacility, MemoryCouplingStore, type RecordKey } from '@vipsec/store-memory'

const yieldTurn = async (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** Reads the epoch, yields, then claims as if nothing had changed: a lost-update race. */
class NonAtomicClaimStore extends MemoryCouplingStore {
  override async claimOwnership(
    dvipa: Dvipa,
    claim: OwnershipClaim,
    options?: AbortOptions
  ): Promise<Ownership> {
    const seen = this.facility.slot(dvipa).epoch
    await yieldTurn()
    this.facility.slot(dvipa).epoch = seen
    return super.claimOwnership(dvipa, claim, options)
  }
}

/** Writes records without checking the fence. */
class UnfencedStore extends MemoryCouplingStore {
  override async putRecords(dvipa: Dvipa, records: DvipaRecord[]): Promise<void> {
    for (const record of records) {
      this.facility.slot(dvipa).records.set(`${record.kind}/${record.id}`, encodeRecord(record))
    }
  }
}

/** Reads, then clears one record per event-loop turn. */
class NonAtomicTakeStore extends MemoryCouplingStore {
  override async takeRecords(
    dvipa: Dvipa,
    fence: Fence,
    options?: AbortOptions
  ): Promise<DvipaRecordSet> {
    await this.listRecords(dvipa, options)
    const slot = this.facility.slot(dvipa)
    if (slot.owner !== fence.owner || slot.epoch !== fence.epoch)
      return super.takeRecords(dvipa, fence, options)
    const taken = [...slot.records]
    for (const [key] of taken) {
      slot.records.delete(key)
      await yieldTurn()
    }
    return decodeRecordSet(
      taken.map(([key, bytes]) => {
        const [kind, ...id] = key.split('/')
        return { kind: kind as DvipaRecord['kind'], id: id.join('/'), bytes }
      })
    )
  }
}

/** Returns the mailbox, yields, then empties it: messages can be delivered twice. */
class AtLeastOnceMailboxStore extends MemoryCouplingStore {
  override async takeMessages(node: NodeId, options?: AbortOptions): Promise<DeleteMessage[]> {
    const box = [...(this.facility.mailboxes.get(node) ?? [])]
    await yieldTurn()
    const copy = new MemoryCouplingFacility()
    copy.mailboxes.set(node, box)
    this.facility.mailboxes.delete(node)
    const reader = new MemoryCouplingStore({}, { facility: copy })
    await reader.start()
    const messages = await reader.takeMessages(node, options)
    await reader.stop()
    return messages
  }
}

/** Forgets to complete its change stream on stop. */
class OpenStreamStore extends MemoryCouplingStore {
  override async stop(): Promise<void> {
    const events = (this as unknown as { events: { complete: () => void } }).events
    const complete = events.complete
    events.complete = () => {}
    await super.stop()
    events.complete = complete
  }
}

const corrupt = async (
  store: unknown,
  dvipa: string,
  kind: string,
  id: string,
  bytes: Uint8Array
): Promise<void> => {
  const key = `${kind}/${id}` as RecordKey
  ;(store as MemoryCouplingStore).facility.slot(dvipa).records.set(key, bytes)
}

for (const [name, Store] of [
  ['NonAtomicClaimStore', NonAtomicClaimStore],
  ['UnfencedStore', UnfencedStore],
  ['NonAtomicTakeStore', NonAtomicTakeStore],
  ['AtLeastOnceMailboxStore', AtLeastOnceMailboxStore],
  ['OpenStreamStore', OpenStreamStore]
] as const) {
  describe(name, () => {
    couplingStoreSuite({
      setup: () => new Store({}, { facility: new MemoryCouplingFacility() }),
      corrupt
    })
  })
}
