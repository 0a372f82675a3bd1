import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { noop } from 'cockatiel'
import { Etcd3, type IOptions, type Watcher } from 'etcd3'
import type {
  ICompare,
  IKeyValue,
  IRangeResponse,
  IRequestOp,
  ITxnResponse
} from 'etcd3/lib/rpc.js'
import {
  decodeOwnership,
  encodeDeleteMessage,
  encodeOwnership,
  encodeRecord,
  NotStartedError,
  OwnershipConflictError,
  StaleEpochError,
  StoreUnavailableError,
  throwIfAborted,
  type AbortOptions,
  type Clock,
  type CouplingStoreEvent,
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
} from '@vipsec/store-memory'
import { systemClock } from '@vipsec/clock'
import { hedged, type HedgeTimers } from './hedge.js'
import { etcdKeys, prefixEnd, recordName, splitRecordName, type EtcdKeyLayout } from './keys.js'
import { resolveInit, type EtcdCouplingStoreInit, type ResolvedEtcdInit } from './options.js'

/** What an {@link EtcdCouplingStore} needs. */
export interface EtcdCouplingStoreComponents {
  /**
   * Time for `claimedAt`, and, when it has `setTimeout` and `clearTimeout`, the timers that send
   * an unanswered read to the next member (`hedgeMs`). Default: the system's clock. Call deadlines
   * and lease ages always use real time, whatever clock is given.
   */
  clock?: Pick<Clock, 'now'> & Partial<Pick<Clock, 'setTimeout' | 'clearTimeout'>>
}

/** The ownership key's value. */
interface OwnerValue {
  epoch: number
  owner: string | null
  /** base64 of encodeOwnership */
  record: string
  claimId?: string
  releaseId?: string
}

/** The journal key's value. */
interface JournalValue {
  takeId: string
  journalEpoch: number | null
  /** The epoch of the last take applied, kept through the settle: one take per epoch. */
  takenEpoch?: number
  /** [record name, base64 bytes] */
  entries: Array<[string, string]>
}

/** What a transaction's decision step returns: an answer, or a write to commit. */
type Step<T> =
  { done: T } | { compare: ICompare[]; success: IRequestOp[]; result: (res: ITxnResponse) => T }

/** Error names that mean etcd refused the credentials or the rights: retrying will not help. */
const AUTH_ERRORS = new Set([
  'EtcdAuthenticationFailedError',
  'EtcdPermissionDeniedError',
  'GRPCUnauthenticatedError',
  'EtcdRoleNotGrantedError',
  'EtcdUserNotFoundError'
])

const errorName = (err: unknown): string =>
  err instanceof Error ? (err.constructor?.name ?? err.name) : ''

const sleep = async (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)))

/**
 * Resolves when etcd has accepted the watch; rejects when it cancels it, when the stream to the
 * member fails, or after `ms` (real time).
 */
async function accepted(watcher: Watcher, ms: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => done(new Error(`the watch was not accepted within ${ms} ms`)),
      ms
    )
    const done = (err?: Error): void => {
      clearTimeout(timer)
      watcher.off('connected', onConnected)
      watcher.off('error', done)
      watcher.off('disconnected', done)
      if (err === undefined) resolve()
      else reject(err)
    }
    const onConnected = (): void => done()
    watcher.once('connected', onConnected)
    watcher.once('error', done)
    watcher.once('disconnected', done)
  })
}

const buf = (s: string): Buffer => Buffer.from(s, 'utf8')
const asBuffer = (bytes: Uint8Array): Buffer =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)

const range = (key: string): IRequestOp => ({ request_range: { key: buf(key) } })
const rangePrefix = (prefix: string, sortByCreate = false): IRequestOp => ({
  request_range: {
    key: buf(prefix),
    range_end: prefixEnd(buf(prefix)),
    ...(sortByCreate ? { sort_target: 'Create', sort_order: 'Ascend' } : {})
  }
})
const put = (key: string, value: Buffer | string, lease?: string): IRequestOp => ({
  request_put: {
    key: buf(key),
    value: typeof value === 'string' ? buf(value) : value,
    ...(lease === undefined ? {} : { lease })
  }
})
const del = (key: string): IRequestOp => ({ request_delete_range: { key: buf(key) } })
const delPrefix = (prefix: string): IRequestOp => ({
  request_delete_range: { key: buf(prefix), range_end: prefixEnd(buf(prefix)) }
})
/** Compares a key's modification revision with what was read (0: the key must not exist). */
const unchanged = (key: string, kv: IKeyValue | undefined): ICompare =>
  kv === undefined
    ? { key: buf(key), target: 'Create', result: 'Equal', create_revision: 0 }
    : { key: buf(key), target: 'Mod', result: 'Equal', mod_revision: kv.mod_revision }

/** How often a connection to a member is pinged while calls (the watch) are open, in ms. */
const KEEPALIVE_MS = 6000
/** How long a ping may go unanswered before the connection counts as broken, in ms. */
const KEEPALIVE_TIMEOUT_MS = 2000

/** How many operations one (nested) transaction holds at most: below etcd's `--max-txn-ops` default of 128. */
const TXN_OPS = 100

