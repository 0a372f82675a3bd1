/**
 * What a responder keeps about IKE_SA_INIT requests before the initiator has authenticated:
 * the half-open SAs (bounded in total), how many each source address holds, the COOKIE secret
 * (RFC 7296 section 2.6) and the budget of unprotected error notifies.
 *
 * @module
 */
import type { Clock, Endpoint } from '@vipsec/interface'
import { sha256 } from './crypto.js'
import { u16Bytes } from './message.js'
import { ipToBytes } from './selectors.js'
import type { IkeSa } from './ike-sa.js'

/** The responder's IKE_SA_INIT state. */
export class HalfOpenTable {
  private readonly byKey = new Map<string, IkeSa>()
  private readonly keys = new Map<IkeSa, string>()
  private readonly perAddress = new Map<string, number>()
  private readonly secret: Uint8Array
  private tokens: number
  private refilledAt: number

  /**
   * @param clock - for the notify budget
   * @param secret - 32 random bytes cookies are made with
   * @param notifiesPerSecond - the budget of unprotected error notifies (also the burst)
   */
  constructor(
    private readonly clock: Clock,
    secret: Uint8Array,
    private readonly notifiesPerSecond: number
  ) {
    this.secret = secret
    this.tokens = notifiesPerSecond
    this.refilledAt = clock.monotonic()
  }

  /** Half-open SAs in total. */
  get size(): number {
    return this.byKey.size
  }

  /** The half-open SA a request (SPIi, source) made, if any. */
  get(spiI: Uint8Array, from: Endpoint): IkeSa | undefined {
    return this.byKey.get(halfOpenKey(spiI, from))
  }

  /** Half-open SAs made by requests from `address`. */
  countFor(address: string): number {
    return this.perAddress.get(address) ?? 0
  }

  /** Keeps a new half-open SA. */
  add(spiI: Uint8Array, from: Endpoint, sa: IkeSa): void {
    const key = halfOpenKey(spiI, from)
    this.byKey.set(key, sa)
    this.keys.set(sa, key)
    this.perAddress.set(from.address, this.countFor(from.address) + 1)
  }

  /** Forgets an SA once IKE_AUTH has completed or failed, or it expired. */
  settle(sa: IkeSa): boolean {
    const key = this.keys.get(sa)
    if (key === undefined) return false
    this.keys.delete(sa)
    this.byKey.delete(key)
    const address = key.slice(key.indexOf('|') + 1, key.lastIndexOf('|'))
    const n = this.countFor(address) - 1
    if (n > 0) this.perAddress.set(address, n)
    else this.perAddress.delete(address)
    return true
  }

  /** The cookie for a request: a keyed hash of its Ni, source and SPIi (RFC 7296 section 2.6). */
  cookieFor(ni: Uint8Array, from: Endpoint, spiI: Uint8Array): Uint8Array {
    return sha256(this.secret, ni, ipToBytes(from.address), u16Bytes(from.port), spiI)
  }

  /** Takes one unprotected error notify from the budget; false when it is spent. */
  takeNotify(): boolean {
    const now = this.clock.monotonic()
    const rate = this.notifiesPerSecond
    this.tokens = Math.min(rate, this.tokens + ((now - this.refilledAt) * rate) / 1000)
    this.refilledAt = now
    if (this.tokens < 1) return false
    this.tokens -= 1
    return true
  }
}

function halfOpenKey(spiI: Uint8Array, from: Endpoint): string {
  return `${Buffer.from(spiI).toString('hex')}|${from.address}|${from.port}`
}
