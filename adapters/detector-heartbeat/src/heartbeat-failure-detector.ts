import { randomInt } from 'node:crypto'
import { Subject, type Observable, type Subscription } from 'rxjs'
import {
  emptyDropCounts,
  nextIncarnation,
  parseFrameHeader,
  type ClusterFrameDropReason,
  type ClusterKey,
  type FrameGuard
} from '@vipsec/cluster-link-udp'
import {
  InvalidParametersError,
  type Clock,
  type Endpoint,
  type FailureDetector,
  type FailureDetectorEvent,
  type NetworkAdapter,
  type NodeHealth,
  type NodeId,
  type RandomSource,
  type TimerHandle,
  type UdpEndpoint,
  type WatchTarget
} from '@vipsec/interface'
import { HEARTBEAT_MAGIC, heartbeatGuard, MAX_HEARTBEAT_BYTES } from './heartbeat-codec.js'

/** What a {@link HeartbeatFailureDetector} needs. */
export interface HeartbeatFailureDetectorComponents {
  /** Opens the heartbeat socket. */
  network: NetworkAdapter
  /** Drives the send and check timers; its wall time seeds the incarnation. */
  clock: Clock
  /** Randomness for the incarnation. Default: node:crypto. */
  random?: Pick<RandomSource, 'randomInt'>
}

/** Options of a {@link HeartbeatFailureDetector}. */
export interface HeartbeatFailureDetectorInit {
  /** This node's id, carried in every heartbeat. */
  node: NodeId
  /** The address and port to send from and listen on. */
  local: Endpoint
  /** How often a heartbeat is sent, in ms. Default 100. */
  intervalMs?: number
  /**
   * How many intervals of silence declare a node failed (BFD's detect multiplier). Default 3:
   * with the default interval, a node is failed after 300 ms without a heartbeat.
   */
  multiplier?: number
  /** Endpoints that receive this node's heartbeats although this node does not watch them. */
  announceTo?: Endpoint[]
  /**
   * The cluster keys (one, or two while rotating): heartbeats are sent under the first and
   * accepted under any. Each carries the key id, this node's incarnation and its sequence, and
   * an AES-256-GCM tag; forged, replayed and unknown-key heartbeats are dropped and counted.
   * Required unless `insecure` is true.
   */
  keys?: ClusterKey[]
  /**
   * Run without keys: anyone who can send to the heartbeat port can keep a dead node looking
   * alive. For a network only the cluster reaches. Default false; not with `keys`.
   */
  insecure?: boolean
  /**
   * A tick of this detector's own timer this late (a paused or starved process) makes it
   * suspect itself, not the others: it emits `node:suspect` about itself and no verdict about
   * any other node until it has ticked on time for `multiplier` rounds again (fresh evidence),
   * then `node:recovered` about itself. In ms; default `intervalMs x (multiplier - 1)`, the
   * lateness from which its silence measurements would be wrong.
   */
  pauseThresholdMs?: number
}

/** A heartbeat detector's timing with the defaults applied. */
export interface HeartbeatTiming {
  /** The heartbeat interval, ms. */
  intervalMs: number
  /** Intervals of silence that fail a node. */
  multiplier: number
  /** A tick this late makes the detector suspect itself, ms. */
  pauseThresholdMs: number
}

/**
 * Checks the timing and key options of a heartbeat detector and applies the defaults.
 *
 * @param init - the options
 * @throws InvalidParametersError naming the bad option
 */
export function checkHeartbeatInit(init: HeartbeatFailureDetectorInit): HeartbeatTiming {
  const intervalMs = init.intervalMs ?? 100
  const multiplier = init.multiplier ?? 3
  if (!(intervalMs >= 1 && intervalMs <= 60_000)) {
    throw new InvalidParametersError('init.intervalMs', 'must be from 1 to 60000')
  }
  if (!(Number.isInteger(multiplier) && multiplier >= 2 && multiplier <= 255)) {
    throw new InvalidParametersError('init.multiplier', 'must be an integer from 2 to 255')
  }
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
  heartbeatGuard(keys) // checks the keys
  const pauseThresholdMs = init.pauseThresholdMs ?? intervalMs * (multiplier - 1)
  if (!(pauseThresholdMs >= 1 && Number.isFinite(pauseThresholdMs))) {
    throw new InvalidParametersError('init.pauseThresholdMs', 'must be a number of ms, 1 or more')
  }
  return { intervalMs, multiplier, pauseThresholdMs }
}

