import { randomInt } from 'node:crypto'
import { Subject, type Observable, type Subscription } from 'rxjs'
import {
  InvalidParametersError,
  NotFoundError,
  NotStartedError,
  throwIfAborted,
  type AbortOptions,
  type Clock,
  type ClusterEnvelope,
  type ClusterLink,
  type ClusterMessage,
  type Endpoint,
  type NetworkAdapter,
  type NodeId,
  type RandomSource,
  type UdpEndpoint
} from '@vipsec/interface'
import type { ClusterKey } from './cluster-key.js'
import { decodeMessage, LINK_MAGIC, messageLength, writeMessage } from './codec.js'
import {
  emptyDropCounts,
  FrameGuard,
  nextIncarnation,
  parseFrameHeader,
  type ClusterFrameDropReason
} from './secure-frame.js'

/** What a {@link UdpClusterLink} needs. */
export interface UdpClusterLinkComponents {
  /** Opens the link's UDP socket (a Linux or a virtual network adapter). */
  network: NetworkAdapter
  /** Wall-clock time for the link's incarnation. Default: the system clock. */
  clock?: Pick<Clock, 'now'>
  /** Randomness for the incarnation. Default: node:crypto. */
  random?: Pick<RandomSource, 'randomInt'>
}

/** Options of a {@link UdpClusterLink}. */
export interface UdpClusterLinkInit {
  /** This node's id (1 to 255 bytes of UTF-8). */
  node: NodeId
  /** The address and port to listen on (on the cluster's internal network). */
  local: Endpoint
  /** The other nodes and their link endpoints. More can be added with {@link UdpClusterLink.addPeer}. */
  peers?: Record<NodeId, Endpoint>
  /**
   * The cluster keys (one, or two while rotating): frames are sent under the first and accepted
   * under any. Every frame carries the key id, this node's incarnation and a counter, and an
   * AES-256-GCM tag; forged, replayed and unknown-key frames are dropped and counted. Required
   * unless `insecure` is true.
   */
  keys?: ClusterKey[]
  /**
   * Run without keys: frames carry no tag, and anyone who can send to the link port can inject
   * packets and ownership notices. For a network only the cluster reaches. Default false; it
   * cannot be combined with `keys`.
   */
  insecure?: boolean
  /**
   * Encrypt the payload of every frame sent (the cleartext of the IPsec traffic between DPs and
   * targets), not only authenticate it. Frames received are accepted either way. Default false.
   */
  encrypt?: boolean
  /** How far below a peer's highest counter a late frame is still accepted (once). Default 1024. */
  replayWindow?: number
  /** Longer frames are dropped (received) or not sent (sending). Default 16384 bytes. */
  maxFrameBytes?: number
}

/** Counters of a {@link UdpClusterLink}. */
export interface ClusterLinkCounters {
  /** Frames sent. */
  sent: number
  /** Frames received and accepted. */
  received: number
  /** Frames received and dropped, by reason. */
  dropped: Record<ClusterFrameDropReason, number>
  /** Messages not sent because their frame would exceed `maxFrameBytes`. */
  oversizedSends: number
  /** Messages given to `post` while the link was stopped or for a node that is not a peer. */
  unsentPosts: number
}

/**
 * The cluster link (the "XCF" between distribution processors and targets) over UDP: one socket
 * per node, a compact binary frame per message, authenticated with a cluster key (and, with
 * `encrypt`, encrypted) and checked against a replay window per peer. Delivery is best effort,
 * as for the IP packets it carries. Frames that fail any check are dropped and counted by
 * reason, never thrown, and never change any state.
 */
export class UdpClusterLink implements ClusterLink {
  /** This node's id. */
  readonly localNode: NodeId
  private readonly network: NetworkAdapter
  private readonly clock: Pick<Clock, 'now'>
  private readonly random: Pick<RandomSource, 'randomInt'>
  private readonly local: Endpoint
  private readonly peers = new Map<NodeId, Endpoint>()
  private readonly guard: FrameGuard
  private readonly encrypt: boolean
  private readonly maxFrameBytes: number
  private incarnation = -1
  private socket: UdpEndpoint | undefined
  private subscription: Subscription | undefined
  private messages = new Subject<ClusterEnvelope>()
  private readonly counts: ClusterLinkCounters = {
    sent: 0,
    received: 0,
    dropped: emptyDropCounts(),
    oversizedSends: 0,
    unsentPosts: 0
  }

