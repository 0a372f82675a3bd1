/**
 * The coupling store on Redis: a {@link RedisCouplingStore} per node, all nodes of a cluster on
 * one Redis server (or a Sentinel-managed master) under one key prefix. It passes the whole
 * `CouplingStore` compliance suite against a real `redis-server`.
 *
 * ## Atomicity
 *
 * Every write is one Lua script (EVALSHA, with EVAL when the server has not cached it, e.g. after
 * a restart): claim (compare-and-set of the epoch), release, fenced put (all records of a batch or
 * none; records are checked and encoded by `encodeRecord` before anything is sent), fenced delete,
 * take-and-clear into the journal, settle, mailbox post and take. A script checks the fence, makes
 * its change and publishes it, or does nothing. Reads of a DVIPA are one HGETALL: a snapshot.
 *
 * ## Key layout
 *
 * `P` is the `keyPrefix` (default `vipsec:`): give each cluster on a server its own.
 *
 * | key | type | holds |
 * |---|---|---|
 * | `P{<dvipa>}:owner` | hash | `epoch` (decimal), `owner` (absent once released), `record` (the ownership as `encodeOwnership` makes it), `claimId` / `releaseId` / `takeId` (request ids of the last claim, release and take, which make a retried call idempotent), `journalEpoch` (the epoch of the unsettled journal) |
 * | `P{<dvipa>}:records` | hash | live records: field `<kind>/<id>`, value the bytes of `encodeRecord` |
 * | `P{<dvipa>}:journal` | hash | the unsettled takeover journal, same fields; a take merges the live records into it (live wins by field), settle deletes it |
 * | `Pmailbox:{<node>}` | list | encoded delete messages, oldest first |
 * | `Pmailbox:{<node>}:posted:<request id>` | string | receipt of a post, so a retried post is not added twice; expires after `receiptTtlMs` |
 * | `Pmailbox:{<node>}:taken:<request id>` | list | what one take removed (the mailbox is renamed to it), read again by a retry of that take; deleted when the reply arrived, else expires after `receiptTtlMs` |
 * | `Pevents` | pub/sub channel | each write's change events, as one JSON array per script |
 *
 * All keys of a DVIPA share the hash tag `{<dvipa>}` and all keys of a mailbox the tag `{<node>}`,
 * so every script touches one hash slot. {@link redisKeys} returns these names.
 *
 * ## Connections, outages and retries
 *
 * A store holds two connections: one for commands, one subscribed to `Pevents`. Both reconnect
 * for as long as the store is started (`reconnectDelayMs`, default 50 ms doubling to 1 s), and the
 * subscriber subscribes again after each reconnect. Commands are never queued by the client while
 * it is disconnected, nor re-sent by it: a call waits for the connection itself, for up to
 * `operationTimeoutMs` (default 5 s) in all, then rejects with `StoreUnavailableError`. If the
 * connection is lost while a call is in flight, the call is sent again, with the same request id,
 * once the connection is back: claims, releases, takes, mailbox posts and mailbox takes recognise
 * their request id and return their first outcome without applying themselves twice; puts,
 * deletes and settles are idempotent as they are (a repeated put may publish its events twice).
 * A call that rejected with `StoreUnavailableError` may or may not have taken effect, like any
 * write whose reply was lost: read the state again before acting on it.
 *
 * An abort signal is honoured before a call is sent and while it waits for the connection; a
 * script already sent cannot be called back. A connection that stops answering while a call waits
 * is dropped after `operationTimeoutMs` and made again.
 *
 * The change stream is Redis pub/sub: it is at most once. Events published while the subscriber
 * is reconnecting are not replayed; after an outage, read the state (`getOwnership`,
 * `listRecords`) instead of relying on missed events. The subscriber connection, idle between
 * events, notices a silently dead peer only through TCP keep-alive.
 *
 * One Redis server, or a master found through Sentinels, is supported; Redis Cluster is not.
 *
 * ## Durability: what the store expects of the server
 *
 * Run Redis with the append-only file on (`appendonly yes`):
 *
 * - `appendfsync always`: every acknowledged write is on disk before its reply is sent; nothing
 *   acknowledged is lost even if the machine loses power. Writes cost an fsync each.
 * - `appendfsync everysec` (Redis's default): every acknowledged write is in the file (in the
 *   operating system's cache) before its reply, so a crash or kill of `redis-server` loses
 *   nothing acknowledged; a power loss or kernel crash can lose about the last second or two.
 * - without the append-only file (RDB snapshots only), a restart loses everything since the last
 *   snapshot: ownership epochs could go backwards, which breaks fencing. `start()` checks
 *   `INFO persistence` and rejects with {@link RedisDurabilityError} when the append-only file is
 *   off, unless `acceptNonDurableServer` says the risk is accepted.
 *
 * A script's effects reach the append-only file as one `MULTI`/`EXEC` block, and Redis loads a
 * truncated file only up to its last complete command, so a restart never shows half a script.
 * ## Replicas and Sentinel: the replicated mode
 *
 * Redis replicates asynchronously: by default a write acknowledged by the master but not yet on
 * the replica is lost when Sentinel promotes that replica, and the history checker
 * (`@vipsec/compliance/coupling-store`) shows ownership epochs going backwards in every such
 * failover it ran. With `waitForReplicas: N` (N = the number of replicas) every call, read or
 * write, is followed by a barrier write and `WAIT N`; a call not confirmed within `waitTimeoutMs`
 * is retried and at its deadline rejects with `StoreUnavailableError` with `indeterminate` set.
 * Run the master with `min-replicas-to-write N` as well, so that a master cut off from its
 * replicas refuses writes. In this mode every failover the checker ran stayed linearizable.
 *
 * A call resent after a lost reply that finds the state moved on (conflict or stale) rejects as
 * indeterminate, not as a conflict: its first attempt may have been applied and overtaken.
 *
 * The system tests start `redis-server --appendonly yes --save ''` (fsync every second) on a free
 * loopback port, and kill and restart it mid-run.
 *
 * @example One node's store
 * ```ts
 * import { RedisCouplingStore } from '@vipsec/store-redis'
 *
 * const store = new RedisCouplingStore({}, {
 *   host: '127.0.0.1',
 *   port: 6379,
 *   username: 'vipsec',
 *   password: process.env.VIPSEC_REDIS_PASSWORD,
 *   keyPrefix: 'vipsec:cluster-a:'
 * })
 * await store.start()
 * const { epoch } = await store.claimOwnership('10.0.0.100', { owner: 'dp-1', ranks: ['dp-2'], expectedEpoch: 0 })
 * await store.putRecords('10.0.0.100', [], { owner: 'dp-1', epoch })
 * await store.stop()
 * ```
 *
 * @packageDocumentation
 */
export {
  DEFAULT_KEY_PREFIX,
  checkKeyPrefix,
  redisKeys,
  type RecordField,
  type RedisKeyLayout
} from './keys.js'
export {
  defaultReconnectDelayMs,
  resolveInit,
  type RedisCouplingStoreInit,
  type RedisSentinelAddress,
  type ResolvedRedisInit
} from './options.js'
export { RedisDurabilityError } from './errors.js'
export {
  RedisCouplingStore,
  redisCouplingStore,
  type RedisCouplingStoreComponents
} from './redis-coupling-store.js'