/**
 * Packs a long list of operations into nested transactions of at most {@link TXN_OPS} each,
 * which etcd applies as one (its operation limit counts each level on its own).
 */
function nest(ops: IRequestOp[]): IRequestOp[] {
  if (ops.length <= TXN_OPS) return ops
  const chunks: IRequestOp[] = []
  for (let i = 0; i < ops.length; i += TXN_OPS) {
    chunks.push({ request_txn: { success: ops.slice(i, i + TXN_OPS) } })
  }
  return nest(chunks)
}

const first = (r: IRangeResponse | undefined): IKeyValue | undefined => r?.kvs[0]

/**
 * The coupling store on etcd v3, through the `etcd3` client. etcd replicates every write through
 * Raft to a majority of its members before it answers, and serves reads linearizably, so what this
 * store acknowledges survives the loss of any minority of members, and a member that was cut off
 * never answers with stale data.
 *
 * Every write is one etcd transaction guarded by the revisions of what it read: the ownership
 * compare-and-set compares the ownership key's revision; fenced writes compare it too; a take
 * compares the records' and the journal's revisions as well, and moves the live records into the
 * journal in the same transaction. Each transaction also writes its change events to the events
 * key, which every store watches from the revision it saw last. See the package documentation.
 *
 * The contract behaviour the stores share is in `BaseCouplingStore` (of `@vipsec/store-memory`);
 * this class holds the etcd primitives.
 */
export class EtcdCouplingStore extends BaseCouplingStore {
  /** The key layout of this store's cluster (its `keyPrefix`). */
  readonly keys: EtcdKeyLayout
  /** The options in force, defaults applied. */
  readonly init: Readonly<ResolvedEtcdInit>
  private client: Etcd3 | undefined
  /**
   * One client per member (the etcd3 client picks a member at random for every call, so a
   * member that died or was cut off would stall a share of all calls by a whole attempt): calls
   * go to {@link EtcdCouplingStore.pinned}; the watch stays on {@link EtcdCouplingStore.client}.
   */
  private members: Etcd3[] = []
  /** Where the hedge timer of reads runs: the given clock when it has timers. */
  private readonly timers: HedgeTimers
  /** The member that calls go to first: the one that answered last. */
  private pinned = 0
  private watcher: Watcher | undefined
  private starting: Promise<void> | undefined
  /** The revision of the last change event seen. */
  private lastEventRevision = 0n
  /** The lease that receipts are attached to, and when it was granted (performance.now()). */
  private receiptLease: { id: string; grantedAt: number } | undefined
  private receiptLeasePending: Promise<string> | undefined
  /** Per node: the revision of the lease key last seen, and when (performance.now()). */
  private readonly leaseSeen = new Map<NodeId, { revision: string; at: number }>()
  /** Per node renewed by this store: the revision its renewal wrote, and when it was sent. */
  private readonly leaseOwn = new Map<NodeId, { revision: string; at: number; leaseId: string }>()

  /**
   * @param components - the clock
   * @param init - members, credentials, TLS, timeouts, key prefix
   * @throws InvalidConfigError when an option is invalid
   */
  constructor(components: EtcdCouplingStoreComponents = {}, init: EtcdCouplingStoreInit = {}) {
    super('EtcdCouplingStore', components.clock)
    const { clock } = components
    this.timers =
      clock?.setTimeout !== undefined && clock.clearTimeout !== undefined
        ? (clock as HedgeTimers)
        : systemClock()
    this.init = resolveInit(init)
    this.keys = etcdKeys(this.init.keyPrefix)
  }

  /**
   * Connects, reads the current revision and watches the events key from the next one.
   * Idempotent.
   *
   * @throws StoreUnavailableError when no member answers within `operationTimeoutMs`, or etcd
   *   refuses the credentials (the message says which)
   */
  async start(): Promise<void> {
    if (this.client !== undefined) return
    this.starting ??= this.open().finally(() => (this.starting = undefined))
    await this.starting
  }

  /** Closes the connection and completes `events$`. Stored state is untouched. Idempotent. */
  async stop(): Promise<void> {
    if (this.starting !== undefined) await this.starting.catch(() => undefined)
    const { client, watcher, members } = this
    if (client === undefined) return
    this.client = undefined
    this.members = []
    this.watcher = undefined
    this.receiptLease = undefined
    this.leaseSeen.clear()
    this.leaseOwn.clear()
    watcher?.removeAllListeners()
    // a cancel waits for etcd's answer: not longer than one attempt when no member answers
    if (watcher !== undefined) {
      await Promise.race([
        watcher.cancel().catch(() => undefined),
        sleep(this.init.attemptTimeoutMs)
      ])
    }
    client.close()
    for (const member of members) if (member !== client) member.close()
    this.closeEvents()
  }

  /** Whether the store is started. */
  isStarted(): boolean {
    return this.client !== undefined
  }

