import { BehaviorSubject, Subject, type Observable, type Subscription } from 'rxjs'
import {
  InvalidConfigError,
  RECORD_KINDS,
  StaleEpochError,
  TakeoverError,
  throwIfAborted,
  type AbortOptions,
  type Clock,
  type ClusterEnvelope,
  type ClusterLink,
  type ClusterMessage,
  type ConnectionRecord,
  type CouplingStore,
  type DistributionCounters,
  type DistributionEvent,
  type DistributionProcessor,
  type Dvipa,
  type DvipaRecord,
  type DvipaRole,
  type DynamicFilter,
  type DvipaStatus,
  type Endpoint,
  type EspEngine,
  type EspProposalShape,
  type FailureDetector,
  type Fence,
  type FilterRecord,
  type IkeEvent,
  type IkeProposal,
  type IkeService,
  type IkeServiceFactory,
  type NetworkAdapter,
  type NodeId,
  type Phase1Record,
  type Phase2Record,
  type RecordKind,
  type TakeoverReport,
  type UdpEndpoint
} from '@vipsec/interface'
import { FlowReader } from '@vipsec/wire'
import { FencingConfigError, JoinWindowConfigError, UnsupportedProposalError } from './errors.js'
import { ConnectionTable, type SelectionPolicy, type TargetConfig } from './connection-table.js'
import {
  joinWindowBound,
  OWNERSHIP_QUERY_EPOCH,
  OwnershipController,
  type OwnershipActions
} from './ownership/ownership-controller.js'
import { filterRecord, saRecords } from './records.js'
import { sameChildSelectors } from './selectors.js'
import { runTakeover, type TakeoverParts } from './takeover.js'
import { WarmKeySet, type WarmKeys, type WarmSealCounters } from './warm.js'
import { DEFAULT_SEQUENCE_BLOCK, WarmRecorder, type WarmRecorderCounters } from './warm-recorder.js'
import type { DefaultTargetStack } from './target-stack.js'

/** One DVIPA a distribution processor owns or backs up. */
export interface DvipaConfig {
  /** The DVIPA. */
  dvipa: Dvipa
  /**
   * The distribution processors of this DVIPA, best first: `ranks[0]` is its primary owner,
   * the others back it up in this order.
   */
  ranks: NodeId[]
  /** The targets connections are distributed to. */
  targets: TargetConfig[]
  /** How new connections pick a target. Default `round-robin`. */
  policy?: SelectionPolicy
  /**
   * Warm mode for this DVIPA (needs `warm` in the processor's options): the owner also records
   * each IKE SA's state sealed under the cluster key and reserves outbound sequence numbers in
   * blocks, so that an heir adopts the SAs as they were (RFC 6311) instead of renegotiating them.
   * Default false (renegotiation).
   */
  warm?: boolean
}

/** Warm mode's options (see `DvipaConfig.warm`). */
export interface WarmOptions {
  /** The cluster keys (from the node's secrets), or a key set made of them. */
  keys: WarmKeys | WarmKeySet
  /**
   * Outbound sequence numbers reserved per store write. Larger: fewer writes (one per block per
   * Child SA); smaller: fewer numbers skipped at each takeover (the heir starts past the whole
   * block). The ESP engine's low water should be half of it. Default 2^20.
   */
  blockSize?: number
}

/** What a {@link DefaultDistributionProcessor} needs. */
export interface DefaultDistributionProcessorComponents {
  /** The coupling store. */
  store: CouplingStore
  /** The ESP engine (one per node, shared by its DVIPAs). */
  esp: EspEngine
  /** Makes the IKE service of a DVIPA once its sockets are open. */
  ikeFactory: IkeServiceFactory
  /** Watches the other distribution processors. */
  detector: FailureDetector
  /** The link to targets (and to the other distribution processors, for notices). */
  link: ClusterLink
  /** Moves DVIPAs and opens their UDP sockets. */
  network: NetworkAdapter
  /** Time. */
  clock: Clock
  /** The target stack of this node, if it is also a target: its connections are served locally. */
  localTarget?: DefaultTargetStack
}

/** Retry timing of failed renegotiations. */
export interface RetryOptions {
  /** First delay in ms. Default 1000. */
  initialMs?: number
  /** Largest delay in ms (the delay doubles each time). Default 16000. */
  maxMs?: number
  /** Attempts after the first before giving up. Default 6. */
  attempts?: number
}

/** A Child SA proposal of the configuration, checked at start against the ESP engine. */
export interface EspProposalEntry {
  /** The dotted path of the field it came from (named by the error). */
  field: string
  /** The proposal. */
  proposal: EspProposalShape
}

/** An IKE SA proposal of the configuration, checked at start against the IKE engine. */
export interface IkeProposalEntry {
  /** The dotted path of the field it came from (named by the error). */
  field: string
  /** The proposal. */
  proposal: IkeProposal
}

/** Options of a {@link DefaultDistributionProcessor}. */
export interface DefaultDistributionProcessorInit {
  /** This node's id. */
  node: NodeId
  /** The DVIPAs it owns or backs up. */
  dvipas: DvipaConfig[]
  /** The heartbeat endpoint of every distribution processor, so the detector can watch them. */
  heartbeats: Record<NodeId, Endpoint>
  /**
   * The heartbeat endpoints of targets: the detector watches them too, and a target declared
   * failed gets no new flows (its flows move on their next packet) until it recovers.
   * Default: none (targets are assumed healthy).
   */
  targetHeartbeats?: Record<NodeId, Endpoint>
  /**
   * How long a backup waits per better-ranked live backup before it claims, in ms, so that the
   * best live backup claims first and the others find the DVIPA claimed. Backups detect a failure
   * at different moments (up to one heartbeat interval apart), so this must be longer than the
   * failure detector's interval. Default 200.
   */
  rankDelayMs?: number
  /** Retries of renegotiations that failed during a takeover. */
  retry?: RetryOptions
  /**
   * Every Child SA (ESP) proposal the node's IKE services may negotiate, each with the dotted
   * path of the configuration field it came from. Checked at start, before anything is claimed
   * or bound, against what the ESP engine can do (`espCapabilities`): a node that could never
   * install what it negotiates does not start.
   */
  espProposals?: EspProposalEntry[]
  /**
   * What the ESP engine cannot do of a proposal (empty: all of it). Default: the engine's own
   * {@link EspEngine.unsupportedIn}, or nothing when the engine does not implement it.
   */
  espCapabilities?: (proposal: EspProposalShape) => string[]
  /**
   * Every IKE SA proposal the node's IKE services may negotiate, each with the dotted path of the
   * configuration field it came from. Checked at start, before anything is claimed or bound,
   * against what the IKE engine can do (`ikeCapabilities`).
   */
  ikeProposals?: IkeProposalEntry[]
  /**
   * What the IKE engine cannot do of a proposal (empty: all of it). Default: the IKE factory's
   * own {@link IkeServiceFactory} `unsupportedIn`, or nothing when it does not have one.
   */
  ikeCapabilities?: (proposal: IkeProposal) => string[]
  /** Warm mode's keys and block size, for the DVIPAs that set `warm`. */
  warm?: WarmOptions
  /** How many IKE SAs a takeover renegotiates at the same time. Default 64. */
  renegotiationConcurrency?: number
  /**
   * How long the takeover waits for its renegotiations, ms; what is not done by then is
   * reported as failed (`TIMEOUT`) and goes on in the background. Default 10000.
   */
  renegotiationDeadlineMs?: number
  /**
   * A connection without a packet for this long (ms) is removed from the routing table and the
   * store (checked every tenth of it). Default 300000 (5 minutes); 0 keeps connections forever.
   */
  connectionIdleMs?: number
  /**
   * How often each node reads the ownership back from the store, ms: an owner to confirm its
   * epoch (and learn of a higher one), a backup to correct a missed change event and to take
   * over a DVIPA that was released, that names it (a claim whose reply was lost), or whose owner
   * is failed with no takeover under way. With `selfFenceMs`, at least three times per
   * `selfFenceMs`. Default 250.
   */
  ownershipCheckMs?: number
  /**
   * An owner that could not confirm its ownership in the store for this long (ms) stops serving
   * the DVIPA (`ownership:fenced`), on a local timer whatever the store's call timeouts: the
   * backups, which can reach the store, may have taken it over already. It serves again (a
   * takeover from itself) once the store says it is still the owner. Pair it with the lease
   * failure detector and set it at most the detector's `minDetectionMs` (lease lifetime less one
   * interval): a start with a larger value is rejected, since the owner could then still serve
   * when a backup takes over. Default 0 (off: with heartbeats, the backups would still see a
   * fenced owner alive).
   */
  selfFenceMs?: number
  /**
   * A timer of this node that runs this late (ms) means the process was paused (stopped,
   * starved): an owner then confirms its epoch before serving again, and detector verdicts are
   * not acted on for `pauseGraceMs`. Default twice the read-back interval, at least 1000 (an
   * event loop that a loaded host stalls for half a second is not a pause).
   */
  pauseThresholdMs?: number
  /** After a pause, how long detector verdicts are not acted on, ms. Default 1000. */
  pauseGraceMs?: number
  /**
   * After a takeover of this node failed (after its claim), how long it waits before it tries
   * again, ms; the wait doubles with each failure up to 30 s, so that a node that cannot serve
   * leaves the DVIPA to the others. Default 1000.
   */
  failureBackoffMs?: number
  /**
   * How long a starting (or re-joining) node listens before it may claim a DVIPA, ms: it asks
   * the other distribution processors who owns it (an ownership query on the cluster link),
   * hears the store's changes and reads back, and then claims above the highest epoch seen, or
   * backs up the live owner it heard of. At least max(the detector's `detectionTimeMs`, two
   * `ownershipCheckMs`): a start with less is rejected (`JoinWindowConfigError`). Default that
   * bound. A DVIPA ranked on this node alone has no window.
   */
  joinWindowMs?: number
}