/**
 * How many times one judgement of silence is put off because it ran late (the process stalled
 * between reading its socket and judging); after that it judges what it has.
 */
const MAX_JUDGEMENT_DEFERRALS = 3

/** Counters of a {@link HeartbeatFailureDetector}. */
export interface HeartbeatCounters {
  /** Heartbeats sent (one per destination). */
  sent: number
  /** Heartbeats accepted. */
  received: number
  /**
   * Datagrams dropped, by reason. `replayed` and `too-old` include late heartbeats: only one
   * newer than the last accepted counts as a sign of life.
   */
  dropped: Record<ClusterFrameDropReason, number>
  /** Well-formed heartbeats of nodes this detector does not watch (normal: they announce to it). */
  ignored: number
  /** Times its own timer ran late past `pauseThresholdMs`: it suspected itself. */
  selfSuspicions: number
  /** Verdicts about other nodes (`node:suspect`, `node:failed`) not given while it suspected itself. */
  verdictsWithheld: number
  /**
   * Judgements of silence put off by one more turn of the event loop because the process stalled
   * between a tick and its judgement: the heartbeats that waited in the socket are read first.
   */
  judgementsDeferred: number
}

/** Counters with everything zero. */
export function emptyHeartbeatCounters(): HeartbeatCounters {
  return {
    sent: 0,
    received: 0,
    dropped: emptyDropCounts(),
    ignored: 0,
    selfSuspicions: 0,
    verdictsWithheld: 0,
    judgementsDeferred: 0
  }
}

interface Watched {
  target: WatchTarget
  health: NodeHealth
  /** Monotonic ms of the last heartbeat, or of the watch() call before the first one. */
  lastHeard: number
  /** The sender's incarnation and highest sequence accepted: only a newer heartbeat is a sign of life. */
  incarnation: number
  /** See `incarnation`. */
  sequence: number
}

/** A change of a watched node's health ({@link HeartbeatFailureDetector.healthChanges$}). */
export interface HealthChange {
  /** The node. */
  node: NodeId
  /** What the detector believes of it now. */
  health: NodeHealth
}

/**
 * A BFD-like failure detector: every node sends a small UDP heartbeat to the nodes it watches
 * (and to `announceTo`) every `intervalMs`; a watched node silent for one interval and a half is
 * `suspect` (judged at each tick), and for `multiplier` intervals `failed` (judged at that moment,
 * on a deadline timer like BFD's, not at the next tick). Hearing it again makes it `alive`
 * (`node:recovered`). A node watched but never heard is declared failed after the same time, so
 * a backup that starts after the owner died still takes over.
 *
 * A detector whose own timer runs late (its process was paused or starved) suspects itself,
 * not the others: its silence measurements are wrong. It says so (`node:suspect` about itself,
 * `selfSuspicions`) and gives no verdict about another node until it has ticked on time for
 * `multiplier` rounds, then `node:recovered` about itself.
 *
 * Silence is judged after the heartbeats waiting in the socket have been read, not in the tick
 * itself: after a stall of the event loop, the tick that was due runs before Node reads the
 * datagrams that arrived meanwhile (in time), so judging there would fail a live node. Each tick
 * sends, then judges on a timer of its own, which runs after the next read of the sockets; a
 * judgement that itself runs late (the process stalled again) waits one more turn.
 */
