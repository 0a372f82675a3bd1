import type { ClusterMessage, FiveTuple } from '@vipsec/interface'
import { FlowReader, formatIp, tryParseIp } from '@vipsec/wire'

/** The two bytes that start every cluster-link frame: `VX`. */
export const LINK_MAGIC = [0x56, 0x58] as const

const TYPE_CODES = {
  'packet:inbound': 1,
  'packet:outbound': 2,
  'ownership:notice': 3,
  heartbeat: 4
} as const satisfies Record<ClusterMessage['type'], number>

/**
 * The compact form of the packet messages: the DVIPA as its address bytes and no flow, which
 * the receiver reads from the packet itself (reversed for an outbound packet, whose flow is
 * the connection's as seen inbound). Used whenever that gives the message's flow back exactly,
 * which is every packet of a connection; anything else (an ICMP error sent for a connection,
 * say) keeps the full form. It saves 30 to 40 bytes per frame: with it, a 1400-byte inner
 * packet (the peer's tunnel MTU) fits a 1500-byte cluster LAN in one datagram instead of two
 * IP fragments, and runs of such frames can leave as one segmented send.
 */
const COMPACT_INBOUND = 5
const COMPACT_OUTBOUND = 6

/**
 * A link announcement: what the sender's link reads, so that a peer sends it only frames it
 * can take. Nodes from before the compact form drop both (as malformed), so a node sends compact
 * frames to a peer only after an authenticated announcement or compact frame from that peer's
 * current incarnation (see `UdpClusterLink`). It is internal to the link, not a
 * `ClusterMessage`.
 */
const ANNOUNCEMENT = 7

/** In an announcement's capabilities: the sender reads compact packet frames (types 5 and 6). */
export const CAPABILITY_COMPACT_PACKETS = 1

/** A link announcement, decoded. */
export interface LinkAnnouncement {
  type: 'link:announcement'
  /** Bits of what the sender reads ({@link CAPABILITY_COMPACT_PACKETS}); unknown bits are ignored. */
  capabilities: number
  /** Whether the sender already knows the receiver's capabilities (if not, it wants an answer). */
  knowsYou: boolean
}

/** The length of an announcement's encoding: type, capabilities (4 bytes), flags. */
export const ANNOUNCEMENT_LENGTH = 6

/**
 * Writes a link announcement into `out` at `offset`.
 *
 * @returns the offset after it
 */
export function writeAnnouncement(
  out: Uint8Array,
  offset: number,
  announcement: Pick<LinkAnnouncement, 'capabilities' | 'knowsYou'>
): number {
  const c = announcement.capabilities >>> 0
  out[offset] = ANNOUNCEMENT
  out[offset + 1] = c >>> 24
  out[offset + 2] = (c >>> 16) & 0xff
  out[offset + 3] = (c >>> 8) & 0xff
  out[offset + 4] = c & 0xff
  out[offset + 5] = announcement.knowsYou ? 1 : 0
  return offset + ANNOUNCEMENT_LENGTH
}

/** Whether a frame payload is a packet message in the compact form (its first byte). */
export function isCompactPayload(payload: Uint8Array): boolean {
  return payload[0] === COMPACT_INBOUND || payload[0] === COMPACT_OUTBOUND
}

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

/** Thrown inside the codec for a frame that cannot be decoded; never leaves the link. */
class FrameError extends Error {}

/** The encoded length of a string with its 2-byte length (ASCII counted without encoding). */
function strLength(s: string): number {
  let n = s.length
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) {
      n = encoder.encode(s).length
      break
    }
  }
  if (n > 0xffff) throw new RangeError('string too long')
  return 2 + n
}

/**
 * Writes fields straight into the frame buffer at their offsets: no chunks, no intermediate
 * arrays, ASCII strings (addresses, most ids) copied by character.
 */
class Writer {
  constructor(
    private readonly b: Uint8Array,
    private o: number
  ) {}

  u8(v: number): this {
    this.b[this.o++] = v
    return this
  }

  u16(v: number): this {
    this.b[this.o++] = (v >>> 8) & 0xff
    this.b[this.o++] = v & 0xff
    return this
  }

  u64(v: number): this {
    const high = Math.floor(v / 2 ** 32)
    const low = v >>> 0
    const b = this.b
    let o = this.o
    b[o++] = high >>> 24
    b[o++] = (high >>> 16) & 0xff
    b[o++] = (high >>> 8) & 0xff
    b[o++] = high & 0xff
    b[o++] = low >>> 24
    b[o++] = (low >>> 16) & 0xff
    b[o++] = (low >>> 8) & 0xff
    b[o++] = low & 0xff
    this.o = o
    return this
  }

