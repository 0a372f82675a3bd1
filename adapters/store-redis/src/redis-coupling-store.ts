import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import {
  decodeOwnership,
  NotStartedError,
  OwnershipConflictError,
  StaleEpochError,
  StoreUnavailableError,
  throwIfAborted,
  type AbortOptions,
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
import { BaseCouplingStore, checkCurrent, releasedOwnership } from '@vipsec/store-memory'
import {
  claimCall,
  deleteCall,
  postCall,
  putCall,
  releaseCall,
  settleCall,
  takeCall,
  takeMessagesCall,
  type ScriptCall
} from './calls.js'
import {
  Connection,
  ConnectionLostError,
  DeadlineError,
  isAuthError,
  NotReplicatedError
} from './connection.js'
import { redisKeys, splitField, type RedisKeyLayout } from './keys.js'
import {
  resolveInit,
  toRedisOptions,
  type RedisCouplingStoreInit,
  type ResolvedRedisInit
} from './options.js'
import { RedisDurabilityError } from './errors.js'
import { isReplyError, pairs, parseOutcome, type ScriptOutcome } from './scripts.js'

/** What a {@link RedisCouplingStore} needs. */
export interface RedisCouplingStoreComponents {
  /**
   * Time for `claimedAt`. Default: the system's wall clock. Network deadlines always use real
   * timers, whatever clock is given.
   */
  clock?: Pick<Clock, 'now'>
}

/** Replies that mean "not now" (loading after a restart, a replica after a failover): retried. */
const TRANSIENT = /^(LOADING|READONLY|TRYAGAIN|MASTERDOWN|NOREPLICAS|BUSY )/

const sleep = async (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)))

/**
 * The coupling store on a Redis server (or a Sentinel-managed master), through ioredis.
 *
 * Every write is one Lua script, so ownership (compare-and-set of the epoch), fencing, all-or-none
 * batches, read-and-clear into the journal and the mailbox are atomic on the server, and each
 * script publishes its change on the cluster's channel in the same step. Reads of a DVIPA are one
 * command (HGETALL), a consistent snapshot. Records are stored as the bytes `encodeRecord` makes
 * and validated on every read.
 *
 * A call waits for the connection for up to `operationTimeoutMs` in all; if the connection is lost
 * while a call is in flight, the call is sent again with the same request id once it is back, and
 * the scripts recognise the repeat (see the package documentation). After the deadline the call
 * rejects with `StoreUnavailableError`.
 *
 * The contract behaviour the stores share is in `BaseCouplingStore` (of `@vipsec/store-memory`);
 * this class holds the Redis primitives.
 */
export class RedisCouplingStore extends BaseCouplingStore {
  /** The key layout of this store's cluster (its `keyPrefix`). */
  readonly keys: RedisKeyLayout
  /** The options in force, defaults applied. */
  readonly init: Readonly<ResolvedRedisInit>
  private connection: Connection | undefined
  private subscriber: Connection | undefined
  private starting: Promise<void> | undefined

  /**
   * @param components - the clock
   * @param init - connection options, key prefix, timeouts
   * @throws InvalidConfigError when an option is invalid
   */
  constructor(components: RedisCouplingStoreComponents = {}, init: RedisCouplingStoreInit = {}) {
    super('RedisCouplingStore', components.clock)
    this.init = resolveInit(init)
    this.keys = redisKeys(this.init.keyPrefix)
  }

  /**
   * Connects the command and the subscriber connections and subscribes to the change channel.
   * Idempotent.
   *
   * @throws StoreUnavailableError when the server cannot be reached within `operationTimeoutMs`
   *   or refuses the credentials (the message says which)
   */
  async start(): Promise<void> {
    if (this.connection !== undefined) return
    this.starting ??= this.open().finally(() => (this.starting = undefined))
    await this.starting
  }