/** @internal The data path and records of one DVIPA on this node; ownership is in `ownership`. */
export interface DvipaState {
  config: DvipaConfig
  /** The ownership unit: role, epoch, owner and fence live there only. */
  ownership: OwnershipController
  table: ConnectionTable
  ike: IkeService | undefined
  sockets: UdpEndpoint[]
  subscriptions: Subscription[]
  /** Whether IKE events are written to the store as they happen (off during a takeover). */
  recording: boolean
  /** Phase 2 record id by inbound SPI, for the flows that arrive in it. */
  childByInboundSpi: Map<number, Phase2Record>
  /** Phase 1 records by id with their phase 2 records. */
  sas: Map<string, { phase1: Phase1Record; phase2: Map<string, Phase2Record> }>
  /**
   * The ids of `sas` by peer address and identities ({@link peerKey}), so that finding an IKE
   * SA's duplicates does not scan every IKE SA.
   */
  byPeer: Map<string, Set<string>>
  /**
   * The ids of `sas` by their IKE SA's initiator SPI, so that an IKE SA's rekey or delete
   * (which name it by SPIs) does not scan every IKE SA.
   */
  bySpi: Map<string, Set<string>>
  /** The phase 1 id of each Child SA of `sas`, by phase 2 id. */
  childOwner: Map<string, string>
  /** How many Child SAs `sas` holds, counted as they come and go (the status needs no scan). */
  childSas: number
  /** The filter record ids written for each Child SA, so that they can be deleted with it. */
  filterIds: Map<string, string[]>
  /** Serialises the store writes of this DVIPA. */
  writes: Promise<void>
  /**
   * The IKE SAs whose records are queued for writing and not yet read: a later event of the
   * same IKE SA joins that write (it reads the records when it runs) rather than queueing one.
   */
  pendingSas: Map<string, Promise<void>>
  /** Serialises opening and closing the DVIPA (address, sockets, IKE service). */
  serial: Promise<void>
  /** The renegotiation retry timers, so they stop when the DVIPA is closed. */
  retryTimers: Set<ReturnType<Clock['setTimeout']>>
  /** Warm mode: sealed states and sequence reservations (undefined without warm mode). */
  warm: WarmRecorder | undefined
}

/**
 * The default distribution processor: wiring over, per DVIPA, the ownership unit
 * ({@link OwnershipController}: who serves, under which epoch), the recorder (IKE events to the
 * coupling store under the epoch), the data path and the mailbox. As owner of a DVIPA it
 * terminates IKE (through a per-DVIPA IKE service) and ESP-in-UDP (through the node's ESP
 * engine) on the DVIPA's ports 500 and 4500, distributes each new flow to a target and forwards
 * its cleartext over the cluster link, protects what targets send back, and records every SA,
 * filter and connection in the coupling store. As a backup, when its ownership unit decides to
 * take over, it runs the takeover steps (see `runTakeover`). Every epoch it sees (store, link,
 * targets, rejected writes, mailbox) goes to the ownership unit.
 */
export class DefaultDistributionProcessor implements DistributionProcessor {
  /** This node's id. */
  readonly id: NodeId
  /** @internal */
  readonly components: DefaultDistributionProcessorComponents
  private readonly espProposals: EspProposalEntry[]
  private readonly espCapabilities: (proposal: EspProposalShape) => string[]
  private readonly ikeProposals: IkeProposalEntry[]
  private readonly ikeCapabilities: (proposal: IkeProposal) => string[]
  private readonly warmKeys: WarmKeySet | undefined
  private readonly warmBlock: bigint
  private readonly warmError: InvalidConfigError | undefined
  /** @internal */
  readonly init: Required<
    Omit<
      DefaultDistributionProcessorInit,
      'retry' | 'espProposals' | 'espCapabilities' | 'ikeProposals' | 'ikeCapabilities' | 'warm'
    >
  > & {
    retry: Required<RetryOptions>
  }
  /** @internal */
  readonly states = new Map<Dvipa, DvipaState>()
  private events = new Subject<DistributionEvent>()
  private status = new BehaviorSubject<DvipaStatus[]>([])
  private subscriptions: Subscription[] = []
  private started = false
  /** Set when the node is shutting down (a switchover on SIGTERM): nothing more to prepare. */
  private stopping = false
  private idleTimer: ReturnType<Clock['setTimeout']> | undefined
  /** The flows of inbound packets: a burst of one flow reads its addresses once. */
  private readonly flows = new FlowReader()
  /**
   * The ESP engine's filters of Child SAs (ids `<phase 2 id>/...`) by phase 2 id, kept from its
   * events, so that recording one Child SA does not list the whole SPD.
   */
  private readonly childFilters = new Map<string, Map<string, DynamicFilter>>()
  private readonly counts: DistributionCounters = {
    inbound: 0,
    outbound: 0,
    dropped: 0,
    notOwner: 0,
    storeErrors: 0,
    epochRegressions: 0
  }

