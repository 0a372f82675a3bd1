import { BehaviorSubject, Subject, type Observable, type Subscription } from 'rxjs'
import {
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
  type DvipaStatus,
  type Endpoint,
  type EspEngine,
  type FailureDetector,
  type FilterRecord,
  type Fence,
  type IkeEvent,
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
import { readFlow } from '@vipsec/esp-software'
import { ConnectionTable, type SelectionPolicy, type TargetConfig } from './connection-table.js'
import { filterRecord, saRecords } from './records.js'
import { runTakeover, type TakeoverHost } from './takeover.js'
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
   * How often each node reads the ownership back from the store, ms: an owner to learn of a
   * higher epoch, a backup to correct a missed change event and to take over a DVIPA that was
   * released or whose owner is failed with no takeover under way. Default 250.
   */
  ownershipCheckMs?: number
  /**
   * An owner that could not confirm its ownership in the store for this long (ms) stops serving
   * the DVIPA (`ownership:fenced`): the backups, which can reach the store, may have taken it over
   * already. It serves again (a takeover from itself) once the store says it is still the owner.
   * Pair it with the lease failure detector and set it below the lease lifetime, so that the
   * owner stops before a backup may start. Default 0 (off: with heartbeats, the backups would
   * still see a fenced owner alive).
   */
  selfFenceMs?: number
}

/** @internal The state of one DVIPA on this node. */
export interface DvipaState {
  config: DvipaConfig
  role: DvipaStatus['role']
  epoch: number
  owner: NodeId | undefined
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
  /** The filter record ids written for each Child SA, so that they can be deleted with it. */
  filterIds: Map<string, string[]>
  /** Serialises the store writes of this DVIPA. */
  writes: Promise<void>
  /** A takeover in progress. */
  takeover: Promise<TakeoverReport> | undefined
  /** Monotonic ms when the store last confirmed this node's ownership. */
  confirmedAt: number
  /** Whether this node stopped serving because it could not reach the store. */
  fenced: boolean
  /** The owner a takeover from failed (not lost: failed, e.g. the store was down), to retry. */
  failedTakeoverOf: NodeId | undefined
  /** Monotonic ms of the last renegotiation retry timers, so they stop when the DVIPA is lost. */
  retryTimers: Set<ReturnType<Clock['setTimeout']>>
}

/**
 * The default distribution processor. As owner of a DVIPA it terminates IKE (through a per-DVIPA
 * IKE service) and ESP-in-UDP (through the node's ESP engine) on the DVIPA's ports 500 and 4500,
 * distributes each new flow to a target and forwards its cleartext over the cluster link,
 * protects what targets send back, and records every SA, filter and connection in the coupling
 * store under its epoch. As a backup it watches the owner and, when the failure detector
 * declares it failed, runs the takeover (see `runTakeover`). An owner that learns of a higher
 * epoch (a store change, a rejected write, a notice) stops serving at once.
 */
