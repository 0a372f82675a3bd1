import { checksumAdd } from '@vipsec/wire'

/** Length of the `virtio_net_hdr` that precedes every packet on a TUN with `IFF_VNET_HDR`. */
export const VNET_HDR_LEN = 10
/** `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the TCP checksum is to be finished (here: not needed). */
const VNET_F_NEEDS_CSUM = 1
/** `VIRTIO_NET_HDR_GSO_TCPV4`. */
const VNET_GSO_TCPV4 = 1
/** The largest IPv4 packet. */
const MAX_IP = 65535
/** Segments per coalesced packet at most (the kernel's GSO limit is higher). */
const MAX_SEGMENTS = 64
/** Groups looked back through for a packet's flow (a batch rarely has more flows than this). */
const LOOKBACK = 16

const TCP_ACK = 0x10
const TCP_PSH = 0x08

/** Counters of a {@link TcpCoalescer}. */
export interface CoalesceCounters {
  /** Writes made (one per packet or per coalesced run). */
  writes: number
  /** Segments that went into a coalesced write with others. */
  coalesced: number
}

/**
 * Userspace GRO for a TUN device with `IFF_VNET_HDR`: the packets of one flush (the cleartext
 * packets a batch of cluster frames brought) are written with as few `write(2)` calls as
 * possible, consecutive in-order TCP/IPv4 data segments of one connection as one large packet
 * with a `virtio_net_hdr` that marks it as a TCP GSO packet of their segment size. The kernel
 * then runs IP and TCP input once per run instead of once per segment, and acknowledges the
 * run as a whole: fewer, cheaper writes and fewer ACKs to carry back through the tunnel.
 *
 * A segment joins the run before it only when the kernel's own GRO would have merged them:
 * same addresses and ports, the next sequence number, the same acknowledgement, window, TTL,
 * TOS and TCP options, ACK with at most PSH set, no IP options or fragmentation, valid IP and
 * TCP checksums, no longer than the run's first segment (a shorter one, or a PSH, ends the
 * run). Everything else is written as it came, in order: a connection's packets never overtake
 * each other.
 */
export class TcpCoalescer {
  private readonly out = new Uint8Array(VNET_HDR_LEN + MAX_IP)
  // per group of the current flush: its first packet, members, next sequence number...
  private firsts: Uint8Array[] = []
  private members: number[][] = []
  private nextSeq: number[] = []
  private segSize: number[] = []
  private total: number[] = []
  private open: boolean[] = []
  private readonly counts: CoalesceCounters = { writes: 0, coalesced: 0 }

  /** The counters (a copy). */
  counters(): CoalesceCounters {
    return { ...this.counts }
  }

  /**
   * Writes `packets[0..count)` in order, coalescing where it may.
   *
   * @param packets - IP packets (not modified)
   * @param count - how many of them
   * @param write - writes one unit (a `virtio_net_hdr` and a packet); the view is valid only
   *   during the call
   */
  flush(packets: Uint8Array[], count: number, write: (unit: Uint8Array) => void): void {
    const groups = this.group(packets, count)
    for (let g = 0; g < groups; g++) {
      const members = this.members[g]!
      this.counts.writes++
      if (members.length === 1) write(this.single(packets[members[0]!]!))
      else {
        this.counts.coalesced += members.length
        write(this.merged(packets, members, this.segSize[g]!))
      }
    }
    this.firsts.length = 0
  }

  /** Puts each packet in a group of its own or in the run of its connection; the group count. */
  private group(packets: Uint8Array[], count: number): number {
    let groups = 0
    for (let i = 0; i < count; i++) {
      const p = packets[i]!
      let payload = segmentPayload(p)
      if (payload > 0) {
        const seq = u32(p, 24)
        for (let g = groups - 1; g >= 0 && g >= groups - LOOKBACK; g--) {
          const first = this.firsts[g]!
          if (!sameConnection(first, p)) continue
          // the connection's latest group: join it, or start another after it
          if (
            this.open[g] === true &&
            seq === this.nextSeq[g] &&
            payload <= this.segSize[g]! &&
            this.total[g]! + payload <= MAX_IP &&
            this.members[g]!.length < MAX_SEGMENTS &&
            sameHeaders(first, p)
          ) {
            this.members[g]!.push(i)
            this.nextSeq[g] = (seq + payload) >>> 0
            this.total[g]! += payload
            if (payload < this.segSize[g]! || (p[33]! & TCP_PSH) !== 0) this.open[g] = false
            payload = -1
          }
          break
        }
        if (payload < 0) continue
      }
      const g = groups++
      this.firsts[g] = p
      this.members[g] = [i]
      this.open[g] = payload > 0 && (p[33]! & TCP_PSH) === 0
      this.nextSeq[g] = payload > 0 ? (u32(p, 24) + payload) >>> 0 : 0
      this.segSize[g] = payload
      this.total[g] = p.length
    }
    return groups
  }

