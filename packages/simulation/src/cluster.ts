import { Subject, type Observable } from 'rxjs'
import { SystemClock, VirtualClock } from '@vipsec/clock'
import { createHash } from 'node:crypto'
import type { ClusterKey, UdpClusterLink } from '@vipsec/cluster-link-udp'
import {
  createNode,
  type NodeComponents,
  type NodeConfig,
  type VipsecNode
} from '@vipsec/container'
import {
  requestResponse,
  type DefaultDistributionProcessor,
  type DefaultTargetStack,
  type SelectionPolicy
} from '@vipsec/core'
import type { HeartbeatFailureDetector } from '@vipsec/detector-heartbeat'
import { buildIpPacket, buildUdp, parseIpPacket, SoftwareEspEngine } from '@vipsec/esp-software'
import { IkeV2Service, type IkeV2ServiceInit } from '@vipsec/ike-v2'
import {
  TOKENS,
  type ChildProposal,
  type Clock,
  type CouplingStore,
  type DistributionEvent,
  type Endpoint,
  type Identity,
  type IkeProposal,
  type NodeId,
  type Ownership,
  type Phase1Policy,
  type Phase2Policy,
  type TrafficSelector,
  type UdpEndpoint
} from '@vipsec/interface'
import { VirtualNetwork, type VirtualNetworkAdapter } from '@vipsec/network-virtual'
import { SeededRandomSource } from '@vipsec/random'
import { MemoryCouplingFacility, MemoryCouplingStore } from '@vipsec/store-memory'

/** Options of a {@link SimulatedCluster}; every field has a default. */
export interface SimulatedClusterOptions {
  /** Distribution processors: `dp-1` is the primary, the others back it up in order. Default 3. */
  dps?: number
  /** Target hosts. Default 3. */
  targets?: number
  /** Remote IPsec peers. Default 4. */
  peers?: number
  /** Whether the distribution processors are targets too (their flows become local on takeover). Default false. */
  dpsAreTargets?: boolean
  /** Seed of every random source: the same seed replays the same run. Default `vipsec`. */
  seed?: string
  /** One-way latency of the virtual network, ms. Default 0.2. */
  latencyMs?: number
  /** Heartbeat interval and multiplier of the failure detectors. Default 100 ms x 3. */
  heartbeat?: {
    /** Heartbeat interval, ms. */
    intervalMs: number
    /** Intervals of silence that declare a node failed. */
    multiplier: number
  }
  /** How often each peer sends a request through its tunnel, ms. Default 20. */
  trafficIntervalMs?: number
  /** Target selection policy. Default `round-robin`. */
  policy?: SelectionPolicy
  /** IKE retransmission timing of every node. Default 500 ms, x2, 4 tries. */
  retransmit?: {
    /** The first retransmission timeout, ms. */
    timeoutMs: number
    /** The factor each further timeout grows by. */
    backoff: number
    /** Retransmissions before giving up. */
    tries: number
  }
  /** Idle time after which the DPs drop a connection, ms. Default 300000. */
  connectionIdleMs?: number
  /** How long a takeover waits for its renegotiations, ms. Default 10000. */
  renegotiationDeadlineMs?: number
  /**
   * How the DPs detect each other's failure: `heartbeat` (UDP) or `lease` (leases in the
   * coupling store, renewed every `heartbeat.intervalMs`, lasting `multiplier` intervals). Default
   * `heartbeat`.
   */
  detector?: 'heartbeat' | 'lease'
  /** The DPs' self-fencing time, ms (see `DefaultDistributionProcessorInit.selfFenceMs`). Default 0. */
  selfFenceMs?: number
  /**
   * Run on the system clock instead of a virtual one: time passes for real (and computing takes
   * time), `advance` sleeps. For measuring end to end; runs are then not deterministic. Default false.
   */
  realTime?: boolean
  /**
   * Dead peer detection on the peers: an IKE SA idle this long is probed, and a peer whose IKE
   * SA died that way connects again after `reconnectMs`. Default none (peers never probe).
   */
  peerLiveness?: {
    /** Idle time before a probe, ms. */
    intervalMs: number
    /** Delay before connecting again, ms. */
    reconnectMs: number
  }
  /** How long {@link SimulatedCluster.start} lets the peers connect, ms. Default 2000. */
  startSettleMs?: number
  /** The DPs' `rankDelayMs`. Default 50. */
  rankDelayMs?: number
  /** The DPs' `ownershipCheckMs`. Default the smaller of 250 and the heartbeat interval. */
  ownershipCheckMs?: number
  /**
   * Hooks for fault injection (the chaos checker uses them): what each DP's store and clock
   * are, and a look at every ESP engine before it starts. Default none.
   */
  hooks?: SimulationHooks
}

