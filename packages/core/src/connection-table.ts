import {
  InvalidParametersError,
  type ConnectionRecord,
  type Dvipa,
  type FiveTuple,
  type NodeId
} from '@vipsec/interface'

/** How a new connection picks its target. */
export type SelectionPolicy = 'round-robin' | 'weighted' | 'least-connections'

/** A target host that connections can be distributed to. */
export interface TargetConfig {
  /** The target's node id. */
  node: NodeId
  /** Its share under the `weighted` policy (default 1). */
  weight?: number
}

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
  private cursor = 0
  private weightedCredit = new Map<NodeId, number>()

  /**
   * @param dvipa - the DVIPA
   * @param targets - the targets, all healthy to begin with
   * @param policy - how new flows pick a target
   * @throws InvalidParametersError when a weight is not positive
   */
  constructor(dvipa: Dvipa, targets: TargetConfig[], policy: SelectionPolicy = 'round-robin') {
    for (const [i, t] of targets.entries()) {
      if (t.weight !== undefined && !(t.weight > 0))
        throw new InvalidParametersError(`targets[${i}].weight`, 'must be > 0')
    }
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
   * @returns the connection and whether it was created, or undefined when no target is healthy
   */
  route(
    flow: FiveTuple,
    now: number,
    phase2Id: string | null,
    localNode: NodeId,
    seenAt = 0
  ): RouteResult | undefined {
    const key = flowKey(flow)
    this.lastSeen.set(key, seenAt)
    const existing = this.entries.get(key)
    if (
      existing !== undefined &&
      (this.healthy.has(existing.target) || !this.isTarget(existing.target))
    ) {
      return { connection: existing, created: false }
    }
    // A new flow, or one whose target failed: it gets a healthy target.
    const target = this.select()
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
    return { connection, created: true }
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
   * Removes the connections without a packet since `before` (monotonic ms). Connections added
   * from the store count as seen when they were added.
   *
   * @param before - monotonic ms
   * @returns the removed connections
   */
  expireIdle(before: number): ConnectionRecord[] {
    const removed: ConnectionRecord[] = []
    for (const [key, connection] of this.entries) {
      if ((this.lastSeen.get(key) ?? before) < before) {
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

  private select(): NodeId | undefined {
    const candidates = this.targets.filter((t) => this.healthy.has(t.node))
    if (candidates.length === 0) return undefined
    switch (this.policy) {
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
