/**
 * What every coupling store shares, written once: {@link BaseCouplingStore} implements the
 * `CouplingStore` contract's common behaviour (the lifecycle check and the abort signal before
 * every call, argument checks, the next ownership of a claim, decoding what is read, dropping a
 * damaged mailbox message, the change stream) and leaves the backend's primitives (read these
 * bytes, write these records under this fence, move the records into the journal, ...) to each
 * adapter. The memory, Redis and etcd stores extend it.
 *
 * @module
 */
import { Subject, type Observable } from 'rxjs'
import {
  decodeDeleteMessage,
  decodeOwnership,
  decodeRecord,
  decodeRecordSet,
  InvalidParametersError,
  NotFoundError,
  NotStartedError,
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

/** The change events a store publishes; anything else read from a change stream is ignored. */
export const COUPLING_STORE_EVENT_TYPES: ReadonlySet<string> = new Set<string>([
  'ownership:claimed',
  'ownership:released',
  'record:put',
  'record:deleted',
  'records:taken',
  'mailbox:posted'
])

/** An ownership record as a release stores it: no owner, and always a previous owner. */
export type ReleasedOwnership = Ownership & {
  /** Nobody owns a released DVIPA. */
  owner: null
  /** The node whose SAs the records are, named by the `ownership:released` event. */
  previousOwner: NodeId
}

/**
 * The ownership record a release stores: no owner, and as `previousOwner` the node whose SAs
 * the records are (the one a switchover claim named as previous, else the releasing owner).
 * Its `previousOwner` is what the `ownership:released` event names.
 *
 * @param current - the record being released
 * @param fence - the releasing owner's fence
 */
export function releasedOwnership(current: Ownership, fence: Fence): ReleasedOwnership {
  return { ...current, owner: null, previousOwner: current.previousOwner ?? fence.owner }
}

/**
 * Checks a fence's shape: a non-empty owner and a non-negative integer epoch.
 *
 * @param fence - what the caller presented
 * @throws InvalidParametersError naming `fence.owner` or `fence.epoch`
 */
export function checkFence(fence: Fence): void {
  if (typeof fence?.owner !== 'string' || fence.owner.length === 0) {
    throw new InvalidParametersError('fence.owner', 'expected a non-empty string')
  }
  if (!Number.isSafeInteger(fence.epoch) || fence.epoch < 0) {
    throw new InvalidParametersError('fence.epoch', 'expected a non-negative integer')
  }
}

/**
 * Throws StaleEpochError unless the current ownership names the fence's owner and epoch.
 *
 * @param dvipa - the DVIPA
 * @param fence - what the caller presented
 * @param current - the ownership the store holds (undefined if never claimed)
 */
export function checkCurrent(
  dvipa: Dvipa,
  fence: Fence,
  current: { owner: NodeId | null; epoch: number } | undefined
): void {
  const epoch = current?.epoch ?? 0
  if (current === undefined || current.owner !== fence.owner || epoch !== fence.epoch) {
    throw new StaleEpochError(dvipa, fence.epoch, epoch)
  }
}

/**
 * What a take hands over: the unsettled journals, oldest first, then the live records, each
 * later entry replacing an earlier one of the same key (live records are newer than any journal).
 *
 * @param journals - the journals' entries, oldest first
 * @param live - the live records' entries
 * @returns the merged entries by key
 */
export function mergeJournal<K, V>(
  journals: Iterable<Iterable<readonly [K, V]>>,
  live: Iterable<readonly [K, V]>
): Map<K, V> {
  const merged = new Map<K, V>()
  for (const journal of journals) for (const [key, value] of journal) merged.set(key, value)
  for (const [key, value] of live) merged.set(key, value)
  return merged
}

/**
 * The contract behaviour every coupling store shares; an adapter extends it with its backend's
 * primitives (the protected abstract methods), each called only after the lifecycle, the abort
 * signal and the arguments were checked. The fence itself is checked by the primitive, in the
 * same atomic step as its write.
 */
export abstract class BaseCouplingStore implements CouplingStore {
  /** Time for `claimedAt`. */
  protected readonly clock: Pick<Clock, 'now'>
  private events = new Subject<CouplingStoreEvent>()

  /**
   * @param storeName - the class name, for NotStartedError's message
   * @param clock - time for `claimedAt` (default: the system's wall clock)
   */
  protected constructor(
    private readonly storeName: string,
    clock: Pick<Clock, 'now'> | undefined
  ) {
    this.clock = clock ?? { now: () => Date.now() }
  }

  /** Changes made by any store of this cluster; completes on `stop()`. */
  get events$(): Observable<CouplingStoreEvent> {
    return this.events.asObservable()
  }

  /** Starts the store. Idempotent. */
  abstract start(): Promise<void>

  /** Stops the store and completes `events$`. Idempotent. */
  abstract stop(): Promise<void>

  /** Whether the store is started. */
  abstract isStarted(): boolean

  /** {@inheritDoc @vipsec/interface!CouplingStore.getOwnership} */
  async getOwnership(dvipa: Dvipa, options?: AbortOptions): Promise<Ownership> {
    this.enter(options)
    const bytes = await this.readOwnership(dvipa, options)
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
    const expected = claim?.expectedEpoch
    if (!Number.isSafeInteger(expected) || expected < 0) {
      throw new InvalidParametersError('claim.expectedEpoch', 'expected a non-negative integer')
    }
    const previous = claim.previousOwner
    if (previous !== undefined && (typeof previous !== 'string' || previous.length === 0)) {
      throw new InvalidParametersError('claim.previousOwner', 'expected a non-empty string')
    }
    return this.writeClaim(
      {
        v: 1,
        dvipa,
        owner: claim.owner,
        epoch: expected + 1,
        ranks: Array.isArray(claim.ranks) ? [...claim.ranks] : claim.ranks,
        claimedAt: this.clock.now(),
        ...(previous === undefined ? {} : { previousOwner: previous })
      },
      options
    )
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.releaseOwnership} */
  async releaseOwnership(dvipa: Dvipa, fence: Fence, options?: AbortOptions): Promise<void> {
    this.enter(options)
    checkFence(fence)
    await this.writeRelease(dvipa, fence, options)
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.putRecords} */
  async putRecords(
    dvipa: Dvipa,
    records: DvipaRecord[],
    fence: Fence,
    options?: AbortOptions
  ): Promise<void> {
    this.enter(options)
    checkFence(fence)
    if (!Array.isArray(records)) throw new InvalidParametersError('records', 'expected an array')
    records.forEach((record, i) => {
      if (record?.dvipa !== dvipa) {
        throw new InvalidParametersError(`records[${i}].dvipa`, `must be ${dvipa}`)
      }
    })
    await this.writeRecords(dvipa, records, fence, options)
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.deleteRecords} */
  async deleteRecords(
    dvipa: Dvipa,
    keys: { kind: RecordKind; id: string }[],
    fence: Fence,
    options?: AbortOptions
  ): Promise<void> {
    this.enter(options)
    checkFence(fence)
    if (!Array.isArray(keys)) throw new InvalidParametersError('keys', 'expected an array')
    await this.removeRecords(dvipa, keys, fence, options)
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.getRecord} */
  async getRecord<K extends RecordKind>(
    dvipa: Dvipa,
    kind: K,
    id: string,
    options?: AbortOptions
  ): Promise<RecordByKind[K]> {
    this.enter(options)
    const bytes = await this.readRecord(dvipa, kind, id, options)
    if (bytes === undefined) throw new NotFoundError(`no ${kind} record ${id} under ${dvipa}`)
    return decodeRecord(kind, bytes)
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.listRecords} */
  async listRecords(dvipa: Dvipa, options?: ListRecordsOptions): Promise<DvipaRecordSet> {
    this.enter(options)
    const kind = options?.kind
    const all = await this.readRecords(dvipa, kind, options)
    return decodeRecordSet(kind === undefined ? all : all.filter((e) => e.kind === kind))
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.takeRecords} */
  async takeRecords(dvipa: Dvipa, fence: Fence, options?: AbortOptions): Promise<DvipaRecordSet> {
    this.enter(options)
    checkFence(fence)
    return decodeRecordSet(await this.moveToJournal(dvipa, fence, options))
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.settleTakeover} */
  async settleTakeover(dvipa: Dvipa, fence: Fence, options?: AbortOptions): Promise<void> {
    this.enter(options)
    checkFence(fence)
    await this.clearJournal(dvipa, fence, options)
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.postMessage} */
  async postMessage(message: DeleteMessage, options?: AbortOptions): Promise<void> {
    this.enter(options)
    await this.appendMessage(message, options)
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.takeMessages} */
  async takeMessages(node: NodeId, options?: AbortOptions): Promise<DeleteMessage[]> {
    this.enter(options)
    if (typeof node !== 'string' || node.length === 0) {
      throw new InvalidParametersError('node', 'expected a non-empty string')
    }
    const messages: DeleteMessage[] = []
    for (const bytes of await this.drainMailbox(node, options)) {
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
    if (!Number.isSafeInteger(ttlMs) || ttlMs < 1) {
      throw new InvalidParametersError('ttlMs', 'must be an integer >= 1')
    }
    await this.writeLease(node, ttlMs, options)
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.readLeases} */
  async readLeases(nodes: NodeId[], options?: AbortOptions): Promise<Record<NodeId, number>> {
    this.enter(options)
    if (nodes.length === 0) return {}
    return this.readLeaseTimes(nodes, options)
  }

  // ---- the backend's primitives ----

  /**
   * The ownership record's bytes, or undefined if the DVIPA was never claimed.
   *
   * @param dvipa - the DVIPA
   * @param options - the abort signal
   */
  protected abstract readOwnership(
    dvipa: Dvipa,
    options: AbortOptions | undefined
  ): Promise<Uint8Array | undefined>

  /**
   * Writes `ownership` if the store's epoch is `ownership.epoch - 1` (compare-and-set), else
   * throws OwnershipConflictError; returns what was written.
   *
   * @param ownership - the next ownership (checked arguments, `claimedAt` set)
   * @param options - the abort signal
   */
  protected abstract writeClaim(
    ownership: Ownership,
    options: AbortOptions | undefined
  ): Promise<Ownership>

  /**
   * Sets the owner of the fence's epoch to none, if the fence is current (else StaleEpochError).
   *
   * @param dvipa - the DVIPA
   * @param fence - the caller's fence (its shape checked)
   * @param options - the abort signal
   */
  protected abstract writeRelease(
    dvipa: Dvipa,
    fence: Fence,
    options: AbortOptions | undefined
  ): Promise<void>

  /**
   * Writes every record or none, if the fence is current (else StaleEpochError).
   *
   * @param dvipa - the DVIPA
   * @param records - the records, each of `dvipa`
   * @param fence - the caller's fence (its shape checked)
   * @param options - the abort signal
   */
  protected abstract writeRecords(
    dvipa: Dvipa,
    records: DvipaRecord[],
    fence: Fence,
    options: AbortOptions | undefined
  ): Promise<void>

  /**
   * Deletes the records of `keys` that exist, if the fence is current (else StaleEpochError).
   *
   * @param dvipa - the DVIPA
   * @param keys - the records' kinds and ids
   * @param fence - the caller's fence (its shape checked)
   * @param options - the abort signal
   */
  protected abstract removeRecords(
    dvipa: Dvipa,
    keys: { kind: RecordKind; id: string }[],
    fence: Fence,
    options: AbortOptions | undefined
  ): Promise<void>

  /**
   * One live record's bytes, or undefined.
   *
   * @param dvipa - the DVIPA
   * @param kind - its kind
   * @param id - its id
   * @param options - the abort signal
   */
  protected abstract readRecord(
    dvipa: Dvipa,
    kind: RecordKind,
    id: string,
    options: AbortOptions | undefined
  ): Promise<Uint8Array | undefined>

  /**
   * The live records as one consistent snapshot; it may hold other kinds than `kind` (they are
   * filtered out).
   *
   * @param dvipa - the DVIPA
   * @param kind - the kind asked for, if any
   * @param options - the abort signal
   */
  protected abstract readRecords(
    dvipa: Dvipa,
    kind: RecordKind | undefined,
    options: AbortOptions | undefined
  ): Promise<StoredEntry[]>

  /**
   * Read-and-clear, if the fence is current (else StaleEpochError): merges the unsettled journals
   * and the live records ({@link mergeJournal}), keeps that as the fence's journal, clears the live
   * records, and returns the merged entries.
   *
   * At most once per epoch, in the same atomic step: the store keeps the epoch of the last take it
   * applied (through the settle), and a second take at that epoch (a retry under a new request id,
   * or a duplicate delivered late) changes nothing and returns the journal as it stands (empty once
   * settled), so it can never move the owner's own records into a journal again.
   *
   * @param dvipa - the DVIPA
   * @param fence - the caller's fence (its shape checked)
   * @param options - the abort signal
   */
  protected abstract moveToJournal(
    dvipa: Dvipa,
    fence: Fence,
    options: AbortOptions | undefined
  ): Promise<StoredEntry[]>

  /**
   * Drops the journal, if the fence is current (else StaleEpochError).
   *
   * @param dvipa - the DVIPA
   * @param fence - the caller's fence (its shape checked)
   * @param options - the abort signal
   */
  protected abstract clearJournal(
    dvipa: Dvipa,
    fence: Fence,
    options: AbortOptions | undefined
  ): Promise<void>

  /**
   * Appends a message to its recipient's mailbox (once, however often it is retried).
   *
   * @param message - the message
   * @param options - the abort signal
   */
  protected abstract appendMessage(
    message: DeleteMessage,
    options: AbortOptions | undefined
  ): Promise<void>

  /**
   * Takes every message of a node's mailbox, oldest first, as stored bytes.
   *
   * @param node - the recipient (a non-empty string)
   * @param options - the abort signal
   */
  protected abstract drainMailbox(
    node: NodeId,
    options: AbortOptions | undefined
  ): Promise<Uint8Array[]>

  /**
   * Makes a node's lease expire `ttlMs` from now.
   *
   * @param node - the node
   * @param ttlMs - an integer of 1 or more
   * @param options - the abort signal
   */
  protected abstract writeLease(
    node: NodeId,
    ttlMs: number,
    options: AbortOptions | undefined
  ): Promise<void>

  /**
   * How long each node's lease has left, in ms (0 for none).
   *
   * @param nodes - at least one node
   * @param options - the abort signal
   */
  protected abstract readLeaseTimes(
    nodes: NodeId[],
    options: AbortOptions | undefined
  ): Promise<Record<NodeId, number>>

  // ---- shared helpers ----

  /**
   * Checks the signal and the lifecycle before any work.
   *
   * @param options - the abort signal
   * @throws NotStartedError when the store is not started
   */
  protected enter(options: AbortOptions | undefined): void {
    throwIfAborted(options?.signal)
    if (!this.isStarted()) throw new NotStartedError(`${this.storeName} is not started`)
  }

  /** Makes `events$` live again after a stop (call when the store starts). */
  protected openEvents(): void {
    if (this.events.closed || this.events.isStopped) this.events = new Subject()
  }

  /** Completes `events$` (call when the store stops). */
  protected closeEvents(): void {
    this.events.complete()
  }

  /**
   * Emits one change event.
   *
   * @param event - the event
   */
  protected emitEvent(event: CouplingStoreEvent): void {
    this.events.next(event)
  }

  /**
   * Emits the events of one message of the backend's change stream: a JSON array of events, as
   * every write publishes with its change; anything malformed or of an unknown type is ignored.
   *
   * @param text - the message
   */
  protected emitPublished(text: string): void {
    let events: unknown
    try {
      events = JSON.parse(text)
    } catch {
      return
    }
    if (!Array.isArray(events)) return
    for (const event of events) {
      if (
        event !== null &&
        typeof event === 'object' &&
        COUPLING_STORE_EVENT_TYPES.has((event as { type: string }).type)
      ) {
        this.events.next(event as CouplingStoreEvent)
      }
    }
  }
}
