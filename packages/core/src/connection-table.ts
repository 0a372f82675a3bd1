import {
  InvalidParametersError,
  IpProtocol,
  type ConnectionRecord,
  type Dvipa,
  type FiveTuple,
  type NodeId
} from '@vipsec/interface'
import {
  clampMss,
  formatIp,
  isIcmpError,
  parseIpPacket,
  quotedFlow,
  TcpFlags,
  tooBig,
  type IpPacketInfo
} from '@vipsec/wire'

/**
 * How a new connection picks its target. `source-hash` keeps every connection of one peer
 * address on one target (rendezvous hashing over the healthy targets: when one fails, only its
 * addresses move), for applications whose sessions span several connections (iperf3's control
 * and data connections, FTP, SIP).
 */
export type SelectionPolicy = 'round-robin' | 'weighted' | 'least-connections' | 'source-hash'

/** A target host that connections can be distributed to. */
export interface TargetConfig {
  /** The target's node id. */
  node: NodeId
  /** Its share under the `weighted` policy (default 1). */
  weight?: number
}

/** How a {@link ConnectionTable} treats TCP and oversized packets. */
export interface TcpTrackingOptions {
  /**
   * The largest maximum segment size a SYN may announce, in bytes; a larger one is lowered
   * (MSS clamping), so that each inner segment, with the ESP-in-UDP and cluster link headers
   * around it, fits a 1500-byte path. Default 1320 (1360-byte inner packets: under the 1400
   * of a libipsec peer, and a cluster frame of them under 1500). 0 turns clamping off.
   */
  mss?: number
  /**
   * How long a closed connection (a RST, or a FIN each way) stays in the table, in ms, so that
   * the last segments and retransmitted FINs still reach its target. Default 10000.
   */
  closedLingerMs?: number
  /**
   * The largest packet from a target the tunnel carries, in bytes: a larger IPv4 packet with
   * DF set, or a larger IPv6 packet, is answered with ICMP "fragmentation needed" (ICMPv6
   * "packet too big") to the target, so that its path MTU discovery lowers the size. Default
   * 1400. 0 turns the check off.
   */
  maxOutboundPacket?: number
}

/** The TCP state of one connection, from the flags seen each way. */
export type TcpState = 'open' | 'closing' | 'closed'

/** What {@link ConnectionTable.route} found or made for a flow. */
export interface RouteResult {
  /** The flow's connection. */
  connection: ConnectionRecord
  /** Whether it was made now (a new flow, or one moved off a failed target). */
  created: boolean
}

/**
 * The key of a flow: protocol and both endpoints, as seen inbound from the peer.
 *
 * @param flow - the 5-tuple
 */
export function flowKey(flow: FiveTuple): string {
  return `${flow.protocol}|${flow.sourceAddress}|${flow.sourcePort}|${flow.destinationAddress}|${flow.destinationPort}`
}

/**
 * The id a connection record gets: stable for the flow, so that the records of two owners of
 * the same flow replace each other.
 *
 * @param flow - the 5-tuple
 */
export function connectionId(flow: FiveTuple): string {
  return `c-${flow.protocol}-${flow.sourceAddress}-${flow.sourcePort}-${flow.destinationAddress}-${flow.destinationPort}`
}

/**
 * The connection routing table of one DVIPA: which target serves which flow. New flows get a
 * target by the selection policy among healthy targets; existing flows keep theirs for as long
 * as the entry exists, whoever owns the DVIPA (the table is rebuilt from coupling-store records
 * on takeover).
 */
export class ConnectionTable {
  private readonly dvipa: Dvipa
  private readonly policy: SelectionPolicy
  private readonly targets: TargetConfig[]
  private readonly healthy = new Set<NodeId>()
  private readonly entries = new Map<string, ConnectionRecord>()
  private readonly load = new Map<NodeId, number>()
  /** Monotonic ms of each flow's last packet, by flow key. */
  private readonly lastSeen = new Map<string, number>()
  /** The last frozen flow {@link route} was given, and its key (a burst is one flow). */
  private keyedFlow: FiveTuple | undefined
  private flowKeyText = ''
  private cursor = 0
  private weightedCredit = new Map<NodeId, number>()
  /** TCP flags seen on each TCP connection, by flow key. */
  private readonly tcp = new Map<string, TcpTrack>()
  private readonly mss: number
  private readonly closedLingerMs: number
  private readonly maxOutboundPacket: number

