import { Subject, type Observable, type Subscription } from 'rxjs'
import {
  decodeDeleteMessage,
  decodeOwnership,
  decodeRecord,
  decodeRecordSet,
  encodeDeleteMessage,
  encodeOwnership,
  encodeRecord,
  InvalidParametersError,
  NotFoundError,
  NotStartedError,
  OwnershipConflictError,
  StaleEpochError,
  throwIfAborted,
  type AbortOptions,
  type Clock,
  type CouplingStore,
  type CouplingStoreEvent,
  type DeleteMessage,
  type Dvipa,
  type DvipaRecord,
  type DvipaRecordSet,
  type Fence,
  type ListRecordsOptions,
  type NodeId,
  type Ownership,
  type OwnershipClaim,
  type RecordByKind,
  type RecordKind,
  type StoredEntry
} from '@vipsec/interface'
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
 * validated) on every read, exactly as a remote store would.
 */
export class MemoryCouplingStore implements CouplingStore {
  /** The shared state this store works on. */
  readonly facility: MemoryCouplingFacility
  private readonly clock: Pick<Clock, 'now'>
  private events = new Subject<CouplingStoreEvent>()
  private subscription: Subscription | undefined

  /**
   * @param components - the clock
   * @param init - the facility to share
   */
  constructor(components: MemoryCouplingStoreComponents = {}, init: MemoryCouplingStoreInit = {}) {
    this.clock = components.clock ?? { now: () => Date.now() }
    this.facility = init.facility ?? new MemoryCouplingFacility()
  }

  /** Changes made through any store on the same facility; completes on `stop()`. */
  get events$(): Observable<CouplingStoreEvent> {
    return this.events.asObservable()
  }

  /** Starts forwarding the facility's changes. Idempotent. */
  async start(): Promise<void> {
    if (this.subscription !== undefined) return
    if (this.events.closed || this.events.isStopped) this.events = new Subject()
    this.subscription = this.facility.changes$.subscribe((event) => this.events.next(event))
  }

  /** Stops; completes `events$`. The facility keeps its state. Idempotent. */
  async stop(): Promise<void> {
    if (this.subscription === undefined) return
    this.subscription.unsubscribe()
    this.subscription = undefined
    this.events.complete()
  }

