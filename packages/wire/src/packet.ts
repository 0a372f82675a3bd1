import { InvalidParametersError } from './errors.js'
import { IpProtocol, type FiveTuple } from './flow.js'
import { formatIp, parseIp } from './ip-address.js'

/** What {@link parseIpPacket} finds in an IPv4 or IPv6 packet. */
export interface IpPacketInfo {
  /** 4 or 6. */
  version: 4 | 6
  /** The upper-layer protocol (after IPv6 extension headers). */
  protocol: number
  /** Offset of the source address. */
  sourceOffset: number
  /** Offset of the destination address. */
  destinationOffset: number
  /** 4 or 16. */
  addressLength: number
  /** Offset of the upper-layer header (the end of the IP header and its extensions). */
  payloadOffset: number
  /** The packet length the IP header states (never more than the bytes given). */
  totalLength: number
  /** Whether this is a non-first fragment (no upper-layer header in it). */
  laterFragment: boolean
}

const IPV6_EXTENSIONS = new Set([0, 43, 60])
const IPV6_FRAGMENT = 44

/**
 * Parses the IP header of an IPv4 or IPv6 packet (IPv6: skips hop-by-hop, routing, fragment and
 * destination-options headers). Returns `undefined` for anything malformed; never throws.
 *
 * @param packet - the packet
 */
export function parseIpPacket(packet: Uint8Array): IpPacketInfo | undefined {
  if (!(packet instanceof Uint8Array) || packet.length < 1) return undefined
  const version = packet[0] >> 4
  if (version === 4) {
    if (packet.length < 20) return undefined
    const ihl = (packet[0] & 0x0f) * 4
    const totalLength = (packet[2] << 8) | packet[3]
    if (ihl < 20 || totalLength < ihl || totalLength > packet.length) return undefined
    const fragmentOffset = ((packet[6] & 0x1f) << 8) | packet[7]
    return {
      version: 4,
      protocol: packet[9],
      sourceOffset: 12,
      destinationOffset: 16,
      addressLength: 4,
      payloadOffset: ihl,
      totalLength,
      laterFragment: fragmentOffset !== 0
    }
  }
  if (version === 6) {
    if (packet.length < 40) return undefined
    const totalLength = 40 + ((packet[4] << 8) | packet[5])
    if (totalLength > packet.length) return undefined
    let next = packet[6]
    let offset = 40
    let laterFragment = false
    for (let hops = 0; hops < 8; hops++) {
      if (IPV6_EXTENSIONS.has(next)) {
        if (offset + 8 > totalLength) return undefined
        const length = (packet[offset + 1] + 1) * 8
        next = packet[offset]
        offset += length
      } else if (next === IPV6_FRAGMENT) {
        if (offset + 8 > totalLength) return undefined
        laterFragment = (((packet[offset + 2] << 8) | packet[offset + 3]) & 0xfff8) !== 0
        next = packet[offset]
        offset += 8
      } else {
        break
      }
    }
    if (offset > totalLength) return undefined
    return {
      version: 6,
      protocol: next,
      sourceOffset: 8,
      destinationOffset: 24,
      addressLength: 16,
      payloadOffset: offset,
      totalLength,
      laterFragment
    }
  }
  return undefined
}

/**
 * Reads the ports of a packet: UDP and TCP source and destination port; ICMP type and code as
 * the "ports" that IKE traffic selectors use (RFC 4301 section 4.4.1.1), type in the source and
 * code in the destination. Other protocols and later fragments have `[0, 0]`. `undefined` when
 * the upper-layer header is truncated.
 *
 * @param packet - the packet
 * @param info - its parsed IP header
 */
export function readPorts(packet: Uint8Array, info: IpPacketInfo): [number, number] | undefined {
  const ports = packedPorts(packet, info)
  return ports < 0 ? undefined : [ports >>> 16, ports & 0xffff]
}