  /**
   * @param components - store, ESP engine, IKE factory, detector, link, network and clock
   * @param init - node id, DVIPAs and timing
   */
  constructor(
    components: DefaultDistributionProcessorComponents,
    init: DefaultDistributionProcessorInit
  ) {
    this.components = components
    this.id = init.node
    const ownershipCheckMs = init.ownershipCheckMs ?? 250
    this.espProposals = init.espProposals ?? []
    this.espCapabilities =
      init.espCapabilities ?? ((proposal) => components.esp.unsupportedIn?.(proposal) ?? [])
    this.ikeProposals = init.ikeProposals ?? []
    // a bad key set is reported by validate(), at start, like every other configuration error
    let warmKeys: WarmKeySet | undefined
    let warmError: InvalidConfigError | undefined
    try {
      const keys = init.warm?.keys
      warmKeys =
        keys === undefined ? undefined : keys instanceof WarmKeySet ? keys : new WarmKeySet(keys)
    } catch (err) {
      if ((err as Error).name !== InvalidConfigError.name) throw err
      warmError = err as InvalidConfigError
    }
    this.warmKeys = warmKeys
    this.warmError = warmError
    const block = init.warm?.blockSize ?? Number(DEFAULT_SEQUENCE_BLOCK)
    this.warmBlock = Number.isSafeInteger(block) && block >= 2 ? BigInt(block) : 0n
    this.ikeCapabilities =
      init.ikeCapabilities ?? ((proposal) => components.ikeFactory.unsupportedIn?.(proposal) ?? [])
    this.init = {
      node: init.node,
      dvipas: init.dvipas,
      heartbeats: init.heartbeats,
      targetHeartbeats: init.targetHeartbeats ?? {},
      rankDelayMs: init.rankDelayMs ?? 200,
      renegotiationConcurrency: init.renegotiationConcurrency ?? 64,
      renegotiationDeadlineMs: init.renegotiationDeadlineMs ?? 10_000,
      connectionIdleMs: init.connectionIdleMs ?? 300_000,
      ownershipCheckMs,
      selfFenceMs: init.selfFenceMs ?? 0,
      pauseThresholdMs: init.pauseThresholdMs ?? Math.max(1000, 2 * ownershipCheckMs),
      pauseGraceMs: init.pauseGraceMs ?? 1000,
      failureBackoffMs: init.failureBackoffMs ?? 1000,
      joinWindowMs: init.joinWindowMs ?? joinWindowBound(ownershipCheckMs, components.detector),
      retry: { initialMs: 1000, maxMs: 16000, attempts: 6, ...init.retry }
    }
  }

  /** Events; completes on `stop()`. */
  get events$(): Observable<DistributionEvent> {
    return this.events.asObservable()
  }

  /** The status of every DVIPA; replays the latest to new subscribers; completes on `stop()`. */
  get status$(): Observable<DvipaStatus[]> {
    return this.status.asObservable()
  }

  /** Packet counters (a copy), with the ownership alarms of every DVIPA. */
  counters(): DistributionCounters {
    let epochRegressions = 0
    for (const state of this.states.values())
      epochRegressions += state.ownership.counters().epochRegressions
    return { ...this.counts, epochRegressions: this.counts.epochRegressions + epochRegressions }
  }

  /**
   * Warm mode's counters, over every DVIPA: the key set's (states sealed and opened, records
   * under an unknown key id, failed authentications, malformed states) and the recorders'
   * (states recorded, sequence blocks reserved, writes that failed). Undefined without warm keys.
   */
  warmCounters(): (WarmSealCounters & WarmRecorderCounters) | undefined {
    if (this.warmKeys === undefined) return undefined
    const sum: WarmRecorderCounters = { statesRecorded: 0, blocksReserved: 0, writeFailures: 0 }
    for (const state of this.states.values()) {
      const c = state.warm?.counters()
      if (c === undefined) continue
      sum.statesRecorded += c.statesRecorded
      sum.blocksReserved += c.blocksReserved
      sum.writeFailures += c.writeFailures
    }
    return { ...this.warmKeys.counters(), ...sum }
  }

  /**
   * Checks the configuration as a whole, before anything is claimed or bound: every DVIPA once,
   * this node ranked for each, timings that keep the fencing promise.
   *
   * @throws InvalidConfigError naming the first bad field and why
   */
  validate(): void {
    const seen = new Set<Dvipa>()
    this.init.dvipas.forEach((d, i) => {
      if (seen.has(d.dvipa))
        throw new InvalidConfigError(`dvipas[${i}].dvipa`, `${d.dvipa} is listed twice`)
      seen.add(d.dvipa)
      if (!d.ranks.includes(this.id))
        throw new InvalidConfigError(`dvipas[${i}].ranks`, `does not rank this node (${this.id})`)
      if (new Set(d.ranks).size !== d.ranks.length)
        throw new InvalidConfigError(`dvipas[${i}].ranks`, 'names a node twice')
      if (d.warm === true && this.warmKeys === undefined && this.warmError === undefined)
        throw new InvalidConfigError(
          `dvipas[${i}].warm`,
          'warm mode needs the cluster keys (the processor option warm.keys)'
        )
    })
    if (this.warmError !== undefined) throw this.warmError
    if (this.warmBlock === 0n)
      throw new InvalidConfigError('warm.blockSize', 'must be an integer of 2 or more')
    const unsupported = this.espCapabilities
    for (const { field, proposal } of this.espProposals) {
      const problems = unsupported(proposal)
      if (problems.length > 0) throw new UnsupportedProposalError(field, problems)
    }
    for (const { field, proposal } of this.ikeProposals) {
      const problems = this.ikeCapabilities(proposal)
      if (problems.length > 0) throw new UnsupportedProposalError(field, problems, 'IKE')
    }
    const { selfFenceMs, ownershipCheckMs, rankDelayMs } = this.init
    for (const [field, value] of Object.entries({ selfFenceMs, ownershipCheckMs, rankDelayMs })) {
      if (!Number.isFinite(value) || value < 0)
        throw new InvalidConfigError(field, 'must be a number of ms, 0 or more')
    }
    if (selfFenceMs > 0 && ownershipCheckMs <= 0)
      throw new FencingConfigError(
        ['selfFenceMs', 'ownershipCheckMs'],
        'selfFenceMs needs ownershipCheckMs > 0: an owner confirms its epoch by reading it back'
      )
    const detection = this.components.detector.minDetectionMs
    if (selfFenceMs > 0 && detection !== undefined && selfFenceMs > detection)
      throw new FencingConfigError(
        ['selfFenceMs', 'detector.minDetectionMs'],
        `${selfFenceMs} ms is longer than the failure detector's shortest detection (${detection} ms, ` +
          'for a lease detector ttlMs - intervalMs - storeTimeoutMs): ' +
          'a cut-off owner could still serve when a backup takes over'
      )
    const { joinWindowMs } = this.init
    const bound = joinWindowBound(ownershipCheckMs, this.components.detector)
    if (!Number.isFinite(joinWindowMs) || joinWindowMs < bound)
      throw new JoinWindowConfigError(
        ['joinWindowMs', 'ownershipCheckMs', 'detector.detectionTimeMs'],
        bound,
        `${joinWindowMs} ms is shorter than ${bound} ms, max(the detector's detection time, ` +
          'two ownership read-backs): a node that starts while the store lost data could claim ' +
          'an epoch a live owner holds'
      )
  }

