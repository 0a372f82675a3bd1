import type { VirtualClock } from '@vipsec/clock'
import type {
  DistributionEvent,
  DvipaStatus,
  Endpoint,
  EspSaParams,
  NodeId
} from '@vipsec/interface'
import { MemoryCouplingStore, type DvipaSlot } from '@vipsec/store-memory'
import { DVIPA, SimulatedCluster } from '../cluster.js'
import { FaultyCouplingStore, type ReplyFault, type StoreDefects } from './faulty-store.js'
import { PausableClock } from './pausable-clock.js'
import {
  CHAOS_TOPOLOGY,
  describeFault,
  FAULT_WINDOW_MS,
  ScheduleRandom,
  type Fault,
  type NodeRef,
  type Schedule
} from './schedule.js'

/** The invariants the checker holds every schedule to. */
export type InvariantName =
  /** A node claimed an epoch at or below one already claimed. */
  | 'epoch-order'
  /** Two nodes claimed the same epoch, or the store granted one twice (before any data loss). */
  | 'epoch-owner'
  /** A DP sent from the DVIPA while another, live DP held a newer claim, for longer than the fencing bound. */
  | 'dual-serve'
  /** A (key, nonce) pair was used twice. */
  | 'nonce-reuse'
  /** After the heal, not exactly one DP owns, holds and serves the DVIPA. */
  | 'converge-owner'
  /** After the heal, a peer (or the owner) does not have exactly one IKE SA per peer. */
  | 'converge-ike'
  /** After the heal, a flow is not answered, or not by its original (or, if that died, a live) target. */
  | 'converge-flows'
  /** After the heal, the store's records are not what the owner holds, or a journal is still open. */
  | 'converge-records'
  /** More than {@link CHAOS_BOUNDS.maxClaims} claims in the store, or takeover attempts, in one run: a loop. */
  | 'claim-storm'
  /** The run itself threw. */
  | 'run-error'

/** Every invariant, in the order the bench table shows them. */
export const INVARIANTS: readonly InvariantName[] = [
  'epoch-order',
  'epoch-owner',
  'dual-serve',
  'nonce-reuse',
  'converge-owner',
  'converge-ike',
  'converge-flows',
  'converge-records',
  'claim-storm',
  'run-error'
]

/** A broken invariant. */
export interface Violation {
  /** Which. */
  invariant: InvariantName
  /** Virtual ms since the faults began (negative: during warm-up). */
  at: number
  /** What was seen. */
  detail: string
}

/** One line of a run's trace. */
export interface TraceEntry {
  /** Virtual ms since the faults began. */
  at: number
  /** `fault`, `store`, `heal` or a node id. */
  source: string
  /** What happened. */
  text: string
}

/** The outcome of one schedule. */
export interface RunResult {
  /** The schedule. */
  schedule: Schedule
  /** What broke (the first of each invariant and node). */
  violations: Violation[]
  /** Faults, ownership and takeover events and store claims, in order. */
  trace: TraceEntry[]
  /** What the run did. */
  stats: {
    /** Claims made (DP events). */
    claims: number
    /** ESP packets observed. */
    espPackets: number
    /** Faults that fired. */
    faultsFired: number
  }
}

/** The timing of a run, and the bounds the checks use. */
export const CHAOS_BOUNDS = {
  /** Traffic runs this long before the faults begin. */
  warmupMs: 300,
  /**
   * After the heal point (every fault over, crashed nodes restarted, pauses released), the
   * cluster must have converged within this long: detection (3 x 100 ms), a rank delay (up to
   * 600 ms), a confirmation, an IKE exchange with retransmission (200 + 400 + 800 ms) and the
   * first renegotiation retry (1 s), with room to spare.
   */
  convergeMs: 6000,
  /**
   * A run with more claims in the store, or more takeover attempts, than this is a claim storm
   * (normal runs make a handful); the run then
   * cuts every DP off from the store and ends, since a storm may never let virtual time move.
   */
  maxClaims: 200,
  /** The convergence checks look at windows of this many ms of traffic (five requests per peer). */
  finalWindowMs: 500
} as const

/** What a {@link RunOptions.tamper} function gets. */
export interface TamperContext {
  /** The cluster, warm, at the moment the faults begin. */
  cluster: SimulatedCluster
  /**
   * The parameters of every outbound SA a node installed so far (keys included).
   *
   * @param node - a DP or peer
   */
  outboundSas(node: NodeId): EspSaParams[]
}

