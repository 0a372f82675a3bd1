import type { ConnectionOptions } from 'node:tls'
import type { RedisOptions } from 'ioredis'
import { InvalidConfigError } from '@vipsec/interface'
import { checkKeyPrefix, DEFAULT_KEY_PREFIX } from './keys.js'

/** A Sentinel to ask for the current master. */
export interface RedisSentinelAddress {
  /** Host name or address. */
  host: string
  /** Port; Sentinel's usual one is 26379. */
  port: number
}

/**
 * Options of a {@link RedisCouplingStore}: where the server is, how to log in, how long a call may
 * wait, and the key prefix of the cluster. Every field is optional.
 */
export interface RedisCouplingStoreInit {
  /**
   * A `redis://[user:password@]host[:port][/db]` or `rediss://...` (TLS) URL. Fields given
   * separately below override what the URL says. Default: none.
   */
  url?: string
  /** The server's host. Default: `127.0.0.1` (or the URL's). */
  host?: string
  /** The server's port. Default: `6379` (or the URL's). */
  port?: number
  /** The logical database. Default: `0`. */
  db?: number
  /** The ACL user for AUTH (Redis 6+). Default: none (the `default` user). */
  username?: string
  /** The password for AUTH. Default: none. */
  password?: string
  /**
   * TLS options (`node:tls` `connect` options: `ca`, `cert`, `key`, `servername`, ...); when set,
   * the connection uses TLS. A `rediss:` URL turns TLS on with `{}`. Default: no TLS.
   */
  tls?: ConnectionOptions
  /**
   * The prefix of every key and of the change channel: give each cluster sharing a server its
   * own. Must not contain braces, glob characters or white space. Default: `vipsec:`.
   */
  keyPrefix?: string
  /**
   * Sentinels to ask for the master of {@link RedisCouplingStoreInit.name}; when given, `host`
   * and `port` are ignored, and the store follows a Sentinel failover. Default: none.
   */
  sentinels?: RedisSentinelAddress[]
  /** The master group name that the Sentinels watch; required with `sentinels`. */
  name?: string
  /** The ACL user for AUTH to the Sentinels. Default: none. */
  sentinelUsername?: string
  /** The password for AUTH to the Sentinels. Default: none. */
  sentinelPassword?: string
  /**
   * How long one call may take in all, in ms, including waiting for the connection to come back
   * and retrying after it was lost mid-call; then it rejects with `StoreUnavailableError`.
   * `start()` waits as long for the first connection. Default: `5000`.
   */
  operationTimeoutMs?: number
  /** How long one connection attempt may take, in ms. Default: `2000`. */
  connectTimeoutMs?: number
  /**
   * The reconnect policy: the delay, in ms, before reconnection attempt `attempt` (1, 2, ...).
   * The store reconnects for as long as it is started. Default: `min(50 * 2^(attempt - 1), 1000)`.
   */
  reconnectDelayMs?: (attempt: number) => number
  /**
   * How long the receipt of a mailbox post or take is kept, in ms, so that a call retried after
   * a lost connection is not applied twice. At least `operationTimeoutMs`. Default: `300000`.
   */
  receiptTtlMs?: number
  /**
   * Start even when the server runs without the append-only file (`appendonly no`): a restart of
   * such a server loses every write since its last snapshot, so ownership epochs can go
   * backwards and fencing breaks. Without this, `start()` rejects with `RedisDurabilityError`.
   * Default: `false`.
   */
  acceptNonDurableServer?: boolean
  /**
   * The replicated mode: after every write, `WAIT` until this many replicas have it, and after
   * every read, write a barrier and wait for it the same way, so that nothing is acknowledged or
   * read that a Sentinel failover to a replica could lose. Set it to the number of replicas, and
   * run the master with `min-replicas-to-write` at the same number. A write not confirmed within
   * `waitTimeoutMs` rejects with `StoreUnavailableError` with `indeterminate` set. Default: `0`
   * (acknowledge what the master has: a failover can lose acknowledged writes).
   */
  waitForReplicas?: number
  /** How long a `WAIT` of the replicated mode may take, in ms. Default: `1000`. */
  waitTimeoutMs?: number
}