export class HeartbeatFailureDetector implements FailureDetector {
  private readonly network: NetworkAdapter
  private readonly clock: Clock
  private readonly node: NodeId
  private readonly local: Endpoint
  private readonly intervalMs: number
  private readonly multiplier: number
  private readonly pauseThresholdMs: number
  /** When the next tick is due (monotonic ms), to measure its lateness. */
  private tickDue: number | undefined
  /** On-time rounds still needed after a late tick before verdicts resume (0: trusted). */
  private freshRoundsNeeded = 0
  private readonly announceTo: Endpoint[]
  private readonly random: Pick<RandomSource, 'randomInt'>
  private readonly guard: FrameGuard
  private readonly watched = new Map<NodeId, Watched>()
  private events = new Subject<FailureDetectorEvent>()
  private readonly healthChanges = new Subject<HealthChange>()
  private socket: UdpEndpoint | undefined
  private subscription: Subscription | undefined
  private timer: TimerHandle | undefined
  /** The pending judgement of silence, and when it is due (monotonic ms). */
  private judgement: TimerHandle | undefined
  private judgementDue: number | undefined
  private incarnation = -1
  private readonly counts: HeartbeatCounters = emptyHeartbeatCounters()

  /**
   * @param components - network adapter and clock
   * @param init - node id, endpoint, timing and keys
   * @throws InvalidParametersError when a timing option or a key is invalid, or there is no key
   * and `insecure` is not set
   */
  constructor(components: HeartbeatFailureDetectorComponents, init: HeartbeatFailureDetectorInit) {
    const { intervalMs, multiplier, pauseThresholdMs } = checkHeartbeatInit(init)
    this.network = components.network
    this.clock = components.clock
    this.node = init.node
    this.local = { ...init.local }
    this.intervalMs = intervalMs
    this.multiplier = multiplier
    this.pauseThresholdMs = pauseThresholdMs
    this.announceTo = (init.announceTo ?? []).map((e) => ({ ...e }))
    this.random = components.random ?? { randomInt: (max) => randomInt(max) }
    this.guard = heartbeatGuard(init.keys ?? [])
    this.guard.startSending(init.node, 0)
  }

  /** Whether heartbeats run without keys (`insecure: true`). */
  get insecure(): boolean {
    return this.guard.insecure
  }

  /**
   * Replaces the cluster keys while running (rotation): heartbeats are sent under the first
   * from now on and accepted under any of them.
   *
   * @param keys - one or two keys
   * @throws InvalidParametersError when they are invalid, or the detector is insecure
   */
  setKeys(keys: ClusterKey[]): void {
    if (this.guard.insecure)
      throw new InvalidParametersError('keys', 'the detector was made insecure')
    this.guard.setKeys(keys)
  }

  /** Health changes; completes on `stop()`. */
  get events$(): Observable<FailureDetectorEvent> {
    return this.events.asObservable()
  }

  /**
   * Every change of a watched node's health, the first `unknown` to `alive` included (which has
   * no event): what a copy of {@link health} elsewhere (another thread) needs to stay exact
   * without polling.
   */
  get healthChanges$(): Observable<HealthChange> {
    return this.healthChanges.asObservable()
  }

  /** How long a watched node may be silent before it is declared failed, in ms. */
  get detectionTimeMs(): number {
    return this.intervalMs * this.multiplier
  }

  /** The detector's counters (a copy). */
  counters(): HeartbeatCounters {
    return { ...this.counts, dropped: { ...this.counts.dropped } }
  }

  /** Opens the socket and starts sending and checking. Idempotent. */
  async start(): Promise<void> {
    if (this.socket !== undefined) return
    if (this.events.isStopped) this.events = new Subject()
    this.socket = await this.network.openUdp(this.local)
    this.incarnation = nextIncarnation(
      this.clock.now(),
      this.incarnation,
      this.random.randomInt(1024)
    )
    this.guard.startSending(this.node, this.incarnation)
    this.subscription = this.socket.datagrams$.subscribe(({ data, from }) =>
      this.onDatagram(data, from)
    )
    const now = this.clock.monotonic()
    for (const w of this.watched.values()) w.lastHeard = now
    this.tickDue = undefined
    this.freshRoundsNeeded = 0
    this.tick()
  }

  /** Whether it suspects itself (its timer ran late) and gives no verdicts about others now. */
  get suspectsItself(): boolean {
    return this.freshRoundsNeeded > 0
  }

