import { Subject, type Observable, type Subscription } from 'rxjs'
import {
  InvalidParametersError,
  NotFoundError,
  NotStartedError,
  throwIfAborted,
  type AbortOptions,
  type ClusterEnvelope,
  type ClusterLink,
  type ClusterMessage,
  type Endpoint,
  type NetworkAdapter,
  type NodeId,
  type UdpEndpoint
} from '@vipsec/interface'
import { decodeFrame, encodeFrame } from './codec.js'

/** What a {@link UdpClusterLink} needs. */
export interface UdpClusterLinkComponents {
  /** Opens the link's UDP socket (a Linux or a virtual network adapter). */
  network: NetworkAdapter
}

/** Options of a {@link UdpClusterLink}. */
export interface UdpClusterLinkInit {
  /** This node's id. */
  node: NodeId
  /** The address and port to listen on (on the cluster's internal network). */
  local: Endpoint
  /** The other nodes and their link endpoints. More can be added with {@link UdpClusterLink.addPeer}. */
  peers?: Record<NodeId, Endpoint>
  /**
   * A key shared by the cluster (16 bytes or more): every frame then carries an HMAC-SHA-256-128
   * tag, and frames that fail it are dropped and counted. Default: none (trust the network).
   */
  key?: Uint8Array
}

/** Counters of a {@link UdpClusterLink}. */
export interface ClusterLinkCounters {
  /** Frames sent. */
  sent: number
  /** Frames received and accepted. */
  received: number
  /** Frames dropped because they could not be decoded. */
  malformed: number
  /** Frames dropped because their tag did not verify. */
  unauthenticated: number
  /** Frames dropped because the sender is not a known peer. */
  unknownSender: number
}

/**
 * The cluster link (the "XCF" between distribution processors and targets) over UDP: one socket
 * per node, a compact binary frame per message, optionally authenticated with a cluster key.
 * Delivery is best effort, as for the IP packets it carries. Malformed, unauthenticated or
 * unknown-sender frames are dropped and counted, never thrown.
 */
export class UdpClusterLink implements ClusterLink {
  /** This node's id. */
  readonly localNode: NodeId
  private readonly network: NetworkAdapter
  private readonly local: Endpoint
  private readonly peers = new Map<NodeId, Endpoint>()
  private readonly key: Uint8Array | undefined
  private socket: UdpEndpoint | undefined
  private subscription: Subscription | undefined
  private messages = new Subject<ClusterEnvelope>()
  private readonly counts: ClusterLinkCounters = {
    sent: 0,
    received: 0,
    malformed: 0,
    unauthenticated: 0,
    unknownSender: 0
  }

  /**
   * @param components - the network adapter
   * @param init - node id, endpoint, peers and key
   * @throws InvalidParametersError when the key is shorter than 16 bytes
   */
  constructor(components: UdpClusterLinkComponents, init: UdpClusterLinkInit) {
    if (init.key !== undefined && init.key.length < 16) {
      throw new InvalidParametersError('init.key', 'must be at least 16 bytes')
    }
    this.network = components.network
    this.localNode = init.node
    this.local = { ...init.local }
    this.key = init.key
    for (const [node, endpoint] of Object.entries(init.peers ?? {})) this.addPeer(node, endpoint)
  }

  /** Messages from known peers; completes on `stop()`. */
  get messages$(): Observable<ClusterEnvelope> {
    return this.messages.asObservable()
  }

  /**
   * Adds or updates a peer.
   *
   * @param node - its id
   * @param endpoint - its link endpoint
   */
  addPeer(node: NodeId, endpoint: Endpoint): void {
    this.peers.set(node, { ...endpoint })
  }

  /** The link's counters (a copy). */
  counters(): ClusterLinkCounters {
    return { ...this.counts }
  }

  /** Opens the socket. Idempotent. */
  async start(): Promise<void> {
    if (this.socket !== undefined) return
    if (this.messages.isStopped) this.messages = new Subject()
    this.socket = await this.network.openUdp(this.local)
    this.subscription = this.socket.datagrams$.subscribe(({ data, from }) => {
      const decoded = decodeFrame(data, this.key)
      if (decoded === 'malformed') return void this.counts.malformed++
      if (decoded === 'unauthenticated') return void this.counts.unauthenticated++
      const known = this.peers.get(decoded.from)
      if (known === undefined || known.address !== from.address || known.port !== from.port) {
        return void this.counts.unknownSender++
      }
      this.counts.received++
      this.messages.next(decoded)
    })
  }

  /** Closes the socket and completes `messages$`. Idempotent. */
  async stop(): Promise<void> {
    if (this.socket === undefined) return
    this.subscription?.unsubscribe()
    await this.socket.close()
    this.socket = undefined
    this.messages.complete()
  }

  /** Whether the link is open. */
  isStarted(): boolean {
    return this.socket !== undefined
  }

  /**
   * Sends a message to a peer.
   *
   * @param to - the peer's node id
   * @param message - the message
   * @param options - an abort signal
   * @throws NotFoundError when `to` is not a known peer
   */
  async send(to: NodeId, message: ClusterMessage, options?: AbortOptions): Promise<void> {
    throwIfAborted(options?.signal)
    if (this.socket === undefined) throw new NotStartedError('cluster link is not started')
    const endpoint = this.peers.get(to)
    if (endpoint === undefined) throw new NotFoundError(`${to} is not a peer of ${this.localNode}`)
    this.socket.send(encodeFrame(this.localNode, message, this.key), endpoint)
    this.counts.sent++
  }
}

/**
 * Creates a {@link UdpClusterLink}.
 *
 * @param components - the network adapter
 * @param init - node id, endpoint, peers and key
 */
export function udpClusterLink(
  components: UdpClusterLinkComponents,
  init: UdpClusterLinkInit
): UdpClusterLink {
  return new UdpClusterLink(components, init)
}