/** Hooks of a {@link SimulatedCluster} for fault injection. Every one is optional. */
export interface SimulationHooks {
  /**
   * The coupling store a DP uses, given its own client of the shared facility (called at
   * every start of the DP). Default: that client.
   */
  store?: (node: NodeId, store: MemoryCouplingStore) => CouplingStore
  /** The clock a DP runs on (called at every start of the DP). Default: the cluster's clock. */
  clock?: (node: NodeId) => Clock
  /** Called with each ESP engine, of DPs (at every start) and of peers, before it starts. */
  espEngine?: (node: NodeId, engine: SoftwareEspEngine) => void
}

/** The DVIPA of the simulated cluster. */
export const DVIPA = '10.0.0.100'
/** The service address behind the DVIPA that peers send requests to. */
export const SERVICE_ADDRESS = '10.77.0.10'
/** The UDP port of the request/response application on the targets. */
export const SERVICE_PORT = 7
/** The cluster's IKE identity. */
export const CLUSTER_IDENTITY: Identity = { type: 'fqdn', value: 'vpn.cluster.test' }

const SERVICE_SUBNET: TrafficSelector = {
  startAddress: '10.77.0.0',
  endAddress: '10.77.0.255',
  protocol: 0,
  startPort: 0,
  endPort: 65535
}

const IKE_PROPOSAL: IkeProposal = {
  encryption: [{ algorithm: 'aes-gcm-16', keyBits: 256 }],
  integrity: ['none'],
  prf: ['hmac-sha2-256'],
  keyExchange: ['curve25519']
}

const ESP_PROPOSAL: ChildProposal = {
  protocol: 'esp',
  encryption: [{ algorithm: 'aes-gcm-16', keyBits: 256 }],
  integrity: ['none'],
  keyExchange: ['none'],
  extendedSequenceNumbers: [true, false]
}

/** The phase 1 policy every node of the simulation uses. */
export const PHASE1: Phase1Policy = {
  proposals: [IKE_PROPOSAL],
  authMethod: 'psk',
  lifetime: { rekeySeconds: 0, reauthSeconds: 0 },
  liveness: { intervalMs: 0, timeoutMs: 0 }
}

/** The phase 2 policy every node of the simulation uses. */
export const PHASE2: Phase2Policy = {
  proposals: [ESP_PROPOSAL],
  pfsGroup: 'none',
  lifetime: {
    softSeconds: 0,
    hardSeconds: 0,
    softBytes: 0,
    hardBytes: 0,
    softPackets: 0,
    hardPackets: 0
  }
}

/** A distribution processor of the simulation with its parts. */
export interface SimDp {
  /** Its node id. */
  node: NodeId
  /** Its address on the cluster network. */
  address: string
  /** The node as the container built it (replaced on restart). */
  vipsecNode: VipsecNode
  /** Its network attachment. */
  adapter: VirtualNetworkAdapter
  /** The processor (replaced on restart). */
  processor: DefaultDistributionProcessor
  /** Its ESP engine. */
  esp: SoftwareEspEngine
  /** Its client of the shared facility. */
  store: MemoryCouplingStore
  /** The coupling store it uses: `store`, or what the `store` hook made of it. */
  couplingStore: CouplingStore
  /** Its failure detector. */
  detector: HeartbeatFailureDetector
  /** Its cluster link. */
  link: UdpClusterLink
  /** Its target stack, when DPs are targets too. */
  target: DefaultTargetStack | undefined
  /** The IKE services it made (one per time it served the DVIPA). */
  ikeServices: IkeV2Service[]
  /** Whether it is running. */
  up: boolean
}