  /**
   * Starts, all or nothing: validates the whole configuration first, applies deletes left in
   * this node's mailbox, then for each DVIPA starts its ownership unit (the primary claims a
   * DVIPA nobody ever claimed and serves it; a DVIPA the store names this node's after a restart,
   * or nobody's, is taken over; otherwise this node backs it up). A start that fails releases
   * what it claimed, gives up the addresses it took, and rejects. Idempotent.
   *
   * @throws InvalidConfigError when the configuration is invalid (nothing was claimed)
   * @throws the store's or network's error when a DVIPA could not be joined (everything undone)
   */
  async start(): Promise<void> {
    if (this.started) return
    this.validate()
    this.started = true
    this.stopping = false
    if (this.events.isStopped) this.events = new Subject()
    if (this.status.isStopped) this.status = new BehaviorSubject<DvipaStatus[]>([])
    // what the engine holds from before is listed where it matters (ownRecords)
    this.childFilters.clear()
    const { store, detector, link, localTarget } = this.components
    try {
      this.subscriptions.push(
        detector.events$.subscribe((e) => {
          for (const state of this.states.values()) state.ownership.onDetectorEvent(e)
          if (
            e.node in this.init.targetHeartbeats &&
            (e.type === 'node:failed' || e.type === 'node:recovered')
          ) {
            for (const state of this.states.values())
              state.table.setHealth(e.node, e.type === 'node:recovered')
          }
        }),
        store.events$.subscribe((e) => {
          if (e.type === 'ownership:claimed')
            this.states
              .get(e.ownership.dvipa)
              ?.ownership.observe(
                e.ownership.epoch,
                e.ownership.owner,
                'store',
                e.ownership.previousOwner
              )
          if (e.type === 'ownership:released')
            this.states.get(e.dvipa)?.ownership.observe(e.epoch, null, 'store', e.previousOwner)
          if (e.type === 'mailbox:posted' && e.to === this.id) void this.applyMailbox()
          if (e.type === 'records:taken') this.onRecordsTaken(e.dvipa, e.epoch)
        }),
        link.messages$.subscribe((envelope) => this.onLinkMessage(envelope)),
        // a filter the IKE service installs after the Child SA's event (the outbound half of a
        // rekey it answered moves to the new SA only when the old one is deleted) is recorded too
        this.components.esp.events$.subscribe((e) => {
          if (e.type === 'filter:installed') {
            this.keepFilter(e.filter)
            this.onFilterInstalled(e.filter)
          } else if (e.type === 'filter:removed') this.dropFilter(e.id)
          else if (e.type === 'filter:duplicate-removed') this.dropFilter(e.removed)
          // warm mode: reserve the next sequence block (the DVIPA whose SA it is acts on it)
          else if (e.type === 'sa:sequence-low')
            for (const state of this.states.values()) void state.warm?.onEspEvent(e)
        })
      )
      localTarget?.attachLocalOwner((message) => this.onOutbound(this.id, message))
      for (const [node, endpoint] of Object.entries({
        ...this.init.heartbeats,
        ...this.init.targetHeartbeats
      })) {
        if (node !== this.id) detector.watch({ node, endpoint })
      }
      await this.applyMailbox()
      this.scheduleIdleSweep()
      for (const config of this.init.dvipas) this.states.set(config.dvipa, this.newState(config))
      for (const state of this.states.values()) {
        // A node that died while it owned the DVIPA may still hold its address: let it go, or
        // the neighbours could keep sending the DVIPA's traffic here. It takes it again if it
        // is to serve.
        if (this.components.network.isStarted())
          await this.components.network.releaseAddress(state.config.dvipa).catch(() => undefined)
        this.prepareAddress(state)
      }
      // every DVIPA's join window at once
      const joined = await Promise.allSettled(
        [...this.states.values()].map((state) => state.ownership.start())
      )
      const failed = joined.find((r) => r.status === 'rejected')
      if (failed !== undefined) throw failed.reason
      this.publishStatus()
    } catch (err) {
      for (const state of this.states.values()) await state.ownership.abandon()
      await this.stop()
      throw err
    }
  }

  /** Stops serving every DVIPA (without releasing ownership in the store), completes the streams. Idempotent. */
  async stop(): Promise<void> {
    if (!this.started) return
    this.started = false
    if (this.idleTimer !== undefined) this.components.clock.clearTimeout(this.idleTimer)
    this.idleTimer = undefined
    for (const s of this.subscriptions) s.unsubscribe()
    this.subscriptions = []
    this.components.localTarget?.attachLocalOwner(undefined)
    for (const state of this.states.values()) {
      await state.ownership.stop()
      await this.closeDvipa(state)
    }
    this.states.clear()
    this.events.complete()
    this.status.complete()
  }

  /**
   * Tells the processor that it is about to stop (the node shuts down, see
   * `releaseForSwitchover`): a DVIPA it gives up from now on is not made ready for a takeover
   * again (`NetworkAdapter.prepareAddress`), which only `stop()` would undo.
   *
   * @internal
   */
  markStopping(): void {
    this.stopping = true
  }

  /** Whether started. */
  isStarted(): boolean {
    return this.started
  }

  /**
   * The connection routing table of a DVIPA.
   *
   * @param dvipa - the DVIPA
   */
  connections(dvipa: Dvipa): ConnectionRecord[] {
    return this.states.get(dvipa)?.table.all() ?? []
  }

  /**
   * Takes a DVIPA over from `previousOwner` now (steps 4 to 12), through its ownership unit.
   *
   * @param dvipa - the DVIPA
   * @param previousOwner - the failed owner
   * @param options - an abort signal
   * @throws TakeoverError when this node does not back the DVIPA up, or lost the claim
   */
  async takeover(
    dvipa: Dvipa,
    previousOwner: NodeId,
    options?: AbortOptions
  ): Promise<TakeoverReport> {
    throwIfAborted(options?.signal)
    const state = this.states.get(dvipa)
    if (state === undefined) throw new TakeoverError(`${this.id} does not back up ${dvipa}`)
    try {
      return await state.ownership.requestTakeover(previousOwner)
    } finally {
      this.publishStatus()
    }
  }

  private emit(event: DistributionEvent): void {
    if (!this.events.closed && !this.events.isStopped) this.events.next(event)
  }

  private publishStatus(): void {
    if (this.status.isStopped) return
    this.status.next(
      [...this.states.values()].map((s) => {
        return {
          dvipa: s.config.dvipa,
          role: statusRole(s.ownership),
          epoch: s.ownership.epoch,
          owner: s.ownership.owner,
          ikeSas: s.sas.size,
          childSas: s.childSas,
          connections: s.table.size
        }
      })
    )
  }

  /** Takes the DVIPA's address and opens its IKE service (recording off until asked). */
  private openDvipa(state: DvipaState, recording: boolean): Promise<IkeService> {
    const run = async (): Promise<IkeService> => {
      const { network, ikeFactory } = this.components
      const dvipa = state.config.dvipa
      if (state.ike !== undefined) return state.ike
      await network.acquireAddress(dvipa)
      const udp500 = await network.openUdp({ address: dvipa, port: 500 })
      const udp4500 = await network.openUdp({ address: dvipa, port: 4500 })
      state.sockets = [udp500, udp4500]
      const ike = ikeFactory({ udp500, udp4500 })
      state.ike = ike
      state.recording = recording
      // warm mode: every new key is sealed and its first sequence block reserved before use
      if (state.warm !== undefined) ike.setStateSink?.(state.warm.sink)
      state.subscriptions.push(
        ike.events$.subscribe((e) => this.onIkeEvent(state, e)),
        udp4500.datagrams$.subscribe(({ data }) => this.onEspDatagram(state, data))
      )
      await ike.start()
      return ike
    }
    const done = state.serial.then(run, run)
    state.serial = done.then(
      () => undefined,
      () => undefined
    )
    return done
  }

  /** Stops serving a DVIPA: IKE service (which removes its SAs), sockets, address. */
  private closeDvipa(state: DvipaState): Promise<void> {
    const run = async (): Promise<void> => {
      for (const timer of state.retryTimers) this.components.clock.clearTimeout(timer)
      state.retryTimers.clear()
      for (const s of state.subscriptions) s.unsubscribe()
      state.subscriptions = []
      const ike = state.ike
      state.ike = undefined
      if (ike !== undefined) await ike.stop()
      for (const socket of state.sockets) await socket.close()
      state.sockets = []
      state.sas.clear()
      state.byPeer.clear()
      state.bySpi.clear()
      state.childOwner.clear()
      state.childSas = 0
      state.filterIds.clear()
      state.childByInboundSpi.clear()
      // writes still queued run under the old fence (and skip); none is to be joined any more
      state.pendingSas.clear()
      state.warm?.clear()
      if (this.components.network.isStarted()) {
        await this.components.network.releaseAddress(state.config.dvipa).catch(() => undefined)
        if (this.started && !this.stopping) this.prepareAddress(state)
      }
    }
    const done = state.serial.then(run, run)
    state.serial = done.catch(() => undefined)
    return done
  }

  /**
   * Gets the network ready, in the background, to take `state`'s DVIPA over (see
   * `NetworkAdapter.prepareAddress`): a takeover then only adds the address. A failure costs
   * nothing but that head start: the acquire does what was not done, and reports what fails.
   */
  private prepareAddress(state: DvipaState): void {
    const { network } = this.components
    if (!network.isStarted() || network.prepareAddress === undefined) return
    void network.prepareAddress(state.config.dvipa).catch(() => undefined)
  }