/**
 * {@link readPorts} without an array, for the per-packet SPD lookup: source port times 65536
 * plus destination port, or -1 when the upper-layer header is truncated.
 *
 * @internal
 * @param packet - the packet
 * @param info - its parsed IP header
 */
export function packedPorts(packet: Uint8Array, info: IpPacketInfo): number {
  if (info.laterFragment) return 0
  const o = info.payloadOffset
  switch (info.protocol) {
    case IpProtocol.UDP:
    case IpProtocol.TCP:
    case 132: // SCTP
      if (o + 4 > info.totalLength) return -1
      return (
        ((packet[o] << 24) | (packet[o + 1] << 16) | (packet[o + 2] << 8) | packet[o + 3]) >>> 0
      )
    case IpProtocol.ICMP:
    case IpProtocol.ICMPV6:
      if (o + 2 > info.totalLength) return -1
      return packet[o] * 65536 + packet[o + 1]
    default:
      return 0
  }
}

/**
 * Extracts the flow 5-tuple of an IP packet; `undefined` when it is malformed.
 *
 * @param packet - an IPv4 or IPv6 packet
 */
export function readFlow(packet: Uint8Array): FiveTuple | undefined {
  const info = parseIpPacket(packet)
  if (info == null) return undefined
  const ports = readPorts(packet, info)
  if (ports == null) return undefined
  const portful =
    info.protocol === IpProtocol.UDP || info.protocol === IpProtocol.TCP || info.protocol === 132
  return {
    protocol: info.protocol,
    sourceAddress: formatIp(packet, info.sourceOffset, info.addressLength),
    sourcePort: portful ? ports[0] : 0,
    destinationAddress: formatIp(packet, info.destinationOffset, info.addressLength),
    destinationPort: portful ? ports[1] : 0
  }
}

/**
 * {@link readFlow} that remembers the last flow it read: the packets of one flow that follow
 * each other (a burst, a connection) get the same flow object back, without their addresses
 * formatted again. The objects it returns are frozen, so that they can be shared.
 *
 * @example
 * ```ts
 * const flows = new FlowReader()
 * flows.read(first) === flows.read(second) // true when both are of one 5-tuple
 * ```
 */
export class FlowReader {
  private last: FiveTuple | undefined
  private lastProtocol = -1
  private lastPorts = 0
  private lastLength = 0
  /** The last flow's source and destination address bytes. */
  private readonly lastAddresses = new Uint8Array(32)

  /**
   * The flow 5-tuple of a packet, as {@link readFlow} reads it (frozen); `undefined` when the
   * packet is malformed.
   *
   * @param packet - an IPv4 or IPv6 packet
   */
  read(packet: Uint8Array): FiveTuple | undefined {
    const info = parseIpPacket(packet)
    if (info === undefined) return undefined
    const ports = packedPorts(packet, info)
    if (ports < 0) return undefined
    const protocol = info.protocol
    const portful = protocol === IpProtocol.UDP || protocol === IpProtocol.TCP || protocol === 132
    const key = portful ? ports : 0
    const n = info.addressLength
    const s = info.sourceOffset
    const d = info.destinationOffset
    const a = this.lastAddresses
    if (
      this.last !== undefined &&
      protocol === this.lastProtocol &&
      key === this.lastPorts &&
      n === this.lastLength
    ) {
      let same = true
      for (let i = 0; i < n; i++) {
        if (packet[s + i] !== a[i] || packet[d + i] !== a[n + i]) {
          same = false
          break
        }
      }
      if (same) return this.last
    }
    const flow: FiveTuple = Object.freeze({
      protocol,
      sourceAddress: formatIp(packet, s, n),
      sourcePort: key >>> 16,
      destinationAddress: formatIp(packet, d, n),
      destinationPort: key & 0xffff
    })
    a.set(packet.subarray(s, s + n), 0)
    a.set(packet.subarray(d, d + n), n)
    this.last = flow
    this.lastProtocol = protocol
    this.lastPorts = key
    this.lastLength = n
    return flow
  }
}

