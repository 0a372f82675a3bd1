import { setMaxListeners } from 'node:events'
import {
  OwnershipConflictError,
  TakeoverError,
  type Clock,
  type CouplingStore,
  type DistributionEvent,
  type Dvipa,
  type EpochSource,
  type Fence,
  type FailureDetectorEvent,
  type NodeHealth,
  type NodeId,
  type Ownership,
  type StaleEpochError,
  type OwnershipCause,
  type TakeoverReport,
  type TimerHandle
} from '@vipsec/interface'
import {
  stateEpoch,
  stateOwner,
  viewEpoch,
  type OwnershipState,
  type StoreView
} from './ownership-state.js'

/** What the ownership unit reads of the failure detector. */
export interface OwnershipDetector {
  /**
   * What the detector believes of a node.
   *
   * @param node - the node
   */
  health(node: NodeId): NodeHealth
  /** The time the detector takes to declare a silent node failed, ms, when it states one. */
  readonly detectionTimeMs?: number
}

/**
 * The shortest join window a configuration allows, ms: max(the detector's detection time, two
 * ownership read-backs).
 *
 * @param ownershipCheckMs - the read-back interval, ms
 * @param detector - the failure detector (its `detectionTimeMs`, when it states one)
 */
export function joinWindowBound(
  ownershipCheckMs: number,
  detector: Pick<OwnershipDetector, 'detectionTimeMs'>
): number {
  return Math.max(detector.detectionTimeMs ?? 0, 2 * Math.max(0, ownershipCheckMs))
}

/** A takeover the ownership unit asks its host to run once its claim has won. */
export interface TakeoverRun {
  /** The owner it is taken from (this node for a takeover from itself). */
  from: NodeId
  /** The fence the claim won. */
  fence: Fence
  /** Aborted as soon as the unit sees a higher epoch: the steps stop and give the address up. */
  signal: AbortSignal
  /** Monotonic ms at which the failure was declared. */
  detectedAt: number
  /** How long the owner had been silent then, if known. */
  silentMs: number | undefined
  /** Monotonic ms at which the (first) claim was sent, and how long until it was known to have won. */
  claim: {
    /** Monotonic ms at which the claim was sent. */
    startedAt: number
    /** How long until it was known to have won, ms. */
    durationMs: number
  }
}

/**
 * What the ownership unit asks of its host (the distribution processor's wiring): the effects
 * of its transitions. The unit decides; the host acts.
 */
export interface OwnershipActions {
  /**
   * Runs the takeover steps (read-and-clear, take the address, renegotiate, ...) under the
   * fence. Resolves with the report; rejects when a step fails (or the signal aborted).
   */
  takeOver(run: TakeoverRun): Promise<TakeoverReport>
  /** Starts serving a DVIPA claimed fresh (nothing to take over): address, IKE, notices. */
  serveFresh(fence: Fence): Promise<void>
  /** Stops serving at once: IKE service, sockets, address. */
  stopServing(): Promise<void>
  /**
   * After the store lost data and the owner claimed again above the highest epoch seen:
   * writes its records again under the new fence and tells the targets.
   */
  reassert(fence: Fence): Promise<void>
  /**
   * Checks that the store's records are what the owner holds, and repairs them if not (a
   * rollback that restored records at this same epoch, a write lost for good). Called every
   * `auditEvery` read-backs while it owns and serves, never while the last audit is under way.
   */
  audit?(fence: Fence): Promise<void>
  /**
   * Asks the other distribution processors of the DVIPA, on the authenticated cluster link, who
   * owns it (an ownership notice at {@link OWNERSHIP_QUERY_EPOCH}): an owner answers with its own
   * notice, which comes back through {@link OwnershipController.observe}. Sent when a join window
   * begins. Optional: without it, the window learns from the store alone.
   */
  query?(): void
  /** Emits a distribution event. */
  emit(event: DistributionEvent): void
  /** Publishes the status (the state changed). */
  changed(): void
}

/** What an {@link OwnershipController} needs. */
export interface OwnershipControllerComponents {
  /** The coupling store: the arbiter of ownership. */
  store: CouplingStore
  /** Time: every timer of the unit. */
  clock: Clock
  /** The failure detector's view of the other nodes. */
  detector: OwnershipDetector
  /** The effects of its transitions. */
  actions: OwnershipActions
}

/** Options of an {@link OwnershipController}. */
export interface OwnershipControllerInit {
  /** This node. */
  node: NodeId
  /** The DVIPA. */
  dvipa: Dvipa
  /** The distribution processors of the DVIPA, best first. */
  ranks: NodeId[]
  /** The wait per better-ranked live backup before a claim, ms. */
  rankDelayMs: number
  /** How often the store is read back, ms (0: never). */
  ownershipCheckMs: number
  /** An owner that could not confirm its epoch for this long stops serving, ms (0: off). */
  selfFenceMs: number
  /** A timer of the unit this late means the process was paused, ms. Default 2 check intervals (at least 1000). */
  pauseThresholdMs?: number
  /** After a pause, detector verdicts are not acted on for this long, ms. Default 1000. */
  pauseGraceMs?: number
  /** The lifetime of the owner's liveness lease in the store, ms. Default 4 check intervals. */
  ownerLeaseMs?: number
  /** The first wait after a failed takeover before this node tries again, ms (it doubles). Default 1000. */
  failureBackoffMs?: number
  /**
   * How long a starting (or re-joining) node listens before it may claim anything, ms: for the
   * highest epoch and the live owner the cluster knows (answers to its ownership query, the
   * store's changes, the read-backs). Default 2 read-back intervals; 0 turns the window off. A
   * DVIPA ranked on this node alone has no window. The distribution processor rejects a window
   * shorter than max(detector detection time, 2 read-back intervals) (`JoinWindowConfigError`).
   */
  joinWindowMs?: number
}

/**
 * The epoch of an ownership notice that is a query, not a claim: no owner ever holds epoch 0, so
 * a notice at it asks the receiving distribution processor to answer with its own notice if it
 * owns the DVIPA. Targets ignore it.
 */
export const OWNERSHIP_QUERY_EPOCH = 0

/** The counters of an ownership unit. */
export interface OwnershipCounters {
  /** Times the store held a lower epoch than this node had seen. */
  epochRegressions: number
  /** Claims whose reply was lost and that were resolved by reading back. */
  indeterminateClaims: number
  /** Pauses detected. */
  pauses: number
  /** Claims of this node that lost the compare-and-set (each backs the next attempt off). */
  claimsLost: number
}

/** An owner audits the store's records every this many read-backs. */
const AUDIT_EVERY = 20

/** The shortest step of the backoff after a lost claim, ms (when `rankDelayMs` is smaller). */
const MIN_CLAIM_BACKOFF_MS = 20
/** The longest backoff after lost claims, ms. */
const MAX_CLAIM_BACKOFF_MS = 5000
/** Lost claims further apart than this do not add up, ms. */
const CLAIM_LOSS_MEMORY_MS = 30_000

/** The name of a node's owner-liveness lease for a DVIPA in the store. */
export function ownerLease(dvipa: Dvipa, node: NodeId): string {
  return `${node}@${dvipa}`
}

interface Attempt {
  report: Promise<TakeoverReport>
  resolve: (report: TakeoverReport) => void
  reject: (err: Error) => void
  detectedAt: number
  silentMs: number | undefined
  abort: AbortController
  timer: TimerHandle | undefined
  claimStartedAt: number | undefined
  /** The highest epoch seen before this attempt's latest claim: what it must win above. */
  floor: number | undefined
}