  /** Closes both connections and completes `events$`. Stored state is untouched. Idempotent. */
  async stop(): Promise<void> {
    if (this.starting !== undefined) await this.starting.catch(() => undefined)
    const { connection, subscriber } = this
    if (connection === undefined) return
    this.connection = undefined
    this.subscriber = undefined
    connection.close()
    subscriber?.close()
    this.closeEvents()
  }

  /** Whether the store is started. */
  isStarted(): boolean {
    return this.connection !== undefined
  }

  /** {@inheritDoc @vipsec/store-memory!BaseCouplingStore.readOwnership} */
  protected async readOwnership(
    dvipa: Dvipa,
    options: AbortOptions | undefined
  ): Promise<Uint8Array | undefined> {
    const bytes = await this.call('getOwnership', options, async (redis) =>
      redis.hgetBuffer(this.keys.owner(dvipa), 'record')
    )
    return bytes ?? undefined
  }

  /** {@inheritDoc @vipsec/store-memory!BaseCouplingStore.writeClaim} */
  protected async writeClaim(
    ownership: Ownership,
    options: AbortOptions | undefined
  ): Promise<Ownership> {
    const { dvipa } = ownership
    const expected = ownership.epoch - 1
    const outcome = await this.script(
      'claimOwnership',
      options,
      claimCall(this.keys, ownership, randomUUID())
    )
    if (outcome.status === 'conflict') {
      throw new OwnershipConflictError(dvipa, expected, outcome.current, outcome.owner)
    }
    this.expectOk(outcome, dvipa, ownership.epoch)
    return ownership
  }

  /** {@inheritDoc @vipsec/store-memory!BaseCouplingStore.writeRelease} */
  protected async writeRelease(
    dvipa: Dvipa,
    fence: Fence,
    options: AbortOptions | undefined
  ): Promise<void> {
    const bytes = await this.call('releaseOwnership', options, async (redis) =>
      redis.hgetBuffer(this.keys.owner(dvipa), 'record')
    )
    const current = bytes === null ? undefined : decodeOwnership(bytes)
    checkCurrent(dvipa, fence, current)
    // The record of an epoch changes only when its owner releases it, so the script, having
    // checked the fence again, replaces exactly what was read here.
    const released = releasedOwnership(current!, fence)
    const call = releaseCall(this.keys, released, fence, randomUUID())
    this.expectOk(await this.script('releaseOwnership', options, call), dvipa, fence.epoch)
  }

  /** {@inheritDoc @vipsec/store-memory!BaseCouplingStore.writeRecords} */
  protected async writeRecords(
    dvipa: Dvipa,
    records: DvipaRecord[],
    fence: Fence,
    options: AbortOptions | undefined
  ): Promise<void> {
    const call = putCall(this.keys, dvipa, records, fence)
    this.expectOk(await this.script('putRecords', options, call), dvipa, fence.epoch)
  }

  /** {@inheritDoc @vipsec/store-memory!BaseCouplingStore.removeRecords} */
  protected async removeRecords(
    dvipa: Dvipa,
    keys: { kind: RecordKind; id: string }[],
    fence: Fence,
    options: AbortOptions | undefined
  ): Promise<void> {
    const call = deleteCall(this.keys, dvipa, keys, fence)
    this.expectOk(await this.script('deleteRecords', options, call), dvipa, fence.epoch)
  }

  /** {@inheritDoc @vipsec/store-memory!BaseCouplingStore.readRecord} */
  protected async readRecord(
    dvipa: Dvipa,
    kind: RecordKind,
    id: string,
    options: AbortOptions | undefined
  ): Promise<Uint8Array | undefined> {
    const bytes = await this.call('getRecord', options, async (redis) =>
      redis.hgetBuffer(this.keys.records(dvipa), this.keys.field(kind, id))
    )
    return bytes ?? undefined
  }

  /** {@inheritDoc @vipsec/store-memory!BaseCouplingStore.readRecords} */
  protected async readRecords(
    dvipa: Dvipa,
    _kind: RecordKind | undefined,
    options: AbortOptions | undefined
  ): Promise<StoredEntry[]> {
    const flat = await this.call('listRecords', options, async (redis) =>
      redis.callBuffer('HGETALL', this.keys.records(dvipa))
    )
    return toEntries(flat)
  }

