/**
 * What a responder keeps about IKE_SA_INIT requests before the initiator has authenticated:
 * the half-open SAs (bounded in total), how many each source address holds, the COOKIE secret
 * (RFC 7296 section 2.6) and the budget of unprotected error notifies.
 *
 * @module
 */
import { hash } from 'node:crypto'
import type { Clock, Endpoint, RandomSource } from '@vipsec/interface'
import { bytesEqual } from './crypto.js'
import { spiKey } from './sa-table.js'
import { ExchangeType, HeaderFlag, NotifyType, PayloadType } from './constants.js'
import type { IkeSa } from './ike-sa.js'

/**
 * How long a cookie secret is used before a new one replaces it, in ms; a cookie made with the
 * previous secret is still accepted, so a cookie is good for 5 to 10 minutes.
 */
export const COOKIE_SECRET_LIFETIME_MS = 300_000

/** The length of a COOKIE response: the header, and a notify of a 33-byte cookie. */
export const COOKIE_RESPONSE_LENGTH = 28 + 8 + 33

/** The longest Nonce RFC 7296 (section 3.9) allows. */
const MAX_NONCE = 256
/** The longest address text hashed as text (one that does not parse as an IP address). */
const MAX_ADDRESS_TEXT = 64
/** What the cookie hashes: secret, address (length and bytes), port, SPIi, Ni. */
const SCRATCH_BYTES = 32 + 1 + MAX_ADDRESS_TEXT + 2 + 8 + MAX_NONCE