  /**
   * Queues fenced writes for a DVIPA. A StaleEpochError goes to the ownership unit (another node
   * owns it now, or the store lost data).
   */
  private write(
    state: DvipaState,
    put: DvipaRecord[] | (() => DvipaRecord[]),
    remove: { kind: RecordKind; id: string }[] = [],
    strict = false
  ): Promise<void> {
    const fence = state.ownership.fence()
    const notOwner = (): Promise<void> =>
      Promise.reject(
        new StaleEpochError(state.config.dvipa, fence?.epoch ?? 0, state.ownership.epoch)
      )
    // strict: the caller relies on the write (a sequence reservation), so anything that did not
    // reach the store rejects
    if (fence === undefined) return strict ? notOwner() : Promise.resolve()
    const run = async (): Promise<void> => {
      // records given as a function are read now, when their turn comes, not when queued
      const records = typeof put === 'function' ? put() : put
      if (state.ownership.fence()?.epoch !== fence.epoch) {
        if (strict)
          throw new StaleEpochError(state.config.dvipa, fence.epoch, state.ownership.epoch)
        return
      }
      try {
        if (remove.length > 0)
          await this.components.store.deleteRecords(state.config.dvipa, remove, fence)
        if (records.length > 0)
          await this.components.store.putRecords(state.config.dvipa, records, fence)
      } catch (err) {
        if ((err as Error).name === StaleEpochError.name) {
          state.ownership.onStaleWrite(err as StaleEpochError)
          if (strict) throw err
          return
        }
        throw err
      }
    }
    state.writes = state.writes.then(run, run)
    return state.writes
  }

  /** Registers an IKE SA (and its Child SAs) in the DVIPA's bookkeeping. */
  private track(state: DvipaState, phase1: Phase1Record, phase2: Phase2Record[]): void {
    const had = state.sas.get(phase1.id)
    const entry = had ?? { phase1, phase2: new Map<string, Phase2Record>() }
    if (had !== undefined) unindexSa(state, had.phase1)
    entry.phase1 = phase1
    indexSa(state, phase1)
    for (const child of phase2) {
      if (!entry.phase2.has(child.id)) state.childSas++
      entry.phase2.set(child.id, child)
      state.childOwner.set(child.id, phase1.id)
      state.childByInboundSpi.set(Number.parseInt(child.inboundSpi, 16), child)
    }
    state.sas.set(phase1.id, entry)
  }

  /**
   * The filters the ESP engine holds for Child SAs, as records (one listing of the SPD for all
   * of them); remembers their ids so they are deleted with their Child SA.
   */
  private filtersOf(
    state: DvipaState,
    children: Iterable<Phase2Record>,
    filters: () => Iterable<DynamicFilter> = () => this.components.esp.listFilters()
  ): FilterRecord[] {
    const wanted = new Map<string, Phase2Record>()
    for (const child of children) wanted.set(child.id, child)
    const records: FilterRecord[] = []
    if (wanted.size === 0) return records
    const ids = new Map<string, string[]>()
    for (const f of filters()) {
      const slash = f.id.indexOf('/')
      const owner = slash > 0 ? wanted.get(f.id.slice(0, slash)) : undefined
      if (owner === undefined) continue
      records.push(filterRecord(state.config.dvipa, f, owner.id))
      ids.set(owner.id, [...(ids.get(owner.id) ?? []), f.id])
    }
    for (const id of wanted.keys()) state.filterIds.set(id, ids.get(id) ?? [])
    return records
  }

  /** Every record this node holds for a DVIPA: SAs, correlations, filters, connections. */
  private ownRecords(state: DvipaState): DvipaRecord[] {
    const records: DvipaRecord[] = []
    const children: Phase2Record[] = []
    for (const sa of state.sas.values()) {
      records.push(...saRecords(sa.phase1, [...sa.phase2.values()]))
      children.push(...sa.phase2.values())
    }
    // One listing of the SPD for every Child SA (a listing per IKE SA is quadratic).
    records.push(...this.filtersOf(state, children))
    for (const f of this.components.esp.listFilters()) {
      if (f.action !== 'protect') records.push(filterRecord(state.config.dvipa, f, null))
    }
    records.push(...state.table.all())
    if (state.warm !== undefined) records.push(...state.warm.records())
    return records
  }

  /**
   * Makes the store's records of a DVIPA exactly what this owner holds, under `fence`: deletes
   * what it does not hold (left behind by a store that rolled back), writes what it holds,
   * settles any open journal (a read-and-clear replayed after the takeover). Idempotent. An
   * `audit` (the owner's periodic check) writes only what is missing and says nothing unless
   * it changed something.
   */
  private async reconcile(
    state: DvipaState,
    fence: Fence,
    reason: 'replayed-take' | 'epoch-regressed' | 'audit'
  ): Promise<void> {
    const { store } = this.components
    const dvipa = state.config.dvipa
    const own = this.ownRecords(state)
    const keep = new Set(own.map((r) => `${r.kind}/${r.id}`))
    const stored = await store.listRecords(dvipa)
    const stale: { kind: RecordKind; id: string }[] = []
    for (const kind of RECORD_KINDS) {
      for (const r of stored[kind]) if (!keep.has(`${kind}/${r.id}`)) stale.push({ kind, id: r.id })
    }
    for (const c of stored.corrupt) stale.push({ kind: c.kind, id: c.id })
    if (reason === 'audit') {
      const present = new Set<string>()
      for (const kind of RECORD_KINDS) for (const r of stored[kind]) present.add(`${kind}/${r.id}`)
      const missing = own.filter((r) => !present.has(`${r.kind}/${r.id}`))
      if (stale.length === 0 && missing.length === 0) return
      // the records may have changed since they were listed: only under the current fence
      if (state.ownership.fence()?.epoch !== fence.epoch) return
      if (stale.length > 0) await store.deleteRecords(dvipa, stale, fence)
      if (missing.length > 0) await store.putRecords(dvipa, missing, fence)
      this.emit({ type: 'ownership:records-restored', dvipa, epoch: fence.epoch, reason })
      return
    }
    if (stale.length > 0) await store.deleteRecords(dvipa, stale, fence)
    await store.putRecords(dvipa, own, fence)
    await store.settleTakeover(dvipa, fence)
    this.emit({ type: 'ownership:records-restored', dvipa, epoch: fence.epoch, reason })
  }

  /**
   * The store's change stream says a DVIPA's records were read and cleared at `epoch`. When this
   * node owns the DVIPA at that epoch and its takeover is done, that was no take of its own: a
   * duplicated read-and-clear the store applied again late. It moved this owner's records into a
   * journal; write them back and settle, so the store holds what the owner holds.
   */
  private onRecordsTaken(dvipa: Dvipa, epoch: number): void {
    const state = this.states.get(dvipa)
    if (state === undefined) return
    const s = state.ownership.current()
    if (s.role !== 'owner' || s.fence.epoch !== epoch) return
    const fence = s.fence
    void this.write(state, []).then(() =>
      state.ownership.fence()?.epoch === fence.epoch
        ? this.reconcile(state, fence, 'replayed-take').catch((err: Error) => {
            if (err.name === StaleEpochError.name)
              state.ownership.onStaleWrite(err as StaleEpochError)
            else this.counts.storeErrors++
          })
        : undefined
    )
  }

  /** The IKE SA entry that holds the Child SA `phase2Id`, if any. */
  private entryOfChild(
    state: DvipaState,
    phase2Id: string
  ): { phase1: Phase1Record; phase2: Map<string, Phase2Record> } | undefined {
    const phase1Id = state.childOwner.get(phase2Id)
    const entry = phase1Id === undefined ? undefined : state.sas.get(phase1Id)
    return entry?.phase2.has(phase2Id) === true ? entry : undefined
  }