  /** Stops sending and checking, closes the socket, completes `events$`. Idempotent. */
  async stop(): Promise<void> {
    if (this.socket === undefined) return
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer)
    this.timer = undefined
    if (this.judgement !== undefined) this.clock.clearTimeout(this.judgement)
    this.judgement = undefined
    this.judgementDue = undefined
    this.subscription?.unsubscribe()
    await this.socket.close()
    this.socket = undefined
    this.events.complete()
  }

  /** Whether the detector is running. */
  isStarted(): boolean {
    return this.socket !== undefined
  }

  /**
   * Watches a node: its heartbeats are expected at `target.endpoint`'s address and port, and this
   * node's heartbeats are sent there.
   *
   * @param target - the node and its heartbeat endpoint
   * @throws InvalidParametersError when the endpoint is missing
   */
  watch(target: WatchTarget): void {
    if (target.endpoint === undefined)
      throw new InvalidParametersError('target.endpoint', 'a heartbeat endpoint is required')
    const existing = this.watched.get(target.node)
    if (existing !== undefined) {
      existing.target = { node: target.node, endpoint: { ...target.endpoint } }
      return
    }
    this.watched.set(target.node, {
      target: { node: target.node, endpoint: { ...target.endpoint } },
      health: 'unknown',
      lastHeard: this.clock.monotonic(),
      incarnation: -1,
      sequence: -1
    })
  }

  /**
   * Stops watching a node.
   *
   * @param node - the node
   */
  unwatch(node: NodeId): void {
    this.watched.delete(node)
    this.guard.forget(node)
  }

  /**
   * What the detector believes of a node.
   *
   * @param node - the node
   */
  health(node: NodeId): NodeHealth {
    return this.watched.get(node)?.health ?? 'unknown'
  }

  private tick(): void {
    this.sendHeartbeats()
    this.judgeSelf()
    this.tickDue = this.clock.monotonic() + this.intervalMs
    this.timer = this.clock.setTimeout(() => this.tick(), this.intervalMs)
    this.judgeAfterReading(0)
  }

  /**
   * Judges silence on a timer of its own, `delayMs` from now: Node reads the sockets (its poll
   * phase) between the timers phase that asked and the one that runs it, so a heartbeat that
   * arrived before then is counted first. When that timer runs late past a quarter interval, the
   * process stalled after the read, and datagrams may be waiting again: one more turn, up to
   * {@link MAX_JUDGEMENT_DEFERRALS} times. One judgement is pending at a time, the earliest.
   *
   * @param delayMs - when, from now
   * @param deferrals - how many times this judgement has been put off already
   */
  private judgeAfterReading(delayMs: number, deferrals = 0): void {
    const due = this.clock.monotonic() + delayMs
    if (this.judgement !== undefined) {
      if (this.judgementDue! <= due) return
      this.clock.clearTimeout(this.judgement)
    }
    this.judgementDue = due
    this.judgement = this.clock.setTimeout(() => {
      this.judgement = undefined
      this.judgementDue = undefined
      if (this.socket === undefined) return
      const lateMs = this.clock.monotonic() - due
      if (lateMs > this.intervalMs / 4 && deferrals < MAX_JUDGEMENT_DEFERRALS) {
        this.counts.judgementsDeferred++
        this.judgeAfterReading(0, deferrals + 1)
        return
      }
      this.check()
      this.judgeAtDeadline()
    }, delayMs)
  }

  /**
   * Asks for a judgement at the moment the first watched node's silence reaches the detection
   * time, when that comes before the next tick: a failure is declared `intervalMs x multiplier`
   * after the last heartbeat, not up to an interval later at the tick after (BFD's detection
   * timer). Not while it suspects itself: its verdicts wait for fresh rounds of ticks.
   */
  private judgeAtDeadline(): void {
    if (this.freshRoundsNeeded > 0 || this.tickDue === undefined) return
    const now = this.clock.monotonic()
    let next = Number.POSITIVE_INFINITY
    for (const w of this.watched.values()) {
      const deadline = w.lastHeard + this.detectionTimeMs
      if (w.health !== 'failed' && deadline > now) next = Math.min(next, deadline)
    }
    if (next < this.tickDue) this.judgeAfterReading(next - now)
  }

  /** Measures this tick's lateness: late past the threshold, it suspects itself. */
  private judgeSelf(): void {
    if (this.tickDue === undefined) return
    const lateMs = this.clock.monotonic() - this.tickDue
    if (lateMs > this.pauseThresholdMs) {
      this.counts.selfSuspicions++
      if (this.freshRoundsNeeded === 0)
        this.events.next({ type: 'node:suspect', node: this.node, silentMs: lateMs })
      // the heartbeats that waited during the pause arrive after this tick: count from here
      this.freshRoundsNeeded = this.multiplier
      return
    }
    if (this.freshRoundsNeeded === 0) return
    this.freshRoundsNeeded--
    if (this.freshRoundsNeeded === 0) this.events.next({ type: 'node:recovered', node: this.node })
  }

  private sendHeartbeats(): void {
    if (this.socket === undefined) return
    const frame = this.guard.seal(new Uint8Array(0))
    const destinations = [
      ...this.announceTo,
      ...[...this.watched.values()].map((w) => w.target.endpoint!)
    ]
    for (const to of destinations) {
      this.socket.send(frame, to)
      this.counts.sent++
    }
  }

  private check(): void {
    const now = this.clock.monotonic()
    for (const w of this.watched.values()) {
      const silentMs = now - w.lastHeard
      if (this.freshRoundsNeeded > 0) {
        // it suspects itself: a silence it measured now may be its own
        if (silentMs >= this.intervalMs * 1.5 && w.health !== 'failed')
          this.counts.verdictsWithheld++
        continue
      }
      if (silentMs >= this.detectionTimeMs) {
        if (w.health !== 'failed') {
          this.setHealth(w, 'failed')
          this.events.next({ type: 'node:failed', node: w.target.node, silentMs })
        }
      } else if (silentMs >= this.intervalMs * 1.5 && w.health === 'alive') {
        this.setHealth(w, 'suspect')
        this.events.next({ type: 'node:suspect', node: w.target.node, silentMs })
      }
    }
  }

  private setHealth(w: Watched, health: NodeHealth): void {
    if (w.health === health) return
    w.health = health
    this.healthChanges.next({ node: w.target.node, health })
  }

  private onDatagram(data: Uint8Array, from: Endpoint): void {
    const verdict = this.accept(data, from)
    if (verdict === 'ignored') this.counts.ignored++
    else if (verdict !== undefined) this.counts.dropped[verdict]++
  }

  /** Checks a datagram and, when it is a newer authenticated heartbeat, records the sign of life. */
  private accept(data: Uint8Array, from: Endpoint): ClusterFrameDropReason | 'ignored' | undefined {
    if (data.length > MAX_HEARTBEAT_BYTES) return 'oversized'
    const header = parseFrameHeader(data, HEARTBEAT_MAGIC)
    if (header === 'malformed') return header
    const w = this.watched.get(header.sender)
    // heartbeats of nodes not watched are normal (they announce to us); no key is spent on them
    if (w === undefined) return 'ignored'
    const expected = w.target.endpoint!
    if (from.address !== expected.address || from.port !== expected.port) return 'unknown-sender'
    const opened = this.guard.open(data, header, (payload) =>
      payload.length === 0 ? true : 'malformed'
    )
    if (opened !== true) return opened
    // only a heartbeat newer than the last one is a sign of life: a late one proves nothing now
    if (header.incarnation === w.incarnation && header.counter < w.sequence) return 'too-old'
    w.incarnation = header.incarnation
    w.sequence = header.counter
    w.lastHeard = this.clock.monotonic()
    this.counts.received++
    const was = w.health
    this.setHealth(w, 'alive')
    if (was === 'suspect' || was === 'failed')
      this.events.next({ type: 'node:recovered', node: w.target.node })
    return undefined
  }
}

/**
 * Creates a {@link HeartbeatFailureDetector}.
 *
 * @param components - network adapter and clock
 * @param init - node id, endpoint and timing
 */
export function heartbeatFailureDetector(
  components: HeartbeatFailureDetectorComponents,
  init: HeartbeatFailureDetectorInit
): HeartbeatFailureDetector {
  return new HeartbeatFailureDetector(components, init)
}