  /**
   * @param components - the network adapter, and optionally clock and randomness
   * @param init - node id, endpoint, peers, keys
   * @throws InvalidParametersError naming `init.keys` when there is no key and `insecure` is not
   * set, or a key, the window or the frame limit is invalid
   */
  constructor(components: UdpClusterLinkComponents, init: UdpClusterLinkInit) {
    const keys = init.keys ?? []
    if (keys.length === 0 && init.insecure !== true) {
      throw new InvalidParametersError(
        'init.keys',
        'a cluster key is required (make one with `vipsec keygen`), or set insecure: true'
      )
    }
    if (keys.length > 0 && init.insecure === true) {
      throw new InvalidParametersError('init.insecure', 'cannot be combined with keys')
    }
    const maxFrameBytes = init.maxFrameBytes ?? 16384
    if (!(Number.isInteger(maxFrameBytes) && maxFrameBytes >= 256 && maxFrameBytes <= 65507)) {
      throw new InvalidParametersError('init.maxFrameBytes', 'must be an integer from 256 to 65507')
    }
    this.guard = new FrameGuard({
      magic: LINK_MAGIC,
      purpose: 'cluster link',
      keys,
      windowSize: init.replayWindow ?? 1024
    })
    this.network = components.network
    this.clock = components.clock ?? { now: () => Date.now() }
    this.random = components.random ?? { randomInt: (max) => randomInt(max) }
    this.localNode = init.node
    this.local = { ...init.local }
    this.encrypt = init.encrypt === true
    this.maxFrameBytes = maxFrameBytes
    this.guard.startSending(init.node, 0)
    for (const [node, endpoint] of Object.entries(init.peers ?? {})) this.addPeer(node, endpoint)
  }

  /** Whether the link runs without keys (`insecure: true`). */
  get insecure(): boolean {
    return this.guard.insecure
  }

  /** The key ids this link accepts, the one it sends with first. */
  get keyIds(): number[] {
    return this.guard.keyIds
  }

  /**
   * Replaces the cluster keys while running (rotation): frames are sent under the first from now
   * on, and accepted under any of them.
   *
   * @param keys - one or two keys
   * @throws InvalidParametersError when they are invalid, or the link is insecure
   */
  setKeys(keys: ClusterKey[]): void {
    if (this.guard.insecure) throw new InvalidParametersError('keys', 'the link was made insecure')
    this.guard.setKeys(keys)
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
    return { ...this.counts, dropped: { ...this.counts.dropped } }
  }

  /** Opens the socket. Idempotent. */
  async start(): Promise<void> {
    if (this.socket !== undefined) return
    if (this.messages.isStopped) this.messages = new Subject()
    this.socket = await this.network.openUdp(this.local)
    // a new incarnation per start: peers then accept this node again after a restart, and
    // refuse what it sent before
    this.incarnation = nextIncarnation(
      this.clock.now(),
      this.incarnation,
      this.random.randomInt(1024)
    )
    this.guard.startSending(this.localNode, this.incarnation)
    this.subscription = this.socket.datagrams$.subscribe(({ data, from }) => {
      const result = this.receive(data, from)
      if (typeof result === 'string') return void this.counts.dropped[result]++
      this.counts.received++
      this.messages.next(result)
    })
  }

  private receive(data: Uint8Array, from: Endpoint): ClusterEnvelope | ClusterFrameDropReason {
    if (data.length > this.maxFrameBytes) return 'oversized'
    const header = parseFrameHeader(data, LINK_MAGIC)
    if (header === 'malformed') return header
    const known = this.peers.get(header.sender)
    if (known === undefined || known.address !== from.address || known.port !== from.port) {
      return 'unknown-sender'
    }
    // the payload decodes before the frame is accepted, so that an authenticated frame that
    // does not decode does not use up its counter either
    const message = this.guard.open(data, header, decodeMessage)
    if (typeof message === 'string') return message
    return { from: header.sender, message }
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
    this.transmit(this.socket, endpoint, message)
  }

  /**
   * Sends a message at once, for the per-packet path: no promise, no microtask.
   *
   * @param to - the peer's node id
   * @param message - the message
   * @returns false, counted in `unsentPosts`, when the link is stopped or `to` is not a peer;
   *   false, counted in `oversizedSends`, when the frame is too long
   */
  post(to: NodeId, message: ClusterMessage): boolean {
    const endpoint = this.peers.get(to)
    if (this.socket === undefined || endpoint === undefined) {
      this.counts.unsentPosts++
      return false
    }
    return this.transmit(this.socket, endpoint, message)
  }

  private transmit(socket: UdpEndpoint, endpoint: Endpoint, message: ClusterMessage): boolean {
    const frame = this.guard.sealWith(messageLength(message), writeMessage, message, this.encrypt)
    if (frame.length > this.maxFrameBytes) {
      this.counts.oversizedSends++
      return false
    }
    socket.send(frame, endpoint)
    this.counts.sent++
    return true
  }
}

/**
 * Creates a {@link UdpClusterLink}.
 *
 * @param components - the network adapter
 * @param init - node id, endpoint, peers and keys
 */
export function udpClusterLink(
  components: UdpClusterLinkComponents,
  init: UdpClusterLinkInit
): UdpClusterLink {
  return new UdpClusterLink(components, init)
}