/** {@link RedisCouplingStoreInit} with every default applied, as the store uses it. */
export interface ResolvedRedisInit {
  /** The server's host. */
  host: string
  /** The server's port. */
  port: number
  /** The logical database. */
  db: number
  /** The ACL user, if any. */
  username: string | undefined
  /** The password, if any. */
  password: string | undefined
  /** TLS options, if TLS is on. */
  tls: ConnectionOptions | undefined
  /** The key prefix. */
  keyPrefix: string
  /** Sentinels, if any. */
  sentinels: RedisSentinelAddress[] | undefined
  /** The Sentinel master group name. */
  name: string | undefined
  /** The ACL user for the Sentinels, if any. */
  sentinelUsername: string | undefined
  /** The password for the Sentinels, if any. */
  sentinelPassword: string | undefined
  /** Total time of one call, in ms. */
  operationTimeoutMs: number
  /** Time of one connection attempt, in ms. */
  connectTimeoutMs: number
  /** The reconnect policy. */
  reconnectDelayMs: (attempt: number) => number
  /** Time to live of mailbox receipts, in ms. */
  receiptTtlMs: number
  /** Whether a server without the append-only file is accepted. */
  acceptNonDurableServer: boolean
  /** Replicas each write and read waits for (0: none). */
  waitForReplicas: number
  /** Time of one WAIT, in ms. */
  waitTimeoutMs: number
}

/**
 * The default reconnect policy: 50 ms, doubling, at most 1 s.
 *
 * @param attempt - 1 for the first reconnection attempt
 */
export function defaultReconnectDelayMs(attempt: number): number {
  return Math.min(50 * 2 ** Math.max(0, Math.min(attempt - 1, 10)), 1000)
}

const positive = (field: string, value: unknown, fallback: number): number => {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new InvalidConfigError(field, 'expected a positive integer (ms)')
  }
  return value
}

const optionalString = (field: string, value: unknown): string | undefined => {
  if (value === undefined) return undefined
  if (typeof value !== 'string') throw new InvalidConfigError(field, 'expected a string')
  return value
}

const checkPort = (field: string, value: unknown): number => {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw new InvalidConfigError(field, 'expected a port from 1 to 65535')
  }
  return value
}

/**
 * Checks the options and applies the defaults.
 *
 * @param init - what the caller gave
 * @throws InvalidConfigError naming the first bad field
 */