  /** {@inheritDoc @vipsec/store-memory!BaseCouplingStore.readOwnership} */
  protected async readOwnership(
    dvipa: Dvipa,
    options: AbortOptions | undefined
  ): Promise<Uint8Array | undefined> {
    const [owner] = await this.read('getOwnership', options, [range(this.keys.owner(dvipa))])
    const value = this.ownerValue(first(owner))
    return value === undefined ? undefined : Buffer.from(value.record, 'base64')
  }

  /** {@inheritDoc @vipsec/store-memory!BaseCouplingStore.writeClaim} */
  protected async writeClaim(
    ownership: Ownership,
    options: AbortOptions | undefined
  ): Promise<Ownership> {
    const { dvipa } = ownership
    const owner = ownership.owner
    const expected = ownership.epoch - 1
    // encodeOwnership validates before anything is sent
    const record = Buffer.from(encodeOwnership(ownership)).toString('base64')
    const claimId = randomUUID()
    const key = this.keys.owner(dvipa)
    return this.transact<Ownership>('claimOwnership', options, [range(key)], ([r]) => {
      const kv = first(r)
      const current = this.ownerValue(kv)
      const epoch = current?.epoch ?? 0
      if (current?.claimId === claimId && epoch === ownership.epoch) return { done: ownership }
      if (epoch !== expected) {
        throw new OwnershipConflictError(dvipa, expected, epoch, current?.owner ?? undefined)
      }
      const value: OwnerValue = { epoch: ownership.epoch, owner, record, claimId }
      return {
        compare: [unchanged(key, kv)],
        success: [
          put(key, JSON.stringify(value)),
          this.eventsPut([{ type: 'ownership:claimed', ownership }])
        ],
        result: () => ownership
      }
    })
  }

  /** {@inheritDoc @vipsec/store-memory!BaseCouplingStore.writeRelease} */
  protected async writeRelease(
    dvipa: Dvipa,
    fence: Fence,
    options: AbortOptions | undefined
  ): Promise<void> {
    const releaseId = randomUUID()
    const key = this.keys.owner(dvipa)
    await this.transact('releaseOwnership', options, [range(key)], ([r]) => {
      const kv = first(r)
      const current = this.ownerValue(kv)
      if (
        current !== undefined &&
        current.owner === null &&
        current.releaseId === releaseId &&
        current.epoch === fence.epoch
      ) {
        return { done: undefined }
      }
      checkCurrent(dvipa, fence, current)
      const released = releasedOwnership(
        decodeOwnership(Buffer.from(current!.record, 'base64')),
        fence
      )
      const value: OwnerValue = {
        epoch: current!.epoch,
        owner: null,
        record: Buffer.from(encodeOwnership(released)).toString('base64'),
        releaseId
      }
      return {
        compare: [unchanged(key, kv)],
        success: [
          put(key, JSON.stringify(value)),
          this.eventsPut([
            {
              type: 'ownership:released',
              dvipa,
              epoch: fence.epoch,
              previousOwner: released.previousOwner
            }
          ])
        ],
        result: () => undefined
      }
    })
  }

  /** {@inheritDoc @vipsec/store-memory!BaseCouplingStore.writeRecords} */
  protected async writeRecords(
    dvipa: Dvipa,
    records: DvipaRecord[],
    fence: Fence,
    options: AbortOptions | undefined
  ): Promise<void> {
    const events: CouplingStoreEvent[] = []
    const prefix = this.keys.records(dvipa)
    const byKey = new Map<string, IRequestOp>()
    for (const record of records) {
      // etcd refuses two puts of one key in a transaction: the last of a batch wins
      const name = prefix + recordName(record.kind, record.id)
      byKey.set(name, put(name, asBuffer(encodeRecord(record))))
      events.push({
        type: 'record:put',
        dvipa,
        kind: record.kind,
        id: record.id,
        epoch: fence.epoch
      })
    }
    const ops = [...byKey.values()]
    const key = this.keys.owner(dvipa)
    await this.transact('putRecords', options, [range(key)], ([r]) => {
      const kv = first(r)
      checkCurrent(dvipa, fence, this.ownerValue(kv))
      if (ops.length === 0) return { done: undefined }
      return {
        compare: [unchanged(key, kv)],
        success: [...ops, put(this.keys.recordsVersion(dvipa), ''), this.eventsPut(events)],
        result: () => undefined
      }
    })
  }

  /** {@inheritDoc @vipsec/store-memory!BaseCouplingStore.removeRecords} */
  protected async removeRecords(
    dvipa: Dvipa,
    keys: { kind: RecordKind; id: string }[],
    fence: Fence,
    options: AbortOptions | undefined
  ): Promise<void> {
    const owner = this.keys.owner(dvipa)
    const rv = this.keys.recordsVersion(dvipa)
    const names = keys.map(({ kind, id }) => this.keys.records(dvipa) + recordName(kind, id))
    await this.transact(
      'deleteRecords',
      options,
      [range(owner), range(rv), ...names.map(range)],
      ([o, v, ...found]) => {
        const kv = first(o)
        checkCurrent(dvipa, fence, this.ownerValue(kv))
        const events: CouplingStoreEvent[] = []
        const ops: IRequestOp[] = []
        found.forEach((r, i) => {
          if (first(r) === undefined) return
          ops.push(del(names[i]!))
          events.push({ type: 'record:deleted', dvipa, ...keys[i]!, epoch: fence.epoch })
        })
        if (ops.length === 0) return { done: undefined }
        return {
          compare: [unchanged(owner, kv), unchanged(rv, first(v))],
          success: [...ops, put(rv, ''), this.eventsPut(events)],
          result: () => undefined
        }
      }
    )
  }