  /** {@inheritDoc @vipsec/store-memory!BaseCouplingStore.moveToJournal} */
  protected async moveToJournal(
    dvipa: Dvipa,
    fence: Fence,
    options: AbortOptions | undefined
  ): Promise<StoredEntry[]> {
    const call = takeCall(this.keys, dvipa, fence, randomUUID())
    const outcome = await this.script('takeRecords', options, call)
    this.expectOk(outcome, dvipa, fence.epoch)
    return toEntries((outcome as { result: unknown }).result)
  }

  /** {@inheritDoc @vipsec/store-memory!BaseCouplingStore.clearJournal} */
  protected async clearJournal(
    dvipa: Dvipa,
    fence: Fence,
    options: AbortOptions | undefined
  ): Promise<void> {
    const call = settleCall(this.keys, dvipa, fence)
    this.expectOk(await this.script('settleTakeover', options, call), dvipa, fence.epoch)
  }

  /** {@inheritDoc @vipsec/store-memory!BaseCouplingStore.appendMessage} */
  protected async appendMessage(
    message: DeleteMessage,
    options: AbortOptions | undefined
  ): Promise<void> {
    const call = postCall(this.keys, message, randomUUID(), this.init.receiptTtlMs)
    await this.script('postMessage', options, call)
  }

  /** {@inheritDoc @vipsec/store-memory!BaseCouplingStore.drainMailbox} */
  protected async drainMailbox(
    node: NodeId,
    options: AbortOptions | undefined
  ): Promise<Uint8Array[]> {
    const call = takeMessagesCall(this.keys, node, randomUUID(), this.init.receiptTtlMs)
    const outcome = await this.script('takeMessages', options, call)
    const list = (outcome as { result: unknown }).result
    // The reply arrived: the receipt is no longer needed (it would expire anyway).
    if (Array.isArray(list) && list.length > 0)
      this.connection?.redis.del(call.keys[1]!).catch(() => {})
    return Array.isArray(list) ? (list as Buffer[]) : []
  }

  /** {@inheritDoc @vipsec/store-memory!BaseCouplingStore.writeLease} */
  protected async writeLease(
    node: NodeId,
    ttlMs: number,
    options: AbortOptions | undefined
  ): Promise<void> {
    // SET with PX: the lease expires on Redis's clock, which every node shares.
    await this.call('renewLease', options, async (redis) =>
      redis.set(this.keys.lease(node), '1', 'PX', ttlMs)
    )
  }

  /** {@inheritDoc @vipsec/store-memory!BaseCouplingStore.readLeaseTimes} */
  protected async readLeaseTimes(
    nodes: NodeId[],
    options: AbortOptions | undefined
  ): Promise<Record<NodeId, number>> {
    const ttls = await this.call('readLeases', options, async (redis) => {
      const pipeline = redis.pipeline()
      for (const node of nodes) pipeline.pttl(this.keys.lease(node))
      return (await pipeline.exec()) ?? []
    })
    const out: Record<NodeId, number> = {}
    nodes.forEach((node, i) => {
      const [err, ttl] = ttls[i] ?? [null, -2]
      if (err !== null)
        throw new StoreUnavailableError(`readLeases: Redis answered ${err.message}`, { cause: err })
      // -2: no such key (expired or never renewed); -1 cannot happen (always set with PX)
      out[node] = typeof ttl === 'number' && ttl > 0 ? ttl : 0
    })
    return out
  }

  /** Throws StaleEpochError for a `stale` outcome. */
  private expectOk(outcome: ScriptOutcome, dvipa: Dvipa, presented: number): void {
    if (outcome.status === 'stale') throw new StaleEpochError(dvipa, presented, outcome.current)
    if (outcome.status !== 'ok') {
      throw new StoreUnavailableError(`unexpected ${outcome.status} reply for ${dvipa}`)
    }
  }