/** A target host of the simulation. */
export interface SimTarget {
  /** Its node id. */
  node: NodeId
  /** Its address on the cluster network. */
  address: string
  /** The node as the container built it (replaced on restart). */
  vipsecNode: VipsecNode
  /** Its network attachment. */
  adapter: VirtualNetworkAdapter
  /** Its cluster link. */
  link: UdpClusterLink
  /** Its target stack. */
  stack: DefaultTargetStack
  /** Sends its heartbeats to the distribution processors (it watches nobody). */
  heartbeat: HeartbeatFailureDetector
  /** Whether it is running. */
  up: boolean
}

/** What one peer's traffic looked like. */
export interface PeerTraffic {
  /** Requests sent. */
  sent: number
  /** Requests answered. */
  answered: number
  /** Answers per target, from the target name in each answer. */
  servedBy: Record<string, number>
  /** Virtual monotonic ms of each answer, in order. */
  answerTimes: number[]
  /** The target named in each answer, in the order of `answerTimes`. */
  answerTargets: string[]
  /** Sequence numbers answered. */
  answeredSeqs: Set<number>
}

/** The traffic of every peer together. */
export interface TrafficTotals {
  /** Requests sent. */
  sent: number
  /** Requests answered. */
  answered: number
  /** Answers per target. */
  servedBy: Record<string, number>
}

/** A remote IPsec peer of the simulation: an IKE initiator with its own ESP engine, sending requests. */
export interface SimPeer {
  /** Its node id on the virtual network. */
  node: NodeId
  /** Its outer (IKE) address. */
  address: string
  /** Its inner address, inside the tunnel. */
  inner: string
  /** Its IKE identity. */
  identity: Identity
  /** Its network attachment. */
  adapter: VirtualNetworkAdapter
  /** Its IKE service. */
  ike: IkeV2Service
  /** Its ESP engine. */
  esp: SoftwareEspEngine
  /** Its UDP socket on port 4500 (IKE and ESP). */
  udp4500: UdpEndpoint
  /** Its traffic so far. */
  traffic: PeerTraffic
}

/** An event of the simulation, for timelines: a DP event with the node and virtual time. */
export interface ClusterEvent {
  /** Virtual monotonic ms. */
  at: number
  /** The node that emitted it. */
  node: NodeId
  /** The event. */
  event: DistributionEvent
}

const PSK = 'simulation pre-shared key'

/**
 * A whole vipsec cluster in one process: N distribution processors (`dp-1` primary, then ranked
 * backups), M targets running a request/response application, and P remote peers (vipsec IKE
 * initiators with their own ESP engines) that send requests through their tunnels to the service
 * behind the DVIPA. Everything runs on a {@link VirtualNetwork} and a {@link VirtualClock}, so a
 * run is deterministic for a seed and a minute of cluster time takes well under a second of real
 * time. Faults: {@link crash}, {@link restart}, {@link partition}, {@link setLoss}.
 */
export class SimulatedCluster {
  /** The clock everything runs on: virtual, unless `realTime` was asked for. */
  readonly clock: VirtualClock | SystemClock
  /** The virtual network. */
  readonly network: VirtualNetwork
  /** The shared coupling store. */
  readonly facility = new MemoryCouplingFacility()
  /** The distribution processors by id. */
  readonly dps = new Map<NodeId, SimDp>()
  /** The targets by id. */
  readonly targets = new Map<NodeId, SimTarget>()
  /** The peers. */
  readonly peers: SimPeer[] = []
  private readonly options: Required<SimulatedClusterOptions>
  private readonly eventsSubject = new Subject<ClusterEvent>()
  /** The cluster key of the link and the heartbeats, from the seed. */
  private readonly clusterKeys: ClusterKey[]
  private trafficTimer: ReturnType<Clock['setTimeout']> | undefined
  private sequence = 0
  private ikeCount = 0
  /** On the system clock, keeps the process alive while the cluster runs (its timers are unref'd). */
  private keepAlive: ReturnType<typeof setInterval> | undefined