  /** {@inheritDoc @vipsec/store-memory!BaseCouplingStore.readRecord} */
  protected async readRecord(
    dvipa: Dvipa,
    kind: RecordKind,
    id: string,
    options: AbortOptions | undefined
  ): Promise<Uint8Array | undefined> {
    const [r] = await this.read('getRecord', options, [
      range(this.keys.records(dvipa) + recordName(kind, id))
    ])
    return first(r)?.value
  }

  /** {@inheritDoc @vipsec/store-memory!BaseCouplingStore.readRecords} */
  protected async readRecords(
    dvipa: Dvipa,
    kind: RecordKind | undefined,
    options: AbortOptions | undefined
  ): Promise<StoredEntry[]> {
    const prefix = this.keys.records(dvipa)
    const [r] = await this.read('listRecords', options, [
      rangePrefix(kind === undefined ? prefix : `${prefix}${kind}/`)
    ])
    return this.entries(prefix, r)
  }

  /** {@inheritDoc @vipsec/store-memory!BaseCouplingStore.moveToJournal} */
  protected async moveToJournal(
    dvipa: Dvipa,
    fence: Fence,
    options: AbortOptions | undefined
  ): Promise<StoredEntry[]> {
    const takeId = randomUUID()
    const owner = this.keys.owner(dvipa)
    const rv = this.keys.recordsVersion(dvipa)
    const journal = this.keys.take(dvipa)
    const prefix = this.keys.records(dvipa)
    return this.transact<StoredEntry[]>(
      'takeRecords',
      options,
      [range(owner), range(rv), range(journal), rangePrefix(prefix)],
      ([o, v, j, live]) => {
        const kv = first(o)
        checkCurrent(dvipa, fence, this.ownerValue(kv))
        const previous = this.journalValue(first(j))
        // a retry of this call, or a second take at this epoch: the journal as it stands
        if (previous?.takeId === takeId || previous?.takenEpoch === fence.epoch) {
          return { done: this.journalEntries(previous) }
        }
        const merged = mergeJournal(
          [previous?.entries ?? []],
          this.entries(prefix, live).map(
            (e) => [recordName(e.kind, e.id), asBuffer(e.bytes).toString('base64')] as const
          )
        )
        const value: JournalValue = {
          takeId,
          journalEpoch: fence.epoch,
          takenEpoch: fence.epoch,
          entries: [...merged]
        }
        return {
          compare: [unchanged(owner, kv), unchanged(rv, first(v)), unchanged(journal, first(j))],
          success: [
            delPrefix(prefix),
            put(rv, ''),
            put(journal, JSON.stringify(value)),
            this.eventsPut([
              { type: 'records:taken', dvipa, epoch: fence.epoch, count: merged.size }
            ])
          ],
          result: () => this.journalEntries(value)
        }
      }
    )
  }

  /** {@inheritDoc @vipsec/store-memory!BaseCouplingStore.clearJournal} */
  protected async clearJournal(
    dvipa: Dvipa,
    fence: Fence,
    options: AbortOptions | undefined
  ): Promise<void> {
    const owner = this.keys.owner(dvipa)
    const journal = this.keys.take(dvipa)
    await this.transact('settleTakeover', options, [range(owner), range(journal)], ([o, j]) => {
      const kv = first(o)
      checkCurrent(dvipa, fence, this.ownerValue(kv))
      const previous = this.journalValue(first(j))
      if (previous === undefined || previous.entries.length === 0) return { done: undefined }
      const value: JournalValue = {
        takeId: previous.takeId,
        journalEpoch: null,
        ...(previous.takenEpoch === undefined ? {} : { takenEpoch: previous.takenEpoch }),
        entries: []
      }
      return {
        compare: [unchanged(owner, kv), unchanged(journal, first(j))],
        success: [put(journal, JSON.stringify(value))],
        result: () => undefined
      }
    })
  }

  /** {@inheritDoc @vipsec/store-memory!BaseCouplingStore.appendMessage} */
  protected async appendMessage(
    message: DeleteMessage,
    options: AbortOptions | undefined
  ): Promise<void> {
    const bytes = asBuffer(encodeDeleteMessage(message))
    const postId = randomUUID()
    const key = this.keys.mailbox(message.to) + postId
    const receipt = this.keys.receipt(message.to, postId)
    const lease = await this.receiptLeaseId(options)
    await this.transact('postMessage', options, [range(receipt)], ([r]) => {
      // the receipt outlives the message: a post retried after its take is not delivered again
      if (first(r) !== undefined) return { done: undefined }
      return {
        compare: [unchanged(receipt, undefined)],
        success: [
          put(key, bytes),
          put(this.keys.mailboxVersion(message.to), ''),
          put(receipt, '', lease),
          this.eventsPut([{ type: 'mailbox:posted', to: message.to, id: message.id }])
        ],
        result: () => undefined
      }
    })
  }