  private async script(
    what: string,
    options: AbortOptions | undefined,
    call: ScriptCall
  ): Promise<ScriptOutcome> {
    const trace = { resent: false }
    const reply = await this.call(
      what,
      options,
      async (redis) => call.script.run(redis, call.keys, call.args),
      trace
    )
    let outcome: ScriptOutcome
    try {
      outcome = parseOutcome(reply)
    } catch (err) {
      throw new StoreUnavailableError(`${what}: ${(err as Error).message}`, { cause: err })
    }
    if (trace.resent && outcome.status !== 'ok') {
      // The first attempt may have been applied and then overtaken by another writer before the
      // resend (which no longer recognises its request id): the outcome cannot be told.
      throw new StoreUnavailableError(
        `${what}: resent after a lost reply and found the state moved on (${outcome.status}); it may have been applied`,
        { indeterminate: true }
      )
    }
    return outcome
  }

  /**
   * Runs `attempt` on the command connection: waits for the connection while it is down, sends
   * again when it was lost mid-call, and gives up with StoreUnavailableError at the deadline.
   */
  private async call<T>(
    what: string,
    options: AbortOptions | undefined,
    attempt: (redis: Redis) => Promise<T>,
    trace?: { resent: boolean }
  ): Promise<T> {
    const connection = this.connection
    if (connection === undefined) throw new NotStartedError('RedisCouplingStore is not started')
    const signal = options?.signal
    const deadline = Date.now() + this.init.operationTimeoutMs
    let lastError: unknown
    let sent = false
    for (;;) {
      throwIfAborted(signal)
      if (this.connection !== connection) {
        throw new NotStartedError(`RedisCouplingStore stopped during ${what}`)
      }
      const remaining = deadline - Date.now()
      if (remaining <= 0) throw this.unavailable(what, lastError ?? connection.lastError, sent)
      if (!connection.isReady()) {
        try {
          await connection.whenReady(remaining, signal)
        } catch (err) {
          if ((err as Error).name === 'AbortError') throw err
          lastError ??= connection.lastError
        }
        continue
      }
      try {
        if (sent && trace !== undefined) trace.resent = true
        sent = true
        return await connection.race(this.replicated(connection.redis, attempt), remaining)
      } catch (err) {
        if (isReplyError(err)) {
          if (isAuthError(err)) throw this.unavailable(what, err)
          if (!TRANSIENT.test(err.message)) {
            throw new StoreUnavailableError(`${what}: Redis answered ${err.message}`, {
              cause: err
            })
          }
          lastError = err
          await sleep(Math.min(50, deadline - Date.now()))
          continue
        }
        lastError = err
        if (!(err instanceof ConnectionLostError) && !(err instanceof DeadlineError)) {
          // a connection that says it is ready but refused the command: do not spin
          await sleep(Math.min(20, deadline - Date.now()))
        }
      }
    }
  }

  /**
   * Runs `attempt`; in the replicated mode (`waitForReplicas` > 0) then writes a barrier and waits
   * until that many replicas have it, so that whatever the attempt wrote or read is on them.
   * Replication is one ordered stream, so the barrier covers every write before it, whoever made
   * it.
   */
  private async replicated<T>(redis: Redis, attempt: (redis: Redis) => Promise<T>): Promise<T> {
    const result = await attempt(redis)
    const replicas = this.init.waitForReplicas
    if (replicas === 0) return result
    await redis.incr(`${this.keys.prefix}barrier`)
    const acked = Number(
      await redis.call('WAIT', String(replicas), String(this.init.waitTimeoutMs))
    )
    if (acked < replicas) {
      throw new NotReplicatedError(
        `${acked} of ${replicas} replicas confirmed within ${this.init.waitTimeoutMs} ms`
      )
    }
    return result
  }

