import { Subject, type Observable } from 'rxjs'
import {
  InvalidParametersError,
  type Clock,
  type Endpoint,
  type NodeId,
  type RandomSource
} from '@vipsec/interface'
import { VirtualNetworkAdapter } from './virtual-network-adapter.js'

/** What a {@link VirtualNetwork} needs. */
export interface VirtualNetworkComponents {
  /** Schedules deliveries; a `VirtualClock` makes the whole network deterministic. */
  clock: Clock
  /** Decides losses and duplicates. Default: `Math.random` (give a seeded source in tests). */
  random?: RandomSource
}

/** Options of a {@link VirtualNetwork}; each can be changed later with {@link VirtualNetwork.configure}. */
export interface VirtualNetworkInit {
  /** One-way delay of every datagram in ms. Default 0.1. */
  latencyMs?: number
  /** Fraction of datagrams lost, 0 to 1. Default 0. */
  lossRate?: number
  /** Fraction of datagrams delivered twice, 0 to 1. Default 0. */
  duplicateRate?: number
}

/** Why the network did not deliver a datagram. */
export type VirtualDropReason = 'loss' | 'partition' | 'no-route' | 'unbound' | 'node-down'

/** Delivery counters of the whole network. */
export interface VirtualNetworkStats {
  /** Datagrams handed to a receiving endpoint. */
  delivered: number
  /** Datagrams dropped, by reason. */
  dropped: Record<VirtualDropReason, number>
}

/** One datagram as it left or failed to reach its destination, for tracing. */
export interface TrafficEvent {
  /** `delivered` or the drop reason. */
  outcome: 'delivered' | VirtualDropReason
  /** The sending node. */
  fromNode: NodeId
  /** The receiving node, if the destination address had a route. */
  toNode: NodeId | undefined
  /** Source endpoint. */
  from: Endpoint
  /** Destination endpoint. */
  to: Endpoint
  /** Payload size in bytes. */
  bytes: number
}

/**
 * A simulated IP network in one process. Nodes attach and get a {@link VirtualNetworkAdapter};
 * an address is routed to the node that acquired it last (as a gratuitous ARP would re-point
 * it), so moving a DVIPA between nodes is one call. Datagrams are copied, delayed by the
 * latency on the injected clock, and may be lost, duplicated or blocked by a partition.
 */
export class VirtualNetwork {
  private readonly clock: Clock
  private readonly random: RandomSource | undefined
  private latencyMs: number
  private lossRate: number
  private duplicateRate: number
  private readonly routes = new Map<string, NodeId>()
  private readonly nodes = new Map<NodeId, VirtualNetworkAdapter>()
  private readonly cuts = new Set<string>()
  private readonly trafficSubject = new Subject<TrafficEvent>()
  private readonly counters: VirtualNetworkStats = {
    delivered: 0,
    dropped: { loss: 0, partition: 0, 'no-route': 0, unbound: 0, 'node-down': 0 }
  }

  /**
   * @param components - the clock and randomness
   * @param init - latency, loss and duplication
   */
  constructor(components: VirtualNetworkComponents, init: VirtualNetworkInit = {}) {
    this.clock = components.clock
    this.random = components.random
    this.latencyMs = 0.1
    this.lossRate = 0
    this.duplicateRate = 0
    this.configure(init)
  }

  /** Every datagram's outcome, for tracing and live views. */
  get traffic$(): Observable<TrafficEvent> {
    return this.trafficSubject.asObservable()
  }

  /**
   * Changes latency, loss or duplication from now on.
   *
   * @param init - the values to change
   * @throws InvalidParametersError when a value is out of range
   */
  configure(init: VirtualNetworkInit): void {
    const rate = (value: number | undefined, name: string, current: number): number => {
      if (value === undefined) return current
      if (!(value >= 0 && value <= 1)) throw new InvalidParametersError(name, 'must be from 0 to 1')
      return value
    }
    if (init.latencyMs !== undefined && !(init.latencyMs >= 0 && Number.isFinite(init.latencyMs))) {
      throw new InvalidParametersError('latencyMs', 'must be a finite number >= 0')
    }
    this.latencyMs = init.latencyMs ?? this.latencyMs
    this.lossRate = rate(init.lossRate, 'lossRate', this.lossRate)
    this.duplicateRate = rate(init.duplicateRate, 'duplicateRate', this.duplicateRate)
  }

