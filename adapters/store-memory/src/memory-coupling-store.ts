import type { Subscription } from 'rxjs'
import {
  decodeOwnership,
  encodeDeleteMessage,
  encodeOwnership,
  encodeRecord,
  OwnershipConflictError,
  type Clock,
  type DeleteMessage,
  type Dvipa,
  type DvipaRecord,
  type Fence,
  type NodeId,
  type Ownership,
  type RecordKind,
  type StoredEntry
} from '@vipsec/interface'
import {
  BaseCouplingStore,
  checkCurrent,
  mergeJournal,
  releasedOwnership
} from './base-coupling-store.js'
import { MemoryCouplingFacility, type DvipaSlot, type RecordKey } from './facility.js'

/** What a {@link MemoryCouplingStore} needs. */
export interface MemoryCouplingStoreComponents {
  /** Time for `claimedAt`. Default: the system's wall clock. */
  clock?: Pick<Clock, 'now'>
}

/** Options of a {@link MemoryCouplingStore}. */
export interface MemoryCouplingStoreInit {
  /**
   * The facility to keep state in. Give several stores the same facility to simulate nodes that
   * share one coupling store. Default: a new, private facility.
   */
  facility?: MemoryCouplingFacility
}

function keyOf(kind: RecordKind, id: string): RecordKey {
  return `${kind}/${id}`
}

function splitKey(key: RecordKey): { kind: RecordKind; id: string } {
  const slash = key.indexOf('/')
  return { kind: key.slice(0, slash) as RecordKind, id: key.slice(slash + 1) }
}

function entries(map: Map<RecordKey, Uint8Array>): StoredEntry[] {
  return [...map].map(([key, bytes]) => ({ ...splitKey(key), bytes }))
}

/**
 * The in-memory coupling store: the embedded default, for one process and for simulations.
 *
 * Every operation checks its arguments and fence, then changes state synchronously in a single
 * turn of the event loop, so claims are true compare-and-set, batches are all-or-none and
 * read-and-clear is atomic. Records are held as the bytes `encodeRecord` makes and decoded (and
 * validated) on every read, exactly as a remote store would. The contract behaviour the stores
 * share is in {@link BaseCouplingStore}; this class holds the facility's primitives.
 */
export class MemoryCouplingStore extends BaseCouplingStore {
  /** The shared state this store works on. */
  readonly facility: MemoryCouplingFacility
  private subscription: Subscription | undefined

  /**
   * @param components - the clock
   * @param init - the facility to share
   */
  constructor(components: MemoryCouplingStoreComponents = {}, init: MemoryCouplingStoreInit = {}) {
    super('MemoryCouplingStore', components.clock)
    this.facility = init.facility ?? new MemoryCouplingFacility()
  }

  /** Starts forwarding the facility's changes. Idempotent. */
  async start(): Promise<void> {
    if (this.subscription !== undefined) return
    this.openEvents()
    this.subscription = this.facility.changes$.subscribe((event) => this.emitEvent(event))
  }

  /** Stops; completes `events$`. The facility keeps its state. Idempotent. */
  async stop(): Promise<void> {
    if (this.subscription === undefined) return
    this.subscription.unsubscribe()
    this.subscription = undefined
    this.closeEvents()
  }

  /** Whether the store is started. */
  isStarted(): boolean {
    return this.subscription !== undefined
  }

  /** {@inheritDoc BaseCouplingStore.readOwnership} */
  protected async readOwnership(dvipa: Dvipa): Promise<Uint8Array | undefined> {
    return this.facility.dvipas.get(dvipa)?.ownership
  }

  /** {@inheritDoc BaseCouplingStore.writeClaim} */
  protected async writeClaim(ownership: Ownership): Promise<Ownership> {
    const dvipa = ownership.dvipa
    const expected = ownership.epoch - 1
    const slot = this.facility.slot(dvipa)
    if (slot.epoch !== expected) {
      throw new OwnershipConflictError(dvipa, expected, slot.epoch, slot.owner ?? undefined)
    }
    const bytes = encodeOwnership(ownership)
    slot.ownership = bytes
    slot.owner = ownership.owner
    slot.epoch = ownership.epoch
    this.facility.publish({ type: 'ownership:claimed', ownership })
    return decodeOwnership(bytes)
  }

  /** {@inheritDoc BaseCouplingStore.writeRelease} */
  protected async writeRelease(dvipa: Dvipa, fence: Fence): Promise<void> {
    const slot = this.fenced(dvipa, fence)
    const released = releasedOwnership(decodeOwnership(slot.ownership!), fence)
    slot.ownership = encodeOwnership(released)
    slot.owner = null
    this.facility.publish({
      type: 'ownership:released',
      dvipa,
      epoch: slot.epoch,
      previousOwner: released.previousOwner
    })
  }