  /** @param options - sizes, seed and timing */
  constructor(options: SimulatedClusterOptions = {}) {
    const secret = createHash('sha256')
      .update(`${options.seed ?? 'vipsec'}/cluster-key`)
      .digest()
    this.clusterKeys = [{ id: 1, secret: new Uint8Array(secret) }]
    this.options = {
      dps: options.dps ?? 3,
      targets: options.targets ?? 3,
      peers: options.peers ?? 4,
      dpsAreTargets: options.dpsAreTargets ?? false,
      seed: options.seed ?? 'vipsec',
      latencyMs: options.latencyMs ?? 0.2,
      heartbeat: options.heartbeat ?? { intervalMs: 100, multiplier: 3 },
      trafficIntervalMs: options.trafficIntervalMs ?? 20,
      policy: options.policy ?? 'round-robin',
      retransmit: options.retransmit ?? { timeoutMs: 500, backoff: 2, tries: 4 },
      realTime: options.realTime ?? false,
      connectionIdleMs: options.connectionIdleMs ?? 300_000,
      renegotiationDeadlineMs: options.renegotiationDeadlineMs ?? 10_000,
      detector: options.detector ?? 'heartbeat',
      selfFenceMs: options.selfFenceMs ?? 0,
      startSettleMs: options.startSettleMs ?? 2000,
      peerLiveness: options.peerLiveness ?? { intervalMs: 0, reconnectMs: 0 },
      rankDelayMs: options.rankDelayMs ?? 50,
      ownershipCheckMs:
        options.ownershipCheckMs ??
        Math.min(250, (options.heartbeat ?? { intervalMs: 100 }).intervalMs),
      hooks: options.hooks ?? {}
    }
    this.clock = this.options.realTime
      ? new SystemClock()
      : new VirtualClock({ startTime: Date.UTC(2026, 0, 1) })
    this.network = new VirtualNetwork(
      { clock: this.clock, random: new SeededRandomSource({ seed: `${this.options.seed}/net` }) },
      { latencyMs: this.options.latencyMs }
    )
  }

  /** Every distribution processor event, with its node and time. */
  get events$(): Observable<ClusterEvent> {
    return this.eventsSubject.asObservable()
  }

  /** The ids of the distribution processors, best first. */
  get ranks(): NodeId[] {
    return Array.from({ length: this.options.dps }, (_, i) => `dp-${i + 1}`)
  }

  /** The DVIPA's ownership record, as the store has it. */
  ownership(): Ownership | undefined {
    const bytes = this.facility.dvipas.get(DVIPA)?.ownership
    return bytes === undefined
      ? undefined
      : (JSON.parse(new TextDecoder().decode(bytes)) as Ownership)
  }

  /**
   * Builds and starts every node, the primary first, and connects every peer to the DVIPA.
   *
   * @throws whatever a peer's IKE connection throws
   */
  async start(): Promise<void> {
    if (this.options.realTime) this.keepAlive = setInterval(() => {}, 1000)
    for (let j = 1; j <= this.options.targets; j++)
      await this.startTarget(`target-${j}`, `10.9.1.${j}`)
    // a DP's start lasts its join window: time passes meanwhile
    for (const [i, node] of this.ranks.entries())
      await this.advancing(this.startDp(node, `10.9.0.${i + 1}`))
    await this.advance(50)
    for (let k = 1; k <= this.options.peers; k++) this.peers.push(await this.makePeer(k))
    await Promise.all([this.connectPeers(), this.advance(this.options.startSettleMs)])
  }

  /** Stops everything. */
  async stop(): Promise<void> {
    this.stopTraffic()
    for (const peer of this.peers) {
      await peer.ike.stop()
      await peer.esp.stop()
      await peer.adapter.stop()
    }
    for (const dp of this.dps.values()) if (dp.up) await this.crash(dp.node)
    for (const t of this.targets.values()) if (t.up) await this.crash(t.node)
    this.eventsSubject.complete()
    if (this.keepAlive !== undefined) clearInterval(this.keepAlive)
  }

  /**
   * Lets time pass: virtual time in small steps, so that every timer and datagram in between
   * runs, or real time (a sleep) when the cluster runs on the system clock.
   *
   * @param ms - how long
   */
  async advance(ms: number): Promise<void> {
    const clock = this.clock
    if (!(clock instanceof VirtualClock)) {
      await new Promise((resolve) => setTimeout(resolve, ms))
      return
    }
    const step = 10
    for (let t = 0; t < ms; t += step) await clock.advance(Math.min(step, ms - t))
  }

  /**
   * Lets virtual time pass, in the steps of {@link advance}, until `work` settles (a start that
   * waits out a join window); on the system clock, just waits for it.
   *
   * @param work - what to wait for
   */
  async advancing<T>(work: Promise<T>): Promise<T> {
    const clock = this.clock
    if (!(clock instanceof VirtualClock)) return work
    return clock.advanceUntilSettled(work, { maxMs: 1_000_000 })
  }