/**
 * Adds bytes to a ones'-complement sum (RFC 1071), 16 bits at a time, big-endian.
 *
 * @param sum - the running sum (start with 0)
 * @param data - the bytes
 * @param offset - first byte
 * @param end - one past the last byte
 */
export function checksumAdd(sum: number, data: Uint8Array, offset = 0, end = data.length): number {
  let i = offset
  for (; i + 1 < end; i += 2) sum += (data[i] << 8) | data[i + 1]
  if (i < end) sum += data[i] << 8
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
  return sum
}

/**
 * Finishes a ones'-complement sum into the checksum field value.
 *
 * @param sum - from {@link checksumAdd}
 */
export function checksumFinish(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
  return ~sum & 0xffff
}

/**
 * The Internet checksum (RFC 1071) of a byte range.
 *
 * @param data - the bytes
 * @param offset - first byte
 * @param end - one past the last byte
 */
export function internetChecksum(data: Uint8Array, offset = 0, end = data.length): number {
  return checksumFinish(checksumAdd(0, data, offset, end))
}

function pseudoHeaderSum(
  source: Uint8Array,
  destination: Uint8Array,
  protocol: number,
  length: number
): number {
  let sum = checksumAdd(0, source)
  sum = checksumAdd(sum, destination)
  return sum + protocol + (length & 0xffff) + (length >>> 16)
}

/**
 * The checksum of a UDP, TCP or ICMPv6 segment under its pseudo-header (RFC 768, 793, 8200); the
 * checksum field inside `segment` must be zero, or the result is 0 when it verifies.
 *
 * @param source - source address bytes
 * @param destination - destination address bytes
 * @param protocol - the protocol number
 * @param segment - the upper-layer header and data
 */
export function transportChecksum(
  source: Uint8Array,
  destination: Uint8Array,
  protocol: number,
  segment: Uint8Array
): number {
  return checksumFinish(
    checksumAdd(pseudoHeaderSum(source, destination, protocol, segment.length), segment)
  )
}

/** Fields of an IP packet to build. */
export interface IpPacketFields {
  /** Source address (text or 4/16 bytes); its family chooses IPv4 or IPv6. */
  source: string | Uint8Array
  /** Destination address, of the same family. */
  destination: string | Uint8Array
  /** The upper-layer protocol number. */
  protocol: number
  /** The upper-layer header and data. */
  payload: Uint8Array
  /** TTL or hop limit; default 64. */
  ttl?: number
  /** IPv4 identification; default 0. */
  identification?: number
  /** DSCP/ECN byte (IPv4 TOS, IPv6 traffic class); default 0. */
  tos?: number
  /** IPv4: set the don't-fragment flag; default false. */
  dontFragment?: boolean
}

function addressBytes(value: string | Uint8Array, argument: string): Uint8Array {
  if (value instanceof Uint8Array) {
    if (value.length !== 4 && value.length !== 16) {
      throw new InvalidParametersError(argument, 'must be 4 or 16 bytes')
    }
    return value
  }
  return parseIp(value, argument)
}

/**
 * Builds an IPv4 (20-byte header with checksum) or IPv6 (40-byte header) packet.
 *
 * @param fields - the header fields and payload
 * @throws InvalidParametersError when an address is malformed, the families differ or the packet is too long
 */
