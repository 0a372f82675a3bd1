import { createHmac, timingSafeEqual } from 'node:crypto'
import type { ClusterEnvelope, ClusterMessage, FiveTuple } from '@vipsec/interface'

const MAGIC0 = 0x56 // 'V'
const MAGIC1 = 0x58 // 'X'
const VERSION = 1
const TAG_LENGTH = 16

const TYPE_CODES = {
  'packet:inbound': 1,
  'packet:outbound': 2,
  'ownership:notice': 3,
  heartbeat: 4
} as const satisfies Record<ClusterMessage['type'], number>

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

/** Thrown inside the codec for a frame that cannot be decoded; never leaves the link. */
class FrameError extends Error {}

class Writer {
  private chunks: Uint8Array[] = []
  private length = 0

  u8(v: number): this {
    return this.raw(Uint8Array.of(v))
  }

  u16(v: number): this {
    return this.raw(Uint8Array.of(v >>> 8, v & 0xff))
  }

  u64(v: number): this {
    const b = new Uint8Array(8)
    new DataView(b.buffer).setBigUint64(0, BigInt(v))
    return this.raw(b)
  }

  str(s: string): this {
    const b = encoder.encode(s)
    if (b.length > 0xffff) throw new RangeError('string too long')
    return this.u16(b.length).raw(b)
  }

  raw(b: Uint8Array): this {
    this.chunks.push(b)
    this.length += b.length
    return this
  }

  bytes(): Uint8Array {
    const out = new Uint8Array(this.length)
    let offset = 0
    for (const c of this.chunks) {
      out.set(c, offset)
      offset += c.length
    }
    return out
  }
}

class Reader {
  private offset = 0
  constructor(private readonly b: Uint8Array) {}

  need(n: number): void {
    if (this.offset + n > this.b.length) throw new FrameError('truncated')
  }

  u8(): number {
    this.need(1)
    return this.b[this.offset++]!
  }

  u16(): number {
    this.need(2)
    const v = (this.b[this.offset]! << 8) | this.b[this.offset + 1]!
    this.offset += 2
    return v
  }

  u64(): number {
    this.need(8)
    const v = new DataView(this.b.buffer, this.b.byteOffset + this.offset, 8).getBigUint64(0)
    this.offset += 8
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FrameError('integer out of range')
    return Number(v)
  }

  str(): string {
    const n = this.u16()
    this.need(n)
    const s = decoder.decode(this.b.subarray(this.offset, this.offset + n))
    this.offset += n
    return s
  }

  rest(): Uint8Array {
    const out = this.b.slice(this.offset)
    this.offset = this.b.length
    return out
  }
}

function writeFlow(w: Writer, flow: FiveTuple): void {
  w.u8(flow.protocol)
    .str(flow.sourceAddress)
    .u16(flow.sourcePort)
    .str(flow.destinationAddress)
    .u16(flow.destinationPort)
}

function readFlow(r: Reader): FiveTuple {
  return {
    protocol: r.u8(),
    sourceAddress: r.str(),
    sourcePort: r.u16(),
    destinationAddress: r.str(),
    destinationPort: r.u16()
  }
}

function tag(key: Uint8Array, data: Uint8Array): Uint8Array {
  return createHmac('sha256', key).update(data).digest().subarray(0, TAG_LENGTH)
}

/**
 * Encodes a cluster message as a frame: `VX`, version, type, sender, fields, and the packet
 * bytes last; with a key, an HMAC-SHA-256-128 tag follows.
 *
 * @param from - the sending node
 * @param message - the message
 * @param key - the cluster key, if frames are authenticated
 */
export function encodeFrame(from: string, message: ClusterMessage, key?: Uint8Array): Uint8Array {
  const w = new Writer().u8(MAGIC0).u8(MAGIC1).u8(VERSION).u8(TYPE_CODES[message.type]).str(from)
  switch (message.type) {
    case 'packet:inbound':
    case 'packet:outbound':
      w.str(message.dvipa).u64(message.epoch)
      writeFlow(w, message.flow)
      w.raw(message.packet)
      break
    case 'ownership:notice':
      w.str(message.dvipa).str(message.owner).u64(message.epoch)
      break
    case 'heartbeat':
      w.u64(message.sequence)
      break
  }
  const body = w.bytes()
  if (key === undefined) return body
  const out = new Uint8Array(body.length + TAG_LENGTH)
  out.set(body)
  out.set(tag(key, body), body.length)
  return out
}

/** Why a frame was not accepted. */
export type FrameRejection = 'malformed' | 'unauthenticated'

/**
 * Decodes a frame; never throws.
 *
 * @param frame - the datagram payload
 * @param key - the cluster key, if frames are authenticated
 * @returns the envelope, or why it was rejected
 */
export function decodeFrame(frame: Uint8Array, key?: Uint8Array): ClusterEnvelope | FrameRejection {
  let body = frame
  if (key !== undefined) {
    if (frame.length < TAG_LENGTH) return 'unauthenticated'
    body = frame.subarray(0, frame.length - TAG_LENGTH)
    const expected = tag(key, body)
    if (!timingSafeEqual(expected, frame.subarray(frame.length - TAG_LENGTH)))
      return 'unauthenticated'
  }
  try {
    const r = new Reader(body)
    if (r.u8() !== MAGIC0 || r.u8() !== MAGIC1 || r.u8() !== VERSION) return 'malformed'
    const type = r.u8()
    const from = r.str()
    let message: ClusterMessage
    switch (type) {
      case TYPE_CODES['packet:inbound']:
      case TYPE_CODES['packet:outbound']: {
        const dvipa = r.str()
        const epoch = r.u64()
        const flow = readFlow(r)
        const packet = r.rest()
        message = {
          type: type === TYPE_CODES['packet:inbound'] ? 'packet:inbound' : 'packet:outbound',
          dvipa,
          epoch,
          flow,
          packet
        }
        break
      }
      case TYPE_CODES['ownership:notice']:
        message = { type: 'ownership:notice', dvipa: r.str(), owner: r.str(), epoch: r.u64() }
        break
      case TYPE_CODES.heartbeat:
        message = { type: 'heartbeat', sequence: r.u64() }
        break
      default:
        return 'malformed'
    }
    return { from, message }
  } catch {
    return 'malformed'
  }
}