  /** Whether the store is started. */
  isStarted(): boolean {
    return this.subscription !== undefined
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.getOwnership} */
  async getOwnership(dvipa: Dvipa, options?: AbortOptions): Promise<Ownership> {
    this.enter(options)
    const bytes = this.facility.dvipas.get(dvipa)?.ownership
    if (bytes === undefined) throw new NotFoundError(`${dvipa} has never been claimed`)
    return decodeOwnership(bytes)
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.claimOwnership} */
  async claimOwnership(
    dvipa: Dvipa,
    claim: OwnershipClaim,
    options?: AbortOptions
  ): Promise<Ownership> {
    this.enter(options)
    const slot = this.facility.slot(dvipa)
    if (slot.epoch !== claim.expectedEpoch) {
      throw new OwnershipConflictError(
        dvipa,
        claim.expectedEpoch,
        slot.epoch,
        slot.owner ?? undefined
      )
    }
    const ownership: Ownership = {
      v: 1,
      dvipa,
      owner: claim.owner,
      epoch: slot.epoch + 1,
      ranks: [...claim.ranks],
      claimedAt: this.clock.now()
    }
    slot.ownership = encodeOwnership(ownership)
    slot.owner = ownership.owner
    slot.epoch = ownership.epoch
    this.facility.publish({ type: 'ownership:claimed', ownership })
    return decodeOwnership(slot.ownership)
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.releaseOwnership} */
  async releaseOwnership(dvipa: Dvipa, fence: Fence, options?: AbortOptions): Promise<void> {
    this.enter(options)
    const slot = this.fenced(dvipa, fence)
    const ownership = { ...decodeOwnership(slot.ownership!), owner: null }
    slot.ownership = encodeOwnership(ownership)
    slot.owner = null
    this.facility.publish({ type: 'ownership:released', dvipa, epoch: slot.epoch })
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.putRecords} */
  async putRecords(
    dvipa: Dvipa,
    records: DvipaRecord[],
    fence: Fence,
    options?: AbortOptions
  ): Promise<void> {
    this.enter(options)
    const slot = this.fenced(dvipa, fence)
    const encoded = records.map((record, i) => {
      if (record?.dvipa !== dvipa) {
        throw new InvalidParametersError(`records[${i}].dvipa`, `must be ${dvipa}`)
      }
      return [keyOf(record.kind, record.id), encodeRecord(record)] as const
    })
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

  /** {@inheritDoc @vipsec/interface!CouplingStore.deleteRecords} */
  async deleteRecords(
    dvipa: Dvipa,
    keys: { kind: RecordKind; id: string }[],
    fence: Fence,
    options?: AbortOptions
  ): Promise<void> {
    this.enter(options)
    const slot = this.fenced(dvipa, fence)
    for (const { kind, id } of keys) {
      if (slot.records.delete(keyOf(kind, id))) {
        this.facility.publish({ type: 'record:deleted', dvipa, kind, id, epoch: fence.epoch })
      }
    }
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.getRecord} */
  async getRecord<K extends RecordKind>(
    dvipa: Dvipa,
    kind: K,
    id: string,
    options?: AbortOptions
  ): Promise<RecordByKind[K]> {
    this.enter(options)
    const bytes = this.facility.dvipas.get(dvipa)?.records.get(keyOf(kind, id))
    if (bytes === undefined) throw new NotFoundError(`no ${kind} record ${id} under ${dvipa}`)
    return decodeRecord(kind, bytes)
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.listRecords} */
  async listRecords(dvipa: Dvipa, options?: ListRecordsOptions): Promise<DvipaRecordSet> {
    this.enter(options)
    const slot = this.facility.dvipas.get(dvipa)
    const all = slot === undefined ? [] : entries(slot.records)
    return decodeRecordSet(
      options?.kind === undefined ? all : all.filter((e) => e.kind === options.kind)
    )
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.takeRecords} */
  async takeRecords(dvipa: Dvipa, fence: Fence, options?: AbortOptions): Promise<DvipaRecordSet> {
    this.enter(options)
    const slot = this.fenced(dvipa, fence)
    // Older unsettled journals first, so that live records (newer) replace them by key.
    const merged = new Map<RecordKey, Uint8Array>()
    for (const epoch of [...slot.journals.keys()].sort((a, b) => a - b)) {
      for (const [key, bytes] of slot.journals.get(epoch)!) merged.set(key, bytes)
    }
    for (const [key, bytes] of slot.records) merged.set(key, bytes)
    slot.journals.clear()
    slot.journals.set(fence.epoch, merged)
    slot.records = new Map()
    const set = decodeRecordSet(entries(merged))
    this.facility.publish({ type: 'records:taken', dvipa, epoch: fence.epoch, count: merged.size })
    return set
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.settleTakeover} */
  async settleTakeover(dvipa: Dvipa, fence: Fence, options?: AbortOptions): Promise<void> {
    this.enter(options)
    const slot = this.fenced(dvipa, fence)
    slot.journals.clear()
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.postMessage} */
  async postMessage(message: DeleteMessage, options?: AbortOptions): Promise<void> {
    this.enter(options)
    const bytes = encodeDeleteMessage(message)
    const box = this.facility.mailboxes.get(message.to) ?? []
    box.push(bytes)
    this.facility.mailboxes.set(message.to, box)
    this.facility.publish({ type: 'mailbox:posted', to: message.to, id: message.id })
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.takeMessages} */
  async takeMessages(node: NodeId, options?: AbortOptions): Promise<DeleteMessage[]> {
    this.enter(options)
    const box = this.facility.mailboxes.get(node) ?? []
    this.facility.mailboxes.delete(node)
    const messages: DeleteMessage[] = []
    for (const bytes of box) {
      try {
        messages.push(decodeDeleteMessage(bytes))
      } catch {
        // Only valid messages are ever stored; a damaged one cannot be acted on and is dropped.
      }
    }
    return messages
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.renewLease} */
  async renewLease(node: NodeId, ttlMs: number, options?: AbortOptions): Promise<void> {
    this.enter(options)
    if (!Number.isSafeInteger(ttlMs) || ttlMs < 1)
      throw new InvalidParametersError('ttlMs', 'must be an integer >= 1')
    this.facility.leases.set(node, this.clock.now() + ttlMs)
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.readLeases} */
  async readLeases(nodes: NodeId[], options?: AbortOptions): Promise<Record<NodeId, number>> {
    this.enter(options)
    const now = this.clock.now()
    const out: Record<NodeId, number> = {}
    for (const node of nodes) out[node] = Math.max(0, (this.facility.leases.get(node) ?? now) - now)
    return out
  }

  /** Checks the lifecycle and the signal before any work. */
  private enter(options?: AbortOptions): void {
    throwIfAborted(options?.signal)
    if (!this.isStarted()) throw new NotStartedError('MemoryCouplingStore is not started')
  }

  /** Returns the slot if `fence` names its current owner and epoch, else throws StaleEpochError. */
  private fenced(dvipa: Dvipa, fence: Fence): DvipaSlot {
    const slot = this.facility.dvipas.get(dvipa)
    const epoch = slot?.epoch ?? 0
    if (
      slot === undefined ||
      slot.owner === null ||
      slot.owner !== fence.owner ||
      epoch !== fence.epoch
    ) {
      throw new StaleEpochError(dvipa, fence.epoch, epoch)
    }
    return slot
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