/** Options of {@link runSchedule}. */
export interface RunOptions {
  /** Deliberate store defects, for proving the checker (never in a real run). */
  defects?: StoreDefects
  /** Which DPs have the defects. Default all. */
  defectiveNodes?: NodeId[]
  /**
   * Breaks the cluster on purpose when the faults begin (the checker's own tests: reuse a key,
   * leave a stale record). Never in a real run.
   */
  tamper?: (context: TamperContext) => Promise<void> | void
  /** Called with each trace entry as it happens (to watch a run that does not end). */
  onTrace?: (entry: TraceEntry) => void
}

interface Claim {
  epoch: number
  owner: NodeId
  at: number
}

/**
 * Runs one schedule on a fresh {@link SimulatedCluster} (3 DPs, 2 targets, 2 peers, virtual
 * clock) and checks every invariant during the run and after the heal point.
 *
 * @param schedule - from {@link makeSchedule}, or shrunk
 * @param options - deliberate defects, for the checker's own tests
 */
export async function runSchedule(
  schedule: Schedule,
  options: RunOptions = {}
): Promise<RunResult> {
  const run = new ChaosRun(schedule, options)
  try {
    await run.execute()
  } catch (e) {
    run.violate('run-error', (e as Error)?.stack ?? String(e))
  }
  return run.result()
}

/** One schedule's run: the cluster, the fault switches and the observers. */
class ChaosRun {
  private readonly cluster: SimulatedCluster
  private readonly base: VirtualClock
  private readonly random: ScheduleRandom
  private readonly clocks = new Map<NodeId, PausableClock>()
  private readonly stores = new Map<NodeId, FaultyCouplingStore>()
  private readonly cuts = new Map<string, number>()
  private readonly storeCuts = new Map<NodeId, number>()
  private readonly replyFaults = new Map<
    NodeId,
    { mode: ReplyFault; rate: number; delayMs: number }
  >()
  private readonly paused = new Map<NodeId, Array<() => void>>()
  private readonly espKeys = new Map<NodeId, Map<number, string>>()
  private readonly nonces = new Map<string, { node: NodeId; at: number }>()
  private readonly claims: Claim[] = []
  private readonly byEpoch = new Map<number, Claim>()
  private readonly reported = new Set<string>()
  private readonly violations: Violation[] = []
  private readonly trace: TraceEntry[] = []
  private readonly pending = new Set<Promise<void>>()
  private readonly permanent = new Set<NodeId>()
  private readonly downUntilHeal = new Set<NodeId>()
  private readonly troubledTargets = new Set<NodeId>()
  private readonly snapshots: Array<{ at: number; state: FacilityState }> = []
  private readonly resumedAt = new Map<NodeId, number>()
  private readonly installed = new Map<NodeId, EspSaParams[]>()
  private stopped = false
  private storm = false
  private storeClaims = 0
  private attempts = 0
  private storeLost = false
  private readonly granted = new Map<number, NodeId>()
  private readonly eventCounts = new Map<string, number>()
  private readonly origin = new Map<string, string | undefined>()
  private t0 = 0
  private healed = false
  private espPackets = 0
  private faultsFired = 0
  private windowStart = Number.POSITIVE_INFINITY
  private readonly windowSenders = new Set<NodeId>()

  constructor(
    private readonly schedule: Schedule,
    private readonly options: RunOptions
  ) {
    this.random = new ScheduleRandom(schedule.seed ^ 0x5bd1e995)
    const { config } = schedule
    this.cluster = new SimulatedCluster({
      dps: CHAOS_TOPOLOGY.dps.length,
      targets: CHAOS_TOPOLOGY.targets.length,
      peers: CHAOS_TOPOLOGY.peers.length,
      seed: `chaos-${schedule.seed}`,
      trafficIntervalMs: 100,
      startSettleMs: 400,
      detector: config.detector,
      selfFenceMs: config.selfFenceMs,
      rankDelayMs: config.rankDelayMs,
      heartbeat: { intervalMs: 100, multiplier: 3 },
      retransmit: { timeoutMs: 200, backoff: 2, tries: 3 },
      ...(config.peerDpd === true ? { peerLiveness: { intervalMs: 500, reconnectMs: 100 } } : {}),
      hooks: {
        clock: (node) => {
          const clock = new PausableClock(this.base)
          this.clocks.set(node, clock)
          return clock
        },
        store: (node, memory) => this.makeStore(node, memory),
        espEngine: (node, engine) => {
          const keys = new Map<number, string>()
          this.espKeys.set(node, keys)
          const addSa = engine.addSa.bind(engine)
          const installed: EspSaParams[] = []
          this.installed.set(node, installed)
          engine.addSa = (params) => {
            addSa(params)
            if (params.direction === 'outbound') installed.push(params)
            if (params.direction === 'outbound')
              keys.set(params.spi, Buffer.from(params.keyMaterial).toString('hex'))
          }
        }
      }
    })
    this.base = this.cluster.clock as VirtualClock
    this.tapNetwork()
  }