export function resolveInit(init: RedisCouplingStoreInit = {}): ResolvedRedisInit {
  if (init === null || typeof init !== 'object') {
    throw new InvalidConfigError('init', 'expected an object')
  }
  const fromUrl: Partial<ResolvedRedisInit> = {}
  if (init.url !== undefined) {
    let url: URL
    try {
      url = new URL(String(init.url))
    } catch {
      throw new InvalidConfigError('url', 'not a URL')
    }
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
      throw new InvalidConfigError('url', 'expected the redis: or rediss: scheme')
    }
    if (url.hostname !== '') fromUrl.host = url.hostname.replace(/^\[(.*)\]$/, '$1')
    if (url.port !== '') fromUrl.port = checkPort('url', Number(url.port))
    if (url.username !== '') fromUrl.username = decodeURIComponent(url.username)
    if (url.password !== '') fromUrl.password = decodeURIComponent(url.password)
    const db = url.pathname.replace(/^\//, '')
    if (db !== '') {
      if (!/^\d+$/.test(db))
        throw new InvalidConfigError('url', 'the path must be a database number')
      fromUrl.db = Number(db)
    }
    if (url.protocol === 'rediss:') fromUrl.tls = {}
  }
  const host = optionalString('host', init.host) ?? fromUrl.host ?? '127.0.0.1'
  if (host.length === 0) throw new InvalidConfigError('host', 'expected a non-empty string')
  const port = init.port === undefined ? (fromUrl.port ?? 6379) : checkPort('port', init.port)
  const db = init.db ?? fromUrl.db ?? 0
  if (!Number.isSafeInteger(db) || db < 0) {
    throw new InvalidConfigError('db', 'expected a non-negative integer')
  }
  if (init.tls !== undefined && (init.tls === null || typeof init.tls !== 'object')) {
    throw new InvalidConfigError('tls', 'expected tls.connect options')
  }
  let sentinels: RedisSentinelAddress[] | undefined
  if (init.sentinels !== undefined) {
    if (!Array.isArray(init.sentinels) || init.sentinels.length === 0) {
      throw new InvalidConfigError('sentinels', 'expected a non-empty array')
    }
    sentinels = init.sentinels.map((s, i) => {
      if (typeof s?.host !== 'string' || s.host.length === 0) {
        throw new InvalidConfigError(`sentinels[${i}].host`, 'expected a non-empty string')
      }
      return { host: s.host, port: checkPort(`sentinels[${i}].port`, s.port) }
    })
    if (typeof init.name !== 'string' || init.name.length === 0) {
      throw new InvalidConfigError('name', 'the master group name is required with sentinels')
    }
  }
  if (init.reconnectDelayMs !== undefined && typeof init.reconnectDelayMs !== 'function') {
    throw new InvalidConfigError('reconnectDelayMs', 'expected a function')
  }
  const operationTimeoutMs = positive('operationTimeoutMs', init.operationTimeoutMs, 5000)
  const receiptTtlMs = positive('receiptTtlMs', init.receiptTtlMs, 300_000)
  if (receiptTtlMs < operationTimeoutMs) {
    throw new InvalidConfigError('receiptTtlMs', 'must be at least operationTimeoutMs')
  }
  const waitForReplicas = init.waitForReplicas ?? 0
  if (!Number.isSafeInteger(waitForReplicas) || waitForReplicas < 0) {
    throw new InvalidConfigError('waitForReplicas', 'expected a non-negative integer')
  }
  if (
    init.acceptNonDurableServer !== undefined &&
    typeof init.acceptNonDurableServer !== 'boolean'
  ) {
    throw new InvalidConfigError('acceptNonDurableServer', 'expected a boolean')
  }
  return {
    acceptNonDurableServer: init.acceptNonDurableServer ?? false,
    waitForReplicas,
    waitTimeoutMs: positive('waitTimeoutMs', init.waitTimeoutMs, 1000),
    host,
    port,
    db,
    username: optionalString('username', init.username) ?? fromUrl.username,
    password: optionalString('password', init.password) ?? fromUrl.password,
    tls: init.tls ?? fromUrl.tls,
    keyPrefix: checkKeyPrefix(init.keyPrefix ?? DEFAULT_KEY_PREFIX),
    sentinels,
    name: sentinels === undefined ? undefined : init.name,
    sentinelUsername: optionalString('sentinelUsername', init.sentinelUsername),
    sentinelPassword: optionalString('sentinelPassword', init.sentinelPassword),
    operationTimeoutMs,
    connectTimeoutMs: positive('connectTimeoutMs', init.connectTimeoutMs, 2000),
    reconnectDelayMs: init.reconnectDelayMs ?? defaultReconnectDelayMs,
    receiptTtlMs
  }
}

/**
 * The ioredis options of the store's command connection. Commands are never queued while the
 * connection is down (the store waits for it itself, within its deadline) and never re-sent by
 * ioredis after a reconnect (the store retries them, idempotently).
 *
 * @param init - resolved options
 */
export function toRedisOptions(init: ResolvedRedisInit): RedisOptions {
  const options: RedisOptions = {
    host: init.host,
    port: init.port,
    db: init.db,
    connectTimeout: init.connectTimeoutMs,
    commandTimeout: init.operationTimeoutMs,
    // a connection that stops answering (half-open socket) is dropped and made again
    socketTimeout: init.operationTimeoutMs,
    retryStrategy: (attempt) => Math.max(0, init.reconnectDelayMs(attempt)),
    reconnectOnError: (err) => err.message.startsWith('READONLY'),
    maxRetriesPerRequest: null,
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    enableReadyCheck: true,
    lazyConnect: true,
    connectionName: 'vipsec'
  }
  if (init.username !== undefined) options.username = init.username
  if (init.password !== undefined) options.password = init.password
  if (init.tls !== undefined) options.tls = init.tls
  if (init.sentinels !== undefined) {
    options.sentinels = init.sentinels
    options.name = init.name
    if (init.sentinelUsername !== undefined) options.sentinelUsername = init.sentinelUsername
    if (init.sentinelPassword !== undefined) options.sentinelPassword = init.sentinelPassword
    if (init.tls !== undefined) options.enableTLSForSentinelMode = true
  }
  return options
}