export function buildIpPacket(fields: IpPacketFields): Uint8Array {
  const source = addressBytes(fields.source, 'fields.source')
  const destination = addressBytes(fields.destination, 'fields.destination')
  if (source.length !== destination.length) {
    throw new InvalidParametersError('fields.destination', 'address family differs from source')
  }
  const ttl = fields.ttl ?? 64
  const tos = fields.tos ?? 0
  const payload = fields.payload
  if (source.length === 4) {
    const total = 20 + payload.length
    if (total > 0xffff) throw new InvalidParametersError('fields.payload', 'too long for IPv4')
    const out = new Uint8Array(total)
    const id = fields.identification ?? 0
    out[0] = 0x45
    out[1] = tos
    out[2] = total >> 8
    out[3] = total & 0xff
    out[4] = (id >> 8) & 0xff
    out[5] = id & 0xff
    out[6] = fields.dontFragment === true ? 0x40 : 0
    out[8] = ttl
    out[9] = fields.protocol
    out.set(source, 12)
    out.set(destination, 16)
    const sum = internetChecksum(out, 0, 20)
    out[10] = sum >> 8
    out[11] = sum & 0xff
    out.set(payload, 20)
    return out
  }
  if (payload.length > 0xffff) throw new InvalidParametersError('fields.payload', 'too long')
  const out = new Uint8Array(40 + payload.length)
  out[0] = 0x60 | (tos >> 4)
  out[1] = (tos & 0x0f) << 4
  out[4] = payload.length >> 8
  out[5] = payload.length & 0xff
  out[6] = fields.protocol
  out[7] = ttl
  out.set(source, 8)
  out.set(destination, 24)
  out.set(payload, 40)
  return out
}

/**
 * Whether the IPv4 header checksum of a packet is correct (IPv6 has none: always true).
 *
 * @param packet - the packet
 */
export function verifyIpv4Checksum(packet: Uint8Array): boolean {
  const info = parseIpPacket(packet)
  if (info == null) return false
  if (info.version === 6) return true
  return internetChecksum(packet, 0, info.payloadOffset) === 0
}

/**
 * Whether the UDP, TCP or ICMP/ICMPv6 checksum of a packet is correct (a zero UDP checksum over
 * IPv4 means "none" and passes). Other protocols pass.
 *
 * @param packet - an IPv4 or IPv6 packet
 */
export function verifyTransportChecksum(packet: Uint8Array): boolean {
  const info = parseIpPacket(packet)
  if (info == null) return false
  const segment = packet.subarray(info.payloadOffset, info.totalLength)
  const source = packet.subarray(info.sourceOffset, info.sourceOffset + info.addressLength)
  const destination = packet.subarray(
    info.destinationOffset,
    info.destinationOffset + info.addressLength
  )
  switch (info.protocol) {
    case IpProtocol.UDP:
      if (segment.length < 8) return false
      if (info.version === 4 && segment[6] === 0 && segment[7] === 0) return true
      return transportChecksum(source, destination, info.protocol, segment) === 0
    case IpProtocol.TCP:
    case IpProtocol.ICMPV6:
      return transportChecksum(source, destination, info.protocol, segment) === 0
    case IpProtocol.ICMP:
      return internetChecksum(segment) === 0
    default:
      return true
  }
}

/** Fields of a UDP datagram. */
export interface UdpFields {
  /** Source address (for the pseudo-header checksum). */
  source: string | Uint8Array
  /** Destination address. */
  destination: string | Uint8Array
  /** Source port. */
  sourcePort: number
  /** Destination port. */
  destinationPort: number
  /** The data. */
  payload: Uint8Array
  /** Leave the checksum zero (allowed over IPv4 only, RFC 3948 section 2.1); default false. */
  zeroChecksum?: boolean
}

function checkPort(value: number, argument: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff) {
    throw new InvalidParametersError(argument, 'must be an integer 0 to 65535')
  }
}

/**
 * Builds a UDP header and data with its checksum (RFC 768).
 *
 * @param fields - ports, addresses and payload
 */
export function buildUdp(fields: UdpFields): Uint8Array {
  checkPort(fields.sourcePort, 'fields.sourcePort')
  checkPort(fields.destinationPort, 'fields.destinationPort')
  const source = addressBytes(fields.source, 'fields.source')
  const destination = addressBytes(fields.destination, 'fields.destination')
  const length = 8 + fields.payload.length
  if (length > 0xffff) throw new InvalidParametersError('fields.payload', 'too long')
  const out = new Uint8Array(length)
  out[0] = fields.sourcePort >> 8
  out[1] = fields.sourcePort & 0xff
  out[2] = fields.destinationPort >> 8
  out[3] = fields.destinationPort & 0xff
  out[4] = length >> 8
  out[5] = length & 0xff
  out.set(fields.payload, 8)
  if (fields.zeroChecksum === true && source.length === 4) return out
  let sum = transportChecksum(source, destination, IpProtocol.UDP, out)
  if (sum === 0) sum = 0xffff
  out[6] = sum >> 8
  out[7] = sum & 0xff
  return out
}