  /** Records a violation (once per invariant and detail key). */
  violate(invariant: InvariantName, detail: string, key = ''): void {
    const id = `${invariant}/${key}`
    if (this.reported.has(id)) return
    this.reported.add(id)
    this.violations.push({ invariant, at: this.now(), detail })
  }

  result(): RunResult {
    return {
      schedule: this.schedule,
      violations: this.violations,
      trace: this.trace,
      stats: {
        claims: this.claims.length,
        espPackets: this.espPackets,
        faultsFired: this.faultsFired
      }
    }
  }

  async execute(): Promise<void> {
    const { cluster } = this
    cluster.events$.subscribe(({ node, event }) => this.onEvent(node, event))
    cluster.facility.changes$.subscribe((change) => {
      if (change.type === 'ownership:claimed') {
        this.log('store', `claimed epoch ${change.ownership.epoch} by ${change.ownership.owner}`)
        this.onStoreClaim(change.ownership.epoch, change.ownership.owner)
      } else if (change.type === 'ownership:released')
        this.log('store', `released epoch ${change.epoch}`)
    })
    this.t0 = Number.NaN
    await cluster.start()
    cluster.startTraffic()
    await this.base.advance(CHAOS_BOUNDS.warmupMs)
    for (const peer of cluster.peers) this.origin.set(peer.node, peer.traffic.answerTargets.at(-1))
    this.t0 = this.base.monotonic()
    this.snapshot()
    this.sampleHolders()
    await this.options.tamper?.({
      cluster,
      outboundSas: (node) => [...(this.installed.get(node) ?? [])]
    })
    for (const fault of this.schedule.faults) this.arm(fault)
    // Run until every fault began and ended (triggers have until the window's end to fire).
    let activeUntil = FAULT_WINDOW_MS
    for (;;) {
      await this.base.advance(100)
      if (this.storm) return this.end()
      this.snapshot()
      activeUntil = Math.max(activeUntil, this.activeUntil)
      if (this.now() >= activeUntil && this.quiet()) break
      if (this.now() > FAULT_WINDOW_MS + 20_000) throw new Error('faults did not end')
    }
    await this.heal()
    if (this.storm) return this.end()
    // Converged means every check below passes over one window of traffic; the run looks window
    // after window and reports what still fails when the bound is reached.
    const deadline = this.base.monotonic() + CHAOS_BOUNDS.convergeMs
    for (;;) {
      this.windowStart = this.base.monotonic()
      this.windowSenders.clear()
      await this.base.advance(CHAOS_BOUNDS.finalWindowMs)
      await this.drain()
      if (this.storm) return this.end()
      const failures = await this.convergenceFailures()
      if (failures.length === 0) break
      if (this.base.monotonic() + CHAOS_BOUNDS.finalWindowMs > deadline) {
        const late = `${CHAOS_BOUNDS.convergeMs}ms after the heal point: `
        for (const [invariant, detail] of failures) this.violate(invariant, late + detail, detail)
        break
      }
    }
    await this.end()
  }

  /** Stops the cluster (every DP's store client dead first, after a claim storm). */
  private async end(): Promise<void> {
    this.stopped = true
    this.cluster.stopTraffic()
    if (this.storm) for (const store of this.stores.values()) store.kill()
    await this.cluster.stop()
  }

  // ---- faults ----

  private activeUntil = 0
  private armedTimers = 0

  private quiet(): boolean {
    return this.armedTimers === 0
  }

  private arm(fault: Fault): void {
    const start = fault.start
    if (typeof start === 'number') {
      this.later(start, () => this.fire(fault, undefined))
      return
    }
    const sub = this.cluster.events$.subscribe(({ node, event }) => {
      if (this.healed || event.type !== start.after) return
      const n = (this.eventCounts.get(`${fault.id}`) ?? 0) + 1
      this.eventCounts.set(`${fault.id}`, n)
      if (n !== start.nth) return
      sub.unsubscribe()
      this.later(start.delayMs, () => this.fire(fault, node))
    })
  }

  /** A fault timer on the cluster clock; counted so that the run waits for it. */
  private later(ms: number, fn: () => void): void {
    this.armedTimers++
    this.activeUntil = Math.max(this.activeUntil, this.now() + ms)
    this.base.setTimeout(() => {
      this.armedTimers--
      if (!this.healed) fn()
    }, ms)
  }

