import { Subject, type Observable } from 'rxjs'
import {
  InvalidParametersError,
  type Clock,
  type CouplingStore,
  type FailureDetector,
  type FailureDetectorEvent,
  type NodeHealth,
  type NodeId,
  type TimerHandle,
  type WatchTarget
} from '@vipsec/interface'

/** What a {@link LeaseFailureDetector} needs. */
export interface LeaseFailureDetectorComponents {
  /** The coupling store the leases live in (its own clock decides expiry). */
  store: CouplingStore
  /** Drives the renew and check timer. */
  clock: Clock
}

/** Options of a {@link LeaseFailureDetector}. */
export interface LeaseFailureDetectorInit {
  /** This node's id: its lease is renewed every interval. */
  node: NodeId
  /** How often this node renews its lease and reads the others', in ms. Default 200. */
  intervalMs?: number
  /**
   * The lease lifetime in ms: a node whose lease has run out is failed. Default 3 intervals.
   * A node whose lease was not renewed for one and a half intervals is suspect.
   */
  ttlMs?: number
  /**
   * A tick of this detector's own timer, or a lease read's reply, this late (a paused or starved
   * process, a reply that waited) makes it suspect itself, not the others: it emits
   * `node:suspect` about itself and no verdict about another node until a lease read sent after
   * that came back in time (fresh evidence), then `node:recovered` about itself. In ms; default
   * `ttlMs - intervalMs`.
   */
  pauseThresholdMs?: number
  /**
   * The longest a call to the coupling store may take before it fails (the store client's
   * timeout, e.g. the Redis store's `operationTimeoutMs`), ms. Default 0 (an in-process store).
   * A renewal waits for the call before it, so renewals can be this much further apart than
   * `intervalMs`: the lease must outlast that (`ttlMs > intervalMs + storeTimeoutMs`), and a
   * failure can be declared that much sooner after the last renewal (see `minDetectionMs`).
   */
  storeTimeoutMs?: number
}

/** Counters of a {@link LeaseFailureDetector}. */
export interface LeaseCounters {
  /** Renewals of this node's lease that succeeded. */
  renewed: number
  /** Store calls (renewals and reads) that failed. */
  storeErrors: number
  /** Times its own timer or a lease read ran late past `pauseThresholdMs`: it suspected itself. */
  selfSuspicions: number
  /** Lease reads not judged (no verdicts given) while it suspected itself. */
  verdictsWithheld: number
}

interface Watched {
  health: NodeHealth
  /** Monotonic ms when the node was last seen with a live lease (or watch() was called). */
  lastAlive: number
}

/**
 * A failure detector on coupling-store leases: every node renews a lease in the store every
 * `intervalMs` with a lifetime of `ttlMs`, and reads the leases of the nodes it watches. A
 * watched node whose lease has run out is `failed`; one whose lease has not been renewed for one
 * and a half intervals is `suspect`. Expiry is decided by the store's clock (Redis's), so nodes
 * with skewed clocks agree. Slower than heartbeats (a store round trip per interval) but it
 * needs no extra network path: it watches exactly what the takeover depends on, the store.
 *
 * While the store cannot be read, nothing is declared: a store outage is not a node failure.
 * A detector whose own timer runs late, or whose lease read comes back late, suspects itself,
 * not the others: it says so (`node:suspect` about itself, `selfSuspicions`) and judges no lease
 * until a read sent after that comes back in time.
 */
export class LeaseFailureDetector implements FailureDetector {
  private readonly store: CouplingStore
  private readonly clock: Clock
  private readonly node: NodeId
  private readonly intervalMs: number
  private readonly ttlMs: number
  private readonly watched = new Map<NodeId, Watched>()
  private events = new Subject<FailureDetectorEvent>()
  private timer: TimerHandle | undefined
  private started = false
  private ticking = false
  private readonly pauseThresholdMs: number
  private readonly storeTimeoutMs: number
  /** When the next tick is due (monotonic ms), to measure its lateness. */
  private tickDue: number | undefined
  /** Set while it suspects itself: only a read sent after this instant is fresh evidence. */
  private suspectSince: number | undefined
  private readonly counts: LeaseCounters = {
    renewed: 0,
    storeErrors: 0,
    selfSuspicions: 0,
    verdictsWithheld: 0
  }