/** TCP flag bits. */
export const TcpFlags = {
  /** FIN. */
  FIN: 0x01,
  /** SYN. */
  SYN: 0x02,
  /** RST. */
  RST: 0x04,
  /** PSH. */
  PSH: 0x08,
  /** ACK. */
  ACK: 0x10
} as const

/** Fields of a TCP segment (a 20-byte header without options). */
export interface TcpFields {
  /** Source address (for the pseudo-header checksum). */
  source: string | Uint8Array
  /** Destination address. */
  destination: string | Uint8Array
  /** Source port. */
  sourcePort: number
  /** Destination port. */
  destinationPort: number
  /** Sequence number. */
  sequence: number
  /** Acknowledgement number. */
  acknowledgement: number
  /** Flags, see {@link TcpFlags}. */
  flags: number
  /** Receive window; default 65535. */
  window?: number
  /** The data; default empty. */
  payload?: Uint8Array
}

/**
 * Builds a TCP segment with its checksum (RFC 793).
 *
 * @param fields - header fields and data
 */
export function buildTcp(fields: TcpFields): Uint8Array {
  checkPort(fields.sourcePort, 'fields.sourcePort')
  checkPort(fields.destinationPort, 'fields.destinationPort')
  const source = addressBytes(fields.source, 'fields.source')
  const destination = addressBytes(fields.destination, 'fields.destination')
  const payload = fields.payload ?? new Uint8Array(0)
  const out = new Uint8Array(20 + payload.length)
  const view = new DataView(out.buffer)
  view.setUint16(0, fields.sourcePort)
  view.setUint16(2, fields.destinationPort)
  view.setUint32(4, fields.sequence >>> 0)
  view.setUint32(8, fields.acknowledgement >>> 0)
  out[12] = 5 << 4
  out[13] = fields.flags & 0xff
  view.setUint16(14, fields.window ?? 0xffff)
  out.set(payload, 20)
  view.setUint16(16, transportChecksum(source, destination, IpProtocol.TCP, out))
  return out
}

/** A parsed TCP header. */
export interface TcpHeader {
  /** Source port. */
  sourcePort: number
  /** Destination port. */
  destinationPort: number
  /** Sequence number. */
  sequence: number
  /** Acknowledgement number. */
  acknowledgement: number
  /** Flags. */
  flags: number
  /** Window. */
  window: number
  /** Offset of the data in the segment. */
  dataOffset: number
}

/**
 * Parses a TCP header; `undefined` when truncated or inconsistent.
 *
 * @param segment - the TCP segment
 */
export function parseTcp(segment: Uint8Array): TcpHeader | undefined {
  if (segment.length < 20) return undefined
  const view = new DataView(segment.buffer, segment.byteOffset, segment.byteLength)
  const dataOffset = (segment[12] >> 4) * 4
  if (dataOffset < 20 || dataOffset > segment.length) return undefined
  return {
    sourcePort: view.getUint16(0),
    destinationPort: view.getUint16(2),
    sequence: view.getUint32(4),
    acknowledgement: view.getUint32(8),
    flags: segment[13],
    window: view.getUint16(14),
    dataOffset
  }
}

/** Fields of an ICMP or ICMPv6 echo message. */
export interface IcmpEchoFields {
  /** Echo request or reply. */
  kind: 'request' | 'reply'
  /** Source address: its family picks ICMP (IPv4) or ICMPv6 (whose checksum covers the pseudo-header). */
  source: string | Uint8Array
  /** Destination address. */
  destination: string | Uint8Array
  /** Identifier. */
  identifier: number
  /** Sequence number. */
  sequence: number
  /** Data; default empty. */
  payload?: Uint8Array
}

