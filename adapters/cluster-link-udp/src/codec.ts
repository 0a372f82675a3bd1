import type { ClusterMessage, FiveTuple } from '@vipsec/interface'

/** The two bytes that start every cluster-link frame: `VX`. */
export const LINK_MAGIC = [0x56, 0x58] as const

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

  end(): void {
    if (this.offset !== this.b.length) throw new FrameError('trailing bytes')
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

/**
 * Encodes a cluster message as the payload of a link frame: its type, its fields, and the packet
 * bytes last. The frame around it (sender, counters, tag) is made by a `FrameGuard`.
 *
 * @param message - the message
 */
export function encodeMessage(message: ClusterMessage): Uint8Array {
  const w = new Writer().u8(TYPE_CODES[message.type])
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
  return w.bytes()
}

/**
 * Decodes the payload of a link frame; never throws.
 *
 * @param payload - what {@link encodeMessage} made
 * @returns the message, or `'malformed'`
 */
export function decodeMessage(payload: Uint8Array): ClusterMessage | 'malformed' {
  try {
    const r = new Reader(payload)
    const type = r.u8()
    switch (type) {
      case TYPE_CODES['packet:inbound']:
      case TYPE_CODES['packet:outbound']: {
        const dvipa = r.str()
        const epoch = r.u64()
        const flow = readFlow(r)
        const packet = r.rest()
        return {
          type: type === TYPE_CODES['packet:inbound'] ? 'packet:inbound' : 'packet:outbound',
          dvipa,
          epoch,
          flow,
          packet
        }
      }
      case TYPE_CODES['ownership:notice']: {
        const message = {
          type: 'ownership:notice',
          dvipa: r.str(),
          owner: r.str(),
          epoch: r.u64()
        } as const
        r.end()
        return message
      }
      case TYPE_CODES.heartbeat: {
        const message = { type: 'heartbeat', sequence: r.u64() } as const
        r.end()
        return message
      }
      default:
        return 'malformed'
    }
  } catch {
    return 'malformed'
  }
}