  /**
   * @param dvipa - the DVIPA
   * @param targets - the targets, all healthy to begin with
   * @param policy - how new flows pick a target
   * @param tcp - MSS clamping, closed-connection linger and the outbound size limit
   * @throws InvalidParametersError when a weight is not positive or a TCP option out of range
   */
  constructor(
    dvipa: Dvipa,
    targets: TargetConfig[],
    policy: SelectionPolicy = 'round-robin',
    tcp: TcpTrackingOptions = {}
  ) {
    for (const [i, t] of targets.entries()) {
      if (t.weight !== undefined && !(t.weight > 0))
        throw new InvalidParametersError(`targets[${i}].weight`, 'must be > 0')
    }
    this.mss = tcp.mss ?? 1320
    this.closedLingerMs = tcp.closedLingerMs ?? 10_000
    this.maxOutboundPacket = tcp.maxOutboundPacket ?? 1400
    if (
      !Number.isInteger(this.mss) ||
      this.mss < 0 ||
      (this.mss > 0 && this.mss < 88) ||
      this.mss > 65535
    )
      throw new InvalidParametersError('tcp.mss', 'must be 0 or an integer from 88 to 65535')
    if (!(this.closedLingerMs >= 0))
      throw new InvalidParametersError('tcp.closedLingerMs', 'must be >= 0')
    if (
      !Number.isInteger(this.maxOutboundPacket) ||
      this.maxOutboundPacket < 0 ||
      (this.maxOutboundPacket > 0 && this.maxOutboundPacket < 576)
    )
      throw new InvalidParametersError('tcp.maxOutboundPacket', 'must be 0 or an integer >= 576')
    this.dvipa = dvipa
    this.policy = policy
    this.targets = targets.map((t) => ({ ...t }))
    for (const t of targets) {
      this.healthy.add(t.node)
      this.load.set(t.node, 0)
    }
  }

  /** Number of connections. */
  get size(): number {
    return this.entries.size
  }

  /**
   * Marks a target healthy or not: unhealthy targets get no new flows (existing ones stay).
   *
   * @param node - the target
   * @param healthy - its health
   */
  setHealth(node: NodeId, healthy: boolean): void {
    if (healthy) this.healthy.add(node)
    else this.healthy.delete(node)
  }

  /**
   * Replaces the targets while running (a reload): new targets are healthy and get new flows at
   * once; a removed target gets no new flows, and its existing flows keep it until they expire or
   * their target is marked unhealthy.
   *
   * @param targets - the new targets
   * @throws InvalidParametersError when a weight is not positive (nothing changes)
   */
  setTargets(targets: TargetConfig[]): void {
    for (const [i, t] of targets.entries()) {
      if (t.weight !== undefined && !(t.weight > 0))
        throw new InvalidParametersError(`targets[${i}].weight`, 'must be > 0')
    }
    const before = new Set(this.targets.map((t) => t.node))
    this.targets.splice(0, this.targets.length, ...targets.map((t) => ({ ...t })))
    for (const t of targets) {
      if (before.has(t.node)) continue
      this.healthy.add(t.node)
      if (!this.load.has(t.node)) this.load.set(t.node, 0)
    }
    this.weightedCredit.clear()
  }

  /**
   * The connection of a flow, if it is known.
   *
   * @param flow - the 5-tuple
   */
  get(flow: FiveTuple): ConnectionRecord | undefined {
    return this.entries.get(flowKey(flow))
  }

  /**
   * Returns the flow's connection, creating one with a newly selected target if it has none or
   * its target is unhealthy (the flow moves, as a datagram service can; the new record replaces
   * the old).
   *
   * @param flow - the 5-tuple
   * @param now - wall time for `createdAt`
   * @param phase2Id - the Child SA the flow arrived in
   * @param localNode - this node: a connection to it is not distributed
   * @param seenAt - monotonic ms of this packet, for idle expiry
   * @param packet - the packet itself, for TCP state and MSS clamping (a SYN's MSS option is
   *   lowered in place) and for ICMP errors, which go to the connection of the packet they
   *   quote and never make one
   * @returns the connection and whether it was created, or undefined when no target is
   *   healthy, or for an ICMP error about no known connection
   */
  route(
    flow: FiveTuple,
    now: number,
    phase2Id: string | null,
    localNode: NodeId,
    seenAt = 0,
    packet?: Uint8Array
  ): RouteResult | undefined {
    const info = packet === undefined ? undefined : parseIpPacket(packet)
    if (packet !== undefined && info !== undefined && isIcmpError(packet, info)) {
      const quoted = quotedFlow(packet, info)
      const connection = quoted === undefined ? undefined : this.entries.get(flowKey(quoted))
      if (connection === undefined) return undefined
      this.lastSeen.set(flowKey(quoted!), seenAt)
      return { connection, created: false }
    }
    const flags =
      packet !== undefined && info !== undefined ? this.tcpSegment(packet, info) : undefined
    const key = this.keyOf(flow)
    this.lastSeen.set(key, seenAt)
    let existing = this.entries.get(key)
    if (
      existing !== undefined &&
      flags !== undefined &&
      (flags & (SYN | ACK)) === SYN &&
      this.tcp.get(key)?.closedAt !== undefined
    ) {
      // a new connection on the 5-tuple of a closed one: it picks a target anew
      this.remove(flow)
      existing = undefined
      this.lastSeen.set(key, seenAt)
    }
    if (
      existing !== undefined &&
      (this.healthy.has(existing.target) || !this.isTarget(existing.target))
    ) {
      if (flags !== undefined) this.trackTcp(key, flags, 'in', seenAt)
      return { connection: existing, created: false }
    }
    // A new flow, or one whose target failed: it gets a healthy target.
    const target = this.select(flow.sourceAddress)
    if (target === undefined) return undefined
    const connection: ConnectionRecord = {
      v: 1,
      kind: 'connection',
      id: connectionId(flow),
      dvipa: this.dvipa,
      flow: { ...flow },
      target,
      distributed: target !== localNode,
      phase2Id,
      createdAt: now
    }
    this.add(connection)
    if (flags !== undefined) this.trackTcp(key, flags, 'in', seenAt)
    return { connection, created: true }
  }