  /** Forgets a Child SA; returns the keys of its phase 2 and filter records. */
  private forgetChild(state: DvipaState, child: Phase2Record): { kind: RecordKind; id: string }[] {
    state.childByInboundSpi.delete(Number.parseInt(child.inboundSpi, 16))
    state.childOwner.delete(child.id)
    const filters = state.filterIds.get(child.id) ?? []
    state.filterIds.delete(child.id)
    return [
      { kind: 'phase2', id: child.id },
      ...filters.map((id) => ({ kind: 'filter' as const, id })),
      ...(state.warm?.forgetChild(child.id) ?? [])
    ]
  }

  // ---- wiring of one DVIPA ----

  /** What the takeover steps reach of this processor for one DVIPA. */
  private takeoverParts(state: DvipaState): TakeoverParts {
    const { clock, store, esp } = this.components
    return {
      node: this.id,
      dvipa: state.config.dvipa,
      clock,
      store,
      esp,
      table: state.table,
      renegotiationConcurrency: this.init.renegotiationConcurrency,
      renegotiationDeadlineMs: this.init.renegotiationDeadlineMs,
      retry: this.init.retry,
      emit: (e) => this.emit(e),
      changed: () => this.publishStatus(),
      open: async () => this.openDvipa(state, false),
      close: async () => this.closeDvipa(state),
      track: (phase1, phase2) => this.track(state, phase1, phase2),
      ownRecords: () => this.ownRecords(state),
      startRecording: () => {
        state.recording = true
      },
      notifyTargets: async (epoch) => this.notifyTargets(state, epoch),
      serving: (fence) =>
        state.ownership.fence()?.epoch === fence.epoch && state.ownership.mayServe(),
      ike: () => state.ike,
      keepTimer: (timer) => void state.retryTimers.add(timer),
      forgetTimer: (timer) => void state.retryTimers.delete(timer),
      ...(state.warm !== undefined
        ? { warm: { keys: state.warm.keys, blockSize: this.warmBlock, recorder: state.warm } }
        : {})
    }
  }

  /** The effects of the ownership unit's transitions for one DVIPA. */
  private ownershipActions(state: () => DvipaState): OwnershipActions {
    return {
      takeOver: async (run) =>
        runTakeover(this.takeoverParts(state()), {
          previousOwner: run.from,
          fence: run.fence,
          signal: run.signal,
          detectedAt: run.detectedAt,
          silentMs: run.silentMs,
          claim: run.claim
        }),
      serveFresh: async (fence) => {
        await this.openDvipa(state(), true)
        await this.notifyTargets(state(), fence.epoch)
      },
      stopServing: async () => {
        await this.closeDvipa(state())
        if (this.started) void this.applyMailbox()
      },
      audit: async (fence) => {
        const s = state()
        // after the writes queued so far, so that a record just written is not taken for stale
        await this.write(s, [])
        if (s.ownership.fence()?.epoch === fence.epoch) await this.reconcile(s, fence, 'audit')
        // warm mode: where an heir's anti-replay windows start, at most an audit old
        if (s.ownership.fence()?.epoch === fence.epoch) await s.warm?.refreshInbound()
      },
      reassert: async (fence) => {
        const s = state()
        // A node that claimed below the highest epoch (it knew no better) may have taken the
        // address and given it up again: take it once more (idempotent; announces it anew).
        if (s.ike !== undefined && this.components.network.isStarted())
          await this.components.network.acquireAddress(s.config.dvipa).catch(() => undefined)
        await this.reconcile(s, fence, 'epoch-regressed')
        const targets = await this.notifyTargets(s, fence.epoch)
        this.emit({ type: 'targets:notified', dvipa: s.config.dvipa, targets, epoch: fence.epoch })
      },
      query: () => {
        const s = state()
        const query: ClusterMessage = {
          type: 'ownership:notice',
          dvipa: s.config.dvipa,
          owner: this.id,
          epoch: OWNERSHIP_QUERY_EPOCH
        }
        for (const node of s.config.ranks)
          if (node !== this.id) this.components.link.send(node, query).catch(() => undefined)
      },
      emit: (e) => this.emit(e),
      changed: () => this.publishStatus()
    }
  }

  /** Removes idle connections from the tables and the store, every tenth of the idle time. */
  private scheduleIdleSweep(): void {
    const idle = this.init.connectionIdleMs
    if (idle <= 0) return
    const { clock } = this.components
    this.idleTimer = clock.setTimeout(() => {
      const before = clock.monotonic() - idle
      for (const state of this.states.values()) {
        if (state.ownership.current().role !== 'owner') continue
        const removed = state.table.expireIdle(before, clock.monotonic())
        if (removed.length === 0) continue
        for (const connection of removed) this.emit({ type: 'connection:expired', connection })
        void this.write(
          state,
          [],
          removed.map((c) => ({ kind: 'connection' as const, id: c.id }))
        ).catch(() => void this.counts.storeErrors++)
        this.publishStatus()
      }
      if (this.started) this.scheduleIdleSweep()
    }, idle / 10)
  }

  private newState(config: DvipaConfig): DvipaState {
    const state: DvipaState = {
      config,
      ownership: new OwnershipController(
        {
          store: this.components.store,
          clock: this.components.clock,
          detector: this.components.detector,
          actions: this.ownershipActions(() => state)
        },
        {
          node: this.id,
          dvipa: config.dvipa,
          ranks: config.ranks,
          rankDelayMs: this.init.rankDelayMs,
          ownershipCheckMs: this.init.ownershipCheckMs,
          selfFenceMs: this.init.selfFenceMs,
          pauseThresholdMs: this.init.pauseThresholdMs,
          pauseGraceMs: this.init.pauseGraceMs,
          failureBackoffMs: this.init.failureBackoffMs,
          joinWindowMs: this.init.joinWindowMs
        }
      ),
      table: new ConnectionTable(config.dvipa, config.targets, config.policy),
      ike: undefined,
      sockets: [],
      subscriptions: [],
      recording: true,
      childByInboundSpi: new Map(),
      sas: new Map(),
      byPeer: new Map(),
      bySpi: new Map(),
      childOwner: new Map(),
      childSas: 0,
      filterIds: new Map(),
      writes: Promise.resolve(),
      pendingSas: new Map(),
      serial: Promise.resolve(),
      retryTimers: new Set(),
      warm: undefined
    }
    if (config.warm === true && this.warmKeys !== undefined) {
      state.warm = new WarmRecorder({
        dvipa: config.dvipa,
        keys: this.warmKeys,
        blockSize: this.warmBlock,
        esp: this.components.esp,
        epoch: () => state.ownership.fence()?.epoch,
        write: async (put, remove) => this.write(state, put, remove, true)
      })
    }
    return state
  }

  /** Sends the ownership notice to every target (and the local target stack). */
  private async notifyTargets(state: DvipaState, epoch: number): Promise<NodeId[]> {
    const notice: ClusterMessage = {
      type: 'ownership:notice',
      dvipa: state.config.dvipa,
      owner: this.id,
      epoch
    }
    const told: NodeId[] = []
    for (const target of state.config.targets) {
      if (target.node === this.id && this.components.localTarget !== undefined) {
        await this.components.localTarget.receive({ from: this.id, message: notice })
      } else {
        await this.components.link.send(target.node, notice).catch(() => undefined)
      }
      told.push(target.node)
    }
    return told
  }

  private onLinkMessage({ from, message }: ClusterEnvelope): void {
    if (message.type === 'packet:outbound') this.onOutbound(from, message)
    else if (message.type === 'ownership:notice' && message.epoch === OWNERSHIP_QUERY_EPOCH) {
      // A distribution processor of the DVIPA asks who owns it (it joins): an owner answers with
      // its notice. The link authenticated the sender; only a node ranked for the DVIPA is told.
      const state = this.states.get(message.dvipa)
      const fence = state?.ownership.fence()
      if (state === undefined || fence === undefined || !state.config.ranks.includes(from)) return
      this.components.link
        .send(from, {
          type: 'ownership:notice',
          dvipa: message.dvipa,
          owner: this.id,
          epoch: fence.epoch
        })
        .catch(() => undefined)
    } else if (message.type === 'ownership:notice' && message.owner !== this.id) {
      this.states.get(message.dvipa)?.ownership.observe(message.epoch, message.owner, 'link')
    }
  }