  private fire(fault: Fault, taker: NodeId | undefined): void {
    this.faultsFired++
    const a = fault.action
    const one = (ref: NodeRef): NodeId | undefined => this.resolve(ref, taker)
    this.log('fault', describeFault(fault))
    switch (a.kind) {
      case 'crash': {
        const node = one(a.node)
        if (node === undefined || !this.isUp(node)) return
        this.crash(node)
        if (a.restartAfterMs === null && this.mayStayDown(node)) this.permanent.add(node)
        else if (a.restartAfterMs === null) this.downUntilHeal.add(node)
        else this.later(a.restartAfterMs, () => this.restart(node))
        return
      }
      case 'pause': {
        const node = one(a.node)
        if (node === undefined || !this.cluster.dps.get(node)?.up || this.paused.has(node)) return
        this.pause(node)
        this.later(a.durationMs, () => this.resume(node))
        return
      }
      case 'partition': {
        const left = new Set(a.a.map(one).filter((n): n is NodeId => n !== undefined))
        const right = a.b.map(one).filter((n): n is NodeId => n !== undefined && !left.has(n))
        const keys: string[] = []
        for (const x of left)
          for (const y of right) {
            keys.push(cutKey(x, y))
            if (y.startsWith('target-')) this.troubledTargets.add(y)
            if (x.startsWith('target-')) this.troubledTargets.add(x)
          }
        for (const k of keys) this.cuts.set(k, (this.cuts.get(k) ?? 0) + 1)
        this.later(a.durationMs, () => {
          for (const k of keys) this.uncut(k)
          this.log('heal', `partition #${fault.id} over`)
        })
        return
      }
      case 'store-cut': {
        const node = one(a.node)
        if (node === undefined) return
        this.storeCuts.set(node, (this.storeCuts.get(node) ?? 0) + 1)
        this.applyStoreFaults(node)
        this.later(a.durationMs, () => {
          const n = (this.storeCuts.get(node) ?? 1) - 1
          if (n <= 0) this.storeCuts.delete(node)
          else this.storeCuts.set(node, n)
          this.applyStoreFaults(node)
          this.log('heal', `store cut #${fault.id} over`)
        })
        return
      }
      case 'store-replies': {
        const node = one(a.node)
        if (node === undefined) return
        const fault = { mode: a.mode, rate: a.rate, delayMs: a.delayMs }
        this.replyFaults.set(node, fault)
        this.applyStoreFaults(node)
        this.later(a.durationMs, () => {
          if (this.replyFaults.get(node) === fault) this.replyFaults.delete(node)
          this.applyStoreFaults(node)
        })
        return
      }
      case 'store-loss': {
        this.storeLost = true
        const { facility } = this.cluster
        if (a.mode === 'empty') restoreFacility(facility, emptyState())
        else {
          const cutoff = this.base.monotonic() - a.rollbackMs
          const older = [...this.snapshots].reverse().find((s) => s.at <= cutoff)
          restoreFacility(facility, older?.state ?? emptyState())
        }
        return
      }
    }
  }

  private resolve(ref: NodeRef, taker: NodeId | undefined): NodeId | undefined {
    const dps = CHAOS_TOPOLOGY.dps as readonly NodeId[]
    const up = (n: NodeId | null | undefined): n is NodeId =>
      n != null && this.cluster.dps.get(n)?.up === true
    const owner = (): NodeId | undefined => {
      const o = this.cluster.ownership()?.owner
      if (up(o)) return o
      const last = this.claims.at(-1)?.owner
      return up(last) ? last : dps.find(up)
    }
    switch (ref) {
      case '@owner':
        return owner()
      case '@taker':
        return taker ?? owner()
      case '@backup': {
        const o = owner()
        return dps.find((n) => up(n) && n !== o && n !== taker)
      }
      default:
        return ref
    }
  }

  private isUp(node: NodeId): boolean {
    return (this.cluster.dps.get(node)?.up ?? this.cluster.targets.get(node)?.up) === true
  }

  /** At least one DP and one target must come back at the heal point. */
  private mayStayDown(node: NodeId): boolean {
    const group = node.startsWith('dp-') ? CHAOS_TOPOLOGY.dps : CHAOS_TOPOLOGY.targets
    const staying = group.filter((n) => n !== node && !this.permanent.has(n))
    return staying.length > 0
  }

  private crash(node: NodeId): void {
    if (node.startsWith('target-')) this.troubledTargets.add(node)
    this.paused.delete(node)
    this.track(this.cluster.crash(node)) // stops its network at once
    this.stores.get(node)?.kill()
    this.clocks.get(node)?.discardPaused()
  }

  private restart(node: NodeId): void {
    if (this.isUp(node)) return
    this.log('fault', `restart ${node}`)
    this.track(this.startAgain(node))
  }