  /** One packet as it came, behind an empty `virtio_net_hdr`. */
  private single(packet: Uint8Array): Uint8Array {
    const out = this.out
    out.fill(0, 0, VNET_HDR_LEN)
    out.set(packet, VNET_HDR_LEN)
    return out.subarray(0, VNET_HDR_LEN + packet.length)
  }

  /** A run of segments as one TCP GSO packet of `segSize`. */
  private merged(packets: Uint8Array[], members: number[], segSize: number): Uint8Array {
    const out = this.out
    const first = packets[members[0]!]!
    const last = packets[members[members.length - 1]!]!
    const headers = 20 + (first[32]! >> 4) * 4
    const h = VNET_HDR_LEN
    out.set(first.subarray(0, headers), h)
    let o = h + headers
    for (const m of members) {
      const p = packets[m]!
      out.set(p.subarray(headers), o)
      o += p.length - headers
    }
    const length = o - h
    // IPv4: total length and header checksum
    out[h + 2] = length >> 8
    out[h + 3] = length & 0xff
    out[h + 10] = 0
    out[h + 11] = 0
    const ipSum = ~checksumAdd(0, out, h, h + 20) & 0xffff
    out[h + 10] = ipSum >> 8
    out[h + 11] = ipSum & 0xff
    // TCP: the flags of the last segment (PSH), and the pseudo-header sum that a partial
    // checksum carries (the kernel takes the data as checked: CHECKSUM_PARTIAL)
    out[h + 33] = last[33]!
    const tcpLength = length - 20
    out[h + 36] = 0
    out[h + 37] = 0
    let pseudo = checksumAdd(0, out, h + 12, h + 20) + 6 + tcpLength
    while (pseudo > 0xffff) pseudo = (pseudo & 0xffff) + (pseudo >>> 16)
    out[h + 36] = pseudo >> 8
    out[h + 37] = pseudo & 0xff
    // virtio_net_hdr (little-endian): flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
    out[0] = VNET_F_NEEDS_CSUM
    out[1] = VNET_GSO_TCPV4
    le16(out, 2, headers)
    le16(out, 4, segSize)
    le16(out, 6, 20)
    le16(out, 8, 16)
    return out.subarray(0, o)
  }
}

/**
 * The TCP payload length of a packet that may be coalesced, or 0 when it may not (not IPv4
 * TCP without options and fragments, other flags than ACK and PSH, no data, a bad checksum).
 */
export function segmentPayload(p: Uint8Array): number {
  if (p.length < 40 || p[0] !== 0x45 || p[9] !== 6) return 0
  if (((p[2]! << 8) | p[3]!) !== p.length) return 0
  if ((p[6]! & 0x3f) !== 0 || p[7] !== 0) return 0 // MF or a fragment offset
  if ((p[33]! & ~TCP_PSH) !== TCP_ACK) return 0
  const headers = 20 + (p[32]! >> 4) * 4
  if (headers < 40 || headers >= p.length) return 0
  if (checksumAdd(0, p, 0, 20) !== 0xffff) return 0
  let sum = checksumAdd(0, p, 12, 20) + 6 + (p.length - 20)
  sum = checksumAdd(sum, p, 20, p.length)
  if (sum !== 0xffff) return 0
  return p.length - headers
}

/** Same addresses and ports (the first packet's and another's). */
function sameConnection(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 12; i < 24; i++) if (a[i] !== b[i]) return false
  return true
}

/** What must not differ between the segments of one run: TOS, TTL, ack, window, options. */
function sameHeaders(a: Uint8Array, b: Uint8Array): boolean {
  if (a[1] !== b[1] || a[8] !== b[8] || a[32] !== b[32]) return false
  for (let i = 28; i < 32; i++) if (a[i] !== b[i]) return false // acknowledgement
  if (a[34] !== b[34] || a[35] !== b[35]) return false // window
  const headers = 20 + (a[32]! >> 4) * 4
  for (let i = 40; i < headers; i++) if (a[i] !== b[i]) return false // options
  return true
}

function u32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0
}

function le16(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff
  b[o + 1] = v >> 8
}