  /** Starts every peer sending a request every `trafficIntervalMs`. */
  startTraffic(): void {
    if (this.trafficTimer !== undefined) return
    const tick = (): void => {
      for (const peer of this.peers) this.sendRequest(peer)
      this.trafficTimer = this.clock.setTimeout(tick, this.options.trafficIntervalMs)
    }
    tick()
  }

  /** Stops the peers' traffic. */
  stopTraffic(): void {
    if (this.trafficTimer !== undefined) this.clock.clearTimeout(this.trafficTimer)
    this.trafficTimer = undefined
  }

  /**
   * Crashes a distribution processor or a target: its network goes first (nothing more leaves
   * or reaches it), then its timers stop. Nothing is written to the store.
   *
   * @param node - the node's id
   */
  async crash(node: NodeId): Promise<void> {
    const target = this.targets.get(node)
    if (target !== undefined) {
      if (!target.up) return
      target.up = false
      await target.adapter.stop()
      await target.vipsecNode.stop()
      return
    }
    const dp = this.dps.get(node)
    if (dp === undefined || !dp.up) return
    dp.up = false
    await dp.adapter.stop()
    await dp.vipsecNode.stop()
  }

  /**
   * Restarts a crashed distribution processor or target with fresh state (as a new process would).
   * A distribution processor's start lasts its join window: virtual time passes meanwhile, unless
   * `advance` is false (the caller lets it pass, as the chaos runner does).
   *
   * @param node - the node's id
   * @param options - `advance: false` to leave the clock to the caller
   */
  async restart(node: NodeId, options: { advance?: boolean } = {}): Promise<void> {
    if (options.advance !== false) return this.advancing(this.restart(node, { advance: false }))
    const target = this.targets.get(node)
    if (target !== undefined) {
      if (!target.up) await this.startTarget(node, target.address)
      return
    }
    const dp = this.dps.get(node)
    if (dp === undefined || dp.up) return
    await this.startDp(node, dp.address)
  }

  /**
   * Cuts the network between two groups of nodes until {@link heal}.
   *
   * @param a - one side
   * @param b - the other side
   */
  partition(a: NodeId[], b: NodeId[]): void {
    this.network.partition(a, b)
  }

  /** Removes every partition. */
  heal(): void {
    this.network.heal()
  }

  /**
   * Sets the fraction of datagrams lost.
   *
   * @param lossRate - 0 to 1
   */
  setLoss(lossRate: number): void {
    this.network.configure({ lossRate })
  }

  /** Sums the traffic of every peer. */
  traffic(): TrafficTotals {
    const servedBy: Record<string, number> = {}
    let sent = 0
    let answered = 0
    for (const p of this.peers) {
      sent += p.traffic.sent
      answered += p.traffic.answered
      for (const [t, n] of Object.entries(p.traffic.servedBy)) servedBy[t] = (servedBy[t] ?? 0) + n
    }
    return { sent, answered, servedBy }
  }

  /** The configuration every node shares: its id, the clock, the network and its addresses. */
  private base(
    node: NodeId,
    address: string
  ): Pick<NodeConfig, 'nodeId' | 'clock'> & {
    networkAdapter: NonNullable<NodeComponents['networkAdapter']>
  } {
    return {
      nodeId: node,
      clock: { type: 'custom', component: { instance: this.clock } },
      networkAdapter: { type: 'virtual', network: this.network, addresses: [address] }
    }
  }

  private dpLinkPeers(except: NodeId): Record<NodeId, Endpoint> {
    const peers: Record<NodeId, Endpoint> = {}
    for (const [i, dp] of this.ranks.entries())
      if (dp !== except) peers[dp] = { address: `10.9.0.${i + 1}`, port: 7400 }
    return peers
  }

