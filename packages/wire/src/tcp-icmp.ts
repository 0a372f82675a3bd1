import { IpProtocol, type FiveTuple } from './flow.js'
import { tryParseIp, formatIp } from './ip-address.js'
import { buildIpPacket, internetChecksum, transportChecksum, type IpPacketInfo } from './packet.js'

/**
 * Lowers the MSS option of a TCP SYN to `mss` if it announces more, fixing the checksum
 * incrementally (RFC 1624). Returns whether it changed the packet.
 *
 * @param packet - an IP packet carrying a TCP segment (changed in place)
 * @param info - its parsed IP header
 * @param mss - the largest MSS allowed
 */
export function clampMss(packet: Uint8Array, info: IpPacketInfo, mss: number): boolean {
  const o = info.payloadOffset
  if (info.protocol !== IpProtocol.TCP || o + 20 > info.totalLength) return false
  const end = Math.min(o + (packet[o + 12]! >> 4) * 4, info.totalLength)
  let i = o + 20
  while (i < end) {
    const kind = packet[i]!
    if (kind === 0) return false
    if (kind === 1) {
      i++
      continue
    }
    if (i + 1 >= end) return false
    const length = packet[i + 1]!
    if (length < 2 || i + length > end) return false
    if (kind === 2 && length === 4) {
      const announced = (packet[i + 2]! << 8) | packet[i + 3]!
      if (announced <= mss) return false
      packet[i + 2] = mss >> 8
      packet[i + 3] = mss & 0xff
      // HC' = ~(~HC + ~m + m')
      const checksum = (packet[o + 16]! << 8) | packet[o + 17]!
      let sum = (~checksum & 0xffff) + (~announced & 0xffff) + mss
      while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
      const updated = ~sum & 0xffff
      packet[o + 16] = updated >> 8
      packet[o + 17] = updated & 0xff
      return true
    }
    i += length
  }
  return false
}

/**
 * Whether a packet is an ICMP or ICMPv6 error that quotes another packet (destination
 * unreachable, packet too big, time exceeded, parameter problem).
 *
 * @param packet - an IP packet
 * @param info - its parsed IP header
 */
export function isIcmpError(packet: Uint8Array, info: IpPacketInfo): boolean {
  if (info.laterFragment || info.payloadOffset + 8 > info.totalLength) return false
  const type = packet[info.payloadOffset]!
  if (info.protocol === IpProtocol.ICMP) return type === 3 || type === 11 || type === 12
  if (info.protocol === IpProtocol.ICMPV6) return type >= 1 && type <= 4
  return false
}

/**
 * The flow, as seen inbound, of the connection an ICMP error is about: the error quotes a
 * packet that went out from the service address, so the quoted source is the connection's
 * destination. Undefined when the quote is too short or not of the same IP version.
 *
 * @param packet - an ICMP error (see {@link isIcmpError})
 * @param info - its parsed IP header
 */
export function quotedFlow(packet: Uint8Array, info: IpPacketInfo): FiveTuple | undefined {
  const q = info.payloadOffset + 8
  const end = info.totalLength
  let header: number
  let protocol: number
  let addressLength: number
  let source: number
  let destination: number
  if (info.version === 4) {
    if (q + 20 > end || packet[q]! >> 4 !== 4) return undefined
    header = (packet[q]! & 0x0f) * 4
    protocol = packet[q + 9]!
    addressLength = 4
    source = q + 12
    destination = q + 16
  } else {
    if (q + 40 > end || packet[q]! >> 4 !== 6) return undefined
    header = 40
    protocol = packet[q + 6]!
    addressLength = 16
    source = q + 8
    destination = q + 24
  }
  const portful = protocol === IpProtocol.TCP || protocol === IpProtocol.UDP || protocol === 132
  const p = q + header
  if (portful && p + 4 > end) return undefined
  return {
    protocol,
    sourceAddress: formatIp(packet, destination, addressLength),
    sourcePort: portful ? (packet[p + 2]! << 8) | packet[p + 3]! : 0,
    destinationAddress: formatIp(packet, source, addressLength),
    destinationPort: portful ? (packet[p]! << 8) | packet[p + 1]! : 0
  }
}

/**
 * Builds the ICMP "fragmentation needed" (IPv4, type 3 code 4, RFC 1191) or ICMPv6 "packet too
 * big" (RFC 8201) answer to a packet larger than `mtu`, to its sender, quoting as much of it as
 * the minimum MTU allows.
 *
 * @param packet - the packet that was too big
 * @param info - its parsed IP header
 * @param mtu - the size that fits, in bytes
 * @param from - the address the error comes from (the DVIPA, when of the packet's family;
 *   otherwise the packet's destination)
 */
export function tooBig(
  packet: Uint8Array,
  info: IpPacketInfo,
  mtu: number,
  from: string
): Uint8Array {
  const v6 = info.version === 6
  const sender = packet.subarray(info.sourceOffset, info.sourceOffset + info.addressLength)
  const fromBytes = tryParseIp(from)
  const source =
    fromBytes !== undefined && fromBytes.length === info.addressLength
      ? fromBytes
      : packet.subarray(info.destinationOffset, info.destinationOffset + info.addressLength)
  const quote = packet.subarray(0, Math.min(info.totalLength, v6 ? 1232 : 548))
  const icmp = new Uint8Array(8 + quote.length)
  icmp[0] = v6 ? 2 : 3
  icmp[1] = v6 ? 0 : 4
  if (v6) {
    icmp[4] = mtu >>> 24
    icmp[5] = (mtu >>> 16) & 0xff
  }
  icmp[6] = (mtu >> 8) & 0xff
  icmp[7] = mtu & 0xff
  icmp.set(quote, 8)
  // ICMPv6 checksums cover the pseudo-header (RFC 8200 section 8.1), ICMP ones only the message
  const checksum = v6
    ? transportChecksum(source, sender, IpProtocol.ICMPV6, icmp)
    : internetChecksum(icmp)
  icmp[2] = checksum >> 8
  icmp[3] = checksum & 0xff
  return buildIpPacket({
    source,
    destination: sender,
    protocol: v6 ? IpProtocol.ICMPV6 : IpProtocol.ICMP,
    payload: icmp
  })
}