/**
 * The ownership of one DVIPA on one node, as one explicit state machine: role (`backup`,
 * `taking-over`, `owner`, `fenced`), epoch, owner, the highest epoch seen and the fence. Nothing
 * else writes that state. It changes only through the transitions below, each emitted as
 * `ownership:changed` with its cause, driven by events:
 *
 * - detector verdicts ({@link onDetectorEvent}): a backup takes over from an owner the detector
 *   holds failed (level-triggered: re-evaluated on every event, so a second failure in the middle
 *   of a takeover is never dropped);
 * - store results: a claim that wins, loses (conflict), or whose reply is lost (indeterminate:
 *   resolved by reading back, never assumed failed);
 * - a higher epoch seen anywhere ({@link observe}): store, cluster link, targets, rejected writes;
 * - timers: the rank delay, the read-back every `ownershipCheckMs`, the self-fence deadline
 *   (a local timer, whatever the store's call timeouts), and its own lateness (a pause).
 *
 * Rules it keeps: a node that has seen epoch E never serves or accepts ownership at E or below;
 * an owner that cannot confirm its epoch stops serving within `selfFenceMs`; a node waking from
 * a pause confirms before it serves and ignores verdicts computed during the pause; a node that
 * lost the DVIPA does not take it back while the new owner's lease in the store is live; when
 * the store's epoch is below the highest seen, it claims above the highest seen (an alarm).
 */
export class OwnershipController {
  private readonly store: CouplingStore
  private readonly clock: Clock
  private readonly detector: OwnershipDetector
  private readonly actions: OwnershipActions
  private readonly node: NodeId
  private readonly dvipa: Dvipa
  private readonly ranks: NodeId[]
  private readonly rankDelayMs: number
  private readonly checkMs: number
  private readonly selfFenceMs: number
  private readonly pauseThresholdMs: number
  private readonly pauseGraceMs: number
  private readonly ownerLeaseMs: number
  private readonly failureBackoffMs: number
  private readonly joinWindowMs: number
  private joinTimer: TimerHandle | undefined
  private joinDone: (() => void) | undefined
  private state: OwnershipState = { role: 'backup', view: { kind: 'unclaimed' } }
  private highest = 0
  /** The epoch the store reported last (by a read, an event or a conflict): claims replace it. */
  private storeEpoch = 0
  private attempt: Attempt | undefined
  private confirmedAt = 0
  private running = false
  private checkTimer: TimerHandle | undefined
  private checkDue: number | undefined
  private fenceTimer: TimerHandle | undefined
  private evaluateTimer: TimerHandle | undefined
  private reading = false
  private readSince = 0
  private distrustUntil = 0
  private backoffUntil = 0
  /** Until then a restarted node does not take over from itself (see {@link start}). */
  private joinUntil = 0
  /** Claims lost in a row (forgotten after {@link CLAIM_LOSS_MEMORY_MS}), and when the last was. */
  private claimLosses = 0
  private lastClaimLossAt = Number.NEGATIVE_INFINITY
  /** Takeovers that failed after their claim, since the last that completed. */
  private failures = 0
  /** The last ownership read failed: the store is (or was) unreachable. */
  private storeDown = false
  /** The node that superseded this one, until it is seen failed with no live lease. */
  private supersededBy: NodeId | undefined
  private lastAlarm = -1
  /** The last owner this node knew of (a released DVIPA is taken over from it). */
  private lastOwner: NodeId | undefined
  /**
   * Monotonic ms at which the silence behind each `node:failed` verdict began (cleared when the
   * node recovers).
   */
  private readonly failedAt = new Map<NodeId, number>()
  /** The owner and epoch this node knows, and since when (monotonic ms). */
  private ownerKey = ''
  private ownerSince = 0
  private readonly counts: OwnershipCounters = {
    epochRegressions: 0,
    indeterminateClaims: 0,
    pauses: 0,
    claimsLost: 0
  }

  /**
   * @param components - store, clock, detector and the host's actions
   * @param init - node, DVIPA, ranks and timing
   */
  constructor(components: OwnershipControllerComponents, init: OwnershipControllerInit) {
    this.store = components.store
    this.clock = components.clock
    this.detector = components.detector
    this.actions = components.actions
    this.node = init.node
    this.dvipa = init.dvipa
    this.ranks = init.ranks
    this.rankDelayMs = init.rankDelayMs
    this.selfFenceMs = init.selfFenceMs
    // With self-fencing, confirm at least three times per fencing time, so one lost read never fences.
    this.checkMs =
      init.selfFenceMs > 0 && init.ownershipCheckMs > 0
        ? Math.max(1, Math.min(init.ownershipCheckMs, Math.floor(init.selfFenceMs / 3)))
        : init.ownershipCheckMs
    this.pauseThresholdMs = init.pauseThresholdMs ?? Math.max(1000, 2 * this.checkMs)
    this.pauseGraceMs = init.pauseGraceMs ?? 1000
    this.ownerLeaseMs = init.ownerLeaseMs ?? Math.max(1, 4 * (this.checkMs || 250))
    this.failureBackoffMs = init.failureBackoffMs ?? 1000
    this.joinWindowMs = init.ranks.some((n) => n !== init.node)
      ? Math.max(0, init.joinWindowMs ?? joinWindowBound(this.checkMs, components.detector))
      : 0
  }

  /** The join window in effect, ms (0: none). */
  get joinWindow(): number {
    return this.joinWindowMs
  }

  // ---- what others read ----

  /** The current state (a snapshot). */
  current(): OwnershipState {
    return structuredClone(this.state)
  }

  /**
   * The role this node has, and the step of its takeover while taking over: what a status
   * shows, read on every IKE and ESP event, without the copy of the whole state `current()`
   * makes.
   */
  get role(): {
    /** `backup`, `taking-over`, `owner` or `fenced`. */
    role: OwnershipState['role']
    /** While taking over: the step of the takeover (`rank-delay`, `claiming`, ...). */
    step?: string
  } {
    const s = this.state
    return s.role === 'taking-over' ? { role: s.role, step: s.phase.step } : { role: s.role }
  }

  /** The epoch this node knows. */
  get epoch(): number {
    return stateEpoch(this.state)
  }

  /** The owner this node knows. */
  get owner(): NodeId | undefined {
    return stateOwner(this.state)
  }

  /** The highest epoch seen for the DVIPA anywhere. */
  get highestSeen(): number {
    return this.highest
  }

  /** The unit's counters (a copy). */
  counters(): OwnershipCounters {
    return { ...this.counts }
  }

  /** The fence to write with: set while this node owns the DVIPA or runs its takeover. */
  fence(): Fence | undefined {
    const s = this.state
    if (s.role === 'owner') return s.fence
    if (s.role === 'taking-over' && s.phase.step === 'running') return s.phase.fence
    return undefined
  }

  /**
   * Whether this node may serve the DVIPA now (encrypt for it, answer on it): it owns it and
   * serves, or its takeover runs. Checks the self-fence deadline and its own lateness on the
   * spot, so a paused node never serves a packet before its timers catch up.
   */
  mayServe(): boolean {
    this.checkLateness()
    this.checkDeadline()
    const s = this.state
    if (s.role === 'owner') return s.standing.kind === 'serving'
    return s.role === 'taking-over' && s.phase.step === 'running'
  }

  // ---- lifecycle ----