  /** {@inheritDoc @vipsec/store-memory!BaseCouplingStore.drainMailbox} */
  protected async drainMailbox(
    node: NodeId,
    options: AbortOptions | undefined
  ): Promise<Uint8Array[]> {
    const takeId = randomUUID()
    const receipt = this.keys.receipt(node, takeId)
    const mailbox = this.keys.mailbox(node)
    const version = this.keys.mailboxVersion(node)
    const lease = await this.receiptLeaseId(options)
    const taken = await this.transact<Buffer[]>(
      'takeMessages',
      options,
      [range(receipt), range(version), rangePrefix(mailbox, true)],
      ([r, v, box]) => {
        const done = first(r)
        if (done !== undefined) {
          return { done: (JSON.parse(done.value.toString('utf8')) as string[]).map(fromBase64) }
        }
        const kvs = box?.kvs ?? []
        if (kvs.length === 0) return { done: [] as Buffer[] }
        const messages = kvs.map((kv) => kv.value)
        return {
          compare: [unchanged(version, first(v))],
          success: [
            delPrefix(mailbox),
            put(version, ''),
            put(receipt, JSON.stringify(messages.map((m) => m.toString('base64'))), lease)
          ],
          result: () => messages
        }
      }
    )
    // The reply arrived: the receipt is no longer needed (it would expire anyway).
    if (taken.length > 0) {
      this.client?.kv.deleteRange({ key: buf(receipt) }).catch(() => undefined)
    }
    return taken
  }

  /**
   * Makes a node's lease expire `ttlMs` from now.
   *
   * The lease key is put on an etcd lease of `ttlMs` rounded up to whole seconds (etcd raises it
   * to its minimum, about 2 s with default timing), so a dead node's key disappears on etcd's
   * clock. Below that, readers count `ttlMs` from when they first saw each renewal (see
   * {@link EtcdCouplingStore.readLeases}).
   *
   * @param node - the node
   * @param ttlMs - lifetime in ms, 1 or more
   * @param options - the abort signal
   */
  protected async writeLease(
    node: NodeId,
    ttlMs: number,
    options: AbortOptions | undefined
  ): Promise<void> {
    const sentAt = performance.now()
    const grant = await this.call('renewLease', options, false, async (client, callOptions) =>
      client.leaseClient.leaseGrant({ TTL: Math.ceil(ttlMs / 1000) }, callOptions)
    )
    const key = this.keys.lease(node)
    // a put of the same value again is harmless: retried like a read
    const res = await this.call('renewLease', options, false, async (client, callOptions) =>
      client.kv.put(
        { key: buf(key), value: buf(JSON.stringify({ ttlMs })), lease: grant.ID },
        callOptions
      )
    )
    const previous = this.leaseOwn.get(node)
    this.leaseOwn.set(node, { revision: res.header.revision, at: sentAt, leaseId: grant.ID })
    if (previous !== undefined) {
      this.client?.leaseClient.leaseRevoke({ ID: previous.leaseId }).catch(() => undefined)
    }
  }

  /**
   * Reads how long each node's lease has left, in ms: 0 for a lease that expired or never existed.
   *
   * A lease key that etcd expired reads 0. Otherwise the time left is counted on this process's
   * monotonic clock from when this store first saw the key's current revision (or sent the
   * renewal, for its own node): a new renewal seen for the first time counts as just made. So no
   * two clocks are ever compared, and a reader never declares a lease expired early; a reader that
   * starts late may see a dead node's lease for up to `ttlMs` (or etcd's expiry) longer.
   *
   * @param nodes - the nodes
   * @param options - the abort signal
   */
  protected async readLeaseTimes(
    nodes: NodeId[],
    options: AbortOptions | undefined
  ): Promise<Record<NodeId, number>> {
    const ranges = await this.read(
      'readLeases',
      options,
      nodes.map((node) => range(this.keys.lease(node)))
    )
    const now = performance.now()
    const out: Record<NodeId, number> = {}
    nodes.forEach((node, i) => {
      const kv = first(ranges[i])
      if (kv === undefined) {
        this.leaseSeen.delete(node)
        out[node] = 0
        return
      }
      let ttlMs = 0
      try {
        ttlMs = Number((JSON.parse(kv.value.toString('utf8')) as { ttlMs: unknown }).ttlMs)
      } catch {
        // a damaged lease key counts as expired
      }
      let seen = this.leaseSeen.get(node)
      if (seen?.revision !== kv.mod_revision) {
        const own = this.leaseOwn.get(node)
        seen = { revision: kv.mod_revision, at: own?.revision === kv.mod_revision ? own.at : now }
        this.leaseSeen.set(node, seen)
      }
      const left = Number.isFinite(ttlMs) ? ttlMs - (now - seen.at) : 0
      out[node] = left > 0 ? Math.ceil(left) : 0
    })
    return out
  }

