/**
 * IKE message fragmentation (RFC 7383): splitting a protected message into Encrypted Fragment
 * (SKF) messages that each fit a datagram, and reassembling the peer's. A fragment is stored
 * only after its own ICV verified; reassembly is bounded in fragments, bytes and time, holds one
 * message at a time per direction, and every fragment it refuses is counted by reason.
 *
 * @module
 */
import type { Clock, TimerHandle } from '@vipsec/interface'
import { IKE_HEADER_LENGTH } from './constants.js'
import {
  encryptEncoded,
  encryptFragment,
  encryptMessage,
  sha256,
  skOverhead,
  type SkKeys
} from './crypto.js'
import { concat, encodePayloads, type IkeHeader, type Payload } from './message.js'

/** Fragmentation options of a service (strongSwan's `fragment_size`, swanctl's `fragmentation`). */
export interface FragmentationOptions {
  /**
   * Whether this side announces IKEV2_FRAGMENTATION_SUPPORTED and fragments its large protected
   * messages when the peer announced it too (swanctl's `fragmentation = yes | no`). A peer
   * config's `fragmentation` overrides it for that peer. Default true.
   */
  enabled?: boolean
  /**
   * The largest IP datagram a fragment may make (IP and UDP headers, the non-ESP marker on port
   * 4500, the IKE header and the SKF payload included), like strongSwan's `fragment_size`.
   * Protected messages larger than that are fragmented. Default 0: 576 on IPv4 and 1280 on
   * IPv6, the sizes every path must carry (RFC 7383 section 2.5.1). At least 256.
   */
  fragmentSize?: number
  /** Most fragments of one message accepted; a message announcing more is dropped. Default 64. */
  maxFragments?: number
  /** Most bytes of reassembled inner payloads of one message. Default 16384. */
  maxMessageBytes?: number
  /** How long an incomplete reassembly is kept after its first fragment, in ms. Default 20000. */
  reassemblyTimeoutMs?: number
}

/** {@link FragmentationOptions} with the defaults applied. */
export type ResolvedFragmentation = Required<FragmentationOptions>

/** Applies the defaults of {@link FragmentationOptions}. */
export function resolveFragmentation(o: FragmentationOptions = {}): ResolvedFragmentation {
  return {
    enabled: o.enabled ?? true,
    fragmentSize: o.fragmentSize ?? 0,
    maxFragments: o.maxFragments ?? 64,
    maxMessageBytes: o.maxMessageBytes ?? 16384,
    reassemblyTimeoutMs: o.reassemblyTimeoutMs ?? 20000
  }
}

/**
 * Why a received fragment was not used: `not-negotiated` (we did not announce fragmentation
 * to this peer), `icv-failure`, `unprotected` (too short to hold an IV and an ICV),
 * `malformed` (verified but its padding is wrong), `duplicate`, `stale` (fewer fragments
 * than the reassembly under way, RFC 7383 section 2.6), `inconsistent` (another exchange type
 * than the fragments stored), `too-many` (above `maxFragments`), `too-large` (above
 * `maxMessageBytes`), `retransmission` (a fragment other than the first of a request already
 * answered, RFC 7383 section 2.6.1), `timeout` (the fragments of a reassembly that expired).
 */
export type FragmentDropReason =
  | 'not-negotiated'
  | 'icv-failure'
  | 'unprotected'
  | 'malformed'
  | 'duplicate'
  | 'stale'
  | 'inconsistent'
  | 'too-many'
  | 'too-large'
  | 'retransmission'
  | 'timeout'

/** Fragment counters of a service. */
export interface IkeFragmentCounters {
  /** Fragment messages sent (retransmissions included). */
  sent: number
  /** Fragment messages received (before any check). */
  received: number
  /** Messages reassembled from fragments. */
  reassembled: number
  /** Fragments dropped, by reason. */
  dropped: Record<FragmentDropReason, number>
}

/** Fresh, zeroed fragment counters. */
export function emptyFragmentCounters(): IkeFragmentCounters {
  return {
    sent: 0,
    received: 0,
    reassembled: 0,
    dropped: {
      'not-negotiated': 0,
      'icv-failure': 0,
      unprotected: 0,
      malformed: 0,
      duplicate: 0,
      stale: 0,
      inconsistent: 0,
      'too-many': 0,
      'too-large': 0,
      retransmission: 0,
      timeout: 0
    }
  }
}

/**
 * The largest IKE message (header included) that fits in `fragmentSize`, for a peer at an IPv4
 * or IPv6 address, on port 4500 (non-ESP marker) or 500.
 */
export function maxIkeLength(fragmentSize: number, ipv6: boolean, natT: boolean): number {
  const datagram = fragmentSize > 0 ? fragmentSize : ipv6 ? 1280 : 576
  return datagram - (ipv6 ? 40 : 20) - 8 - (natT ? 4 : 0)
}

/**
 * Protects payloads as one SK message or, when that would be longer than `maxLength` bytes, as
 * SKF fragments of at most `maxLength` bytes each (RFC 7383 section 2.5).
 *
 * @param header - the message's header
 * @param payloads - the inner payloads
 * @param keys - the sender's keys
 * @param nextIv - a fresh IV per message or fragment
 * @param maxLength - the largest message; `undefined`: never fragment
 * @returns the messages to send, in order
 */
