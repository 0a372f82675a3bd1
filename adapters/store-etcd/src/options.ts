import { InvalidConfigError } from '@vipsec/interface'
import { checkKeyPrefix, DEFAULT_KEY_PREFIX } from './keys.js'

/** TLS material for the connection to etcd (PEM). */
export interface EtcdTlsOptions {
  /** The CA certificate(s) that signed the members' certificates. */
  ca: string | Buffer
  /** A client certificate, when the members ask for one (`--client-cert-auth`). Default: none. */
  cert?: string | Buffer
  /** The client certificate's private key, with `cert`. Default: none. */
  key?: string | Buffer
}

/**
 * Options of an {@link EtcdCouplingStore}: where the members are, how to log in, how long a call
 * may take, and the key prefix of the cluster. Every field is optional.
 */
export interface EtcdCouplingStoreInit {
  /**
   * The client URLs of the etcd members, `http://host:port` or `https://host:port`. Calls go to
   * one member (the first, then the last that answered), move to the next when it fails, and a
   * read with no answer after `hedgeMs` is sent to the next member as well. Default:
   * `['http://127.0.0.1:2379']`.
   */
  hosts?: string[]
  /** The etcd user (etcd's authentication must be enabled). Default: none. */
  username?: string
  /** The user's password, with `username`. Default: none. */
  password?: string
  /** TLS material; required for `https:` hosts. Default: none (plain HTTP/2). */
  tls?: EtcdTlsOptions
  /** The prefix of every key: give each cluster sharing etcd its own. Default: `vipsec/`. */
  keyPrefix?: string
  /**
   * How long one call may take in all, in ms, including retries on another member and waiting for
   * a leader; then it rejects with `StoreUnavailableError` (with `indeterminate` set when a write
   * may have been applied). `start()` waits as long for the first answer. Default: `5000`.
   */
  operationTimeoutMs?: number
  /**
   * How long one attempt (one RPC) may take, in ms, before the call tries again, on the next
   * member. A write waits this long for a member cut off from it before the write is decided
   * again elsewhere; a read is sent to the next member after `hedgeMs` already. Default: `500`.
   */
  attemptTimeoutMs?: number
  /**
   * After how long a read (an owner confirming its epoch, a lease read, any read) that has no
   * answer yet is sent to the next member as well, in ms; the first answer counts. Reads are
   * idempotent and linearizable on every member, so this is safe; it keeps a member that died or
   * was cut off from delaying an owner's confirmation by a whole attempt (which made owners on
   * the healthy side fence themselves). At most `attemptTimeoutMs`. Default: the smaller of
   * `150` and a third of `attemptTimeoutMs`.
   */
  hedgeMs?: number
  /**
   * How long the receipt of a mailbox post or take is kept, in ms (rounded up to whole seconds,
   * etcd's lease unit), so that a call retried after a lost reply is not applied twice. At least
   * `operationTimeoutMs`. Default: `300000`.
   */
  receiptTtlMs?: number
}

/** {@link EtcdCouplingStoreInit} with every default applied. */
export interface ResolvedEtcdInit {
  /** Member URLs. */
  hosts: string[]
  /** The user, if any. */
  username: string | undefined
  /** The password, if any. */
  password: string | undefined
  /** TLS material, if any. */
  tls: EtcdTlsOptions | undefined
  /** The key prefix. */
  keyPrefix: string
  /** Total time of one call, in ms. */
  operationTimeoutMs: number
  /** Time of one attempt, in ms. */
  attemptTimeoutMs: number
  /** When an unanswered read is sent to the next member too, in ms. */
  hedgeMs: number
  /** Time to live of mailbox receipts, in ms. */
  receiptTtlMs: number
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
  if (typeof value !== 'string' || value.length === 0) {
    throw new InvalidConfigError(field, 'expected a non-empty string')
  }
  return value
}

/**
 * Checks the options and applies the defaults.
 *
 * @param init - what the caller gave
 * @throws InvalidConfigError naming the first bad field
 */
export function resolveInit(init: EtcdCouplingStoreInit = {}): ResolvedEtcdInit {
  if (init === null || typeof init !== 'object') {
    throw new InvalidConfigError('init', 'expected an object')
  }
  const hosts = init.hosts ?? ['http://127.0.0.1:2379']
  if (!Array.isArray(hosts) || hosts.length === 0) {
    throw new InvalidConfigError('hosts', 'expected a non-empty array of member URLs')
  }
  hosts.forEach((host, i) => {
    let url: URL
    try {
      url = new URL(String(host))
    } catch {
      throw new InvalidConfigError(`hosts[${i}]`, 'not a URL')
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new InvalidConfigError(`hosts[${i}]`, 'expected the http: or https: scheme')
    }
    if (url.protocol === 'https:' && init.tls === undefined) {
      throw new InvalidConfigError('tls', `hosts[${i}] is https: give tls.ca`)
    }
  })
  if (init.tls !== undefined) {
    if (init.tls === null || typeof init.tls !== 'object' || init.tls.ca === undefined) {
      throw new InvalidConfigError('tls.ca', 'expected the CA certificate (PEM)')
    }
    if ((init.tls.cert === undefined) !== (init.tls.key === undefined)) {
      throw new InvalidConfigError('tls.key', 'give tls.cert and tls.key together')
    }
  }
  const username = optionalString('username', init.username)
  const password = optionalString('password', init.password)
  if ((username === undefined) !== (password === undefined)) {
    throw new InvalidConfigError('password', 'give username and password together')
  }
  const operationTimeoutMs = positive('operationTimeoutMs', init.operationTimeoutMs, 5000)
  const attemptTimeoutMs = positive(
    'attemptTimeoutMs',
    init.attemptTimeoutMs,
    Math.min(500, operationTimeoutMs)
  )
  const hedgeMs = positive(
    'hedgeMs',
    init.hedgeMs,
    Math.max(1, Math.min(150, Math.floor(attemptTimeoutMs / 3)))
  )
  if (hedgeMs > attemptTimeoutMs) {
    throw new InvalidConfigError('hedgeMs', 'must be at most attemptTimeoutMs')
  }
  const receiptTtlMs = positive('receiptTtlMs', init.receiptTtlMs, 300_000)
  if (receiptTtlMs < operationTimeoutMs) {
    throw new InvalidConfigError('receiptTtlMs', 'must be at least operationTimeoutMs')
  }
  return {
    hosts: [...hosts],
    username,
    password,
    tls: init.tls,
    keyPrefix: checkKeyPrefix(init.keyPrefix ?? DEFAULT_KEY_PREFIX),
    operationTimeoutMs,
    attemptTimeoutMs,
    hedgeMs,
    receiptTtlMs
  }
}
