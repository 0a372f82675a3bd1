/**
 * Ephemeral key-exchange values made ahead of time, while the node is idle, so that a burst of
 * handshakes (a takeover's renegotiation of every IKE SA) does not pay key generation on the
 * critical path.
 *
 * @module
 */
import type { Clock, KeyExchangeGroup, RandomSource, TimerHandle } from '@vipsec/interface'
import { createKeyExchange, type KeyExchange } from './crypto.js'

/** Options of a {@link KeyExchangePool}. */
export interface KeyExchangePoolOptions {
  /** The most values kept per group (default 1024; 0 keeps none: every value is made on demand). */
  size?: number
  /** The groups to make values of ahead of time (default `['curve25519']`). */
  groups?: Exclude<KeyExchangeGroup, 'none'>[]
  /**
   * How long no value must have been taken before the pool is filled again, ms (default 2000:
   * after a takeover's renegotiation, the refill waits until its peers' traffic has settled).
   */
  idleMs?: number
  /** Values made per turn of the event loop while filling (default 16). */
  batch?: number
}

/** What a {@link KeyExchangePool} did so far. */
export interface KeyExchangePoolStats {
  /** Values handed out from the pool. */
  taken: number
  /** Values asked for of a pooled group while the pool had none (made on demand). */
  missed: number
  /** Values made ahead of time. */
  made: number
}

/**
 * A bounded pool of fresh ephemeral key-exchange values per group. Each value is handed out
 * once and then forgotten: none is ever given to two exchanges (RFC 7296 section 2.12 allows
 * reuse; this pool does not reuse). The pool fills in small batches, one per timer turn, and only
 * once no value was taken for `idleMs`, so that filling never competes with the handshakes that
 * drain it. One pool serves every IKE service made by one factory (the DVIPAs of a node, and the
 * IKE service a takeover opens).
 */
export class KeyExchangePool {
  private readonly values = new Map<Exclude<KeyExchangeGroup, 'none'>, KeyExchange[]>()
  private readonly size: number
  private readonly idleMs: number
  private readonly batch: number
  private timer: TimerHandle | undefined
  private stopped = false
  /** What the pool did so far (live counters). */
  readonly stats: KeyExchangePoolStats = { taken: 0, missed: 0, made: 0 }

  /**
   * @param components - the clock for the fill timers and the random source of the private values
   * @param options - size, groups and fill timing
   */
  constructor(
    private readonly components: { clock: Clock; random: RandomSource },
    options: KeyExchangePoolOptions = {}
  ) {
    this.size = options.size ?? 1024
    this.idleMs = options.idleMs ?? 2000
    this.batch = options.batch ?? 16
    for (const group of options.groups ?? ['curve25519']) this.values.set(group, [])
    this.schedule(0)
  }

  /** Values ready for `group`. */
  available(group: Exclude<KeyExchangeGroup, 'none'>): number {
    return this.values.get(group)?.length ?? 0
  }

  /**
   * A fresh value of `group`, removed from the pool; one made now when the pool has none.
   *
   * @param group - the key-exchange group
   */
  take(group: Exclude<KeyExchangeGroup, 'none'>): KeyExchange {
    const ready = this.values.get(group)
    const value = ready?.pop()
    if (ready !== undefined) this.schedule(this.idleMs)
    if (value !== undefined) {
      this.stats.taken++
      return value
    }
    if (ready !== undefined) this.stats.missed++
    return createKeyExchange(group, this.components.random)
  }

  /** Stops filling (the values already made are dropped). */
  stop(): void {
    this.stopped = true
    if (this.timer !== undefined) this.components.clock.clearTimeout(this.timer)
    this.timer = undefined
    for (const ready of this.values.values()) ready.length = 0
  }

  private schedule(ms: number): void {
    if (this.stopped || this.size === 0) return
    if (this.timer !== undefined) this.components.clock.clearTimeout(this.timer)
    this.timer = this.components.clock.setTimeout(() => this.fill(), ms)
  }

  private fill(): void {
    this.timer = undefined
    let left = this.batch
    for (const [group, ready] of this.values) {
      while (left > 0 && ready.length < this.size) {
        ready.push(createKeyExchange(group, this.components.random))
        this.stats.made++
        left--
      }
    }
    // more to make: the next batch on the next turn, so that a datagram never waits long
    if (left === 0) this.schedule(0)
  }
}

/**
 * A fresh key-exchange value of `group`: from the pool when there is one, else made now.
 *
 * @param ctx - the random source, and the pool if the service has one
 * @param group - the key-exchange group
 */
export function freshKeyExchange(
  ctx: { readonly random: RandomSource; readonly keyExchanges?: KeyExchangePool | undefined },
  group: Exclude<KeyExchangeGroup, 'none'>
): KeyExchange {
  return ctx.keyExchanges?.take(group) ?? createKeyExchange(group, ctx.random)
}