/** The responder's IKE_SA_INIT state. */
export class HalfOpenTable {
  private readonly byKey = new Map<string, IkeSa>()
  /** What {@link add} filed each SA under, so that {@link settle} takes back exactly that. */
  private readonly entries = new Map<IkeSa, HalfOpenEntry>()
  private readonly perAddress = new Map<string, number>()
  /** Half-open SAs by the first 30 bits of their SPIi: a filter that costs no allocation. */
  private readonly bySpiPrefix = new Map<number, number>()
  private readonly scratch = Buffer.alloc(SCRATCH_BYTES)
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
    const prefix = spiPrefix(spiI, 0)
    this.byKey.set(key, sa)
    this.entries.set(sa, { key, address: from.address, prefix })
    this.perAddress.set(from.address, this.countFor(from.address) + 1)
    this.bySpiPrefix.set(prefix, (this.bySpiPrefix.get(prefix) ?? 0) + 1)
  }

  /**
   * Whether a half-open SA may have been made by a request with the SPIi at `offset` of `data`
   * (false: surely not; true: look it up with {@link get}). Allocates nothing.
   */
  mayHold(data: Uint8Array, offset: number): boolean {
    return this.bySpiPrefix.has(spiPrefix(data, offset))
  }

  /** Forgets an SA once IKE_AUTH has completed or failed, or it expired. */
  settle(sa: IkeSa): boolean {
    const entry = this.entries.get(sa)
    if (entry === undefined) return false
    const { key, address, prefix } = entry
    this.entries.delete(sa)
    this.byKey.delete(key)
    const n = this.countFor(address) - 1
    if (n > 0) this.perAddress.set(address, n)
    else this.perAddress.delete(address)
    const m = (this.bySpiPrefix.get(prefix) ?? 1) - 1
    if (m > 0) this.bySpiPrefix.set(prefix, m)
    else this.bySpiPrefix.delete(prefix)
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
    const out = new Uint8Array(33)
    this.writeCookie(out, 0, version, ni, 0, ni.length, from, spiI, 0)
    return out
  }

  /**
   * The whole COOKIE response (RFC 7296 section 2.6) to the initial IKE_SA_INIT request `data`,
   * whose Nonce data is `ni` bytes at `niOffset` (as {@link scanInitialRequest} found them),
   * behind `lead` zero bytes (4 for the non-ESP marker of port 4500). Nothing is allocated but
   * the response and the hash's digest.
   */
  cookieResponse(
    data: Uint8Array,
    niOffset: number,
    ni: number,
    from: Endpoint,
    lead: number
  ): Uint8Array {
    this.rotate()
    const out = new Uint8Array(lead + COOKIE_RESPONSE_LENGTH)
    const o = lead
    for (let i = 0; i < 8; i++) out[o + i] = data[i]!
    out[o + 16] = PayloadType.NOTIFY
    out[o + 17] = 0x20
    out[o + 18] = ExchangeType.IKE_SA_INIT
    out[o + 19] = HeaderFlag.RESPONSE
    out[o + 27] = COOKIE_RESPONSE_LENGTH
    out[o + 31] = 8 + 33
    out[o + 34] = NotifyType.COOKIE >> 8
    out[o + 35] = NotifyType.COOKIE & 0xff
    this.writeCookie(out, o + 36, this.version, data, niOffset, ni, from, data, 0)
    return out
  }

  /**
   * Writes the cookie (version and SHA-256 of secret, source, SPIi and Ni) at `at` of `out`.
   * The fixed-length fields come first and the address carries its length, so that no two
   * requests hash the same input and the hash's length extension cannot reach another
   * address or SPI. The address is hashed as its bytes (4 for IPv4, 16 for IPv6), so that
   * every text of one address (`2001:db8::1`, `2001:0db8:0:0:0:0:0:1`) makes one cookie; a
   * text that is no IP address (none comes from a socket) is hashed as text, its length byte
   * marked with 0x80 so that it never meets an address's bytes.
   */
  private writeCookie(
    out: Uint8Array,
    at: number,
    version: number,
    niBytes: Uint8Array,
    niOffset: number,
    ni: number,
    from: Endpoint,
    spiBytes: Uint8Array,
    spiOffset: number
  ): void {
    const b = this.scratch
    const secret = this.secrets[version === this.version ? 0 : 1]
    b.set(secret, 0)
    let a = writeAddressBytes(from.address, b, 33)
    if (a === 0) {
      a = b.write(from.address, 33, MAX_ADDRESS_TEXT, 'latin1')
      b[32] = 0x80 | a
    } else {
      b[32] = a
    }
    let n = 33 + a
    b[n++] = (from.port >> 8) & 0xff
    b[n++] = from.port & 0xff
    for (let i = 0; i < 8; i++) b[n++] = spiBytes[spiOffset + i]!
    const len = Math.min(ni, MAX_NONCE)
    for (let i = 0; i < len; i++) b[n++] = niBytes[niOffset + i]!
    out[at] = version
    out.set(hash('sha256', b.subarray(0, n), 'buffer'), at + 1)
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

/**
 * Checks the shape of an initial IKE_SA_INIT request in place, without parsing it into objects:
 * an IKEv2 header (version 2, exchange IKE_SA_INIT, the initiator's request with message ID 0
 * and no SPIr) whose length is the datagram's, then a chain of SA, KE, Nonce, Notify and Vendor
 * ID payloads that ends exactly at the end, with one each of SA, KE and Nonce and no COOKIE.
 *
 * @returns the offset of the Nonce data times 512 plus its length (16 to 256 bytes), or -1 when
 * the request needs the full parser (anything else, or a COOKIE to check)
 */
export function scanInitialRequest(data: Uint8Array): number {
  const length = data.length
  if (length < 28 || length > 65535) return -1
  if ((data[17]! & 0xf0) !== 0x20 || data[18] !== ExchangeType.IKE_SA_INIT) return -1
  const flags = data[19]!
  if ((flags & HeaderFlag.RESPONSE) !== 0 || (flags & HeaderFlag.INITIATOR) === 0) return -1
  for (let i = 8; i < 16; i++) if (data[i] !== 0) return -1
  if ((data[20]! | data[21]! | data[22]! | data[23]!) !== 0) return -1
  if (data[24] !== 0 || data[25] !== 0 || ((data[26]! << 8) | data[27]!) !== length) return -1
  let next = data[16]!
  let at = 28
  let seen = 0
  let nonce = -1
  while (next !== 0) {
    if (at + 4 > length) return -1
    const size = (data[at + 2]! << 8) | data[at + 3]!
    if (size < 4 || at + size > length) return -1
    switch (next) {
      case PayloadType.SA:
        if ((seen & 1) !== 0) return -1
        seen |= 1
        break
      case PayloadType.KE:
        if ((seen & 2) !== 0 || size < 8) return -1
        seen |= 2
        break
      case PayloadType.NONCE:
        if ((seen & 4) !== 0 || size - 4 < 16 || size - 4 > MAX_NONCE) return -1
        seen |= 4
        nonce = (at + 4) * 512 + (size - 4)
        break
      case PayloadType.NOTIFY:
        if (size < 8 || ((data[at + 6]! << 8) | data[at + 7]!) === NotifyType.COOKIE) return -1
        break
      case PayloadType.VENDOR:
        break
      default:
        return -1
    }
    next = data[at]!
    at += size
  }
  return at === length && seen === 7 ? nonce : -1
}

/** Where {@link HalfOpenTable.add} filed a half-open SA. */
interface HalfOpenEntry {
  /** Its key in the table: SPIi, source address and port. */
  readonly key: string
  /** The source address it is counted against. */
  readonly address: string
  /** Its SPIi's {@link spiPrefix}, the only derivation of it. */
  readonly prefix: number
}

/** The first 30 bits of the SPI at `offset` (a small integer: a Map key without allocation). */
function spiPrefix(data: Uint8Array, offset: number): number {
  return (
    ((data[offset]! & 0x3f) << 24) |
    (data[offset + 1]! << 16) |
    (data[offset + 2]! << 8) |
    data[offset + 3]!
  )
}

function halfOpenKey(spiI: Uint8Array, from: Endpoint): string {
  return `${spiKey(spiI)}|${from.address}|${from.port}`
}

/** Eight IPv6 groups, parsed in place by {@link writeAddressBytes}. */
const GROUPS = new Uint16Array(8)

/**
 * Writes the bytes of a textual IPv4 address (dotted quad) at `at` of `out`, from the text
 * between `start` and `end`; false when it is not one.
 */
function writeIpv4(text: string, start: number, end: number, out: Uint8Array, at: number): boolean {
  let octets = 0
  let value = 0
  let digits = 0
  for (let i = start; i <= end; i++) {
    const c = i === end ? 46 : text.charCodeAt(i)
    if (c === 46) {
      if (digits === 0 || octets === 4) return false
      out[at + octets++] = value
      value = 0
      digits = 0
    } else if (c >= 48 && c <= 57 && digits < 3) {
      value = value * 10 + (c - 48)
      digits++
      if (value > 255) return false
    } else {
      return false
    }
  }
  return octets === 4
}

/** The value of a hexadecimal digit, or -1. */
function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48
  if (c >= 97 && c <= 102) return c - 87
  if (c >= 65 && c <= 70) return c - 55
  return -1
}