  private ownerValue(kv: IKeyValue | undefined): OwnerValue | undefined {
    if (kv === undefined) return undefined
    try {
      const value = JSON.parse(kv.value.toString('utf8')) as OwnerValue
      if (Number.isSafeInteger(value.epoch) && typeof value.record === 'string') return value
    } catch {
      // fall through
    }
    throw new StoreUnavailableError(`the ownership key ${kv.key.toString('utf8')} is damaged`)
  }

  private journalValue(kv: IKeyValue | undefined): JournalValue | undefined {
    if (kv === undefined) return undefined
    try {
      const value = JSON.parse(kv.value.toString('utf8')) as JournalValue
      if (typeof value.takeId === 'string' && Array.isArray(value.entries)) return value
    } catch {
      // fall through
    }
    throw new StoreUnavailableError(`the journal key ${kv.key.toString('utf8')} is damaged`)
  }

  private journalEntries(value: JournalValue): StoredEntry[] {
    return value.entries.map(([name, bytes]) => ({
      ...splitRecordName(name),
      bytes: fromBase64(bytes)
    }))
  }

  private entries(prefix: string, r: IRangeResponse | undefined): StoredEntry[] {
    return (r?.kvs ?? []).map((kv) => ({
      ...splitRecordName(kv.key.toString('utf8').slice(prefix.length)),
      bytes: kv.value
    }))
  }

  private eventsPut(events: CouplingStoreEvent[]): IRequestOp {
    return put(this.keys.events, JSON.stringify(events))
  }

  /** The id of a lease for receipts that lives at least `receiptTtlMs` from now. */
  private async receiptLeaseId(options?: AbortOptions): Promise<string> {
    const lease = this.receiptLease
    const ttl = this.init.receiptTtlMs
    if (lease !== undefined && performance.now() - lease.grantedAt < ttl / 2) return lease.id
    this.receiptLeasePending ??= (async () => {
      const grantedAt = performance.now()
      const res = await this.call('receipt lease', options, false, async (client, callOptions) =>
        client.leaseClient.leaseGrant({ TTL: Math.ceil((ttl * 1.5) / 1000) }, callOptions)
      )
      this.receiptLease = { id: res.ID, grantedAt }
      return res.ID
    })().finally(() => (this.receiptLeasePending = undefined))
    return this.receiptLeasePending
  }

  /** One consistent read of several ranges (a transaction of reads only). */
  private async read(
    what: string,
    options: AbortOptions | undefined,
    reads: IRequestOp[]
  ): Promise<IRangeResponse[]> {
    const res = await this.call(what, options, false, async (client, callOptions) =>
      client.kv.txn({ success: reads }, callOptions)
    )
    return res.responses.map((r) => r.response_range)
  }

  /**
   * Optimistic transaction: reads `reads` as one snapshot, lets `decide` check it and build the
   * write guarded by what it read, commits that; when a guard fails (someone wrote in between),
   * or the commit's reply was lost, reads again. `decide` recognises a write of its own that was
   * applied although its reply was lost (by request id) and answers `done`.
   */
  private async transact<T>(
    what: string,
    options: AbortOptions | undefined,
    reads: IRequestOp[],
    decide: (ranges: IRangeResponse[]) => Step<T>
  ): Promise<T> {
    const deadline = performance.now() + this.init.operationTimeoutMs
    let maybeApplied = false
    for (let attempt = 0; ; attempt++) {
      const remaining = deadline - performance.now()
      if (remaining <= 0) {
        throw new StoreUnavailableError(
          `${what}: etcd kept changing under it for ${this.init.operationTimeoutMs} ms` +
            (maybeApplied ? '; it may have been applied' : ''),
          { indeterminate: maybeApplied }
        )
      }
      let step: Step<T>
      try {
        const snapshot = await this.call(
          what,
          options,
          false,
          async (c, o) => c.kv.txn({ success: reads }, o),
          deadline
        )
        step = decide(snapshot.responses.map((r) => r.response_range))
      } catch (err) {
        const name = (err as Error).name
        if (
          maybeApplied &&
          (name === StaleEpochError.name || name === OwnershipConflictError.name)
        ) {
          // An earlier attempt may have been applied and then overtaken by another writer:
          // whether this call took effect cannot be told any more.
          throw new StoreUnavailableError(
            `${what}: no reply to an attempt, and the state has moved on since (${(err as Error).message}); it may have been applied`,
            { cause: err, indeterminate: true }
          )
        }
        if (maybeApplied && name === StoreUnavailableError.name) {
          throw new StoreUnavailableError((err as Error).message + '; it may have been applied', {
            cause: err,
            indeterminate: true
          })
        }
        throw err
      }
      if ('done' in step) return step.done
      let res: ITxnResponse
      try {
        const success = nest(step.success)
        res = await this.call(
          what,
          options,
          true,
          async (c, o) => c.kv.txn({ compare: step.compare, success }, o),
          deadline
        )
      } catch (err) {
        if ((err as Error).name !== StoreUnavailableError.name) throw err
        if (!(err as StoreUnavailableError).indeterminate) throw err
        maybeApplied = true
        continue
      }
      if (res.succeeded) return step.result(res)
      // lost the race to another writer: read again (a short pause when it keeps happening)
      if (attempt > 2) await sleep(Math.min(20, attempt * 2) * Math.random())
    }
  }