  /** Inbound: an ESP-in-UDP datagram on the DVIPA's port 4500. */
  private onEspDatagram(state: DvipaState, data: Uint8Array): void {
    if (!state.ownership.mayServe()) return
    const result = this.components.esp.unprotectUdp(data)
    if (result.action === 'ike' || result.action === 'keepalive') return
    if (result.action !== 'accept') return void this.counts.dropped++
    const flow = this.flows.read(result.packet)
    if (flow === undefined) return void this.counts.dropped++
    const child = state.childByInboundSpi.get(result.spi)
    const { clock } = this.components
    const routed = state.table.route(
      flow,
      clock.now(),
      child?.id ?? null,
      this.id,
      clock.monotonic(),
      result.packet // TCP state, MSS clamping, ICMP errors to their connection
    )
    if (routed === undefined) return void this.counts.dropped++
    const { connection, created } = routed
    if (created) {
      this.emit({ type: 'connection:created', connection })
      if (state.recording)
        void this.write(state, [connection]).catch(() => void this.counts.storeErrors++)
      this.publishStatus()
    }
    this.counts.inbound++
    const message: ClusterMessage = {
      type: 'packet:inbound',
      dvipa: state.config.dvipa,
      epoch: state.ownership.epoch,
      flow,
      packet: result.packet
    }
    if (!connection.distributed && this.components.localTarget !== undefined) {
      void this.components.localTarget.receive({ from: this.id, message })
    } else {
      this.forward(connection.target, message)
    }
  }

  /** Hands a packet to a target: without a promise when the link can (`post`). */
  private forward(target: NodeId, message: ClusterMessage): void {
    const link = this.components.link
    if (link.post !== undefined) {
      if (!link.post(target, message)) this.counts.dropped++
    } else {
      link.send(target, message).catch(this.countDropped)
    }
  }

  private readonly countDropped = (): void => void this.counts.dropped++

  /** Outbound: a cleartext reply from a target, to be protected and sent to the peer. */
  private onOutbound(
    from: NodeId,
    message: Extract<ClusterMessage, { type: 'packet:outbound' }>
  ): void {
    const state = this.states.get(message.dvipa)
    if (state === undefined) {
      this.counts.notOwner++
      return
    }
    const epoch = state.ownership.epoch
    if (message.epoch > epoch) {
      // The target knows a newer owner than this node: stop encrypting for this DVIPA now.
      this.counts.notOwner++
      state.ownership.observe(message.epoch, undefined, 'target')
      return
    }
    // A node taking over holds the new epoch's claim: it serves replies before the takeover ends.
    if (!state.ownership.mayServe() || state.sockets.length < 2) {
      this.counts.notOwner++
      return
    }
    if (message.epoch < epoch && from !== this.id) {
      // The target missed the notice: tell it again, and serve the packet (this node is the owner).
      this.components.link
        .send(from, {
          type: 'ownership:notice',
          dvipa: state.config.dvipa,
          owner: this.id,
          epoch
        })
        .catch(() => undefined)
    }
    // TCP state and MSS clamping; a packet too big for the tunnel gets ICMP back (PMTUD)
    const tooBig = state.table.outbound(message.packet, this.components.clock.monotonic())
    if (tooBig !== undefined) {
      this.counts.dropped++
      const icmp: ClusterMessage = {
        ...message,
        type: 'packet:inbound',
        epoch,
        packet: tooBig
      }
      if (from === this.id) void this.components.localTarget?.receive({ from, message: icmp })
      else this.components.link.send(from, icmp).catch(() => undefined)
      return
    }
    const result = this.components.esp.protect(message.packet)
    if (result.action !== 'protect' || !result.udp) return void this.counts.dropped++
    state.sockets[1]!.send(result.packet, result.to)
    this.counts.outbound++
  }

  /** Keeps the store in step with the IKE service of an owned DVIPA. */
  private onIkeEvent(state: DvipaState, event: IkeEvent): void {
    let touched: string | undefined
    switch (event.type) {
      case 'ike:established':
        this.track(state, event.phase1, [])
        touched = event.phase1.id
        break
      case 'sa:established': {
        const entry = state.sas.get(event.phase1Id)
        if (entry === undefined) return
        this.track(state, entry.phase1, [event.phase2])
        touched = event.phase1Id
        this.dropDuplicates(state, entry.phase1)
        break
      }
      case 'sa:rekeyed': {
        const entry = this.entryOfChild(state, event.previousId)
        if (entry !== undefined) {
          const old = entry.phase2.get(event.previousId)!
          entry.phase2.delete(event.previousId)
          state.childSas--
          const keys = this.forgetChild(state, old)
          this.track(state, entry.phase1, [event.phase2])
          touched = entry.phase1.id
          if (state.recording) this.remove(state, keys)
        }
        break
      }
      case 'sa:deleted': {
        const entry = this.entryOfChild(state, event.phase2Id)
        if (entry !== undefined) {
          const old = entry.phase2.get(event.phase2Id)!
          entry.phase2.delete(event.phase2Id)
          state.childSas--
          const keys = this.forgetChild(state, old)
          touched = entry.phase1.id
          if (state.recording) this.remove(state, keys)
        }
        break
      }
      case 'ike:rekeyed': {
        for (const [id, entry] of this.sasOfSpi(state, event.previous.initiatorSpi)) {
          if (entry.phase1.ikeSaId.responderSpi !== event.previous.responderSpi) continue
          state.sas.delete(id)
          unindexSa(state, entry.phase1)
          const replaced = state.sas.get(event.phase1.id)
          if (replaced !== undefined) {
            unindexSa(state, replaced.phase1)
            state.childSas -= replaced.phase2.size
          }
          state.sas.set(event.phase1.id, { phase1: event.phase1, phase2: entry.phase2 })
          indexSa(state, event.phase1)
          for (const child of entry.phase2.keys()) state.childOwner.set(child, event.phase1.id)
          touched = event.phase1.id
          if (state.recording && id !== event.phase1.id) {
            this.remove(state, [
              { kind: 'phase1', id },
              { kind: 'correlation', id },
              ...(state.warm?.forgetIke(id) ?? [])
            ])
          }
        }
        break
      }
      case 'ike:deleted': {
        for (const [id, entry] of this.sasOfSpi(state, event.ikeSaId.initiatorSpi)) {
          state.sas.delete(id)
          unindexSa(state, entry.phase1)
          state.childSas -= entry.phase2.size
          const keys: { kind: RecordKind; id: string }[] = [
            { kind: 'phase1', id },
            { kind: 'correlation', id },
            ...(state.warm?.forgetIke(id) ?? [])
          ]
          for (const child of entry.phase2.values()) keys.push(...this.forgetChild(state, child))
          if (state.recording) this.remove(state, keys)
        }
        break
      }
      case 'ike:failed':
        return
    }
    if (state.recording && touched !== undefined)
      void this.recordSa(state, touched).catch(() => void this.counts.storeErrors++)
    this.publishStatus()
  }

  /** The IKE SAs of `state` with this initiator SPI (a copy: the caller may change `sas`). */
  private sasOfSpi(
    state: DvipaState,
    initiatorSpi: string
  ): [string, { phase1: Phase1Record; phase2: Map<string, Phase2Record> }][] {
    const ids = state.bySpi.get(initiatorSpi)
    if (ids === undefined) return []
    return [...ids].map((id) => [id, state.sas.get(id)!])
  }

