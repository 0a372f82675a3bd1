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
import {
  ANNOUNCEMENT_LENGTH,
  CAPABILITY_COMPACT_PACKETS,
  decodePayload,
  goesCompact,
  isCompactPayload,
  LINK_MAGIC,
  messageLength,
  writeAnnouncement,
  writeFullMessage,
  writeMessage,
  type LinkAnnouncement
} from './codec.js'
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
  /** Announcements of this link's capabilities sent (not counted in `sent`). */
  announcementsSent: number
  /** Authenticated announcements received from peers (not counted in `received`). */
  announcementsReceived: number
  /** Packet messages sent in the compact form (counted in `sent` too). */
  compactSent: number
}

/** What this link reads, announced to its peers. */
const CAPABILITIES = CAPABILITY_COMPACT_PACKETS
/** The first pause between unanswered announcements to a peer, doubled up to the second. */
const ANNOUNCE_FIRST_MS = 1000
const ANNOUNCE_MAX_MS = 64000

/**
 * What this link knows of a peer's link, learnt only from frames of the peer that authenticated,
 * and only for the peer's incarnation that sent them: a restarted peer may run an older version.
 */
interface PeerLink {
  endpoint: Endpoint
  /** The incarnation this is about (-1 before any frame of the peer). */
  incarnation: number
  /** Whether that incarnation announced itself or sent a compact frame. */
  known: boolean
  /** Whether it reads compact packet frames. */
  compact: boolean
  /** When an announcement was last sent to it (clock ms), and the pause before the next. */
  announcedAt: number
  announceEvery: number
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
  private readonly peers = new Map<NodeId, PeerLink>()
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
    unsentPosts: 0,
    announcementsSent: 0,
    announcementsReceived: 0,
    compactSent: 0
  }
  /** Whether the payload {@link UdpClusterLink.decode} saw last was a compact packet frame. */
  private compactSeen = false
  private readonly decode = (payload: Uint8Array): ReturnType<typeof decodePayload> => {
    this.compactSeen = isCompactPayload(payload)
    return decodePayload(payload)
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
   * Adds or updates a peer. At a new endpoint, what the link knew of the peer's capabilities is
   * forgotten; a running link announces itself to the peer.
   *
   * @param node - its id
   * @param endpoint - its link endpoint
   */
  addPeer(node: NodeId, endpoint: Endpoint): void {
    const known = this.peers.get(node)
    if (known?.endpoint.address === endpoint.address && known.endpoint.port === endpoint.port) {
      return
    }
    const peer: PeerLink = {
      endpoint: { ...endpoint },
      incarnation: -1,
      known: false,
      compact: false,
      announcedAt: -Infinity,
      announceEvery: ANNOUNCE_FIRST_MS
    }
    this.peers.set(node, peer)
    if (this.socket !== undefined) this.announce(this.socket, peer)
  }

  /**
   * Whether frames to a peer go in the compact form: only once an authenticated frame of the
   * peer's current incarnation said that it reads it (an announcement or a compact frame).
   *
   * @param node - the peer's id
   */
  sendsCompactTo(node: NodeId): boolean {
    return this.peers.get(node)?.compact === true
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
    const socket = this.socket
    this.subscription = socket.datagrams$.subscribe(({ data, from }) => {
      const result = this.receive(socket, data, from)
      if (result === undefined) return
      if (typeof result === 'string') return void this.counts.dropped[result]++
      this.counts.received++
      this.messages.next(result)
    })
    // the peers learn what this incarnation reads; those that run it answer with theirs
    for (const peer of this.peers.values()) this.announce(socket, peer)
  }

  /** A message from a peer, why the frame was dropped, or nothing (an announcement, taken). */
  private receive(
    socket: UdpEndpoint,
    data: Uint8Array,
    from: Endpoint
  ): ClusterEnvelope | ClusterFrameDropReason | undefined {
    if (data.length > this.maxFrameBytes) return 'oversized'
    const header = parseFrameHeader(data, LINK_MAGIC)
    if (header === 'malformed') return header
    const peer = this.peers.get(header.sender)
    if (
      peer === undefined ||
      peer.endpoint.address !== from.address ||
      peer.endpoint.port !== from.port
    ) {
      return 'unknown-sender'
    }
    // the payload decodes before the frame is accepted, so that an authenticated frame that
    // does not decode does not use up its counter either
    this.compactSeen = false
    const message = this.guard.open(data, header, this.decode)
    if (typeof message === 'string') return message
    // from here on the frame authenticated: only now may it tell what the peer reads
    if (header.incarnation !== peer.incarnation) {
      // a restarted peer: it may run another version, and it knows nothing of this node
      peer.incarnation = header.incarnation
      peer.known = false
      peer.compact = false
      peer.announcedAt = -Infinity
      peer.announceEvery = ANNOUNCE_FIRST_MS
    }
    if (message.type === 'link:announcement') {
      this.learn(peer, message)
      this.counts.announcementsReceived++
      if (!message.knowsYou) this.announce(socket, peer)
      return undefined
    }
    if (this.compactSeen) {
      peer.known = true
      peer.compact = true
    }
    return { from: header.sender, message }
  }

  private learn(peer: PeerLink, announcement: LinkAnnouncement): void {
    peer.known = true
    peer.compact = (announcement.capabilities & CAPABILITY_COMPACT_PACKETS) !== 0
  }

  /** Tells a peer what this link reads (and whether it knows what the peer reads). */
  private announce(socket: UdpEndpoint, peer: PeerLink): void {
    const frame = this.guard.sealWith(
      ANNOUNCEMENT_LENGTH,
      writeAnnouncement,
      { capabilities: CAPABILITIES, knowsYou: peer.known },
      this.encrypt
    )
    peer.announcedAt = this.clock.now()
    socket.send(frame, peer.endpoint)
    this.counts.announcementsSent++
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
    const peer = this.peers.get(to)
    if (peer === undefined) throw new NotFoundError(`${to} is not a peer of ${this.localNode}`)
    this.transmit(this.socket, peer, message)
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
    const peer = this.peers.get(to)
    if (this.socket === undefined || peer === undefined) {
      this.counts.unsentPosts++
      return false
    }
    return this.transmit(this.socket, peer, message)
  }

  private transmit(socket: UdpEndpoint, peer: PeerLink, message: ClusterMessage): boolean {
    if (!peer.known) {
      // an older peer never answers: ask again, less and less often, while sending to it
      const now = this.clock.now()
      if (now - peer.announcedAt >= peer.announceEvery) {
        if (peer.announcedAt !== -Infinity) {
          peer.announceEvery = Math.min(peer.announceEvery * 2, ANNOUNCE_MAX_MS)
        }
        this.announce(socket, peer)
      }
    }
    // the full form unless the peer said it reads the compact one: a node older than it drops
    // compact frames, so during a rolling upgrade an upgraded node still reaches the others
    const compact = peer.compact
    const frame = compact
      ? this.guard.sealWith(messageLength(message), writeMessage, message, this.encrypt)
      : this.guard.sealWith(messageLength(message, false), writeFullMessage, message, this.encrypt)
    if (frame.length > this.maxFrameBytes) {
      this.counts.oversizedSends++
      return false
    }
    socket.send(frame, peer.endpoint)
    this.counts.sent++
    if (compact && goesCompact(message)) this.counts.compactSent++
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