export function protect(
  header: Omit<IkeHeader, 'nextPayload' | 'length'>,
  payloads: Payload[],
  keys: SkKeys,
  nextIv: () => Uint8Array,
  maxLength: number | undefined
): Uint8Array[] {
  if (maxLength === undefined) return [encryptMessage(header, payloads, keys, nextIv())]
  // encoded once: to measure the message, then sealed whole or cut into fragments
  const { first, bytes } = encodePayloads(payloads)
  const o = skOverhead(keys)
  const plain = bytes.length + 1
  const whole =
    IKE_HEADER_LENGTH + 4 + o.iv + plain + ((o.block - (plain % o.block)) % o.block) + o.icv
  if (whole <= maxLength) return [encryptEncoded(header, first, bytes, keys, nextIv())]
  // the largest chunk whose fragment fits: padding rounds the chunk and its pad-length byte up
  const room = maxLength - IKE_HEADER_LENGTH - 8 - o.iv - o.icv
  const chunk = Math.floor(room / o.block) * o.block - 1
  if (chunk < 1) return [encryptEncoded(header, first, bytes, keys, nextIv())]
  const total = Math.ceil(bytes.length / chunk)
  const out: Uint8Array[] = []
  for (let n = 1; n <= total; n++) {
    const piece = bytes.subarray((n - 1) * chunk, Math.min(n * chunk, bytes.length))
    out.push(
      encryptFragment(header, n === 1 ? first : 0, piece, { number: n, total }, keys, nextIv())
    )
  }
  return out
}

/** One verified fragment, decrypted. */
export interface VerifiedFragment {
  /** The message ID. */
  messageId: number
  /** The exchange type. */
  exchange: number
  /** Its number. */
  number: number
  /** The total. */
  total: number
  /** The first inner payload's type (fragment 1). */
  innerType: number
  /** Its piece of the inner payloads. */
  content: Uint8Array
  /** The fragment message as received (fragment 1's hash detects retransmissions). */
  raw: Uint8Array
}

/** A whole message reassembled. */
export interface Reassembled {
  /** The type of the first inner payload. */
  innerType: number
  /** The inner payloads, encoded. */
  body: Uint8Array
  /** SHA-256 of fragment 1 as received. */
  firstHash: Uint8Array
}

/** What the reassembly needs: time, limits and the counters. */
export interface ReassemblyHost {
  /** Time for the reassembly timeout. */
  readonly clock: Clock
  /** The limits. */
  readonly limits: ResolvedFragmentation
  /** Counts a dropped fragment. */
  dropFragment(reason: FragmentDropReason, count?: number): void
}

/**
 * The reassembly of one direction of one IKE SA (the peer's requests, or its responses): one
 * message at a time, of verified fragments only.
 */
export class Reassembly {
  private messageId = -1
  private exchange = 0
  private total = 0
  private bytes = 0
  private innerType = 0
  private firstHash?: Uint8Array
  private readonly parts = new Map<number, Uint8Array>()
  private timer?: TimerHandle

  constructor(private readonly host: ReassemblyHost) {}

  /** Fragments held (for tests and bounds). */
  get held(): number {
    return this.parts.size
  }

  /**
   * Takes a fragment whose ICV verified. Returns the whole message when it completes it,
   * `undefined` otherwise (stored, or dropped and counted).
   */
  add(f: VerifiedFragment): Reassembled | undefined {
    const limits = this.host.limits
    if (f.total > limits.maxFragments) {
      this.host.dropFragment('too-many')
      return undefined
    }
    if (this.messageId !== f.messageId || f.total > this.total) {
      // a new message, or the peer fragmented it again smaller (RFC 7383 section 2.6):
      // what was held is given up
      this.reset('stale')
      this.messageId = f.messageId
      this.exchange = f.exchange
      this.total = f.total
      this.timer = this.host.clock.setTimeout(
        () => this.reset('timeout'),
        limits.reassemblyTimeoutMs
      )
    } else if (f.total < this.total) {
      this.host.dropFragment('stale')
      return undefined
    }
    if (f.exchange !== this.exchange) {
      this.host.dropFragment('inconsistent')
      return undefined
    }
    if (this.parts.has(f.number)) {
      this.host.dropFragment('duplicate')
      return undefined
    }
    if (this.bytes + f.content.length > limits.maxMessageBytes) {
      this.host.dropFragment('too-large')
      this.reset('too-large')
      return undefined
    }
    this.parts.set(f.number, f.content.slice())
    this.bytes += f.content.length
    if (f.number === 1) {
      this.innerType = f.innerType
      this.firstHash = sha256(f.raw)
    }
    if (this.parts.size < this.total) return undefined
    const body = concat(...Array.from({ length: this.total }, (_, i) => this.parts.get(i + 1)!))
    const done = { innerType: this.innerType, body, firstHash: this.firstHash! }
    this.clear()
    this.messageId = -1
    return done
  }

  /** Gives up what is held, counting the fragments as dropped for `reason`. */
  reset(reason: FragmentDropReason): void {
    if (this.parts.size > 0) this.host.dropFragment(reason, this.parts.size)
    this.clear()
    this.messageId = -1
  }

  private clear(): void {
    if (this.timer !== undefined) this.host.clock.clearTimeout(this.timer)
    this.timer = undefined
    this.parts.clear()
    this.bytes = 0
    this.total = 0
    this.innerType = 0
    this.firstHash = undefined
  }
}