  /**
   * Looks at a packet a target sends for this DVIPA, before it is protected: a SYN's MSS is
   * clamped in place, the TCP state of its connection follows its flags and the connection
   * counts as seen. A packet too big for the tunnel is answered instead.
   *
   * @param packet - the target's IP packet
   * @param seenAt - monotonic ms, for idle expiry
   * @returns an ICMP error for the target when the packet is too big to carry (it must then be
   *   dropped), otherwise undefined
   */
  outbound(packet: Uint8Array, seenAt = 0): Uint8Array | undefined {
    const info = parseIpPacket(packet)
    if (info === undefined) return undefined
    const limit = this.maxOutboundPacket
    if (limit > 0 && info.totalLength > limit) {
      const dontFragment = info.version === 6 || (packet[6]! & 0x40) !== 0
      if (dontFragment) return tooBig(packet, info, limit, this.dvipa)
    }
    const flags = this.tcpSegment(packet, info)
    if (flags === undefined) return undefined
    const key = reverseKey(packet, info)
    if (!this.entries.has(key)) return undefined
    this.lastSeen.set(key, seenAt)
    this.trackTcp(key, flags, 'out', seenAt)
    return undefined
  }

  /**
   * The TCP state of a flow's connection: `open` until a FIN, `closing` after a FIN one way,
   * `closed` after a FIN each way or a RST. Undefined for unknown flows and other protocols.
   *
   * @param flow - the 5-tuple, as seen inbound
   */
  tcpState(flow: FiveTuple): TcpState | undefined {
    const key = flowKey(flow)
    if (!this.entries.has(key) || flow.protocol !== IpProtocol.TCP) return undefined
    const t = this.tcp.get(key)
    if (t === undefined) return 'open'
    if (t.closedAt !== undefined) return 'closed'
    return t.finIn || t.finOut ? 'closing' : 'open'
  }

  /** The key of a flow, kept for the last frozen one (a flow that cannot change under it). */
  private keyOf(flow: FiveTuple): string {
    if (flow === this.keyedFlow) return this.flowKeyText
    const key = flowKey(flow)
    if (Object.isFrozen(flow)) {
      this.keyedFlow = flow
      this.flowKeyText = key
    }
    return key
  }

  /** The flags of a TCP segment (clamping a SYN's MSS in place), or undefined for other packets. */
  private tcpSegment(packet: Uint8Array, info: IpPacketInfo): number | undefined {
    if (info.protocol !== IpProtocol.TCP || info.laterFragment) return undefined
    const o = info.payloadOffset
    if (o + 20 > info.totalLength) return undefined
    const flags = packet[o + 13]!
    if ((flags & SYN) !== 0 && this.mss > 0) clampMss(packet, info, this.mss)
    return flags
  }

  private trackTcp(key: string, flags: number, way: 'in' | 'out', seenAt: number): void {
    let t = this.tcp.get(key)
    if (t === undefined) {
      if ((flags & (FIN | RST)) === 0) return
      t = { finIn: false, finOut: false, closedAt: undefined }
      this.tcp.set(key, t)
    }
    if ((flags & FIN) !== 0) {
      if (way === 'in') t.finIn = true
      else t.finOut = true
    }
    if (t.closedAt === undefined && ((flags & RST) !== 0 || (t.finIn && t.finOut)))
      t.closedAt = seenAt
  }