  /**
   * Restarts a node. A start that fails (the new core refuses to start when it cannot reach the
   * store, as a process would exit) leaves it down, to be restarted again at the heal point.
   */
  private async startAgain(node: NodeId): Promise<void> {
    const afterHeal = this.healed
    this.resumedAt.set(node, this.base.monotonic())
    try {
      await this.cluster.restart(node, { advance: false }) // this run lets time pass
    } catch (e) {
      this.log(node, `start failed: ${(e as Error)?.name}: ${(e as Error)?.message}`)
      const dp = this.cluster.dps.get(node)
      if (dp?.up === true) await this.cluster.crash(node)
      if (afterHeal) throw e
    }
  }

  private track(p: Promise<void>): void {
    const tracked = p
      .catch((e: unknown) => this.violate('run-error', (e as Error)?.stack ?? String(e)))
      .finally(() => this.pending.delete(tracked))
    this.pending.add(tracked)
  }

  private pause(node: NodeId): void {
    this.paused.set(node, [])
    this.clocks.get(node)?.pause()
    this.stores.get(node)?.pause()
  }

  private resume(node: NodeId): void {
    const held = this.paused.get(node)
    if (held === undefined) return
    this.paused.delete(node)
    this.resumedAt.set(node, this.base.monotonic())
    this.log('heal', `${node} resumes`)
    // As Node's event loop does after SIGCONT: the timers that fell due first, then I/O (the
    // datagrams that waited in the socket buffers, the store's replies and changes).
    const clock = this.clocks.get(node)
    clock?.resume()
    this.base.setTimeout(() => {
      if (this.clocks.get(node) !== clock) return // crashed and restarted meanwhile
      this.stores.get(node)?.resume()
      for (const deliver of held) deliver()
    }, 0)
  }

  private uncut(key: string): void {
    const n = (this.cuts.get(key) ?? 1) - 1
    if (n <= 0) this.cuts.delete(key)
    else this.cuts.set(key, n)
  }

  private makeStore(node: NodeId, memory: MemoryCouplingStore): FaultyCouplingStore {
    const clock = this.clocks.get(node) ?? this.base
    const defective =
      this.options.defectiveNodes === undefined || this.options.defectiveNodes.includes(node)
    const store = new FaultyCouplingStore(
      { inner: memory, facility: this.cluster.facility, clock },
      {
        node,
        callTimeoutMs: this.schedule.config.storeTimeoutMs,
        ...(defective && this.options.defects !== undefined
          ? { defects: this.options.defects }
          : {})
      },
      () => this.random.next()
    )
    this.stores.set(node, store)
    this.applyStoreFaults(node)
    return store
  }

  private applyStoreFaults(node: NodeId): void {
    const store = this.stores.get(node)
    if (store === undefined) return
    store.cut = this.storeCuts.has(node)
    store.replies = this.replyFaults.get(node)
  }

  private async heal(): Promise<void> {
    this.healed = true
    this.log('heal', 'every fault over: heal point')
    this.cuts.clear()
    this.storeCuts.clear()
    this.replyFaults.clear()
    for (const node of CHAOS_TOPOLOGY.dps) this.applyStoreFaults(node)
    for (const node of [...this.paused.keys()]) this.resume(node)
    await this.drain()
    for (const node of [...CHAOS_TOPOLOGY.dps, ...CHAOS_TOPOLOGY.targets])
      if (!this.permanent.has(node) && !this.isUp(node)) {
        this.log('heal', `restart ${node}`)
        this.track(this.startAgain(node))
      }
    await this.drain()
  }

  /** Lets virtual time pass until every crash and restart under way has finished. */
  private async drain(): Promise<void> {
    for (let i = 0; this.pending.size > 0; i++) {
      if (i >= 1000) throw new Error('a crash or restart did not finish in 10 s')
      await this.base.advance(10)
    }
  }

  // ---- observers ----

  private now(): number {
    return Number.isNaN(this.t0) ? 0 : this.base.monotonic() - this.t0
  }

  private log(source: string, text: string): void {
    const entry = { at: this.now(), source, text }
    this.trace.push(entry)
    this.options.onTrace?.(entry)
  }

  private snapshot(): void {
    // Only a rollback reads them.
    if (!this.schedule.faults.some((f) => f.action.kind === 'store-loss')) return
    this.snapshots.push({
      at: this.base.monotonic(),
      state: captureFacility(this.cluster.facility)
    })
    if (this.snapshots.length > 40) this.snapshots.shift()
  }