  /**
   * Attaches a node and returns its network adapter; attaching a node again returns the same one.
   *
   * @param node - the node's id
   */
  attach(node: NodeId): VirtualNetworkAdapter {
    let adapter = this.nodes.get(node)
    if (adapter === undefined) {
      adapter = new VirtualNetworkAdapter(this, node)
      this.nodes.set(node, adapter)
    }
    return adapter
  }

  /**
   * The node an address is routed to now, if any.
   *
   * @param address - an IP address
   */
  routeOf(address: string): NodeId | undefined {
    return this.routes.get(address)
  }

  /**
   * Cuts every path between the two groups of nodes (both directions) until {@link heal}.
   *
   * @param a - one side
   * @param b - the other side
   */
  partition(a: NodeId[], b: NodeId[]): void {
    for (const x of a) for (const y of b) this.cuts.add(cutKey(x, y))
  }

  /** Removes every partition. */
  heal(): void {
    this.cuts.clear()
  }

  /** Delivery counters (a copy). */
  stats(): VirtualNetworkStats {
    return { delivered: this.counters.delivered, dropped: { ...this.counters.dropped } }
  }

  /** @internal Routes `address` to `node`. */
  setRoute(address: string, node: NodeId): void {
    this.routes.set(address, node)
  }

  /** @internal Removes the route of `address` if it points at `node`. */
  clearRoute(address: string, node: NodeId): void {
    if (this.routes.get(address) === node) this.routes.delete(address)
  }

  /** @internal Carries one datagram from an endpoint of `fromNode`. */
  transmit(fromNode: NodeId, from: Endpoint, to: Endpoint, data: Uint8Array): void {
    const copy = new Uint8Array(data)
    const toNode = this.routes.get(to.address)
    const drop = (reason: VirtualDropReason): void =>
      this.record(reason, fromNode, toNode, from, to, copy.length)
    if (toNode === undefined) return drop('no-route')
    if (this.cuts.has(cutKey(fromNode, toNode))) return drop('partition')
    if (this.lossRate > 0 && this.chance() < this.lossRate) return drop('loss')
    const copies = this.duplicateRate > 0 && this.chance() < this.duplicateRate ? 2 : 1
    for (let i = 0; i < copies; i++) {
      this.clock.setTimeout(() => this.deliver(fromNode, from, to, copy), this.latencyMs)
    }
  }

  private deliver(fromNode: NodeId, from: Endpoint, to: Endpoint, data: Uint8Array): void {
    // The route is looked up again on arrival: an address moved in flight goes to its new node.
    const toNode = this.routes.get(to.address)
    if (toNode === undefined)
      return this.record('no-route', fromNode, toNode, from, to, data.length)
    if (this.cuts.has(cutKey(fromNode, toNode)))
      return this.record('partition', fromNode, toNode, from, to, data.length)
    const adapter = this.nodes.get(toNode)
    if (adapter === undefined || !adapter.isStarted()) {
      return this.record('node-down', fromNode, toNode, from, to, data.length)
    }
    if (!adapter.receive(to, { data, from }))
      return this.record('unbound', fromNode, toNode, from, to, data.length)
    this.record('delivered', fromNode, toNode, from, to, data.length)
  }

  private record(
    outcome: TrafficEvent['outcome'],
    fromNode: NodeId,
    toNode: NodeId | undefined,
    from: Endpoint,
    to: Endpoint,
    bytes: number
  ): void {
    if (outcome === 'delivered') this.counters.delivered++
    else this.counters.dropped[outcome]++
    if (this.trafficSubject.observed)
      this.trafficSubject.next({ outcome, fromNode, toNode, from, to, bytes })
  }

  private chance(): number {
    return this.random === undefined ? Math.random() : this.random.randomInt(2 ** 32) / 2 ** 32
  }
}

function cutKey(a: NodeId, b: NodeId): string {
  return a < b ? `${a}\u0000${b}` : `${b}\u0000${a}`
}

/**
 * Creates a {@link VirtualNetwork}.
 *
 * @param components - the clock and randomness
 * @param init - latency, loss and duplication
 */
export function virtualNetwork(
  components: VirtualNetworkComponents,
  init?: VirtualNetworkInit
): VirtualNetwork {
  return new VirtualNetwork(components, init)
}