  /**
   * Runs one RPC with a deadline, retrying errors that mean "not now" (no leader, member down,
   * connection lost) until the call's deadline. A write whose attempts all failed rejects with
   * `indeterminate` set unless every attempt certainly failed before reaching etcd.
   */
  private async call<T>(
    what: string,
    options: AbortOptions | undefined,
    write: boolean,
    attempt: (client: Etcd3, callOptions: { deadline: Date }) => Promise<T>,
    deadline = performance.now() + this.init.operationTimeoutMs
  ): Promise<T> {
    const client = this.client
    if (client === undefined) throw new NotStartedError('EtcdCouplingStore is not started')
    let lastError: unknown
    for (;;) {
      throwIfAborted(options?.signal)
      if (this.client !== client)
        throw new NotStartedError(`EtcdCouplingStore stopped during ${what}`)
      const remaining = deadline - performance.now()
      if (remaining <= 0) {
        const why = lastError instanceof Error ? `: ${lastError.message}` : ''
        return Promise.reject(
          new StoreUnavailableError(
            `${what}: etcd at ${this.init.hosts.join(', ')} unavailable for ${this.init.operationTimeoutMs} ms${why}`,
            { cause: lastError }
          )
        )
      }
      const ms = Math.max(1, Math.min(remaining, this.init.attemptTimeoutMs))
      try {
        return await (write
          ? this.onPinned(attempt, new Date(Date.now() + ms))
          : this.hedged(attempt, new Date(Date.now() + ms)))
      } catch (err) {
        if (AUTH_ERRORS.has(errorName(err))) throw this.refused(what, err)
        if (errorName(err) === 'GRPCInvalidArgumentError') {
          throw new StoreUnavailableError(
            `${what}: etcd refused the request: ${(err as Error).message}`,
            { cause: err }
          )
        }
        if (write) {
          // The write may be in etcd's log although its reply was lost: never resend it blindly
          // (a guard that fails on the resend would hide that it was applied). The caller reads
          // the state again and decides.
          throw new StoreUnavailableError(
            `${what}: no reply from etcd (${(err as Error).message}); the write may have been applied`,
            { cause: err, indeterminate: true }
          )
        }
        lastError = err
        await sleep(Math.min(50, deadline - performance.now()))
      }
    }
  }

  /** One attempt on the pinned member; when it fails, later calls go to the next member. */
  private async onPinned<T>(
    attempt: (client: Etcd3, callOptions: { deadline: Date }) => Promise<T>,
    deadline: Date
  ): Promise<T> {
    const members = this.members
    const i = this.pinned % members.length
    try {
      return await attempt(members[i]!, { deadline })
    } catch (err) {
      if (this.members === members && this.pinned === i) this.pinned = (i + 1) % members.length
      throw err
    }
  }

  /**
   * One attempt of a read, on the pinned member first; every `hedgeMs` without an answer (or at
   * once when an attempt fails) the next member is asked as well, on the store's clock. The first
   * answer wins and pins its member; it rejects when every member failed, or at once on an error
   * that another member would give too (refused credentials, a request etcd refuses).
   */
  private async hedged<T>(
    attempt: (client: Etcd3, callOptions: { deadline: Date }) => Promise<T>,
    deadline: Date
  ): Promise<T> {
    const members = this.members
    if (members.length === 1) return attempt(members[0]!, { deadline })
    const { value, member } = await hedged(
      {
        count: members.length,
        first: this.pinned % members.length,
        hedgeMs: this.init.hedgeMs,
        timers: this.timers,
        final: (err) => {
          const name = errorName(err)
          return AUTH_ERRORS.has(name) || name === 'GRPCInvalidArgumentError'
        }
      },
      async (i) => attempt(members[i]!, { deadline })
    )
    if (this.members === members) this.pinned = member
    return value
  }

  private refused(what: string, cause: unknown): StoreUnavailableError {
    const user = this.init.username ?? '(none)'
    const why = cause instanceof Error ? `: ${cause.message}` : ''
    const advice =
      errorName(cause) === 'EtcdPermissionDeniedError'
        ? `the role of user ${user} must grant readwrite on the prefix ${this.keys.prefix}`
        : `check the username (${user}) and the password`
    return new StoreUnavailableError(`${what}: etcd refused user ${user}${why} (${advice})`, {
      cause
    })
  }