  str(s: string): this {
    const b = this.b
    const start = this.o + 2
    let i = 0
    for (; i < s.length; i++) {
      const c = s.charCodeAt(i)
      if (c > 0x7f) break
      b[start + i] = c
    }
    const n = i === s.length ? i : encoder.encodeInto(s, b.subarray(start)).written
    this.u16(n)
    this.o += n
    return this
  }

  raw(bytes: Uint8Array): this {
    this.b.set(bytes, this.o)
    this.o += bytes.length
    return this
  }

  get offset(): number {
    return this.o
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
    const b = this.b
    const start = this.offset
    this.offset += n
    let ascii = ''
    for (let i = start; i < start + n; i++) {
      const c = b[i]!
      if (c > 0x7f) return decoder.decode(b.subarray(start, start + n))
      ascii += String.fromCharCode(c)
    }
    return ascii
  }

  /** An address: its length (4 or 16), then its bytes, as text. */
  address(): string {
    const n = this.u8()
    if (n !== 4 && n !== 16) throw new FrameError('bad address length')
    this.need(n)
    const b = this.b
    const o = this.offset
    this.offset += n
    if (n === 16) return formatIp(b, o, 16)
    const key = b[o]! * 0x1000000 + ((b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!)
    let name = dvipaNames.get(key)
    if (name === undefined) {
      name = formatIp(b, o, 4)
      if (dvipaNames.size >= MAX_CACHED) dvipaNames.clear()
      dvipaNames.set(key, name)
    }
    return name
  }

  end(): void {
    if (this.offset !== this.b.length) throw new FrameError('trailing bytes')
  }

  /** The bytes left, as a view (the frame is not reused after it is decoded). */
  rest(): Uint8Array {
    const out = this.b.subarray(this.offset)
    this.offset = this.b.length
    return out
  }
}

/** DVIPAs that are canonical IP addresses, as bytes (null: not one, keep the string). */
const dvipaBytes = new Map<string, Uint8Array | null>()
/** Decoded DVIPA strings by their IPv4 value, so that a busy DVIPA is formatted once. */
const dvipaNames = new Map<number, string>()
const MAX_CACHED = 1024

function compactDvipa(dvipa: string): Uint8Array | null {
  let bytes = dvipaBytes.get(dvipa)
  if (bytes === undefined) {
    const parsed = tryParseIp(dvipa)
    bytes = parsed !== undefined && formatIp(parsed) === dvipa ? parsed : null
    if (dvipaBytes.size >= MAX_CACHED) dvipaBytes.clear()
    dvipaBytes.set(dvipa, bytes)
  }
  return bytes
}

/** The flows of the packets {@link flowIsPacketFlow} looks at: a burst is read once. */
const packetFlows = new FlowReader()
/** The flows of received compact frames, read from their packets (shared, frozen). */
const receivedFlows = new FlowReader()

/** Whether the receiver reads `flow` back from `packet` (reversed: the outbound direction). */
function flowIsPacketFlow(flow: FiveTuple, packet: Uint8Array, reversed: boolean): boolean {
  const read = packetFlows.read(packet)
  if (read === undefined || read.protocol !== flow.protocol) return false
  return reversed
    ? flow.sourcePort === read.destinationPort &&
        flow.destinationPort === read.sourcePort &&
        flow.sourceAddress === read.destinationAddress &&
        flow.destinationAddress === read.sourceAddress
    : flow.sourcePort === read.sourcePort &&
        flow.destinationPort === read.destinationPort &&
        flow.sourceAddress === read.sourceAddress &&
        flow.destinationAddress === read.destinationAddress
}

/** The last message {@link compactForm} looked at, and its answer (length, then write). */
let lastMessage: ClusterMessage | undefined
let lastCompact: Uint8Array | null = null

/** The DVIPA bytes when the packet message goes in the compact form, else null. */
function compactForm(
  message: Extract<ClusterMessage, { type: 'packet:inbound' | 'packet:outbound' }>
): Uint8Array | null {
  if (message === lastMessage) return lastCompact
  const dvipa = compactDvipa(message.dvipa)
  const compact =
    dvipa !== null &&
    flowIsPacketFlow(message.flow, message.packet, message.type === 'packet:outbound')
      ? dvipa
      : null
  lastMessage = message
  lastCompact = compact
  return compact
}

/**
 * Whether {@link writeMessage} writes this message in the compact form (when allowed to).
 *
 * @param message - the message
 */
export function goesCompact(message: ClusterMessage): boolean {
  return (
    (message.type === 'packet:inbound' || message.type === 'packet:outbound') &&
    compactForm(message) !== null
  )
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
 * The length of a cluster message's encoding, for {@link writeMessage}.
 *
 * @param message - the message
 * @param compact - whether a packet message may take the compact form (only for a receiver
 *   known to read it); default true
 */
export function messageLength(message: ClusterMessage, compact = true): number {
  switch (message.type) {
    case 'packet:inbound':
    case 'packet:outbound': {
      const dvipa = compact ? compactForm(message) : null
      if (dvipa !== null) return 1 + 1 + dvipa.length + 8 + message.packet.length
      const flow = message.flow
      return (
        1 +
        strLength(message.dvipa) +
        8 +
        1 +
        strLength(flow.sourceAddress) +
        2 +
        strLength(flow.destinationAddress) +
        2 +
        message.packet.length
      )
    }
    case 'ownership:notice':
      return 1 + strLength(message.dvipa) + strLength(message.owner) + 8
    case 'heartbeat':
      return 9
  }
}

/**
 * Writes a cluster message into `out` at `offset` (the payload of a link frame): its type, its
 * fields, and the packet bytes last; `out` must have {@link messageLength} bytes there. The frame
 * around it (sender, counters, tag) is made by a `FrameGuard`.
 *
 * @param out - the frame buffer
 * @param offset - where the payload starts
 * @param message - the message
 * @param compact - as for {@link messageLength}, which must have been given the same
 * @returns the offset after it
 */
export function writeMessage(
  out: Uint8Array,
  offset: number,
  message: ClusterMessage,
  compact = true
): number {
  if (compact && (message.type === 'packet:inbound' || message.type === 'packet:outbound')) {
    const dvipa = compactForm(message)
    if (dvipa !== null) {
      const w = new Writer(out, offset)
      w.u8(message.type === 'packet:inbound' ? COMPACT_INBOUND : COMPACT_OUTBOUND)
      w.u8(dvipa.length).raw(dvipa).u64(message.epoch).raw(message.packet)
      return w.offset
    }
  }
  const w = new Writer(out, offset).u8(TYPE_CODES[message.type])
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
  return w.offset
}

/**
 * Encodes a cluster message as the payload of a link frame, in a new array (see
 * {@link writeMessage}, which the link uses to write straight into the frame).
 *
 * @param message - the message
 * @param compact - as for {@link messageLength}
 */
export function encodeMessage(message: ClusterMessage, compact = true): Uint8Array {
  const out = new Uint8Array(messageLength(message, compact))
  writeMessage(out, 0, message, compact)
  return out
}

/** {@link writeMessage} in the full form only, for a receiver not known to read the compact one. */
export function writeFullMessage(out: Uint8Array, offset: number, message: ClusterMessage): number {
  return writeMessage(out, offset, message, false)
}

/**
 * Decodes the payload of a link frame, a cluster message or a link announcement; never throws.
 *
 * @param payload - what {@link writeMessage} or {@link writeAnnouncement} made
 * @returns the message or announcement, or `'malformed'`
 */
export function decodePayload(
  payload: Uint8Array
): ClusterMessage | LinkAnnouncement | 'malformed' {
  if (payload[0] !== ANNOUNCEMENT) return decodeMessage(payload)
  // later versions may append fields: only the known ones are read
  if (payload.length < ANNOUNCEMENT_LENGTH) return 'malformed'
  return {
    type: 'link:announcement',
    capabilities:
      ((payload[1]! << 24) | (payload[2]! << 16) | (payload[3]! << 8) | payload[4]!) >>> 0,
    knowsYou: (payload[5]! & 1) !== 0
  }
}

/**
 * Decodes the payload of a link frame that carries a cluster message; never throws.
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
      case COMPACT_INBOUND:
      case COMPACT_OUTBOUND: {
        const dvipa = r.address()
        const epoch = r.u64()
        const packet = r.rest()
        const seen = receivedFlows.read(packet)
        if (seen === undefined) return 'malformed'
        const outbound = type === COMPACT_OUTBOUND
        return {
          type: outbound ? 'packet:outbound' : 'packet:inbound',
          dvipa,
          epoch,
          flow: outbound
            ? {
                protocol: seen.protocol,
                sourceAddress: seen.destinationAddress,
                sourcePort: seen.destinationPort,
                destinationAddress: seen.sourceAddress,
                destinationPort: seen.sourcePort
              }
            : seen,
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