  /**
   * @param components - the store and the clock
   * @param init - node id, interval and lease lifetime
   * @throws InvalidParametersError when the timing is out of range
   */
  constructor(components: LeaseFailureDetectorComponents, init: LeaseFailureDetectorInit) {
    const intervalMs = init.intervalMs ?? 200
    const ttlMs = init.ttlMs ?? intervalMs * 3
    if (!(Number.isInteger(intervalMs) && intervalMs >= 1)) {
      throw new InvalidParametersError('init.intervalMs', 'must be an integer >= 1')
    }
    if (!(Number.isInteger(ttlMs) && ttlMs >= intervalMs * 2)) {
      throw new InvalidParametersError('init.ttlMs', 'must be an integer of at least two intervals')
    }
    const storeTimeoutMs = init.storeTimeoutMs ?? 0
    if (!(Number.isFinite(storeTimeoutMs) && storeTimeoutMs >= 0)) {
      throw new InvalidParametersError('init.storeTimeoutMs', 'must be a number of ms, 0 or more')
    }
    if (ttlMs <= intervalMs + storeTimeoutMs) {
      throw new InvalidParametersError(
        'init.ttlMs',
        `${ttlMs} ms does not outlast one interval and one store call (intervalMs ${intervalMs} + ` +
          `storeTimeoutMs ${storeTimeoutMs}): a live node's lease could run out`
      )
    }
    this.storeTimeoutMs = storeTimeoutMs
    const pauseThresholdMs = init.pauseThresholdMs ?? ttlMs - intervalMs
    if (!(Number.isFinite(pauseThresholdMs) && pauseThresholdMs >= 1)) {
      throw new InvalidParametersError('init.pauseThresholdMs', 'must be a number of ms, 1 or more')
    }
    this.pauseThresholdMs = pauseThresholdMs
    this.store = components.store
    this.clock = components.clock
    this.node = init.node
    this.intervalMs = intervalMs
    this.ttlMs = ttlMs
  }

  /** Health changes; completes on `stop()`. */
  get events$(): Observable<FailureDetectorEvent> {
    return this.events.asObservable()
  }

  /** How long a node's lease lasts without renewal: the longest a failure goes unnoticed, plus one interval. */
  get detectionTimeMs(): number {
    return this.ttlMs
  }

  /**
   * The least time from a node's last renewal that reached the store to its declaration as
   * failed: a lease renewed just before its node was cut off lasts `ttlMs` from the renewal, and
   * the renewal before it came at most one interval (and one slow store call, `storeTimeoutMs`)
   * earlier, so `ttlMs - intervalMs - storeTimeoutMs`.
   */
  get minDetectionMs(): number {
    return this.ttlMs - this.intervalMs - this.storeTimeoutMs
  }

  /** The detector's counters (a copy). */
  counters(): LeaseCounters {
    return { ...this.counts }
  }

  /** Starts renewing and checking. Idempotent. */
  async start(): Promise<void> {
    if (this.started) return
    if (this.events.isStopped) this.events = new Subject()
    this.started = true
    const now = this.clock.monotonic()
    for (const w of this.watched.values()) w.lastAlive = now
    this.tickDue = undefined
    this.suspectSince = undefined
    await this.tick()
  }

  /** Whether it suspects itself (it ran late) and gives no verdicts about others now. */
  get suspectsItself(): boolean {
    return this.suspectSince !== undefined
  }