  private unavailable(what: string, cause: unknown, sent = false): StoreUnavailableError {
    const where =
      this.init.sentinels === undefined
        ? `${this.init.host}:${this.init.port}`
        : `the master ${this.init.name ?? ''} of the Sentinels`
    const why = cause instanceof Error ? `: ${cause.message}` : ''
    if (isAuthError(cause)) {
      const user = this.init.username ?? 'default'
      const advice = /^NOPERM/.test((cause as Error).message)
        ? `the ACL of user ${user} must allow the keys and the channel ${this.keys.prefix}*`
        : `check the username (${user}) and the password`
      return new StoreUnavailableError(
        `${what}: Redis at ${where} refused user ${user}${why} (${advice})`,
        {
          cause
        }
      )
    }
    return new StoreUnavailableError(
      `${what}: Redis at ${where} unavailable for ${this.init.operationTimeoutMs} ms${why}` +
        (sent ? '; it may have been applied' : ''),
      { cause, indeterminate: sent }
    )
  }

  private async open(): Promise<void> {
    const redis = new Redis(toRedisOptions(this.init))
    // The subscriber may queue while it reconnects: it only ever (re)subscribes.
    // It has nothing to answer between events, so it has no socket timeout (TCP keep-alive only).
    const sub = redis.duplicate({
      enableOfflineQueue: true,
      connectionName: 'vipsec-events',
      socketTimeout: undefined
    })
    const connection = new Connection(redis)
    const subscriber = new Connection(sub)
    const deadline = Date.now() + this.init.operationTimeoutMs
    try {
      redis.connect().catch(() => {})
      sub.connect().catch(() => {})
      await Promise.all([
        connection.whenReady(deadline - Date.now(), undefined, true),
        subscriber.whenReady(deadline - Date.now(), undefined, true)
      ])
      sub.on('message', (channel: string, message: string) => {
        if (channel === this.keys.events) this.publish(message)
      })
      await subscriber.race(sub.subscribe(this.keys.events), Math.max(1, deadline - Date.now()))
      if (!this.init.acceptNonDurableServer) await this.checkDurable(connection, deadline)
    } catch (err) {
      connection.close()
      subscriber.close()
      if ((err as Error).name === RedisDurabilityError.name) throw err
      throw this.unavailable(
        'start',
        isAuthError(err) || connection.lastError === undefined ? err : connection.lastError
      )
    }
    this.openEvents()
    this.connection = connection
    this.subscriber = subscriber
  }

  /** Rejects with RedisDurabilityError unless the server has the append-only file on. */
  private async checkDurable(connection: Connection, deadline: number): Promise<void> {
    let info: string
    try {
      info = String(
        await connection.race(
          connection.redis.info('persistence'),
          Math.max(1, deadline - Date.now())
        )
      )
    } catch (err) {
      throw new RedisDurabilityError(
        `cannot tell whether Redis has the append-only file on (INFO persistence failed: ${(err as Error).message}); ` +
          'allow INFO to the user, or set acceptNonDurableServer',
        { cause: err }
      )
    }
    if (!/^aof_enabled:1\s*$/m.test(info)) {
      throw new RedisDurabilityError(
        'Redis runs without the append-only file (appendonly no): a restart would lose ownership ' +
          'claims and let epochs go backwards. Run it with appendonly yes, or set ' +
          'acceptNonDurableServer to accept the risk'
      )
    }
  }

  /** Forwards the events of one published message; anything malformed is ignored. */
  private publish(message: string): void {
    if (this.connection === undefined) return
    this.emitPublished(message)
  }
}

/** Turns an HGETALL reply of a record or journal hash into stored entries. */
function toEntries(flat: unknown): StoredEntry[] {
  return pairs(flat).map(([field, bytes]) => ({ ...splitField(field), bytes }))
}

/**
 * Creates a {@link RedisCouplingStore}.
 *
 * @param components - the clock
 * @param init - connection options, key prefix, timeouts
 */
export function redisCouplingStore(
  components?: RedisCouplingStoreComponents,
  init?: RedisCouplingStoreInit
): RedisCouplingStore {
  return new RedisCouplingStore(components, init)
}