  private async open(): Promise<void> {
    const init = this.init
    const options: IOptions = {
      hosts: init.hosts,
      dialTimeout: init.attemptTimeoutMs,
      // no retries inside the client: a write resent after a lost reply must be decided again
      // by the store (see transact), never resent blindly; and no circuit breaker per member:
      // this store chooses the member (a breaker that opened on a few slow answers of the only
      // member failed every call for 5 s)
      faultHandling: { global: noop, host: () => noop },
      // A member cut off without a word (its packets just vanish) leaves a watch stream open
      // and silent: a keepalive ping every 6 s (etcd refuses pings more often than every 5 s)
      // that gets no answer in 2 s breaks the connection, and the watch moves to the next member.
      grpcOptions: {
        'grpc.keepalive_time_ms': KEEPALIVE_MS,
        'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS
      }
    }
    if (init.username !== undefined && init.password !== undefined) {
      options.auth = { username: init.username, password: init.password }
    }
    if (init.tls !== undefined) {
      const { ca, cert, key } = init.tls
      options.credentials = {
        rootCertificate: Buffer.from(ca),
        ...(cert === undefined ? {} : { certChain: Buffer.from(cert) }),
        ...(key === undefined ? {} : { privateKey: Buffer.from(key) })
      }
    }
    const client = new Etcd3(options)
    this.client = client
    // one client per member
    this.members =
      init.hosts.length === 1
        ? [client]
        : init.hosts.map((host) => new Etcd3({ ...options, hosts: [host] }))
    this.pinned = 0
    const deadline = performance.now() + init.operationTimeoutMs
    try {
      const res = await this.call(
        'start',
        undefined,
        false,
        async (c, o) => c.kv.range({ key: buf(this.keys.events) }, o),
        deadline
      )
      this.lastEventRevision = BigInt(res.header.revision)
      this.openEvents()
      // first on the member that has just answered
      const { watcher, member } = await this.openWatch(this.pinned, deadline)
      this.follow(client, watcher, member)
    } catch (err) {
      this.client = undefined
      client.close()
      for (const member of this.members) if (member !== client) member.close()
      this.members = []
      throw err
    }
  }

  /**
   * Opens the watch of the events key, from the revision after the last one seen, on the members
   * in turn from `from` (the one that answered last first), waiting at most one attempt for each
   * to accept it: a member that died or was cut off costs one attempt, not the minutes a stream
   * to it can hang.
   *
   * @throws StoreUnavailableError when no member accepted it before `deadline`, or etcd refused
   *   the credentials
   */
  private async openWatch(
    from: number,
    deadline: number
  ): Promise<{ watcher: Watcher; member: number }> {
    const members = this.members
    let lastError: unknown
    for (let k = 0; k < members.length; k++) {
      const remaining = deadline - performance.now()
      if (remaining <= 0) break
      const member = (from + k) % members.length
      const watcher = members[member]!.watch()
        .key(this.keys.events)
        .startRevision(String(this.lastEventRevision + 1n))
        .watcher()
      try {
        await accepted(watcher, Math.min(remaining, this.init.attemptTimeoutMs))
        return { watcher, member }
      } catch (err) {
        lastError = err
        watcher.removeAllListeners()
        // not accepted: it was never attached to a stream, so this returns at once
        void watcher.cancel().catch(() => undefined)
        if (AUTH_ERRORS.has(errorName(err))) throw this.refused('watch', err)
      }
    }
    const why = lastError instanceof Error ? `: ${lastError.message}` : ''
    throw new StoreUnavailableError(
      `watch: no etcd member of ${this.init.hosts.join(', ')} accepted the watch in time${why}`,
      { cause: lastError }
    )
  }

  /** Forwards the watch's events; when its stream breaks, watches again from the next member. */
  private follow(client: Etcd3, watcher: Watcher, member: number): void {
    this.watcher = watcher
    watcher.on('put', (kv: IKeyValue) => this.publish(kv))
    const moveOn = (next: number): void => {
      if (this.client !== client || this.watcher !== watcher) return
      watcher.removeAllListeners()
      void watcher.cancel().catch(() => undefined)
      this.watcher = undefined
      void this.rewatch(client, next)
    }
    // the stream to this member broke: the next member, from the revision after the last seen
    watcher.on('disconnected', () => moveOn(member + 1))
    // cancelled by etcd (e.g. the revision was compacted): watch again from the last seen
    watcher.on('error', () => moveOn(member))
  }

  /** Watches again, trying the members in turn, until one accepts or the store stops. */
  private async rewatch(client: Etcd3, from: number): Promise<void> {
    for (let round = 0; this.client === client; round++) {
      if (round > 0) await sleep(Math.min(1000, 50 * round))
      if (this.client !== client) return
      try {
        const { watcher, member } = await this.openWatch(
          from + round,
          performance.now() + this.init.attemptTimeoutMs * this.members.length
        )
        if (this.client !== client) {
          void watcher.cancel().catch(() => undefined)
          return
        }
        this.follow(client, watcher, member)
        return
      } catch {
        // no member now: try again
      }
    }
  }

  /** Forwards the events of one write of the events key, each revision once. */
  private publish(kv: IKeyValue): void {
    if (this.client === undefined) return
    const revision = BigInt(kv.mod_revision)
    if (revision <= this.lastEventRevision) return
    this.lastEventRevision = revision
    this.emitPublished(kv.value.toString('utf8'))
  }
}

const fromBase64 = (s: string): Buffer => Buffer.from(s, 'base64')

/**
 * Creates an {@link EtcdCouplingStore}.
 *
 * @param components - the clock
 * @param init - members, credentials, TLS, timeouts, key prefix
 */
export function etcdCouplingStore(
  components?: EtcdCouplingStoreComponents,
  init?: EtcdCouplingStoreInit
): EtcdCouplingStore {
  return new EtcdCouplingStore(components, init)
}