  /** {@inheritDoc BaseCouplingStore.writeRecords} */
  protected async writeRecords(dvipa: Dvipa, records: DvipaRecord[], fence: Fence): Promise<void> {
    const slot = this.fenced(dvipa, fence)
    const encoded = records.map(
      (record) => [keyOf(record.kind, record.id), encodeRecord(record)] as const
    )
    for (const [key, bytes] of encoded) slot.records.set(key, bytes)
    for (const record of records) {
      this.facility.publish({
        type: 'record:put',
        dvipa,
        kind: record.kind,
        id: record.id,
        epoch: fence.epoch
      })
    }
  }

  /** {@inheritDoc BaseCouplingStore.removeRecords} */
  protected async removeRecords(
    dvipa: Dvipa,
    keys: { kind: RecordKind; id: string }[],
    fence: Fence
  ): Promise<void> {
    const slot = this.fenced(dvipa, fence)
    for (const { kind, id } of keys) {
      if (slot.records.delete(keyOf(kind, id))) {
        this.facility.publish({ type: 'record:deleted', dvipa, kind, id, epoch: fence.epoch })
      }
    }
  }

  /** {@inheritDoc BaseCouplingStore.readRecord} */
  protected async readRecord(
    dvipa: Dvipa,
    kind: RecordKind,
    id: string
  ): Promise<Uint8Array | undefined> {
    return this.facility.dvipas.get(dvipa)?.records.get(keyOf(kind, id))
  }

  /** {@inheritDoc BaseCouplingStore.readRecords} */
  protected async readRecords(dvipa: Dvipa): Promise<StoredEntry[]> {
    const slot = this.facility.dvipas.get(dvipa)
    return slot === undefined ? [] : entries(slot.records)
  }

  /** {@inheritDoc BaseCouplingStore.moveToJournal} */
  protected async moveToJournal(dvipa: Dvipa, fence: Fence): Promise<StoredEntry[]> {
    const slot = this.fenced(dvipa, fence)
    // a second take at this epoch: the journal as it stands, nothing moved
    if (slot.takenEpoch === fence.epoch) return entries(slot.journals.get(fence.epoch) ?? new Map())
    slot.takenEpoch = fence.epoch
    const journals = [...slot.journals.keys()]
      .sort((a, b) => a - b)
      .map((e) => slot.journals.get(e)!)
    const merged = mergeJournal(journals, slot.records)
    slot.journals.clear()
    slot.journals.set(fence.epoch, merged)
    slot.records = new Map()
    this.facility.publish({ type: 'records:taken', dvipa, epoch: fence.epoch, count: merged.size })
    return entries(merged)
  }

  /** {@inheritDoc BaseCouplingStore.clearJournal} */
  protected async clearJournal(dvipa: Dvipa, fence: Fence): Promise<void> {
    this.fenced(dvipa, fence).journals.clear()
  }

  /** {@inheritDoc BaseCouplingStore.appendMessage} */
  protected async appendMessage(message: DeleteMessage): Promise<void> {
    const bytes = encodeDeleteMessage(message)
    const box = this.facility.mailboxes.get(message.to) ?? []
    box.push(bytes)
    this.facility.mailboxes.set(message.to, box)
    this.facility.publish({ type: 'mailbox:posted', to: message.to, id: message.id })
  }

  /** {@inheritDoc BaseCouplingStore.drainMailbox} */
  protected async drainMailbox(node: NodeId): Promise<Uint8Array[]> {
    const box = this.facility.mailboxes.get(node) ?? []
    this.facility.mailboxes.delete(node)
    return box
  }

  /** {@inheritDoc BaseCouplingStore.writeLease} */
  protected async writeLease(node: NodeId, ttlMs: number): Promise<void> {
    this.facility.leases.set(node, this.clock.now() + ttlMs)
  }

  /** {@inheritDoc BaseCouplingStore.readLeaseTimes} */
  protected async readLeaseTimes(nodes: NodeId[]): Promise<Record<NodeId, number>> {
    const now = this.clock.now()
    const out: Record<NodeId, number> = {}
    for (const node of nodes) out[node] = Math.max(0, (this.facility.leases.get(node) ?? now) - now)
    return out
  }

  /** Returns the slot if `fence` names its current owner and epoch, else throws StaleEpochError. */
  private fenced(dvipa: Dvipa, fence: Fence): DvipaSlot {
    const slot = this.facility.dvipas.get(dvipa)
    checkCurrent(
      dvipa,
      fence,
      slot === undefined ? undefined : { owner: slot.owner, epoch: slot.epoch }
    )
    return slot!
  }
}

/**
 * Creates a {@link MemoryCouplingStore}.
 *
 * @param components - the clock
 * @param init - the facility to share
 */
export function memoryCouplingStore(
  components?: MemoryCouplingStoreComponents,
  init?: MemoryCouplingStoreInit
): MemoryCouplingStore {
  return new MemoryCouplingStore(components, init)
}