  private async startTarget(node: NodeId, address: string): Promise<void> {
    const { networkAdapter, ...base } = this.base(node, address)
    const built = createNode({
      ...base,
      role: 'target',
      components: {
        networkAdapter,
        clusterLink: {
          type: 'udp',
          init: {
            local: { address, port: 7400 },
            peers: this.dpLinkPeers(node),
            keys: this.clusterKeys
          }
        },
        targetStack: {
          type: 'default',
          apps: [{ protocol: 17, port: SERVICE_PORT, handler: requestResponse(node) }]
        },
        failureDetector: {
          type: 'heartbeat',
          init: {
            local: { address, port: 7500 },
            ...this.options.heartbeat,
            keys: this.clusterKeys,
            announceTo: this.ranks.map((_, i) => ({ address: `10.9.0.${i + 1}`, port: 7500 }))
          }
        }
      }
    })
    await built.start()
    this.targets.set(node, {
      node,
      address,
      vipsecNode: built,
      adapter: built.get(TOKENS.NetworkAdapter) as VirtualNetworkAdapter,
      link: built.get(TOKENS.ClusterLink) as UdpClusterLink,
      stack: built.get(TOKENS.TargetStack) as DefaultTargetStack,
      heartbeat: built.get(TOKENS.FailureDetector) as HeartbeatFailureDetector,
      up: true
    })
  }

  private async startDp(node: NodeId, address: string): Promise<void> {
    const hooks = this.options.hooks
    const clock = hooks.clock?.(node) ?? this.clock
    const previous = this.dps.get(node)
    const ikeServices: IkeV2Service[] = previous?.ikeServices ?? []
    const linkPeers = this.dpLinkPeers(node)
    for (const t of this.targetIds())
      linkPeers[t] = { address: `10.9.1.${t.split('-')[1]}`, port: 7400 }
    const ikeInit: IkeV2ServiceInit = {
      psks: this.peerIdentities().map((remote) => ({ remote, secret: PSK })),
      peers: this.peerIdentities().map((remote, k) => ({
        localIdentity: CLUSTER_IDENTITY,
        remoteIdentity: remote,
        phase1: PHASE1,
        children: [
          {
            policy: PHASE2,
            mode: 'tunnel' as const,
            local: [SERVICE_SUBNET],
            remote: [innerSelector(k + 1)]
          }
        ]
      })),
      retransmit: this.options.retransmit
    }
    const { networkAdapter, ...base } = this.base(node, address)
    const memoryStore = new MemoryCouplingStore({ clock }, { facility: this.facility })
    const couplingStore = hooks.store?.(node, memoryStore) ?? memoryStore
    const built = createNode({
      ...base,
      clock: { type: 'custom', component: { instance: clock } },
      role: node === this.ranks[0] ? 'primary' : 'backup',
      store: { type: 'custom', component: { instance: couplingStore } },
      random: { type: 'seeded', seed: `${this.options.seed}/${node}/${this.ikeCount++}` },
      components: {
        networkAdapter,
        espEngine: { type: 'software' },
        // The built-in IKE factory would do; this one also keeps the services for the tests to inspect.
        ikeServiceFactory: {
          factory: (resolve) => (sockets) => {
            const ike = new IkeV2Service(
              {
                clock,
                random: resolve(TOKENS.RandomSource),
                espEngine: resolve(TOKENS.EspEngine),
                ...sockets
              },
              ikeInit
            )
            ikeServices.push(ike)
            return ike
          }
        },
        failureDetector:
          this.options.detector === 'lease'
            ? {
                type: 'lease',
                init: {
                  intervalMs: this.options.heartbeat.intervalMs,
                  ttlMs: this.options.heartbeat.intervalMs * this.options.heartbeat.multiplier
                }
              }
            : {
                type: 'heartbeat',
                init: {
                  local: { address, port: 7500 },
                  ...this.options.heartbeat,
                  keys: this.clusterKeys
                }
              },
        clusterLink: {
          type: 'udp',
          init: { local: { address, port: 7400 }, peers: linkPeers, keys: this.clusterKeys }
        },
        ...(this.options.dpsAreTargets
          ? {
              targetStack: {
                type: 'default' as const,
                apps: [{ protocol: 17, port: SERVICE_PORT, handler: requestResponse(node) }]
              }
            }
          : {}),
        distributionProcessor: {
          type: 'default',
          init: {
            dvipas: [
              {
                dvipa: DVIPA,
                ranks: this.ranks,
                targets: [
                  ...this.targetIds().map((t) => ({ node: t })),
                  ...(this.options.dpsAreTargets ? this.ranks.map((n) => ({ node: n })) : [])
                ],
                policy: this.options.policy
              }
            ],
            heartbeats: Object.fromEntries(
              this.ranks.map((n, i) => [n, { address: `10.9.0.${i + 1}`, port: 7500 }])
            ),
            // targets send UDP heartbeats, which only the heartbeat detector hears
            targetHeartbeats:
              this.options.detector === 'lease'
                ? {}
                : Object.fromEntries(
                    this.targetIds().map((t) => [
                      t,
                      { address: `10.9.1.${t.split('-')[1]}`, port: 7500 }
                    ])
                  ),
            rankDelayMs: this.options.rankDelayMs,
            connectionIdleMs: this.options.connectionIdleMs,
            renegotiationDeadlineMs: this.options.renegotiationDeadlineMs,
            selfFenceMs: this.options.selfFenceMs,
            ownershipCheckMs: this.options.ownershipCheckMs
          }
        }
      }
    })
    const processor = built.get(TOKENS.DistributionProcessor) as DefaultDistributionProcessor
    processor.events$.subscribe((event) =>
      this.eventsSubject.next({ at: clock.monotonic(), node, event })
    )
    hooks.espEngine?.(node, built.get(TOKENS.EspEngine) as SoftwareEspEngine)
    try {
      await built.start()
    } catch (e) {
      // A process whose start failed exits: nothing of it may keep running, its sockets close.
      await built.stop().catch(() => undefined)
      await (built.get(TOKENS.NetworkAdapter) as VirtualNetworkAdapter).stop()
      throw e
    }
    this.dps.set(node, {
      node,
      address,
      vipsecNode: built,
      adapter: built.get(TOKENS.NetworkAdapter) as VirtualNetworkAdapter,
      processor,
      esp: built.get(TOKENS.EspEngine) as SoftwareEspEngine,
      store: memoryStore,
      couplingStore,
      detector: built.get(TOKENS.FailureDetector) as HeartbeatFailureDetector,
      link: built.get(TOKENS.ClusterLink) as UdpClusterLink,
      target: built.has(TOKENS.TargetStack)
        ? (built.get(TOKENS.TargetStack) as DefaultTargetStack)
        : undefined,
      ikeServices,
      up: true
    })
  }