/**
 * Writes the bytes of a textual IP address at `at` of `out` without allocating: 4 for an IPv4
 * dotted quad, 16 for IPv6 in any of its forms (`::` anywhere, upper or lower case, leading
 * zeros, a dotted IPv4 tail). Returns how many bytes it wrote, 0 when `text` is not an address
 * (a zone index such as `%eth0` included).
 */
export function writeAddressBytes(text: string, out: Uint8Array, at: number): number {
  const length = text.length
  if (length > MAX_ADDRESS_TEXT) return 0
  if (text.indexOf(':') < 0) return writeIpv4(text, 0, length, out, at) ? 4 : 0
  let n = 0
  let gap = -1
  let i = 0
  if (text.charCodeAt(0) === 58) {
    if (text.charCodeAt(1) !== 58) return 0
    gap = 0
    i = 2
  }
  while (i < length) {
    const start = i
    let value = 0
    let digits = 0
    for (; i < length; i++) {
      const d = hexDigit(text.charCodeAt(i))
      if (d < 0) break
      if (++digits > 4) return 0
      value = value * 16 + d
    }
    if (i < length && text.charCodeAt(i) === 46) {
      // the last 32 bits as a dotted quad
      if (n > 6 || !writeIpv4(text, start, length, out, at)) return 0
      GROUPS[n++] = (out[at]! << 8) | out[at + 1]!
      GROUPS[n++] = (out[at + 2]! << 8) | out[at + 3]!
      break
    }
    if (digits === 0 || n === 8) return 0
    GROUPS[n++] = value
    if (i === length) break
    if (text.charCodeAt(i) !== 58) return 0
    i++
    if (i < length && text.charCodeAt(i) === 58) {
      if (gap >= 0) return 0
      gap = n
      i++
    } else if (i === length) {
      return 0
    }
  }
  if (gap < 0 ? n !== 8 : n > 7) return 0
  const zeros = 8 - n
  let g = 0
  for (let k = 0; k < 8; k++) {
    const v = gap >= 0 && k >= gap && k < gap + zeros ? 0 : GROUPS[g++]!
    out[at + 2 * k] = v >> 8
    out[at + 2 * k + 1] = v & 0xff
  }
  return 16
}