  /**
   * Joins: reads the ownership, then (with a join window) listens for `joinWindowMs` in the
   * `joining` role, serving and claiming nothing, for the highest epoch and live owner the
   * cluster knows: it asks the other distribution processors ({@link OwnershipActions.query}),
   * hears the store's changes and reads back. Then it reads the ownership again and decides: a
   * live owner heard above what the store says (a store that lost data) is backed up (that owner
   * recovers above the loss); otherwise the primary claims a DVIPA nobody claimed (above the
   * highest epoch seen, and serves it), a DVIPA the store names this node's (a restart) or
   * nobody's (released) is taken over in the background, and otherwise this node backs it up.
   * Starts the read-back timer.
   *
   * @throws a store error when the ownership cannot be read, or a fresh claim fails for good
   */
  async start(): Promise<void> {
    if (this.running) return
    this.running = true
    this.confirmedAt = this.clock.monotonic()
    let ownership: Ownership | undefined
    try {
      ownership = await this.readOwnership()
    } catch (err) {
      this.running = false
      throw err
    }
    this.scheduleCheck()
    let cause: OwnershipCause = 'start'
    if (this.joinWindowMs > 0) {
      if (ownership !== undefined) this.learnStore(ownership.owner, ownership.epoch)
      const until = this.clock.monotonic() + this.joinWindowMs
      this.joinUntil = until
      this.setState(
        {
          role: 'joining',
          view: ownership === undefined ? { kind: 'unclaimed' } : this.viewOf(ownership),
          until
        },
        'start',
        'store'
      )
      this.actions.query?.()
      await this.joinWait(this.joinWindowMs)
      if (!this.running) return
      // what the store says now: a live owner that saw a loss of data has claimed above it
      ownership = await this.readOwnership()
      if (!this.running) return
      const s = this.state
      const heard = s.role === 'joining' ? s.heard : undefined
      if (heard !== undefined && heard.epoch > (ownership?.epoch ?? 0)) {
        // A live owner above the store: the store lost data. That owner claims above the loss
        // and writes its records again; this node backs it up.
        this.setState(
          { role: 'backup', view: { kind: 'owned', owner: heard.owner, epoch: heard.epoch } },
          'joined',
          'link'
        )
        return
      }
      cause = 'joined'
    } else {
      // Without a window: a restarted node takes over from itself only after two read-backs
      // (time for a live owner's read-back to see a loss of data and claim above it).
      this.joinUntil = this.clock.monotonic() + 2 * Math.max(this.checkMs, 1)
    }
    if (ownership === undefined) {
      if (this.ranks[0] !== this.node) {
        if (this.state.role === 'joining')
          this.setState({ role: 'backup', view: { kind: 'unclaimed' } }, cause, 'store')
        return
      }
      if (await this.otherOwnerLive()) {
        this.setState({ role: 'backup', view: { kind: 'unclaimed' } }, cause, 'store')
        this.scheduleEvaluate(this.joinUntil)
        return
      }
      await this.claimFresh()
      return
    }
    this.learnStore(ownership.owner, ownership.epoch)
    this.setState({ role: 'backup', view: this.viewOf(ownership) }, cause, 'store')
    if (ownership.owner === null)
      this.beginAttempt(ownership.previousOwner ?? this.node, 'released', undefined)
    else if (ownership.owner === this.node) this.evaluate(undefined)
  }

  /** Reads the ownership (`undefined`: nobody ever claimed it). */
  private async readOwnership(): Promise<Ownership | undefined> {
    try {
      return await this.store.getOwnership(this.dvipa)
    } catch (err) {
      if ((err as Error).name === 'NotFoundError') return undefined
      throw err
    }
  }