/**
 * Builds an ICMP (RFC 792) or ICMPv6 (RFC 4443) echo request or reply with its checksum.
 *
 * @param fields - the message fields
 */
export function buildIcmpEcho(fields: IcmpEchoFields): Uint8Array {
  const source = addressBytes(fields.source, 'fields.source')
  const destination = addressBytes(fields.destination, 'fields.destination')
  const payload = fields.payload ?? new Uint8Array(0)
  const out = new Uint8Array(8 + payload.length)
  const v6 = source.length === 16
  out[0] = v6 ? (fields.kind === 'request' ? 128 : 129) : fields.kind === 'request' ? 8 : 0
  out[4] = (fields.identifier >> 8) & 0xff
  out[5] = fields.identifier & 0xff
  out[6] = (fields.sequence >> 8) & 0xff
  out[7] = fields.sequence & 0xff
  out.set(payload, 8)
  const sum = v6
    ? transportChecksum(source, destination, IpProtocol.ICMPV6, out)
    : internetChecksum(out)
  out[2] = sum >> 8
  out[3] = sum & 0xff
  return out
}

/**
 * Builds the reply to an IP packet, with correct checksums: source and destination (and ports)
 * swapped. UDP: a datagram carrying `payload`. TCP: an ACK of the segment carrying `payload`.
 * ICMP/ICMPv6 echo request: the echo reply (with the request's data when `payload` is absent).
 * `undefined` for anything else or a malformed packet.
 *
 * @param packet - the packet to answer
 * @param payload - the reply's data; default empty (echo: the request's data)
 */
export function buildReply(packet: Uint8Array, payload?: Uint8Array): Uint8Array | undefined {
  const info = parseIpPacket(packet)
  if (info == null || info.laterFragment) return undefined
  const source = packet.slice(info.destinationOffset, info.destinationOffset + info.addressLength)
  const destination = packet.slice(info.sourceOffset, info.sourceOffset + info.addressLength)
  const segment = packet.subarray(info.payloadOffset, info.totalLength)
  let reply: Uint8Array
  switch (info.protocol) {
    case IpProtocol.UDP: {
      if (segment.length < 8) return undefined
      reply = buildUdp({
        source,
        destination,
        sourcePort: (segment[2] << 8) | segment[3],
        destinationPort: (segment[0] << 8) | segment[1],
        payload: payload ?? new Uint8Array(0)
      })
      break
    }
    case IpProtocol.TCP: {
      const tcp = parseTcp(segment)
      if (tcp == null) return undefined
      let consumed = segment.length - tcp.dataOffset
      if ((tcp.flags & (TcpFlags.SYN | TcpFlags.FIN)) !== 0) consumed++
      reply = buildTcp({
        source,
        destination,
        sourcePort: tcp.destinationPort,
        destinationPort: tcp.sourcePort,
        sequence: tcp.acknowledgement,
        acknowledgement: (tcp.sequence + consumed) >>> 0,
        flags: TcpFlags.ACK | ((payload?.length ?? 0) > 0 ? TcpFlags.PSH : 0),
        payload
      })
      break
    }
    case IpProtocol.ICMP:
    case IpProtocol.ICMPV6: {
      const request = info.protocol === IpProtocol.ICMP ? 8 : 128
      if (segment.length < 8 || segment[0] !== request) return undefined
      reply = buildIcmpEcho({
        kind: 'reply',
        source,
        destination,
        identifier: (segment[4] << 8) | segment[5],
        sequence: (segment[6] << 8) | segment[7],
        payload: payload ?? segment.subarray(8)
      })
      break
    }
    default:
      return undefined
  }
  return buildIpPacket({ source, destination, protocol: info.protocol, payload: reply })
}