  /**
   * One IKE SA per peer and identities: when one with a Child SA is up, every older IKE SA with
   * the same peer address and identities, and no Child SA it does not replace, is deleted (at the peer too, and from the store by its
   * `ike:deleted`), with a logged reason. So a peer that re-established on its own while a
   * takeover renegotiated its old IKE SA ends with one IKE SA, the newer, at both ends.
   */
  private dropDuplicates(state: DvipaState, kept: Phase1Record): void {
    const ike = state.ike
    if (ike === undefined) return
    const same = state.byPeer.get(peerKey(kept))
    if (same === undefined || same.size < 2) return
    // a Child SA is replaced when the kept IKE SA has one with the same selectors: an older IKE
    // SA is a duplicate only if it has no Child SA or the kept one replaces each of them (a
    // peer may run two tunnels with other selectors under the same identities)
    // (the same traffic, as sets of selectors, however ordered or written)
    const keptEntry = state.sas.get(kept.id)
    const replacing = [...(keptEntry?.phase2.values() ?? [])]
    const replaced = (c: Phase2Record): boolean =>
      replacing.some((r) => sameChildSelectors(r.selectors, c.selectors))
    for (const id of [...same]) {
      const other = state.sas.get(id)
      if (other === undefined || id === kept.id) continue
      if (other.phase1.establishedAt > kept.establishedAt) continue
      if (![...other.phase2.values()].every(replaced)) continue
      this.emit({
        type: 'takeover:merged',
        dvipa: state.config.dvipa,
        phase1Id: id,
        into: kept.id,
        reason: 'same-peer',
        childSas: other.phase2.size
      })
      void ike.deleteIkeSa(id).catch(() => undefined)
    }
  }

  /**
   * Records a filter installed for a Child SA of an owned DVIPA that its records do not hold
   * yet, so the store keeps every filter the engine holds for the owner's SAs.
   */
  private onFilterInstalled(filter: DynamicFilter): void {
    const slash = filter.id.indexOf('/')
    if (slash <= 0) return
    const childId = filter.id.slice(0, slash)
    for (const state of this.states.values()) {
      if (!state.recording) continue
      const phase1Id = state.childOwner.get(childId)
      const child =
        phase1Id === undefined ? undefined : state.sas.get(phase1Id)?.phase2.get(childId)
      if (child === undefined) continue
      const ids = state.filterIds.get(child.id) ?? []
      if (ids.includes(filter.id)) return
      state.filterIds.set(child.id, [...ids, filter.id])
      void this.write(state, [filterRecord(state.config.dvipa, filter, child.id)]).catch(
        () => void this.counts.storeErrors++
      )
      return
    }
  }

  /** Keeps a filter the ESP engine installed for a Child SA (see `childFilters`). */
  private keepFilter(filter: DynamicFilter): void {
    const slash = filter.id.indexOf('/')
    if (slash <= 0) return
    const child = filter.id.slice(0, slash)
    const filters = this.childFilters.get(child) ?? new Map<string, DynamicFilter>()
    filters.set(filter.id, filter)
    this.childFilters.set(child, filters)
  }

  /** Forgets a filter the ESP engine removed. */
  private dropFilter(id: string): void {
    const slash = id.indexOf('/')
    if (slash <= 0) return
    const child = id.slice(0, slash)
    const filters = this.childFilters.get(child)
    if (filters === undefined) return
    filters.delete(id)
    if (filters.size === 0) this.childFilters.delete(child)
  }

  /** Deletes records from the store in the background, counting failures. */
  private remove(state: DvipaState, keys: { kind: RecordKind; id: string }[]): void {
    void this.write(state, [], keys).catch(() => void this.counts.storeErrors++)
  }

  /**
   * Writes one IKE SA's phase 1, phase 2, correlation and filter records, as they are when the
   * write's turn comes. The records are read then, not when the event queued the write: a write
   * queued behind slow ones must not put back what the IKE SA held earlier over what another
   * write (an audit's, a reconcile's) stored since (a correlation without its Child SA, say, and
   * a takeover then with an IKE SA and no Child SA to renegotiate). A write queued and not yet
   * begun serves every later event of the same IKE SA: one write where there were several.
   */
  private recordSa(state: DvipaState, phase1Id: string): Promise<void> {
    const queued = state.pendingSas.get(phase1Id)
    if (queued !== undefined) return queued
    const records = (): DvipaRecord[] => {
      // (unless the DVIPA was closed and this IKE SA queued again since)
      if (state.pendingSas.get(phase1Id) === written) state.pendingSas.delete(phase1Id)
      const sa = state.sas.get(phase1Id)
      if (sa === undefined) return []
      const out: DvipaRecord[] = saRecords(sa.phase1, [...sa.phase2.values()])
      const kept = (): DynamicFilter[] =>
        [...sa.phase2.keys()].flatMap((id) => [...(this.childFilters.get(id)?.values() ?? [])])
      out.push(...this.filtersOf(state, sa.phase2.values(), kept))
      return out
    }
    const written = this.write(state, records)
    // a write skipped without running (no fence) leaves nothing pending
    if (state.ownership.fence() !== undefined) state.pendingSas.set(phase1Id, written)
    return written
  }

  /** Applies the deletes other nodes left for this one: SAs it must never use again. */
  private async applyMailbox(): Promise<void> {
    const { store, esp } = this.components
    let messages
    try {
      messages = await store.takeMessages(this.id)
    } catch {
      return
    }
    for (const message of messages) {
      let childSas = 0
      for (const child of message.childSas) {
        if (esp.removeSa(Number.parseInt(child.inboundSpi, 16), 'inbound')) childSas++
        esp.removeSa(Number.parseInt(child.outboundSpi, 16), 'outbound')
      }
      this.states.get(message.dvipa)?.ownership.observe(message.epoch, message.from, 'mailbox')
      this.emit({
        type: 'deletes:applied',
        dvipa: message.dvipa,
        from: message.from,
        ikeSas: message.ikeSas.length,
        childSas
      })
    }
  }
}

/** The role a status reports for an ownership state. */
function statusRole(ownership: OwnershipController): DvipaRole {
  const s = ownership.role
  if (s.role === 'taking-over') return s.step === 'rank-delay' ? 'backup' : 'taking-over'
  if (s.role === 'joining') return 'backup'
  return s.role
}

/**
 * Creates a {@link DefaultDistributionProcessor}.
 *
 * @param components - store, ESP engine, IKE factory, detector, link, network and clock
 * @param init - node id, DVIPAs and timing
 */
export function defaultDistributionProcessor(
  components: DefaultDistributionProcessorComponents,
  init: DefaultDistributionProcessorInit
): DefaultDistributionProcessor {
  return new DefaultDistributionProcessor(components, init)
}

/** An IKE SA's peer address and identities, as one key: duplicates share it. */
function peerKey(p: Phase1Record): string {
  return `${p.localIdentity.type}:${p.localIdentity.value}|${p.remoteIdentity.type}:${p.remoteIdentity.value}|${p.peer.address}`
}

function indexSa(state: DvipaState, phase1: Phase1Record): void {
  const key = peerKey(phase1)
  const ids = state.byPeer.get(key)
  if (ids === undefined) state.byPeer.set(key, new Set([phase1.id]))
  else ids.add(phase1.id)
  const spi = phase1.ikeSaId.initiatorSpi
  const same = state.bySpi.get(spi)
  if (same === undefined) state.bySpi.set(spi, new Set([phase1.id]))
  else same.add(phase1.id)
}

function unindexSa(state: DvipaState, phase1: Phase1Record): void {
  const key = peerKey(phase1)
  const ids = state.byPeer.get(key)
  if (ids !== undefined) {
    ids.delete(phase1.id)
    if (ids.size === 0) state.byPeer.delete(key)
  }
  const spi = phase1.ikeSaId.initiatorSpi
  const same = state.bySpi.get(spi)
  if (same === undefined) return
  same.delete(phase1.id)
  if (same.size === 0) state.bySpi.delete(spi)
}