  private targetIds(): NodeId[] {
    return Array.from({ length: this.options.targets }, (_, j) => `target-${j + 1}`)
  }

  private peerIdentities(): Identity[] {
    return Array.from({ length: this.options.peers }, (_, k) => peerIdentity(k + 1))
  }

  private async makePeer(k: number): Promise<SimPeer> {
    const node = `peer-${k}`
    const address = outerAddress(k)
    const adapter = this.network.attach(node)
    await adapter.start()
    await adapter.acquireAddress(address)
    const esp = new SoftwareEspEngine({ clock: this.clock })
    this.options.hooks.espEngine?.(node, esp)
    await esp.start()
    const udp500 = await adapter.openUdp({ address, port: 500 })
    const udp4500 = await adapter.openUdp({ address, port: 4500 })
    const identity = peerIdentity(k)
    const phase1 = this.peerPhase1()
    const ike = new IkeV2Service(
      {
        clock: this.clock,
        random: new SeededRandomSource({ seed: `${this.options.seed}/${node}` }),
        espEngine: esp,
        udp500,
        udp4500
      },
      {
        psks: [{ remote: CLUSTER_IDENTITY, secret: PSK }],
        peers: [
          {
            localIdentity: identity,
            remoteIdentity: CLUSTER_IDENTITY,
            phase1,
            children: [
              {
                policy: PHASE2,
                mode: 'tunnel',
                local: [innerSelector(k)],
                remote: [SERVICE_SUBNET]
              }
            ]
          }
        ],
        retransmit: this.options.retransmit
      }
    )
    await ike.start()
    const peer: SimPeer = {
      node,
      address,
      inner: innerAddress(k),
      identity,
      adapter,
      ike,
      esp,
      udp4500,
      traffic: {
        sent: 0,
        answered: 0,
        servedBy: {},
        answerTimes: [],
        answerTargets: [],
        answeredSeqs: new Set()
      }
    }
    udp4500.datagrams$.subscribe(({ data }) => this.onPeerDatagram(peer, data))
    const { intervalMs, reconnectMs } = this.options.peerLiveness
    if (intervalMs > 0)
      ike.events$.subscribe((event) => {
        if (event.type !== 'ike:deleted' || event.reason !== 'dead-peer') return
        this.clock.setTimeout(() => {
          if (ike.list().length === 0) this.connectBatch([peer], k - 1).catch(() => undefined)
        }, reconnectMs)
      })
    return peer
  }