export class DefaultDistributionProcessor implements DistributionProcessor, TakeoverHost {
  /** This node's id. */
  readonly id: NodeId
  /** @internal */
  readonly components: DefaultDistributionProcessorComponents
  /** @internal */
  readonly init: Required<Omit<DefaultDistributionProcessorInit, 'retry'>> & {
    retry: Required<RetryOptions>
  }
  /** @internal */
  readonly states = new Map<Dvipa, DvipaState>()
  private events = new Subject<DistributionEvent>()
  private status = new BehaviorSubject<DvipaStatus[]>([])
  private subscriptions: Subscription[] = []
  private started = false
  private idleTimer: ReturnType<Clock['setTimeout']> | undefined
  private checkTimer: ReturnType<Clock['setTimeout']> | undefined
  private readonly counts: DistributionCounters = {
    inbound: 0,
    outbound: 0,
    dropped: 0,
    notOwner: 0,
    storeErrors: 0
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
    this.init = {
      node: init.node,
      dvipas: init.dvipas,
      heartbeats: init.heartbeats,
      targetHeartbeats: init.targetHeartbeats ?? {},
      rankDelayMs: init.rankDelayMs ?? 200,
      renegotiationConcurrency: init.renegotiationConcurrency ?? 64,
      renegotiationDeadlineMs: init.renegotiationDeadlineMs ?? 10_000,
      connectionIdleMs: init.connectionIdleMs ?? 300_000,
      ownershipCheckMs: init.ownershipCheckMs ?? 250,
      selfFenceMs: init.selfFenceMs ?? 0,
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

  /** Packet counters (a copy). */
  counters(): DistributionCounters {
    return { ...this.counts }
  }

  /**
   * Starts: applies deletes left in this node's mailbox, then for each DVIPA claims it (the
   * primary, if nobody owns it), takes it over (if the store still names this node as owner
   * after a restart: its SAs died with the process) or watches its owner (a backup).
   * Idempotent.
   */
  async start(): Promise<void> {
    if (this.started) return
    this.started = true
    if (this.events.isStopped) this.events = new Subject()
    if (this.status.isStopped) this.status = new BehaviorSubject<DvipaStatus[]>([])
    const { store, detector, link, localTarget } = this.components
    this.subscriptions.push(
      detector.events$.subscribe((e) => {
        if (e.type === 'node:failed') this.onNodeFailed(e.node, e.silentMs)
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
          this.onOwnershipChange(e.ownership.dvipa, e.ownership.owner, e.ownership.epoch)
        if (e.type === 'mailbox:posted' && e.to === this.id) void this.applyMailbox()
      }),
      link.messages$.subscribe((envelope) => this.onLinkMessage(envelope))
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
    this.scheduleOwnershipCheck()
    for (const config of this.init.dvipas) {
      const state = this.newState(config)
      this.states.set(config.dvipa, state)
      await this.join(state)
    }
    this.publishStatus()
  }

  /** Stops serving every DVIPA (without releasing ownership in the store), completes the streams. Idempotent. */
  async stop(): Promise<void> {
    if (!this.started) return
    this.started = false
    if (this.idleTimer !== undefined) this.components.clock.clearTimeout(this.idleTimer)
    this.idleTimer = undefined
    if (this.checkTimer !== undefined) this.components.clock.clearTimeout(this.checkTimer)
    this.checkTimer = undefined
    for (const s of this.subscriptions) s.unsubscribe()
    this.subscriptions = []
    this.components.localTarget?.attachLocalOwner(undefined)
    for (const state of this.states.values()) await this.closeDvipa(state)
    this.states.clear()
    this.events.complete()
    this.status.complete()
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
   * Takes a DVIPA over from `previousOwner` now (steps 4 to 12).
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
    if (state.takeover !== undefined) return state.takeover
    state.takeover = runTakeover(this, state, previousOwner, {
      detectedAt: this.components.clock.monotonic(),
      silentMs: 0
    })
    try {
      return await state.takeover
    } finally {
      state.takeover = undefined
      this.publishStatus()
    }
  }

  // ---- TakeoverHost: what the takeover coordinator uses ----

  /** @internal */
  emit(event: DistributionEvent): void {
    if (!this.events.closed && !this.events.isStopped) this.events.next(event)
  }

  /** @internal */
  publishStatus(): void {
    if (this.status.isStopped) return
    this.status.next(
      [...this.states.values()].map((s) => {
        let childSas = 0
        for (const sa of s.sas.values()) childSas += sa.phase2.size
        return {
          dvipa: s.config.dvipa,
          role: s.role,
          epoch: s.epoch,
          owner: s.owner,
          ikeSas: s.sas.size,
          childSas,
          connections: s.table.size
        }
      })
    )
  }

  /**
   * @internal Takes the DVIPA's address and opens its IKE service (recording off until asked).
   */
  async openDvipa(state: DvipaState, recording: boolean): Promise<void> {
    const { network, ikeFactory } = this.components
    const dvipa = state.config.dvipa
    await network.acquireAddress(dvipa)
    const udp500 = await network.openUdp({ address: dvipa, port: 500 })
    const udp4500 = await network.openUdp({ address: dvipa, port: 4500 })
    state.sockets = [udp500, udp4500]
    const ike = ikeFactory({ udp500, udp4500 })
    state.ike = ike
    state.recording = recording
    state.subscriptions.push(
      ike.events$.subscribe((e) => this.onIkeEvent(state, e)),
      udp4500.datagrams$.subscribe(({ data }) => this.onEspDatagram(state, data))
    )
    await ike.start()
  }

  /** @internal Stops serving a DVIPA: IKE service (which removes its SAs), sockets, address. */
  async closeDvipa(state: DvipaState): Promise<void> {
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
    state.filterIds.clear()
    state.childByInboundSpi.clear()
    if (this.components.network.isStarted()) {
      await this.components.network.releaseAddress(state.config.dvipa).catch(() => undefined)
    }
  }

  /** @internal The fence of a DVIPA this node owns. */
  fence(state: DvipaState): Fence {
    return { owner: this.id, epoch: state.epoch }
  }

  /**
   * @internal Queues fenced writes for a DVIPA. A StaleEpochError means another node owns it
   * now: this node stops serving it.
   */
  write(
    state: DvipaState,
    put: DvipaRecord[],
    remove: { kind: RecordKind; id: string }[] = []
  ): Promise<void> {
    const fence = this.fence(state)
    const run = async (): Promise<void> => {
      if (state.epoch !== fence.epoch) return
      try {
        if (remove.length > 0)
          await this.components.store.deleteRecords(state.config.dvipa, remove, fence)
        if (put.length > 0) await this.components.store.putRecords(state.config.dvipa, put, fence)
      } catch (err) {
        if ((err as Error).name === StaleEpochError.name) {
          await this.loseOwnership(state, (err as StaleEpochError).current)
          return
        }
        throw err
      }
    }
    state.writes = state.writes.then(run, run)
    return state.writes
  }

  /** @internal Registers an IKE SA (and its Child SAs) in the DVIPA's bookkeeping. */
  track(state: DvipaState, phase1: Phase1Record, phase2: Phase2Record[]): void {
    const entry = state.sas.get(phase1.id) ?? { phase1, phase2: new Map<string, Phase2Record>() }
    entry.phase1 = phase1
    for (const child of phase2) {
      entry.phase2.set(child.id, child)
      state.childByInboundSpi.set(Number.parseInt(child.inboundSpi, 16), child)
    }
    state.sas.set(phase1.id, entry)
  }

  /** @internal Stops serving a DVIPA because `epoch` superseded this node's. */
  async loseOwnership(state: DvipaState, epoch: number): Promise<void> {
    if (state.role !== 'owner' && state.role !== 'taking-over') return
    const had = state.epoch
    state.role = 'backup'
    await this.closeDvipa(state)
    this.emit({
      type: 'ownership:lost',
      dvipa: state.config.dvipa,
      epoch: had,
      supersededBy: epoch
    })
    this.publishStatus()
    await this.applyMailbox()
  }

  /**
   * @internal The filters the ESP engine holds for Child SAs, as records (one listing of the
   * SPD for all of them); remembers their ids so they are deleted with their Child SA.
   */
  filtersOf(state: DvipaState, children: Iterable<Phase2Record>): FilterRecord[] {
    const wanted = new Map<string, Phase2Record>()
    for (const child of children) wanted.set(child.id, child)
    const records: FilterRecord[] = []
    const ids = new Map<string, string[]>()
    for (const f of this.components.esp.listFilters()) {
      const slash = f.id.indexOf('/')
      const owner = slash > 0 ? wanted.get(f.id.slice(0, slash)) : undefined
      if (owner === undefined) continue
      records.push(filterRecord(state.config.dvipa, f, owner.id))
      ids.set(owner.id, [...(ids.get(owner.id) ?? []), f.id])
    }
    for (const id of wanted.keys()) state.filterIds.set(id, ids.get(id) ?? [])
    return records
  }

  /** @internal Forgets a Child SA; returns the keys of its phase 2 and filter records. */
  forgetChild(state: DvipaState, child: Phase2Record): { kind: RecordKind; id: string }[] {
    state.childByInboundSpi.delete(Number.parseInt(child.inboundSpi, 16))
    const filters = state.filterIds.get(child.id) ?? []
    state.filterIds.delete(child.id)
    return [
      { kind: 'phase2', id: child.id },
      ...filters.map((id) => ({ kind: 'filter' as const, id }))
    ]
  }

  // ---- internals ----

  /**
   * Reads the ownership of each DVIPA back from the store: an owner that sees a higher epoch stops
   * serving; one that cannot reach the store for `selfFenceMs` fences itself; a fenced node that
   * finds it still owns the DVIPA takes it over from itself.
   */
  private scheduleOwnershipCheck(): void {
    const { clock, store } = this.components
    const every = this.init.ownershipCheckMs
    if (every <= 0) return
    this.checkTimer = clock.setTimeout(() => {
      void (async () => {
        for (const state of this.states.values()) {
          if (state.role === 'backup' && !state.fenced) {
            // A backup refreshes its view too: a change event may have been missed. And it takes
            // over a DVIPA nobody serves: one released (a takeover failed after its claim), or
            // one whose owner it failed to take over from (say the store was down at the claim)
            // while its detector still holds that owner failed.
            const o = await store.getOwnership(state.config.dvipa).catch(() => undefined)
            if (o === undefined) continue
            this.onOwnershipChange(state.config.dvipa, o.owner, o.epoch)
            const retry =
              o.owner !== null &&
              state.failedTakeoverOf === o.owner &&
              this.components.detector.health(o.owner) === 'failed'
            if ((o.owner === null || retry) && state.takeover === undefined) {
              this.takeoverQuietly(state, o.owner ?? state.owner ?? this.id)
            }
            continue
          }
          if (state.role !== 'owner' && !state.fenced) continue
          try {
            const ownership = await store.getOwnership(state.config.dvipa)
            state.confirmedAt = clock.monotonic()
            if (ownership.owner !== this.id || ownership.epoch > state.epoch) {
              state.fenced = false
              if (state.role === 'owner') await this.loseOwnership(state, ownership.epoch)
            } else if (state.fenced && state.takeover === undefined) {
              state.fenced = false
              this.takeoverQuietly(state, this.id)
            }
          } catch {
            const silent = clock.monotonic() - state.confirmedAt
            const limit = this.init.selfFenceMs
            if (state.role === 'owner' && limit > 0 && silent >= limit) {
              state.role = 'backup'
              state.fenced = true
              await this.closeDvipa(state)
              this.emit({
                type: 'ownership:fenced',
                dvipa: state.config.dvipa,
                epoch: state.epoch,
                silentMs: silent
              })
              this.publishStatus()
            }
          }
        }
      })().finally(() => {
        if (this.started) this.scheduleOwnershipCheck()
      })
    }, every)
  }

  /** Starts a takeover in the background; its outcome is in the events. */
  private takeoverQuietly(state: DvipaState, previousOwner: NodeId): void {
    state.takeover = runTakeover(this, state, previousOwner, {
      detectedAt: this.components.clock.monotonic(),
      silentMs: 0
    })
    state.takeover
      .catch(() => undefined)
      .finally(() => {
        state.takeover = undefined
        this.publishStatus()
      })
  }

  /** Removes idle connections from the tables and the store, every tenth of the idle time. */
  private scheduleIdleSweep(): void {
    const idle = this.init.connectionIdleMs
    if (idle <= 0) return
    const { clock } = this.components
    this.idleTimer = clock.setTimeout(() => {
      const before = clock.monotonic() - idle
      for (const state of this.states.values()) {
        if (state.role !== 'owner') continue
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
    return {
      config,
      role: 'backup',
      epoch: 0,
      owner: undefined,
      table: new ConnectionTable(config.dvipa, config.targets, config.policy),
      ike: undefined,
      sockets: [],
      subscriptions: [],
      recording: true,
      childByInboundSpi: new Map(),
      sas: new Map(),
      filterIds: new Map(),
      writes: Promise.resolve(),
      takeover: undefined,
      confirmedAt: this.components.clock.monotonic(),
      fenced: false,
      failedTakeoverOf: undefined,
      retryTimers: new Set()
    }
  }

  /** Decides, at start, whether to claim, take over or back up a DVIPA. */
  private async join(state: DvipaState): Promise<void> {
    const { store } = this.components
    const dvipa = state.config.dvipa
    let ownership
    try {
      ownership = await store.getOwnership(dvipa)
    } catch (err) {
      if ((err as Error).name !== 'NotFoundError') throw err
    }
    if (ownership === undefined) {
      if (state.config.ranks[0] !== this.id) return
      const claimed = await store.claimOwnership(dvipa, {
        owner: this.id,
        ranks: state.config.ranks,
        expectedEpoch: 0
      })
      state.epoch = claimed.epoch
      state.owner = this.id
      state.role = 'owner'
      state.confirmedAt = this.components.clock.monotonic()
      this.emit({ type: 'ownership:claimed', dvipa, epoch: claimed.epoch })
      await this.openDvipa(state, true)
      await this.notifyTargets(state)
      return
    }
    state.epoch = ownership.epoch
    state.owner = ownership.owner ?? undefined
    if (ownership.owner !== this.id && ownership.owner !== null) {
      // A node that died while it owned the DVIPA may still hold its address: let it go, or the
      // neighbours could keep sending the DVIPA's traffic here.
      await this.components.network.releaseAddress(dvipa).catch(() => undefined)
    }
    if (ownership.owner === this.id || ownership.owner === null) {
      // This node owned it before a restart (its SAs died with it), or the owner let it go.
      void this.takeover(dvipa, ownership.owner ?? this.id).catch(() => undefined)
    }
  }

  /** @internal Sends the ownership notice to every target (and the local target stack). */
  async notifyTargets(state: DvipaState): Promise<NodeId[]> {
    const notice: ClusterMessage = {
      type: 'ownership:notice',
      dvipa: state.config.dvipa,
      owner: this.id,
      epoch: state.epoch
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

  private onNodeFailed(node: NodeId, silentMs: number): void {
    for (const state of this.states.values()) {
      if (state.role !== 'backup' || !state.config.ranks.includes(this.id)) continue
      if (state.owner !== node) {
        // Maybe this node's view is behind (a missed change event): ask the store.
        void this.components.store
          .getOwnership(state.config.dvipa)
          .then((o) => {
            this.onOwnershipChange(state.config.dvipa, o.owner, o.epoch)
            if (o.owner === node && state.owner === node) this.onNodeFailed(node, silentMs)
          })
          .catch(() => undefined)
        continue
      }
      if (!state.config.ranks.includes(this.id)) continue
      if (state.takeover !== undefined) continue
      state.takeover = runTakeover(this, state, node, {
        detectedAt: this.components.clock.monotonic(),
        silentMs
      })
      state.takeover
        .catch(() => undefined)
        .finally(() => {
          state.takeover = undefined
          this.publishStatus()
        })
    }
  }

  private onOwnershipChange(dvipa: Dvipa, owner: NodeId | null, epoch: number): void {
    const state = this.states.get(dvipa)
    if (state === undefined || epoch <= state.epoch) return
    if (owner === this.id) return
    if (state.role === 'owner') {
      void this.loseOwnership(state, epoch)
    }
    state.epoch = epoch
    state.owner = owner ?? undefined
    this.publishStatus()
  }

  private onLinkMessage({ from, message }: ClusterEnvelope): void {
    if (message.type === 'packet:outbound') this.onOutbound(from, message)
    else if (message.type === 'ownership:notice' && message.owner !== this.id) {
      this.onOwnershipChange(message.dvipa, message.owner, message.epoch)
    }
  }

  /** Inbound: an ESP-in-UDP datagram on the DVIPA's port 4500. */
  private onEspDatagram(state: DvipaState, data: Uint8Array): void {
    if (state.role !== 'owner' && state.role !== 'taking-over') return
    const result = this.components.esp.unprotectUdp(data)
    if (result.action === 'ike' || result.action === 'keepalive') return
    if (result.action !== 'accept') return void this.counts.dropped++
    const flow = readFlow(result.packet)
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
      epoch: state.epoch,
      flow,
      packet: result.packet
    }
    if (!connection.distributed && this.components.localTarget !== undefined) {
      void this.components.localTarget.receive({ from: this.id, message })
    } else {
      this.components.link.send(connection.target, message).catch(() => void this.counts.dropped++)
    }
  }

  /** Outbound: a cleartext reply from a target, to be protected and sent to the peer. */
  private onOutbound(
    from: NodeId,
    message: Extract<ClusterMessage, { type: 'packet:outbound' }>
  ): void {
    const state = this.states.get(message.dvipa)
    // A node taking over holds the new epoch's claim: it serves replies before the takeover ends.
    const serving = state?.role === 'owner' || state?.role === 'taking-over'
    if (state === undefined || !serving || state.sockets.length < 2) {
      this.counts.notOwner++
      return
    }
    if (message.epoch > state.epoch) {
      // The target knows a newer owner than this node: stop encrypting for this DVIPA now.
      this.counts.notOwner++
      void this.loseOwnership(state, message.epoch)
      return
    }
    if (message.epoch < state.epoch && from !== this.id) {
      // The target missed the notice: tell it again, and serve the packet (this node is the owner).
      this.components.link
        .send(from, {
          type: 'ownership:notice',
          dvipa: state.config.dvipa,
          owner: this.id,
          epoch: state.epoch
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
        epoch: state.epoch,
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
        break
      }
      case 'sa:rekeyed': {
        for (const entry of state.sas.values()) {
          const old = entry.phase2.get(event.previousId)
          if (old === undefined) continue
          entry.phase2.delete(event.previousId)
          const keys = this.forgetChild(state, old)
          this.track(state, entry.phase1, [event.phase2])
          touched = entry.phase1.id
          if (state.recording) this.remove(state, keys)
        }
        break
      }
      case 'sa:deleted': {
        for (const entry of state.sas.values()) {
          const old = entry.phase2.get(event.phase2Id)
          if (old === undefined) continue
          entry.phase2.delete(event.phase2Id)
          const keys = this.forgetChild(state, old)
          touched = entry.phase1.id
          if (state.recording) this.remove(state, keys)
        }
        break
      }
      case 'ike:rekeyed': {
        for (const [id, entry] of state.sas) {
          if (entry.phase1.ikeSaId.initiatorSpi !== event.previous.initiatorSpi) continue
          if (entry.phase1.ikeSaId.responderSpi !== event.previous.responderSpi) continue
          state.sas.delete(id)
          state.sas.set(event.phase1.id, { phase1: event.phase1, phase2: entry.phase2 })
          touched = event.phase1.id
          if (state.recording && id !== event.phase1.id) {
            this.remove(state, [
              { kind: 'phase1', id },
              { kind: 'correlation', id }
            ])
          }
        }
        break
      }
      case 'ike:deleted': {
        for (const [id, entry] of state.sas) {
          if (entry.phase1.ikeSaId.initiatorSpi !== event.ikeSaId.initiatorSpi) continue
          state.sas.delete(id)
          const keys: { kind: RecordKind; id: string }[] = [
            { kind: 'phase1', id },
            { kind: 'correlation', id }
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

  /** Deletes records from the store in the background, counting failures. */
  private remove(state: DvipaState, keys: { kind: RecordKind; id: string }[]): void {
    void this.write(state, [], keys).catch(() => void this.counts.storeErrors++)
  }

  /** Writes one IKE SA's phase 1, phase 2, correlation and filter records. */
  private async recordSa(state: DvipaState, phase1Id: string): Promise<void> {
    const sa = state.sas.get(phase1Id)
    if (sa === undefined) return
    const records: DvipaRecord[] = saRecords(sa.phase1, [...sa.phase2.values()])
    records.push(...this.filtersOf(state, sa.phase2.values()))
    await this.write(state, records)
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
      const state = this.states.get(message.dvipa)
      if (
        state !== undefined &&
        message.epoch > state.epoch &&
        (state.role === 'owner' || state.role === 'taking-over')
      ) {
        await this.loseOwnership(state, message.epoch)
      }
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