  /** Stops renewing (the lease then runs out) and completes `events$`. Idempotent. */
  async stop(): Promise<void> {
    if (!this.started) return
    this.started = false
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer)
    this.timer = undefined
    this.events.complete()
  }

  /** Whether started. */
  isStarted(): boolean {
    return this.started
  }

  /**
   * Watches a node's lease (the endpoint is not used).
   *
   * @param target - the node
   */
  watch(target: WatchTarget): void {
    if (this.watched.has(target.node)) return
    this.watched.set(target.node, { health: 'unknown', lastAlive: this.clock.monotonic() })
  }

  /**
   * Stops watching a node.
   *
   * @param node - the node
   */
  unwatch(node: NodeId): void {
    this.watched.delete(node)
  }

  /**
   * What the detector believes of a node.
   *
   * @param node - the node
   */
  health(node: NodeId): NodeHealth {
    return this.watched.get(node)?.health ?? 'unknown'
  }

  private async tick(): Promise<void> {
    if (!this.started || this.ticking) return
    if (this.tickDue !== undefined) this.lateBy(this.clock.monotonic() - this.tickDue)
    this.tickDue = undefined
    this.ticking = true
    try {
      try {
        await this.store.renewLease(this.node, this.ttlMs)
        this.counts.renewed++
      } catch {
        this.counts.storeErrors++
      }
      const nodes = [...this.watched.keys()]
      if (nodes.length > 0) {
        let leases: Record<NodeId, number> | undefined
        const sentAt = this.clock.monotonic()
        try {
          leases = await this.store.readLeases(nodes)
        } catch {
          this.counts.storeErrors++
        }
        // a reply that took this long (or a process that paused while waiting) is stale
        if (leases !== undefined) this.lateBy(this.clock.monotonic() - sentAt - this.intervalMs)
        if (leases !== undefined && this.started) {
          if (this.suspectSince !== undefined && sentAt >= this.suspectSince) {
            this.suspectSince = undefined
            this.events.next({ type: 'node:recovered', node: this.node })
          }
          if (this.suspectSince === undefined) this.judge(leases, sentAt)
          else this.counts.verdictsWithheld++
        }
      }
    } finally {
      this.ticking = false
    }
    if (this.started) {
      this.tickDue = this.clock.monotonic() + this.intervalMs
      this.timer = this.clock.setTimeout(() => void this.tick(), this.intervalMs)
    }
  }

  /** Something of its own ran `lateMs` late: past the threshold, it suspects itself. */
  private lateBy(lateMs: number): void {
    if (lateMs <= this.pauseThresholdMs) return
    this.counts.selfSuspicions++
    if (this.suspectSince === undefined)
      this.events.next({ type: 'node:suspect', node: this.node, silentMs: lateMs })
    this.suspectSince = this.clock.monotonic()
  }

  /** Judges the leases as the store held them when the read was sent (`sentAt`). */
  private judge(leases: Record<NodeId, number>, sentAt: number): void {
    const now = sentAt
    for (const [node, w] of this.watched) {
      const remaining = leases[node] ?? 0
      if (remaining > 0) {
        // renewed at most (ttl - remaining) ago
        w.lastAlive = Math.max(w.lastAlive, now - (this.ttlMs - remaining))
        const silentMs = now - w.lastAlive
        const was = w.health
        if (silentMs >= this.intervalMs * 1.5) {
          if (was === 'alive') {
            w.health = 'suspect'
            this.events.next({ type: 'node:suspect', node, silentMs })
          }
        } else {
          w.health = 'alive'
          if (was === 'suspect' || was === 'failed')
            this.events.next({ type: 'node:recovered', node })
        }
      } else {
        // A lease that expired was renewed at least ttlMs ago; one that vanished sooner (a
        // store that lost its data) says nothing about its node: wait out its lifetime first.
        const silentMs = now - w.lastAlive
        if (w.health !== 'failed' && silentMs >= this.ttlMs) {
          w.health = 'failed'
          this.events.next({ type: 'node:failed', node, silentMs })
        }
      }
    }
  }
}

/**
 * Creates a {@link LeaseFailureDetector}.
 *
 * @param components - the store and the clock
 * @param init - node id, interval and lease lifetime
 */
export function leaseFailureDetector(
  components: LeaseFailureDetectorComponents,
  init: LeaseFailureDetectorInit
): LeaseFailureDetector {
  return new LeaseFailureDetector(components, init)
}