  /** The phase 1 policy of the peers: {@link PHASE1}, with their dead peer detection. */
  private peerPhase1(): Phase1Policy {
    const { intervalMs } = this.options.peerLiveness
    return intervalMs > 0
      ? { ...PHASE1, liveness: { intervalMs, timeoutMs: 4 * intervalMs } }
      : PHASE1
  }

  /** Connects the peers, at most 50 handshakes at a time (a thousand at once would only retransmit). */
  private async connectPeers(): Promise<void> {
    const batch = 50
    for (let first = 0; first < this.peers.length; first += batch) {
      await this.connectBatch(this.peers.slice(first, first + batch), first)
    }
  }

  private async connectBatch(peers: SimPeer[], offset: number): Promise<void> {
    await Promise.all(peers.map(async (peer, j) => this.connectPeer(peer, offset + j)))
  }

  /**
   * Has a peer establish a new IKE SA and Child SA to the DVIPA on its own (as after its dead
   * peer detection gave up), with the same identities and selectors as its first one.
   *
   * @param peer - the peer
   * @param index - its index in `peers`
   */
  async connectPeer(peer: SimPeer, index = this.peers.indexOf(peer)): Promise<void> {
    await peer.ike.connect({
      local: { address: peer.address, port: 500 },
      peer: { address: DVIPA, port: 500 },
      localIdentity: peer.identity,
      remoteIdentity: CLUSTER_IDENTITY,
      phase1: this.peerPhase1(),
      child: {
        policy: PHASE2,
        mode: 'tunnel',
        local: [innerSelector(index + 1)],
        remote: [SERVICE_SUBNET]
      },
      forceEncapsulation: true
    })
  }

  private sendRequest(peer: SimPeer): void {
    const seq = this.sequence++
    const k = this.peers.indexOf(peer) + 1
    const payload = new TextEncoder().encode(`req ${k} ${seq}`)
    const packet = buildIpPacket({
      source: peer.inner,
      destination: SERVICE_ADDRESS,
      protocol: 17,
      payload: buildUdp({
        source: peer.inner,
        destination: SERVICE_ADDRESS,
        sourcePort: 40000 + k,
        destinationPort: SERVICE_PORT,
        payload
      })
    })
    peer.traffic.sent++
    const result = peer.esp.protect(packet)
    if (result.action === 'protect' && result.udp)
      peer.udp4500.send(result.packet, result.to as Endpoint)
  }

  private onPeerDatagram(peer: SimPeer, data: Uint8Array): void {
    const result = peer.esp.unprotectUdp(data)
    if (result.action !== 'accept') return
    const info = parseIpPacket(result.packet)
    if (info === undefined || info.protocol !== 17) return
    const text = new TextDecoder().decode(
      result.packet.subarray(info.payloadOffset + 8, info.totalLength)
    )
    const [target, , , , seq] = text.split(' ')
    if (target === undefined || seq === undefined) return
    peer.traffic.answered++
    peer.traffic.servedBy[target] = (peer.traffic.servedBy[target] ?? 0) + 1
    peer.traffic.answerTimes.push(this.clock.monotonic())
    peer.traffic.answerTargets.push(target)
    peer.traffic.answeredSeqs.add(Number(seq))
  }
}

/**
 * The IKE identity of peer `k`.
 *
 * @param k - 1-based peer number
 */
export function peerIdentity(k: number): Identity {
  return { type: 'fqdn', value: `peer${k}.example.test` }
}

/**
 * The outer (IKE) address of peer `k`.
 *
 * @param k - 1-based peer number
 */
export function outerAddress(k: number): string {
  return `192.0.${2 + Math.floor((k - 1) / 250)}.${((k - 1) % 250) + 1}`
}

/**
 * The inner (tunnel) address of peer `k`.
 *
 * @param k - 1-based peer number
 */
export function innerAddress(k: number): string {
  return `172.16.${2 + Math.floor((k - 1) / 250)}.${((k - 1) % 250) + 1}`
}

function innerSelector(k: number): TrafficSelector {
  const a = innerAddress(k)
  return { startAddress: a, endAddress: a, protocol: 0, startPort: 0, endPort: 65535 }
}
