import { Subject, type Observable } from 'rxjs'
import {
  InvalidParametersError,
  NotStartedError,
  throwIfAborted,
  type AbortOptions,
  type Datagram,
  type Endpoint,
  type NetworkAdapter,
  type NetworkEvent,
  type NodeId,
  type UdpEndpoint
} from '@vipsec/interface'
import type { VirtualNetwork } from './virtual-network.js'

/** The wildcard addresses: an endpoint bound to one receives for every address its node holds. */
const WILDCARDS = new Set(['0.0.0.0', '::'])

/** A UDP socket on the virtual network. */
class VirtualUdpEndpoint implements UdpEndpoint {
  readonly local: Endpoint
  private readonly subject = new Subject<Datagram>()
  private closed = false

  constructor(
    private readonly adapter: VirtualNetworkAdapter,
    local: Endpoint
  ) {
    this.local = { ...local }
  }

  get datagrams$(): Observable<Datagram> {
    return this.subject.asObservable()
  }

  send(data: Uint8Array, to: Endpoint): void {
    if (this.closed) return
    this.adapter.send(this, data, to)
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.adapter.unbind(this)
    this.subject.complete()
  }

  /** Hands a datagram to the subscribers. */
  push(datagram: Datagram): void {
    if (!this.closed) this.subject.next(datagram)
  }
}

/** What a node has sent on the virtual network. */
export interface SentCounters {
  /** Datagrams sent. */
  datagrams: number
  /** Bytes sent (payloads). */
  bytes: number
}

/**
 * One node's attachment to a {@link VirtualNetwork}: it holds addresses (acquiring one routes it
 * here, taking it from whichever node had it, like a gratuitous ARP) and opens UDP endpoints.
 * `stop()` is a crash: the node's endpoints close and nothing reaches it any more, but the
 * routes of its addresses stay until another node acquires them.
 */
export class VirtualNetworkAdapter implements NetworkAdapter {
  /** The node this adapter belongs to. */
  readonly node: NodeId
  private readonly network: VirtualNetwork
  private readonly held = new Set<string>()
  private readonly endpoints = new Map<string, VirtualUdpEndpoint>()
  private events = new Subject<NetworkEvent>()
  private started = false
  private nextPort = 49152
  private readonly sentCounter = { datagrams: 0, bytes: 0 }

  /**
   * Use {@link VirtualNetwork.attach} rather than this constructor.
   *
   * @param network - the network
   * @param node - the node's id
   */
  constructor(network: VirtualNetwork, node: NodeId) {
    this.network = network
    this.node = node
  }

  /** Address events; completes on `stop()`. */
  get events$(): Observable<NetworkEvent> {
    return this.events.asObservable()
  }

  /** Brings the node up. Idempotent. */
  async start(): Promise<void> {
    if (this.started) return
    if (this.events.isStopped) this.events = new Subject()
    this.started = true
  }

  /** Takes the node down (a crash): closes its endpoints. Idempotent. */
  async stop(): Promise<void> {
    if (!this.started) return
    this.started = false
    for (const endpoint of [...this.endpoints.values()]) await endpoint.close()
    this.events.complete()
  }

  /** Whether the node is up. */
  isStarted(): boolean {
    return this.started
  }

  /** The addresses this node holds (it may have lost the route of one to another node since). */
  addresses(): string[] {
    return [...this.held]
  }

  /** Datagrams and bytes this node has sent. */
  sent(): SentCounters {
    return { ...this.sentCounter }
  }

  /**
   * Routes `address` to this node.
   *
   * @param address - an IPv4 or IPv6 address
   * @param options - an abort signal
   */
  async acquireAddress(address: string, options?: AbortOptions): Promise<void> {
    this.enter(options)
    if (WILDCARDS.has(address))
      throw new InvalidParametersError('address', 'cannot acquire a wildcard address')
    this.held.add(address)
    this.network.setRoute(address, this.node)
    this.events.next({ type: 'address:acquired', address })
  }

  /**
   * Stops holding `address` (its route is removed if it still points here).
   *
   * @param address - the address
   * @param options - an abort signal
   */
  async releaseAddress(address: string, options?: AbortOptions): Promise<void> {
    this.enter(options)
    if (!this.held.delete(address)) return
    this.network.clearRoute(address, this.node)
    this.events.next({ type: 'address:released', address })
  }

  /**
   * Opens a UDP endpoint. Port 0 picks a free port. The address must be one this node holds,
   * or a wildcard.
   *
   * @param local - address and port to bind
   * @param options - an abort signal
   * @throws InvalidParametersError when the address is not held or the port is in use
   */
  async openUdp(local: Endpoint, options?: AbortOptions): Promise<UdpEndpoint> {
    this.enter(options)
    if (!WILDCARDS.has(local.address) && !this.held.has(local.address)) {
      throw new InvalidParametersError(
        'local.address',
        `${local.address} is not held by ${this.node}`
      )
    }
    if (!Number.isInteger(local.port) || local.port < 0 || local.port > 65535) {
      throw new InvalidParametersError('local.port', 'must be an integer from 0 to 65535')
    }
    let port = local.port
    if (port === 0) {
      do port = this.nextPort++
      while (this.endpoints.has(bindKey(local.address, port)))
    }
    const key = bindKey(local.address, port)
    if (this.endpoints.has(key))
      throw new InvalidParametersError('local.port', `${local.address}:${port} is in use`)
    const endpoint = new VirtualUdpEndpoint(this, { address: local.address, port })
    this.endpoints.set(key, endpoint)
    return endpoint
  }

  /** @internal Sends from one of this node's endpoints. */
  send(endpoint: VirtualUdpEndpoint, data: Uint8Array, to: Endpoint): void {
    if (!this.started) return
    let address = endpoint.local.address
    if (WILDCARDS.has(address)) address = this.held.values().next().value ?? address
    this.sentCounter.datagrams++
    this.sentCounter.bytes += data.length
    this.network.transmit(this.node, { address, port: endpoint.local.port }, to, data)
  }

  /** @internal Forgets a closed endpoint. */
  unbind(endpoint: VirtualUdpEndpoint): void {
    this.endpoints.delete(bindKey(endpoint.local.address, endpoint.local.port))
  }

  /** @internal Delivers to the endpoint bound to `to` (or the wildcard); false if none. */
  receive(to: Endpoint, datagram: Datagram): boolean {
    const endpoint =
      this.endpoints.get(bindKey(to.address, to.port)) ??
      this.endpoints.get(bindKey(to.address.includes(':') ? '::' : '0.0.0.0', to.port))
    if (endpoint === undefined) return false
    endpoint.push(datagram)
    return true
  }

  private enter(options?: AbortOptions): void {
    throwIfAborted(options?.signal)
    if (!this.started) throw new NotStartedError(`network adapter of ${this.node} is not started`)
  }
}

function bindKey(address: string, port: number): string {
  return `${address}|${port}`
}