  private onEvent(node: NodeId, event: DistributionEvent): void {
    if (event.type.startsWith('ownership:') || event.type.startsWith('takeover:')) {
      if (event.type !== 'takeover:step' && event.type !== 'takeover:renegotiated')
        this.log(node, describeEvent(event))
    }
    if (event.type === 'takeover:started') {
      this.attempts++
      this.checkStorm(`${this.attempts} takeover attempts`, this.attempts)
    }
    if (event.type !== 'ownership:claimed' || event.dvipa !== DVIPA) return
    const claim: Claim = { epoch: event.epoch, owner: node, at: this.base.monotonic() }
    const same = this.byEpoch.get(claim.epoch)
    if (same !== undefined && same.owner !== node) {
      this.violate(
        'epoch-owner',
        `epoch ${claim.epoch} claimed by ${same.owner} and then by ${node}`,
        `${claim.epoch}`
      )
    }
    const highest = Math.max(0, ...this.claims.map((c) => c.epoch))
    if (claim.epoch < highest) {
      this.violate(
        'epoch-order',
        `${node} claimed epoch ${claim.epoch} after epoch ${highest} had been claimed`,
        `${node}/${claim.epoch}`
      )
    }
    if (same === undefined) this.byEpoch.set(claim.epoch, claim)
    this.claims.push(claim)
  }

  /** Counts the store's claims; too many is a storm, which is stopped by killing every client. */
  private onStoreClaim(epoch: number, owner: NodeId | null): void {
    this.storeClaims++
    this.checkStorm(`${this.storeClaims} claims in the store (epoch ${epoch})`, this.storeClaims)
    // Until the store loses data it must never grant one epoch twice (after a loss it may, while
    // the DPs climb back above what they saw: then only their own claims count).
    if (!this.storeLost && owner !== null) {
      const granted = this.granted.get(epoch)
      if (granted !== undefined && granted !== owner)
        this.violate(
          'epoch-owner',
          `the store granted epoch ${epoch} to ${granted} and then to ${owner}`,
          `store/${epoch}`
        )
      else this.granted.set(epoch, owner)
    }
  }

  /** Too many claims or takeover attempts is a storm, stopped by killing every store client. */
  private checkStorm(what: string, count: number): void {
    if (count <= CHAOS_BOUNDS.maxClaims || this.storm) return
    this.storm = true
    this.violate(
      'claim-storm',
      `${what} by +${Math.round(this.now())}ms: the DPs claim or try to take over in a loop`
    )
    for (const store of this.stores.values()) store.kill()
  }

  private tapNetwork(): void {
    const network = this.cluster.network
    const transmit = network.transmit.bind(network)
    network.transmit = (fromNode, from, to, data) => {
      this.observe(fromNode, from, to, data)
      const toNode = network.routeOf(to.address)
      if (toNode !== undefined && this.cuts.has(cutKey(fromNode, toNode))) return
      transmit(fromNode, from, to, data)
    }
    const names = [
      ...CHAOS_TOPOLOGY.dps,
      ...CHAOS_TOPOLOGY.targets,
      ...CHAOS_TOPOLOGY.peers
    ] as NodeId[]
    for (const node of names) {
      const adapter = network.attach(node)
      const receive = adapter.receive.bind(adapter)
      adapter.receive = (to, datagram) => {
        const held = this.paused.get(node)
        if (held === undefined) return receive(to, datagram)
        held.push(() => receive(to, datagram))
        return true
      }
    }
  }

  private observe(fromNode: NodeId, from: Endpoint, to: Endpoint, data: Uint8Array): void {
    if (from.address === DVIPA && fromNode.startsWith('dp-')) this.onDvipaSend(fromNode, from, to)
    if ((from.port === 4500 || to.port === 4500) && data.length >= 16) {
      const spi = ((data[0]! << 24) | (data[1]! << 16) | (data[2]! << 8) | data[3]!) >>> 0
      if (spi === 0) return // IKE behind the non-ESP marker
      this.espPackets++
      const key = this.espKeys.get(fromNode)?.get(spi) ?? `unknown ${fromNode}/${spi}`
      const nonce = `${key}|${Buffer.from(data.subarray(8, 16)).toString('hex')}`
      const seen = this.nonces.get(nonce)
      if (seen !== undefined) {
        this.violate(
          'nonce-reuse',
          `SPI ${spi.toString(16)} sequence ${readSeq(data)}: sent by ${seen.node} at +${Math.round(seen.at)}ms and by ${fromNode} at +${Math.round(this.now())}ms under the same key and nonce`,
          `${spi}`
        )
      } else this.nonces.set(nonce, { node: fromNode, at: this.now() })
    }
  }

  private onDvipaSend(node: NodeId, from: Endpoint, to: Endpoint): void {
    const at = this.base.monotonic()
    if (at >= this.windowStart) this.windowSenders.add(node)
    const late = this.superseded(node)
    if (late === undefined || late <= this.schedule.config.selfFenceMs) return
    const current = this.claims.at(-1)!
    this.violate(
      'dual-serve',
      `${node} sent from ${DVIPA}:${from.port} to ${to.address}:${to.port} ${Math.round(late)}ms after ${current.owner} claimed epoch ${current.epoch} (bound ${this.schedule.config.selfFenceMs}ms)`,
      `${node}/${current.epoch}`
    )
  }

