/**
 * What a responder keeps about IKE_SA_INIT requests before the initiator has authenticated:
 * the half-open SAs (bounded in total), how many each source address holds, the COOKIE secret
 * (RFC 7296 section 2.6) and the budget of unprotected error notifies.
 *
 * @module
 */
import type { Clock, Endpoint, RandomSource } from '@vipsec/interface'
import { bytesEqual, sha256 } from './crypto.js'
import { u16Bytes } from './message.js'
import { ipToBytes } from './selectors.js'
import type { IkeSa } from './ike-sa.js'

/**
 * How long a cookie secret is used before a new one replaces it, in ms; a cookie made with the
 * previous secret is still accepted, so a cookie is good for 5 to 10 minutes.
 */
export const COOKIE_SECRET_LIFETIME_MS = 300_000

/** The responder's IKE_SA_INIT state. */
export class HalfOpenTable {
  private readonly byKey = new Map<string, IkeSa>()
  private readonly keys = new Map<IkeSa, string>()
  private readonly perAddress = new Map<string, number>()
  private secrets: [Uint8Array, Uint8Array]
  private version = 0
  private rotatedAt: number
  private tokens: number
  private refilledAt: number

  /**
   * @param clock - for the notify budget and the secret's lifetime
   * @param random - for the cookie secrets (32 bytes each)
   * @param notifiesPerSecond - the budget of unprotected error notifies (also the burst)
   */
  constructor(
    private readonly clock: Clock,
    private readonly random: RandomSource,
    private readonly notifiesPerSecond: number
  ) {
    this.secrets = [random.randomBytes(32), random.randomBytes(32)]
    this.rotatedAt = clock.monotonic()
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

  /**
   * The cookie for a request (RFC 7296 section 2.6): the secret's version (1 byte) and a keyed
   * hash of the request's Ni, source and SPIi under that secret.
   */
  cookieFor(ni: Uint8Array, from: Endpoint, spiI: Uint8Array): Uint8Array {
    this.rotate()
    return this.make(this.version, ni, from, spiI)
  }

  /** Whether `cookie` was made by {@link cookieFor} for this request with a live secret. */
  validCookie(cookie: Uint8Array, ni: Uint8Array, from: Endpoint, spiI: Uint8Array): boolean {
    this.rotate()
    const v = cookie[0]
    if (cookie.length !== 33 || (v !== this.version && v !== ((this.version + 255) & 0xff))) {
      return false
    }
    return bytesEqual(cookie, this.make(v, ni, from, spiI))
  }

  private make(version: number, ni: Uint8Array, from: Endpoint, spiI: Uint8Array): Uint8Array {
    const secret = this.secrets[version === this.version ? 0 : 1]
    const hash = sha256(secret, ni, ipToBytes(from.address), u16Bytes(from.port), spiI)
    const out = new Uint8Array(33)
    out[0] = version
    out.set(hash, 1)
    return out
  }

  private rotate(): void {
    const now = this.clock.monotonic()
    if (now - this.rotatedAt < COOKIE_SECRET_LIFETIME_MS) return
    this.rotatedAt = now
    this.secrets = [this.random.randomBytes(32), this.secrets[0]]
    this.version = (this.version + 1) & 0xff
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