  /** Waits out a join window on the unit's clock; {@link stop} ends it early. */
  private joinWait(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      // A start under way keeps the process alive (a clock's timers may not: the system clock
      // unrefs them), as the store's reply it awaits would.
      const alive = setInterval(() => undefined, 2 ** 30)
      this.joinDone = () => {
        this.joinDone = undefined
        clearInterval(alive)
        if (this.joinTimer !== undefined) this.clock.clearTimeout(this.joinTimer)
        this.joinTimer = undefined
        resolve()
      }
      this.joinTimer = this.clock.setTimeout(() => this.joinDone?.(), ms)
    })
  }

  /**
   * Re-joins without leaving the backup role (after a fence is confirmed, after the store lost
   * data): no takeover from itself before one join window, and the query goes out again.
   */
  private rejoin(): void {
    const window = this.joinWindowMs > 0 ? this.joinWindowMs : 2 * Math.max(this.checkMs, 1)
    this.joinUntil = Math.max(this.joinUntil, this.clock.monotonic() + window)
    this.actions.query?.()
  }

  /**
   * Whether another node of the DVIPA holds a live owner lease in the store: it serves (or
   * served until moments ago), whatever the ownership record says after a loss of data.
   */
  private async otherOwnerLive(): Promise<boolean> {
    const names = this.ranks.filter((n) => n !== this.node).map((n) => ownerLease(this.dvipa, n))
    if (names.length === 0) return false
    try {
      const leases = await this.store.readLeases(names)
      return names.some((n) => (leases[n] ?? 0) > 0)
    } catch {
      return false
    }
  }

  /**
   * Stops: cancels every timer and any takeover (the host stops serving). Ownership stays in the
   * store. Idempotent.
   */
  async stop(): Promise<void> {
    if (!this.running) return
    this.running = false
    this.clearTimers()
    this.joinDone?.()
    this.cancelAttempt(new TakeoverError(`${this.node} stopped`))
    if (this.state.role !== 'backup')
      this.setState({ role: 'backup', view: { kind: 'unclaimed' } }, 'stop')
  }

  /**
   * Gives up what a failed start took: releases an epoch this node claimed and stops.
   */
  async abandon(): Promise<void> {
    const fence = this.fence()
    await this.stop()
    await this.actions.stopServing().catch(() => undefined)
    if (fence !== undefined)
      await this.store.releaseOwnership(this.dvipa, fence).catch(() => undefined)
  }

  // ---- events that drive it ----

  /**
   * A detector verdict. A backup re-evaluates (the owner failed: take over; a better-ranked
   * backup failed during the rank delay: claim sooner). Verdicts that arrive while this node's own
   * timers are late were computed during a pause and are not acted on.
   *
   * @param event - the detector's event
   */
  onDetectorEvent(event: FailureDetectorEvent): void {
    if (!this.running) return
    if (event.node === this.node) {
      // A detector that suspects itself (its own ticks were late): this process paused.
      if (event.type === 'node:suspect' || event.type === 'node:failed') this.paused(0)
      return
    }
    this.checkLateness()
    // A verdict that arrives during the grace after a pause was computed from stale state: it
    // never counts as fresh (the owner's lease decides instead).
    // It is kept as the moment the silence began, not when the verdict came: a silence that
    // began before the owner's claim (heartbeats between the DPs lost while the store and the
    // peers are fine) is no evidence against that owner, however late its verdict arrives.
    if (event.type === 'node:failed' && this.clock.monotonic() >= this.distrustUntil)
      this.failedAt.set(event.node, this.clock.monotonic() - Math.max(0, event.silentMs))
    if (event.type === 'node:recovered') this.failedAt.delete(event.node)
    const s = this.state
    if (s.role === 'taking-over' && s.phase.step === 'rank-delay') {
      this.rescheduleRankDelay()
      return
    }
    if (s.role === 'backup')
      this.evaluate(event.type === 'node:failed' ? event.silentMs : undefined)
  }

  /**
   * An epoch seen somewhere: the store's change stream, an ownership notice on the link, the
   * epoch of a target's reply, a rejected write, a mailbox message. A higher epoch than this
   * node's ends its ownership or its takeover at once.
   *
   * @param epoch - the epoch
   * @param owner - its owner, `null` when it was released, `undefined` when not known
   * @param source - where it was seen
   * @param previous - the record's `previousOwner`, when the store said it
   */
  observe(
    epoch: number,
    owner: NodeId | null | undefined,
    source: EpochSource,
    previous?: NodeId
  ): void {
    if (!this.running) return
    if (source === 'store' || source === 'rejected-write') this.learnStore(owner, epoch)
    const seen = this.highest
    if (epoch > this.highest) this.highest = epoch
    const s = this.state
    const mine = stateEpoch(s)
    switch (s.role) {
      case 'joining': {
        // Listens only: what it learns decides when the window ends.
        let { view, heard } = s
        if (source === 'store' && owner !== undefined && epoch >= viewEpoch(view))
          view = this.viewFrom(epoch, owner)
        if (
          owner !== undefined &&
          owner !== null &&
          owner !== this.node &&
          source !== 'store' &&
          epoch > (heard?.epoch ?? 0)
        )
          heard = { owner, epoch }
        this.state = { ...s, view, ...(heard !== undefined ? { heard } : {}) }
        return
      }
      case 'owner':
      case 'fenced': {
        // Only this node claims in its own name: a higher epoch naming it is its recovery's claim.
        if (owner === this.node) return
        if (epoch > mine || (epoch === mine && owner === null && source === 'store')) {
          this.lose(
            epoch,
            owner,
            source === 'store' && owner === null ? 'released' : 'higher-epoch',
            source
          )
        } else if (epoch === mine && owner !== undefined && owner !== null && owner !== this.node) {
          // Two nodes name one epoch (a store that lost a claim): the store decides.
          void this.readBack()
        }
        return
      }
      case 'taking-over': {
        const phase = s.phase
        if (phase.step === 'running') {
          if (epoch > phase.fence.epoch) this.abortTakeover(epoch, owner, source)
          return
        }
        const expected = phase.step === 'rank-delay' ? viewEpoch(s.view) : phase.expectedEpoch
        if (epoch <= expected) return
        if (owner === this.node && phase.step !== 'rank-delay') {
          // Our own claim, seen before (or instead of) its reply.
          if (phase.step === 'resolving') this.resolvedOwn(epoch, source)
          return
        }
        this.standDown(epoch, owner, source)
        return
      }
      case 'backup': {
        if (owner === undefined || epoch < viewEpoch(s.view) || epoch < seen) return
        // An epoch already seen is accepted again only as it was (a repeated event, a release).
        const known = s.view.kind === 'owned' ? s.view.owner : null
        if (epoch === seen && !(epoch === viewEpoch(s.view) && (owner === null || owner === known)))
          return
        if (epoch === viewEpoch(s.view) && source !== 'store') return
        const named = previous === undefined ? {} : { previous }
        this.setState(
          {
            role: 'backup',
            view:
              owner === null
                ? { kind: 'released', epoch, ...named }
                : { kind: 'owned', owner, epoch, ...named }
          },
          'higher-epoch',
          source
        )
        this.evaluate(undefined)
      }
    }
  }

  /**
   * A fenced write was rejected: another node holds a newer epoch (or the store lost data).
   *
   * @param err - the rejection
   */
  onStaleWrite(err: StaleEpochError): void {
    if (err.current > err.presented) this.observe(err.current, undefined, 'rejected-write')
    else void this.readBack()
  }

  /**
   * Takes the DVIPA over from `from` now, as a detector verdict would (the public `takeover`).
   * A call while an attempt runs returns that attempt's result.
   *
   * @param from - the owner to replace
   * @throws TakeoverError when the store names another owner, or the claim is lost
   */
  requestTakeover(from: NodeId): Promise<TakeoverReport> {
    if (this.attempt !== undefined) return this.attempt.report
    const owner = this.owner
    if (this.state.role !== 'backup' || (owner !== undefined && owner !== from)) {
      this.actions.emit({ type: 'takeover:stood-down', dvipa: this.dvipa, reason: 'lost-claim' })
      return Promise.reject(
        new TakeoverError(`${this.dvipa} is owned by ${owner ?? 'nobody'} now, not by ${from}`)
      )
    }
    return this.beginAttempt(from, 'owner-failed', 0)
  }

  // ---- transitions ----

  private setState(next: OwnershipState, cause: OwnershipCause, source?: EpochSource): void {
    const from = this.state.role
    this.state = next
    const named = stateOwner(next)
    if (named !== undefined && named !== '') this.lastOwner = named
    const key = `${named ?? ''}@${stateEpoch(next)}`
    if (key !== this.ownerKey) {
      this.ownerKey = key
      this.ownerSince = this.clock.monotonic()
    }
    const epoch = stateEpoch(next)
    if (epoch > this.highest) this.highest = epoch
    this.actions.emit({
      type: 'ownership:changed',
      dvipa: this.dvipa,
      from,
      to: next.role,
      ...(next.role === 'taking-over' ? { step: next.phase.step } : {}),
      epoch,
      owner: stateOwner(next),
      cause,
      ...(source !== undefined ? { source } : {})
    })
    this.actions.changed()
  }

  /** The primary claims a DVIPA nobody ever claimed, at start, and serves it. */
  private async claimFresh(): Promise<void> {
    this.setState(
      {
        role: 'taking-over',
        view: { kind: 'unclaimed' },
        from: this.node,
        phase: { step: 'claiming', expectedEpoch: 0 }
      },
      'start'
    )
    let won: Ownership | undefined
    for (let attempt = 0; won === undefined; attempt++) {
      try {
        won = await this.claimAbove(0)
      } catch (err) {
        if ((err as Error).name === OwnershipConflictError.name) {
          const c = err as OwnershipConflictError
          this.learnStore(c.currentOwner, c.currentEpoch)
          this.setState(
            {
              role: 'backup',
              view:
                c.currentOwner === undefined
                  ? { kind: 'released', epoch: c.currentEpoch }
                  : { kind: 'owned', owner: c.currentOwner, epoch: c.currentEpoch }
            },
            'claim-lost',
            'claim'
          )
          return
        }
        // Indeterminate: read back before deciding anything.
        this.counts.indeterminateClaims++
        this.actions.emit({
          type: 'ownership:indeterminate',
          dvipa: this.dvipa,
          expectedEpoch: 0,
          error: `${(err as Error).name}: ${(err as Error).message}`
        })
        const o = await this.store.getOwnership(this.dvipa).catch((e: Error) => e)
        if (!(o instanceof Error)) {
          if (o.owner === this.node) won = o
          else {
            this.learnStore(o.owner, o.epoch)
            this.setState({ role: 'backup', view: this.viewOf(o) }, 'claim-lost', 'store')
            return
          }
        } else if (o.name !== 'NotFoundError' && attempt >= 3) {
          this.setState({ role: 'backup', view: { kind: 'unclaimed' } }, 'start-failed')
          throw err
        }
      }
    }
    const fence = { owner: this.node, epoch: won.epoch }
    this.setState({ role: 'owner', fence, standing: { kind: 'serving' } }, 'claim-won', 'claim')
    this.confirmed(this.clock.monotonic())
    this.actions.emit({ type: 'ownership:claimed', dvipa: this.dvipa, epoch: fence.epoch })
    await this.actions.serveFresh(fence)
  }

  /**
   * Begins a takeover attempt from `from`: a rank delay for the better-ranked live backups,
   * then the claim.
   */
  private beginAttempt(
    from: NodeId,
    cause: OwnershipCause,
    silentMs: number | undefined
  ): Promise<TakeoverReport> {
    const s = this.state
    const view = s.role === 'backup' ? s.view : { kind: 'unclaimed' as const }
    let resolve!: (r: TakeoverReport) => void
    let reject!: (e: Error) => void
    const report = new Promise<TakeoverReport>((res, rej) => {
      resolve = res
      reject = rej
    })
    report.catch(() => undefined)
    const attempt: Attempt = {
      report,
      resolve,
      reject,
      detectedAt: this.clock.monotonic(),
      silentMs,
      abort: new AbortController(),
      timer: undefined,
      claimStartedAt: undefined,
      floor: undefined
    }
    // every renegotiation of the takeover listens to it
    setMaxListeners(0, attempt.abort.signal)
    this.attempt = attempt
    this.actions.emit({ type: 'takeover:started', dvipa: this.dvipa, previousOwner: from })
    const delay = this.rankDelay(from)
    if (delay === 0) {
      this.setState(
        {
          role: 'taking-over',
          view,
          from,
          phase: { step: 'claiming', expectedEpoch: this.storeEpoch }
        },
        cause
      )
      void this.claim()
    } else {
      const until = this.clock.monotonic() + delay
      this.setState(
        { role: 'taking-over', view, from, phase: { step: 'rank-delay', until } },
        cause
      )
      attempt.timer = this.clock.setTimeout(() => this.rankDelayElapsed(attempt), delay)
    }
    return report
  }

  /** The rank delay: `rankDelayMs` per better-ranked backup the detector holds alive. */
  private rankDelay(from: NodeId): number {
    const mine = this.ranks.indexOf(this.node)
    // A node that just lost the DVIPA (or released it) goes last: hysteresis against ping-pong.
    const last = this.supersededBy !== undefined
    const better = this.ranks.filter(
      (n, i) =>
        n !== this.node && n !== from && (last || i < mine) && this.detector.health(n) === 'alive'
    )
    return better.length * this.rankDelayMs
  }

  private rescheduleRankDelay(): void {
    const s = this.state
    const attempt = this.attempt
    if (s.role !== 'taking-over' || s.phase.step !== 'rank-delay' || attempt === undefined) return
    const delay = this.rankDelay(s.from)
    const elapsed = this.clock.monotonic() - attempt.detectedAt
    const left = Math.max(0, delay - elapsed)
    const until = this.clock.monotonic() + left
    if (until >= s.phase.until) return
    if (attempt.timer !== undefined) this.clock.clearTimeout(attempt.timer)
    this.state = { ...s, phase: { step: 'rank-delay', until } }
    attempt.timer = this.clock.setTimeout(() => this.rankDelayElapsed(attempt), left)
  }

  private rankDelayElapsed(attempt: Attempt): void {
    attempt.timer = undefined
    const s = this.state
    if (this.attempt !== attempt || s.role !== 'taking-over' || s.phase.step !== 'rank-delay')
      return
    if (this.storeEpoch > viewEpoch(s.view)) {
      // The store moved on during the wait (a better backup claimed): stand down.
      this.standDown(this.storeEpoch, undefined, 'store')
      return
    }
    this.setState(
      { ...s, phase: { step: 'claiming', expectedEpoch: this.storeEpoch } },
      'rank-delay-elapsed'
    )
    void this.claim()
  }

  /** Claims, replacing the store's epoch; lifts the epoch above the highest seen. */
  private async claim(): Promise<void> {
    const s = this.state
    const attempt = this.attempt
    if (s.role !== 'taking-over' || s.phase.step !== 'claiming' || attempt === undefined) return
    // The lease first: whoever sees the new epoch finds this owner's lease live.
    await this.store
      .renewLease(ownerLease(this.dvipa, this.node), this.ownerLeaseMs)
      .catch(() => undefined)
    if (this.attempt !== attempt || this.state !== s) return
    const expected = s.phase.expectedEpoch
    attempt.claimStartedAt ??= this.clock.monotonic()
    // The floor is what was seen before this claim (its own change events raise `highest`): a
    // claim resolved by reading back must still be above it.
    attempt.floor = this.highest
    try {
      const won = await this.claimAbove(expected, attempt.floor)
      if (this.attempt !== attempt) return
      this.claimWon(won)
    } catch (err) {
      if (this.attempt !== attempt) return
      if ((err as Error).name === OwnershipConflictError.name) {
        const c = err as OwnershipConflictError
        this.learnStore(c.currentOwner ?? null, c.currentEpoch)
        this.claimLost()
        this.standDown(c.currentEpoch, c.currentOwner ?? null, 'claim')
        return
      }
      // The claim may have applied: never assume it failed. Read back.
      this.counts.indeterminateClaims++
      this.actions.emit({
        type: 'ownership:indeterminate',
        dvipa: this.dvipa,
        expectedEpoch: expected,
        error: `${(err as Error).name}: ${(err as Error).message}`
      })
      const cur = this.state
      if (cur.role !== 'taking-over') return
      this.setState(
        {
          ...cur,
          phase: { step: 'resolving', expectedEpoch: expected, since: this.clock.monotonic() }
        },
        'claim-indeterminate'
      )
      void this.readBack()
    }
  }

  /**
   * Claims until the epoch is above `floor` (by default the highest seen before this claim: the
   * claim's own change event raises `highest`); one claim, unless the store lost data. Every
   * intermediate claim names this node, so nobody else can hold those epochs.
   */
  private async claimAbove(expected: number, floor = this.highest): Promise<Ownership> {
    let won = await this.store.claimOwnership(this.dvipa, {
      owner: this.node,
      ranks: this.ranks,
      expectedEpoch: expected
    })
    this.learnStore(this.node, won.epoch)
    while (won.epoch <= floor) {
      won = await this.store.claimOwnership(this.dvipa, {
        owner: this.node,
        ranks: this.ranks,
        expectedEpoch: won.epoch
      })
      this.learnStore(this.node, won.epoch)
    }
    return won
  }

  /**
   * A claim whose reply was lost turns out, read back, to have applied at `epoch`. Above the
   * attempt's floor it is won. At or below it (the store lost data, and the lost reply was of one
   * of the claims that climb back above it), the epoch may be one another node held before the
   * loss: two owners of one epoch would defeat the fence, so the attempt claims on from there.
   */
  private resolvedOwn(epoch: number, source: EpochSource): void {
    const s = this.state
    const attempt = this.attempt
    if (s.role !== 'taking-over' || attempt === undefined) return
    if (epoch > (attempt.floor ?? 0)) {
      this.claimWon({ owner: this.node, epoch })
      return
    }
    this.setState(
      { ...s, phase: { step: 'claiming', expectedEpoch: epoch } },
      'claim-indeterminate',
      source
    )
    void this.claim()
  }

  /**
   * A claim of this node lost the compare-and-set: it backs off before its next attempt, by a
   * step that grows with its rank and doubles with each loss in a row, so that nodes that lost
   * together never retry in lockstep (a claim storm).
   */
  private claimLost(): void {
    const now = this.clock.monotonic()
    if (now - this.lastClaimLossAt > CLAIM_LOSS_MEMORY_MS) this.claimLosses = 0
    this.lastClaimLossAt = now
    this.claimLosses++
    this.counts.claimsLost++
    const rank = Math.max(0, this.ranks.indexOf(this.node))
    const step = Math.max(this.rankDelayMs, MIN_CLAIM_BACKOFF_MS) * (rank + 1)
    const wait = Math.min(MAX_CLAIM_BACKOFF_MS, step * 2 ** Math.min(10, this.claimLosses - 1))
    this.backoffUntil = Math.max(this.backoffUntil, now + wait)
  }

  private claimWon(won: Pick<Ownership, 'owner' | 'epoch'>): void {
    const s = this.state
    const attempt = this.attempt
    if (s.role !== 'taking-over' || attempt === undefined) return
    const fence: Fence = { owner: this.node, epoch: won.epoch }
    this.claimLosses = 0
    this.supersededBy = undefined
    this.setState({ ...s, phase: { step: 'running', fence } }, 'claim-won', 'claim')
    this.confirmed(this.clock.monotonic())
    this.actions.emit({ type: 'ownership:claimed', dvipa: this.dvipa, epoch: fence.epoch })
    const run: TakeoverRun = {
      from: s.from,
      fence,
      signal: attempt.abort.signal,
      detectedAt: attempt.detectedAt,
      silentMs: attempt.silentMs,
      claim: {
        startedAt: attempt.claimStartedAt ?? this.clock.monotonic(),
        durationMs: this.clock.monotonic() - (attempt.claimStartedAt ?? this.clock.monotonic())
      }
    }
    this.actions.takeOver(run).then(
      (report) => this.takeoverCompleted(attempt, fence, report),
      (err: Error) => void this.takeoverFailed(attempt, fence, err)
    )
  }

  private takeoverCompleted(attempt: Attempt, fence: Fence, report: TakeoverReport): void {
    if (this.attempt !== attempt) return
    this.attempt = undefined
    this.failures = 0
    const s = this.state
    if (
      s.role === 'taking-over' &&
      s.phase.step === 'running' &&
      s.phase.fence.epoch === fence.epoch
    ) {
      this.setState({ role: 'owner', fence, standing: { kind: 'serving' } }, 'takeover-completed')
      this.armFence()
    }
    attempt.resolve(report)
  }

  private async takeoverFailed(attempt: Attempt, fence: Fence, err: Error): Promise<void> {
    if (this.attempt !== attempt) return
    this.attempt = undefined
    attempt.reject(err)
    const s = this.state
    if (s.role !== 'taking-over' || s.phase.step !== 'running') return
    // Nothing is lost: the store keeps the taken records in its journal for the next taker.
    this.failures++
    this.backoffUntil =
      this.clock.monotonic() + Math.min(30_000, this.failureBackoffMs * 2 ** (this.failures - 1))
    this.setState(
      { role: 'backup', view: { kind: 'released', epoch: fence.epoch } },
      'takeover-failed'
    )
    await this.actions.stopServing().catch(() => undefined)
    await this.store.releaseOwnership(this.dvipa, fence).catch(() => undefined)
    this.scheduleEvaluate(this.backoffUntil)
  }

  /** A higher epoch during the takeover steps: stop at once, give the address up. */
  private abortTakeover(
    epoch: number,
    owner: NodeId | null | undefined,
    source: EpochSource
  ): void {
    const attempt = this.attempt
    this.attempt = undefined
    attempt?.abort.abort()
    attempt?.reject(new TakeoverError(`${this.dvipa}: epoch ${epoch} seen during the takeover`))
    this.setState({ role: 'backup', view: this.viewFrom(epoch, owner) }, 'higher-epoch', source)
    this.actions.emit({ type: 'takeover:stood-down', dvipa: this.dvipa, reason: 'lost-claim' })
    void this.actions.stopServing().catch(() => undefined)
    this.evaluate(undefined)
  }

  /** A higher epoch before the claim won: this attempt stands down. */
  private standDown(epoch: number, owner: NodeId | null | undefined, source: EpochSource): void {
    const attempt = this.attempt
    this.attempt = undefined
    if (attempt?.timer !== undefined) this.clock.clearTimeout(attempt.timer)
    this.actions.emit({ type: 'takeover:stood-down', dvipa: this.dvipa, reason: 'lost-claim' })
    attempt?.reject(new TakeoverError(`lost the claim of ${this.dvipa} (epoch ${epoch})`))
    this.setState({ role: 'backup', view: this.viewFrom(epoch, owner) }, 'claim-lost', source)
    this.evaluate(undefined)
  }

  /** An owner (or fenced owner) sees a higher epoch, or its epoch released: it stops serving. */
  private lose(
    epoch: number,
    owner: NodeId | null | undefined,
    cause: OwnershipCause,
    source: EpochSource
  ): void {
    const s = this.state
    if (s.role !== 'owner' && s.role !== 'fenced') return
    const had = s.fence.epoch
    this.clearFence()
    if (owner !== undefined && owner !== null && owner !== this.node) this.supersededBy = owner
    else if (owner === null) this.supersededBy = this.node
    this.setState({ role: 'backup', view: this.viewFrom(epoch, owner) }, cause, source)
    void this.actions.stopServing().then(() => {
      this.actions.emit({
        type: 'ownership:lost',
        dvipa: this.dvipa,
        epoch: had,
        supersededBy: epoch
      })
    })
    this.evaluate(undefined)
  }

  /**
   * Level-triggered: a backup takes over when the store names this node (a claim whose reply
   * was lost, a restart), nobody (released), or an owner the detector holds failed. Called after
   * every event, so no failure is dropped because it came at the wrong moment.
   */
  private evaluate(silentMs: number | undefined): void {
    if (!this.running || this.attempt !== undefined) return
    const s = this.state
    if (s.role !== 'backup') return
    const now = this.clock.monotonic()
    const wait = Math.max(this.distrustUntil, this.backoffUntil)
    if (now < wait) {
      this.scheduleEvaluate(wait)
      return
    }
    if (!this.ranks.includes(this.node)) return
    const view = s.view
    if (
      view.kind === 'unclaimed'
        ? this.ranks[0] === this.node
        : view.kind === 'owned' && view.owner === this.node
    ) {
      // The store names this node (a restart, a lost claim reply, a fenced owner whose store
      // lost data) or, for the primary, nobody ever: possibly a loss of data while another node
      // serves. Never before the join window; never while another node's owner lease is live.
      if (now < this.joinUntil) {
        this.scheduleEvaluate(this.joinUntil)
        return
      }
      // Named by a claim in its name (a switchover to it): the records are still the previous
      // owner's, and so are the SAs the deletes are for.
      const from = view.kind === 'owned' ? (view.previous ?? this.node) : this.node
      void this.otherOwnerLive().then((live) => {
        if (live || this.state !== s || this.attempt !== undefined || !this.running) return
        this.beginAttempt(from, view.kind === 'unclaimed' ? 'start' : 'named-owner', undefined)
      })
      return
    }
    if (view.kind === 'unclaimed') return
    if (view.epoch < this.highest) return // the store lost data: the owner at the highest epoch recovers
    if (view.kind === 'released') {
      // the store's record names who released it; what this node saw last is only a fallback
      this.beginAttempt(view.previous ?? this.lastOwner ?? this.node, 'released', undefined)
      return
    }
    if (this.detector.health(view.owner) !== 'failed') return
    const fresh = (this.failedAt.get(view.owner) ?? Number.NEGATIVE_INFINITY) > this.ownerSince
    if (!fresh) {
      // The verdict is older than this owner's claim (it claimed while this node already held
      // it failed: a partition between the DPs, or this node lost the DVIPA to it): take over
      // only once its owner lease in the store is gone, never on the old verdict alone.
      void this.store
        .readLeases([ownerLease(this.dvipa, view.owner)])
        .then((leases) => {
          const cur = this.state
          if (cur !== s || this.attempt !== undefined) return
          if ((leases[ownerLease(this.dvipa, view.owner)] ?? 0) > 0) {
            // look again while the verdict stands: a dead owner's lease runs out
            this.scheduleEvaluate(this.clock.monotonic() + Math.max(this.checkMs, 50))
            return
          }
          this.beginAttempt(view.owner, 'owner-failed', silentMs)
        })
        .catch(() => undefined)
      return
    }
    this.beginAttempt(view.owner, 'owner-failed', silentMs)
  }

  private scheduleEvaluate(at: number): void {
    if (this.evaluateTimer !== undefined) this.clock.clearTimeout(this.evaluateTimer)
    this.evaluateTimer = this.clock.setTimeout(
      () => {
        this.evaluateTimer = undefined
        this.evaluate(undefined)
      },
      Math.max(0, at - this.clock.monotonic())
    )
  }

  // ---- the read-back, the fence, pauses ----

  private scheduleCheck(): void {
    if (!this.running || this.checkMs <= 0) return
    this.checkDue = this.clock.monotonic() + this.checkMs
    this.checkTimer = this.clock.setTimeout(() => {
      this.checkTimer = undefined
      this.checkLateness()
      this.checkDue = undefined
      // the next check does not wait for this one: a read that hangs must not stop the clock
      this.scheduleCheck()
      void this.tick()
    }, this.checkMs)
  }

  private async tick(): Promise<void> {
    const s = this.state
    if (s.role === 'owner') {
      void this.store
        .renewLease(ownerLease(this.dvipa, this.node), this.ownerLeaseMs)
        .catch(() => undefined)
      if (this.reassertDue === s.fence.epoch && !this.recovering) void this.reassert()
      if (
        ++this.ticksOwned % AUDIT_EVERY === 0 &&
        s.standing.kind === 'serving' &&
        !this.auditing &&
        this.actions.audit !== undefined
      ) {
        // one audit at a time: an audit reads every record of the DVIPA, so at many tunnels it
        // can take longer than AUDIT_EVERY read-backs, and audits piling up behind each other
        // would each hold a copy of the store's records
        this.auditing = true
        void this.actions
          .audit(s.fence)
          .catch((err: Error) => {
            if (err.name === 'StaleEpochError') this.onStaleWrite(err as StaleEpochError)
          })
          .finally(() => {
            this.auditing = false
          })
      }
    }
    await this.readBack()
    if (this.state.role === 'backup' && this.attempt === undefined) this.evaluate(undefined)
  }

  /** A timer that is overdue by more than the pause threshold means this process was paused. */
  private checkLateness(): void {
    if (this.checkDue === undefined) return
    const late = this.clock.monotonic() - this.checkDue
    if (late > this.pauseThresholdMs) {
      this.checkDue = undefined
      this.paused(late)
    }
  }

  private paused(lateMs: number): void {
    this.counts.pauses++
    this.actions.emit({ type: 'ownership:paused', dvipa: this.dvipa, lateMs })
    this.distrustUntil = this.clock.monotonic() + this.pauseGraceMs
    const s = this.state
    if (s.role === 'owner') {
      this.setState(
        { ...s, standing: { kind: 'confirming', reason: 'paused', since: this.clock.monotonic() } },
        'paused'
      )
      void this.readBack()
    } else if (s.role === 'taking-over' && s.phase.step === 'rank-delay') {
      // The verdict behind it was computed during the pause.
      const attempt = this.attempt
      this.attempt = undefined
      if (attempt?.timer !== undefined) this.clock.clearTimeout(attempt.timer)
      attempt?.reject(new TakeoverError(`${this.node} paused; verdict not acted on`))
      this.setState({ role: 'backup', view: s.view }, 'paused')
      this.scheduleEvaluate(this.distrustUntil)
    }
  }

  /** Reads the ownership back and applies what it says. */
  private async readBack(): Promise<void> {
    const now = this.clock.monotonic()
    // One read at a time, unless the one under way is older than a fencing time (abandoned).
    if (this.reading && now - this.readSince < Math.max(this.checkMs * 4, this.selfFenceMs)) return
    this.reading = true
    this.readSince = now
    const sentAt = now
    // What the store cannot have missed: the highest epoch seen before the read was sent. A
    // read that was slow to come back may name an epoch below one seen since, which is no loss.
    const floor = this.highest
    let ownership: Ownership | undefined
    let missing = false
    try {
      ownership = await this.store.getOwnership(this.dvipa)
    } catch (err) {
      if ((err as Error).name === 'NotFoundError') missing = true
      else {
        if (this.readSince === sentAt) this.reading = false
        this.readFailed()
        return
      }
    }
    if (this.readSince === sentAt) this.reading = false
    if (!this.running) return
    if (this.storeDown) this.storeBack()
    const storeEpoch = ownership?.epoch ?? 0
    if (storeEpoch < floor) {
      this.regressed(storeEpoch, ownership, missing)
      return
    }
    // older than what this node learned while it was under way: says nothing new
    if (storeEpoch < this.highest) return
    this.regressedSince = undefined
    if (ownership === undefined) return
    this.learnStore(ownership.owner, ownership.epoch)
    const s = this.state
    switch (s.role) {
      case 'joining':
        if (ownership.epoch >= viewEpoch(s.view))
          this.state = { ...s, view: this.viewOf(ownership) }
        return
      case 'owner':
        if (ownership.owner === this.node && ownership.epoch === s.fence.epoch) {
          this.confirmed(sentAt)
        } else {
          this.lose(
            ownership.epoch,
            ownership.owner,
            ownership.owner === null ? 'released' : 'higher-epoch',
            'store'
          )
        }
        return
      case 'fenced':
        if (ownership.owner === this.node && ownership.epoch === s.fence.epoch) {
          // Still ours, or a store that rolled back to it while it was cut off: serve again, by
          // a takeover from itself under a new epoch, after a join window (a live owner that
          // it never heard of sees the rollback and claims above it meanwhile).
          this.rejoin()
          this.setState({ role: 'backup', view: this.viewOf(ownership) }, 'confirmed', 'store')
          this.evaluate(undefined)
        } else {
          this.lose(ownership.epoch, ownership.owner, 'higher-epoch', 'store')
        }
        return
      case 'taking-over': {
        const phase = s.phase
        if (phase.step === 'resolving') {
          if (ownership.owner === this.node && ownership.epoch > phase.expectedEpoch) {
            this.resolvedOwn(ownership.epoch, 'store')
          } else if (ownership.epoch === phase.expectedEpoch) {
            // The claim did not apply: claim again.
            this.setState(
              { ...s, phase: { step: 'claiming', expectedEpoch: phase.expectedEpoch } },
              'claim-indeterminate',
              'store'
            )
            void this.claim()
          } else {
            this.standDown(ownership.epoch, ownership.owner, 'store')
          }
        } else if (phase.step === 'running') {
          if (ownership.epoch > phase.fence.epoch || ownership.owner !== this.node)
            this.abortTakeover(ownership.epoch, ownership.owner, 'store')
          // still this node's epoch: a confirmation, or a takeover longer than selfFenceMs
          // would fence itself the moment it completes
          else this.confirmed(sentAt)
        } else if (
          ownership.epoch > (phase.step === 'claiming' ? phase.expectedEpoch : viewEpoch(s.view))
        ) {
          if (ownership.owner !== this.node)
            this.standDown(ownership.epoch, ownership.owner, 'store')
        }
        return
      }
      case 'backup':
        if (
          ownership.epoch > viewEpoch(s.view) ||
          (ownership.epoch === viewEpoch(s.view) &&
            (s.view.kind !== 'owned' || ownership.owner !== s.view.owner))
        ) {
          this.setState({ role: 'backup', view: this.viewOf(ownership) }, 'higher-epoch', 'store')
        }
    }
  }

  private readFailed(): void {
    this.storeDown = true
    this.checkDeadline()
  }

  /**
   * The store answers again after a failed read. The backoff of takeovers that failed while it
   * was down (doubling up to 30 s) ends within one first step: the cause is gone, and a DVIPA
   * nobody serves must not wait out a backoff earned against a dead store.
   */
  private storeBack(): void {
    this.storeDown = false
    const soon = this.clock.monotonic() + this.failureBackoffMs
    if (this.backoffUntil > soon) {
      this.backoffUntil = soon
      this.scheduleEvaluate(soon)
    }
  }

  /** The store confirmed this owner's epoch as of `sentAt` (when the read was sent). */
  private confirmed(sentAt: number): void {
    this.confirmedAt = Math.max(this.confirmedAt, sentAt)
    const s = this.state
    if (s.role === 'owner' && s.standing.kind === 'confirming') {
      const reason = s.standing.reason
      this.setState({ ...s, standing: { kind: 'serving' } }, 'confirmed', 'store')
      this.actions.emit({
        type: 'ownership:confirmed',
        dvipa: this.dvipa,
        epoch: s.fence.epoch,
        reason
      })
    }
    this.armFence()
  }

  /** The self-fence deadline: a local timer from the last confirmation, whatever the store does. */
  private armFence(): void {
    this.clearFence()
    if (this.selfFenceMs <= 0 || !this.running) return
    const s = this.state
    if (s.role !== 'owner' && !(s.role === 'taking-over' && s.phase.step === 'running')) return
    const left = this.confirmedAt + this.selfFenceMs - this.clock.monotonic()
    this.fenceTimer = this.clock.setTimeout(
      () => {
        this.fenceTimer = undefined
        this.checkDeadline()
      },
      Math.max(1, left)
    )
  }

  private clearFence(): void {
    if (this.fenceTimer !== undefined) this.clock.clearTimeout(this.fenceTimer)
    this.fenceTimer = undefined
  }

  private checkDeadline(): void {
    if (this.selfFenceMs <= 0) return
    const s = this.state
    if (s.role !== 'owner') return
    const silent = this.clock.monotonic() - this.confirmedAt
    if (silent < this.selfFenceMs) {
      // a timer may fire early (Node counts from a cached loop time): arm it again
      this.armFence()
      return
    }
    this.clearFence()
    this.setState(
      { role: 'fenced', fence: s.fence, since: this.clock.monotonic() },
      'fence-deadline'
    )
    void this.actions.stopServing().then(() => {
      this.actions.emit({
        type: 'ownership:fenced',
        dvipa: this.dvipa,
        epoch: s.fence.epoch,
        silentMs: silent
      })
    })
  }

  /**
   * The store holds a lower epoch than this node has seen: it lost data. An alarm; the owner at
   * the highest epoch claims above it and writes its records again; a backup waits for it, or
   * takes over above the highest epoch if the detector holds that owner failed.
   */
  private regressed(storeEpoch: number, ownership: Ownership | undefined, missing: boolean): void {
    this.storeEpoch = storeEpoch
    if (this.lastAlarm !== storeEpoch) {
      this.lastAlarm = storeEpoch
      this.counts.epochRegressions++
      this.actions.emit({
        type: 'ownership:epoch-regressed',
        dvipa: this.dvipa,
        storeEpoch,
        highestSeen: this.highest
      })
    }
    const s = this.state
    if (s.role === 'owner') {
      if (s.standing.kind === 'serving' || s.standing.reason !== 'epoch-regressed')
        this.setState(
          {
            ...s,
            standing: {
              kind: 'confirming',
              reason: 'epoch-regressed',
              since: this.clock.monotonic()
            }
          },
          'epoch-regressed',
          'store'
        )
      void this.recover(s.fence, storeEpoch, missing)
      return
    }
    if (s.role === 'taking-over' && s.phase.step === 'resolving' && this.attempt !== undefined) {
      // The reply of this node's claim was lost, and the store has since lost data: whatever the
      // claim did, the store no longer holds it. Taking over from a failed owner (or from
      // itself), it claims again, above the highest epoch seen; otherwise it stands down and
      // decides as a backup.
      if (s.from === this.node || this.detector.health(s.from) === 'failed') {
        this.setState(
          { ...s, phase: { step: 'claiming', expectedEpoch: storeEpoch } },
          'epoch-regressed',
          'store'
        )
        void this.claim()
      } else {
        this.standDown(storeEpoch, s.from, 'store')
      }
      return
    }
    if (s.role === 'fenced' && this.attempt === undefined) {
      // It held the highest epoch and stopped for want of a confirmation; the store has lost
      // it. Nobody else may serve below it: recover by a takeover from itself, above it, after
      // a join window (a live owner it never heard of answers, or claims above the loss).
      this.rejoin()
      this.setState(
        { role: 'backup', view: { kind: 'owned', owner: this.node, epoch: storeEpoch } },
        'epoch-regressed',
        'store'
      )
      this.evaluate(undefined)
      return
    }
    if (s.role === 'backup' && this.attempt === undefined) {
      const named = s.view.kind === 'owned' && s.view.owner !== '' ? s.view.owner : undefined
      const now = this.clock.monotonic()
      this.regressedSince ??= now
      if (named !== undefined && named !== this.node && this.detector.health(named) === 'failed') {
        this.beginAttempt(named, 'epoch-regressed', undefined)
      } else if (now - this.regressedSince >= this.ownerLeaseMs) {
        // Long enough for a live owner to have claimed above the loss and renewed its lease:
        // nobody did, so nobody serves. The best live backup recovers above the highest epoch.
        void this.otherOwnerLive().then((live) => {
          if (live || this.state !== s || this.attempt !== undefined || !this.running) return
          this.beginAttempt(named ?? this.lastOwner ?? this.node, 'epoch-regressed', undefined)
        })
      }
    }
    void ownership
  }

  private recovering = false
  /** Read-backs while owner: every {@link AUDIT_EVERY}th also audits the records. */
  private ticksOwned = 0
  /** Whether an audit is under way (the next one waits for its turn after it). */
  private auditing = false
  /** Since when (monotonic ms) the read-backs show a store below the highest epoch seen. */
  private regressedSince: number | undefined
  /** The epoch whose records still have to be written again after a data loss (0: none). */
  private reassertDue = 0

  /**
   * Writes the records again and tells the targets, after the store lost data, under the
   * epoch claimed above it; a failure leaves it due, and every read-back tries again until it
   * is done (or the epoch is gone).
   */
  private async reassert(): Promise<void> {
    const s = this.state
    if (s.role !== 'owner' || s.fence.epoch !== this.reassertDue) return
    try {
      await this.actions.reassert(s.fence)
      if (this.reassertDue === s.fence.epoch) this.reassertDue = 0
    } catch (err) {
      if ((err as Error).name === 'StaleEpochError') this.onStaleWrite(err as StaleEpochError)
    }
  }

  private async recover(fence: Fence, storeEpoch: number, missing: boolean): Promise<void> {
    if (this.recovering) return
    this.recovering = true
    try {
      const won = await this.claimAbove(missing ? 0 : storeEpoch)
      const s = this.state
      if (s.role !== 'owner' || s.fence.epoch !== fence.epoch) return
      const next: Fence = { owner: this.node, epoch: won.epoch }
      this.state = { role: 'owner', fence: next, standing: s.standing }
      this.actions.emit({ type: 'ownership:claimed', dvipa: this.dvipa, epoch: next.epoch })
      this.reassertDue = next.epoch
      await this.reassert()
      const cur = this.state
      if (cur.role === 'owner' && cur.fence.epoch === next.epoch) {
        this.setState({ ...cur, standing: { kind: 'serving' } }, 'epoch-regressed', 'claim')
        this.actions.emit({
          type: 'ownership:confirmed',
          dvipa: this.dvipa,
          epoch: next.epoch,
          reason: 'epoch-regressed'
        })
        this.confirmed(this.clock.monotonic())
      }
    } catch (err) {
      if ((err as Error).name === OwnershipConflictError.name) {
        const c = err as OwnershipConflictError
        if (c.currentEpoch > this.highest) this.observe(c.currentEpoch, c.currentOwner, 'store')
      }
    } finally {
      this.recovering = false
    }
  }

  // ---- helpers ----

  private learnStore(owner: NodeId | null | undefined, epoch: number): void {
    if (epoch > this.storeEpoch || owner !== undefined)
      this.storeEpoch = Math.max(epoch, this.storeEpoch)
  }

  private viewOf(o: Ownership): StoreView {
    const named = o.previousOwner === undefined ? {} : { previous: o.previousOwner }
    return o.owner === null
      ? { kind: 'released', epoch: o.epoch, ...named }
      : { kind: 'owned', owner: o.owner, epoch: o.epoch, ...named }
  }

  private viewFrom(epoch: number, owner: NodeId | null | undefined): StoreView {
    if (owner === null) return { kind: 'released', epoch }
    if (owner === undefined) {
      const s = this.state
      const known = s.role === 'backup' || s.role === 'taking-over' ? s.view : undefined
      if (known?.kind === 'owned' && known.epoch === epoch) return known
      // An epoch whose owner is not known yet: the next read-back fills it in.
      return { kind: 'owned', owner: '', epoch }
    }
    return { kind: 'owned', owner, epoch }
  }

  private cancelAttempt(err: Error): void {
    const attempt = this.attempt
    this.attempt = undefined
    if (attempt === undefined) return
    if (attempt.timer !== undefined) this.clock.clearTimeout(attempt.timer)
    attempt.abort.abort()
    attempt.reject(err)
  }

  private clearTimers(): void {
    for (const t of [this.checkTimer, this.fenceTimer, this.evaluateTimer]) {
      if (t !== undefined) this.clock.clearTimeout(t)
    }
    this.checkTimer = undefined
    this.fenceTimer = undefined
    this.evaluateTimer = undefined
    this.checkDue = undefined
  }
}