  /**
   * How long `node` has been superseded: since another, live DP made the latest claim, or since
   * `node` resumed from a pause or restarted if that was later (a stopped process serves
   * nothing). Undefined
   * when it holds the latest claim, or the claimer is down.
   */
  private superseded(node: NodeId): number | undefined {
    const current = this.claims.at(-1)
    if (current === undefined || current.owner === node) return undefined
    if (this.cluster.dps.get(current.owner)?.up !== true) return undefined
    const since = Math.max(current.at, this.resumedAt.get(node) ?? 0)
    return this.base.monotonic() - since
  }

  /**
   * Every 25 ms: a live, running DP that holds the DVIPA address (it answers ARP for it) or
   * outbound ESP SAs (it can encrypt) while superseded for longer than the bound serves beside
   * the owner.
   */
  private sampleHolders(): void {
    const tick = (): void => {
      if (this.stopped) return
      for (const dp of this.cluster.dps.values()) {
        if (!dp.up || this.paused.has(dp.node)) continue
        const address = dp.adapter.addresses().includes(DVIPA)
        const sas = dp.esp.isStarted()
          ? dp.esp.listSas().filter((sa) => sa.direction === 'outbound').length
          : 0
        if (!address && sas === 0) continue
        const late = this.superseded(dp.node)
        if (late === undefined || late <= this.schedule.config.selfFenceMs) continue
        const current = this.claims.at(-1)!
        this.violate(
          'dual-serve',
          `${dp.node} still ${address ? `holds ${DVIPA}` : ''}${address && sas > 0 ? ' and ' : ''}${sas > 0 ? `has ${sas} outbound SAs` : ''} ${Math.round(late)}ms after ${current.owner} claimed epoch ${current.epoch} (bound ${this.schedule.config.selfFenceMs}ms)`,
          `${dp.node}/${current.epoch}`
        )
      }
      this.base.setTimeout(tick, 25)
    }
    tick()
  }

  // ---- after the heal ----

  /** What is not converged yet, over the last window. */
  private async convergenceFailures(): Promise<Array<[InvariantName, string]>> {
    const { cluster } = this
    const failures: Array<[InvariantName, string]> = []
    const ownership = cluster.ownership()
    const owner = ownership?.owner ?? undefined
    const fail = (invariant: InvariantName, detail: string): void => {
      failures.push([invariant, detail])
    }
    const ownerDp = owner === undefined ? undefined : cluster.dps.get(owner)
    if (ownership === undefined || ownerDp === undefined || !ownerDp.up) {
      fail(
        'converge-owner',
        `the store names ${owner ?? 'no owner'} (epoch ${ownership?.epoch ?? 0}), not a live DP`
      )
      return failures
    }
    for (const dp of cluster.dps.values()) {
      if (!dp.up) continue
      const status = currentStatus(dp.processor.status$)
      const role = status?.role
      if (dp.node === owner && role !== 'owner')
        fail(
          'converge-owner',
          `the store names ${owner} (epoch ${ownership.epoch}) but its role is ${role}`
        )
      if (dp.node === owner && status !== undefined && status.epoch !== ownership.epoch)
        fail('converge-owner', `${owner} holds epoch ${status.epoch}, the store ${ownership.epoch}`)
      if (dp.node !== owner && (role === 'owner' || role === 'taking-over'))
        fail('converge-owner', `${dp.node} is ${role} while the store names ${owner}`)
      if (dp.node !== owner && dp.adapter.addresses().includes(DVIPA))
        fail('converge-owner', `${dp.node} still holds ${DVIPA}`)
    }
    if (cluster.network.routeOf(DVIPA) !== owner)
      fail(
        'converge-owner',
        `${DVIPA} routes to ${cluster.network.routeOf(DVIPA) ?? 'nobody'}, not ${owner}`
      )
    const others = [...this.windowSenders].filter((n) => n !== owner)
    if (others.length > 0) fail('converge-owner', `${others.join(', ')} still send from ${DVIPA}`)

    const ownerSas = ownerDp.ikeServices.at(-1)?.list() ?? []
    for (const peer of cluster.peers) {
      const n = peer.ike.list().length
      if (n !== 1) fail('converge-ike', `${peer.node} has ${n} IKE SAs`)
    }
    if (ownerSas.length !== cluster.peers.length)
      fail(
        'converge-ike',
        `the owner ${owner} has ${ownerSas.length} IKE SAs for ${cluster.peers.length} peers`
      )

    for (const peer of cluster.peers) {
      const times = peer.traffic.answerTimes
      const recent: string[] = []
      for (let i = times.length - 1; i >= 0 && times[i]! >= this.windowStart; i--)
        recent.push(peer.traffic.answerTargets[i]!)
      if (recent.length === 0) {
        fail(
          'converge-flows',
          `${peer.node} got no answer in the last ${CHAOS_BOUNDS.finalWindowMs}ms`
        )
        continue
      }
      const origin = this.origin.get(peer.node)
      // (The connection table dies with the store: after a data loss any live target will do.)
      const originLives =
        origin !== undefined && !this.troubledTargets.has(origin) && !this.storeLost
      for (const target of new Set(recent)) {
        if (originLives && target !== origin)
          fail(
            'converge-flows',
            `${peer.node} is answered by ${target}, its flow began on ${origin}`
          )
        if (!originLives && cluster.targets.get(target)?.up !== true)
          fail('converge-flows', `${peer.node} is answered by ${target}, which is down`)
      }
    }

    const reader = new MemoryCouplingStore({}, { facility: cluster.facility })
    await reader.start()
    const records = await reader.listRecords(DVIPA)
    await reader.stop()
    const same = (a: string[], b: string[]): boolean =>
      a.length === b.length && [...a].sort().join() === [...b].sort().join()
    const p1 = ownerSas.map((s) => s.phase1.id)
    const p2 = ownerSas.flatMap((s) => s.phase2.map((c) => c.id))
    if (
      !same(
        records.phase1.map((r) => r.id),
        p1
      )
    )
      fail(
        'converge-records',
        `phase 1 records [${records.phase1.map((r) => r.id).join(', ')}], the owner holds [${p1.join(', ')}]`
      )
    if (
      !same(
        records.phase2.map((r) => r.id),
        p2
      )
    )
      fail(
        'converge-records',
        `phase 2 records [${records.phase2.map((r) => r.id).join(', ')}], the owner holds [${p2.join(', ')}]`
      )
    const connections = ownerDp.processor.connections(DVIPA).map((c) => c.id)
    if (
      !same(
        records.connection.map((r) => r.id),
        connections
      )
    )
      fail(
        'converge-records',
        `${records.connection.length} connection records, the owner routes ${connections.length}`
      )
    const journals = cluster.facility.dvipas.get(DVIPA)?.journals.size ?? 0
    if (journals > 0) fail('converge-records', `${journals} takeover journal(s) still open`)
    return failures
  }
}