  /**
   * Adds (or replaces) a connection, as read from the coupling store on takeover.
   *
   * @param connection - the record
   */
  add(connection: ConnectionRecord): void {
    const key = flowKey(connection.flow)
    const previous = this.entries.get(key)
    if (previous !== undefined)
      this.load.set(previous.target, (this.load.get(previous.target) ?? 1) - 1)
    this.entries.set(key, connection)
    this.load.set(connection.target, (this.load.get(connection.target) ?? 0) + 1)
  }

  /**
   * Removes the connections without a packet since `before` (monotonic ms), and the TCP
   * connections closed for longer than the linger time at `now`. Connections added from the
   * store count as seen when they were added.
   *
   * @param before - monotonic ms
   * @param now - monotonic ms now, for closed TCP connections (without it they wait for idle)
   * @returns the removed connections
   */
  expireIdle(before: number, now?: number): ConnectionRecord[] {
    const removed: ConnectionRecord[] = []
    for (const [key, connection] of this.entries) {
      const closedAt = this.tcp.get(key)?.closedAt
      const closedLong =
        now !== undefined && closedAt !== undefined && closedAt + this.closedLingerMs <= now
      if (closedLong || (this.lastSeen.get(key) ?? before) < before) {
        this.remove(connection.flow)
        removed.push(connection)
      }
    }
    return removed
  }

  /**
   * Marks a flow seen now without routing it (for connections added from the store).
   *
   * @param flow - the 5-tuple
   * @param seenAt - monotonic ms
   */
  touch(flow: FiveTuple, seenAt: number): void {
    this.lastSeen.set(flowKey(flow), seenAt)
  }

  /**
   * Removes a flow's connection.
   *
   * @param flow - the 5-tuple
   * @returns the removed connection
   */
  remove(flow: FiveTuple): ConnectionRecord | undefined {
    const key = flowKey(flow)
    const existing = this.entries.get(key)
    if (existing === undefined) return undefined
    this.entries.delete(key)
    this.lastSeen.delete(key)
    this.tcp.delete(key)
    this.load.set(existing.target, (this.load.get(existing.target) ?? 1) - 1)
    return existing
  }

  /** Whether a node is one of this table's targets (a flow may also be local to the owner). */
  private isTarget(node: NodeId): boolean {
    return this.targets.some((t) => t.node === node)
  }

  /** Every connection. */
  all(): ConnectionRecord[] {
    return [...this.entries.values()]
  }

  /** Connections per target. */
  loads(): Record<NodeId, number> {
    return Object.fromEntries(this.load)
  }

  private select(source: string): NodeId | undefined {
    const candidates = this.targets.filter((t) => this.healthy.has(t.node))
    if (candidates.length === 0) return undefined
    switch (this.policy) {
      case 'source-hash': {
        let best = candidates[0]!
        let bestScore = -1
        for (const c of candidates) {
          const score = fnv1a(`${source}|${c.node}`)
          if (score > bestScore) [best, bestScore] = [c, score]
        }
        return best.node
      }
      case 'round-robin': {
        const pick = candidates[this.cursor % candidates.length]!
        this.cursor++
        return pick.node
      }
      case 'least-connections': {
        let best = candidates[0]!
        for (const c of candidates)
          if ((this.load.get(c.node) ?? 0) < (this.load.get(best.node) ?? 0)) best = c
        return best.node
      }
      case 'weighted': {
        // Smooth weighted round robin: each pick adds every weight to its credit and takes the
        // largest credit, which then pays the total back. Deterministic and evenly spread.
        const total = candidates.reduce((n, c) => n + (c.weight ?? 1), 0)
        let best: TargetConfig | undefined
        for (const c of candidates) {
          const credit = (this.weightedCredit.get(c.node) ?? 0) + (c.weight ?? 1)
          this.weightedCredit.set(c.node, credit)
          if (best === undefined || credit > this.weightedCredit.get(best.node)!) best = c
        }
        this.weightedCredit.set(best!.node, this.weightedCredit.get(best!.node)! - total)
        return best!.node
      }
    }
  }
}

/** The 32-bit FNV-1a hash of a string's UTF-16 code units. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193)
  return h >>> 0
}

const { FIN, SYN, RST, ACK } = TcpFlags

/** The flags seen on one TCP connection. */
interface TcpTrack {
  finIn: boolean
  finOut: boolean
  closedAt: number | undefined
}

/** The flow key of a packet sent by a target, as the connection's key (seen inbound). */
function reverseKey(packet: Uint8Array, info: IpPacketInfo): string {
  const o = info.payloadOffset
  return flowKey({
    protocol: info.protocol,
    sourceAddress: formatIp(packet, info.destinationOffset, info.addressLength),
    sourcePort: (packet[o + 2]! << 8) | packet[o + 3]!,
    destinationAddress: formatIp(packet, info.sourceOffset, info.addressLength),
    destinationPort: (packet[o]! << 8) | packet[o + 1]!
  })
}