function currentStatus(status$: {
  subscribe: (fn: (s: DvipaStatus[]) => void) => { unsubscribe: () => void }
}): DvipaStatus | undefined {
  let found: DvipaStatus | undefined
  status$.subscribe((all) => (found = all.find((s) => s.dvipa === DVIPA))).unsubscribe()
  return found
}

function cutKey(a: NodeId, b: NodeId): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`
}

function readSeq(data: Uint8Array): number {
  return ((data[4]! << 24) | (data[5]! << 16) | (data[6]! << 8) | data[7]!) >>> 0
}

function describeEvent(event: DistributionEvent): string {
  if (event.type === 'takeover:completed')
    return `takeover:completed from ${event.report.previousOwner} epoch ${event.report.epoch}`
  const { type, ...rest } = event as { type: string } & Record<string, unknown>
  delete rest.dvipa
  const fields = Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join(' ')
  return `${type} ${fields}`.slice(0, 160)
}

interface FacilityState {
  dvipas: Array<[string, DvipaSlot]>
  mailboxes: Array<[NodeId, Uint8Array[]]>
  leases: Array<[NodeId, number]>
}

function emptyState(): FacilityState {
  return { dvipas: [], mailboxes: [], leases: [] }
}

function copySlot(slot: DvipaSlot): DvipaSlot {
  return {
    ...(slot.ownership === undefined ? {} : { ownership: new Uint8Array(slot.ownership) }),
    owner: slot.owner,
    epoch: slot.epoch,
    records: new Map(slot.records),
    journals: new Map([...slot.journals].map(([e, m]) => [e, new Map(m)]))
  }
}

function captureFacility(facility: SimulatedCluster['facility']): FacilityState {
  return {
    dvipas: [...facility.dvipas].map(([d, s]) => [d, copySlot(s)]),
    mailboxes: [...facility.mailboxes].map(([n, m]) => [n, [...m]]),
    leases: [...facility.leases]
  }
}

function restoreFacility(facility: SimulatedCluster['facility'], state: FacilityState): void {
  facility.dvipas.clear()
  for (const [d, s] of state.dvipas) facility.dvipas.set(d, copySlot(s))
  facility.mailboxes.clear()
  for (const [n, m] of state.mailboxes) facility.mailboxes.set(n, [...m])
  facility.leases.clear()
  for (const [n, t] of state.leases) facility.leases.set(n, t)
}
