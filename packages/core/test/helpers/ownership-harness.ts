import { Subject } from 'rxjs'
import { VirtualClock } from '@vipsec/clock'
import { HeldClock } from '@vipsec/clock/test/held-clock'
import {
  StoreUnavailableError,
  type Clock,
  type CouplingStore,
  type DistributionEvent,
  type FailureDetectorEvent,
  type Fence,
  type NodeHealth,
  type NodeId,
  type TakeoverReport
} from '@vipsec/interface'
import { MemoryCouplingFacility, MemoryCouplingStore } from '@vipsec/store-memory'
import {
  OwnershipController,
  type OwnershipActions,
  type OwnershipControllerInit,
  type TakeoverRun
} from '../../src/index.js'

export const DVIPA = '10.0.0.100'

/** A detector whose verdicts the test writes. */
export class ScriptedDetector {
  private readonly healths = new Map<NodeId, NodeHealth>()
  private readonly subject = new Subject<FailureDetectorEvent>()
  readonly events$ = this.subject.asObservable()

  health(node: NodeId): NodeHealth {
    return this.healths.get(node) ?? 'alive'
  }

  /** Sets a node's health without an event (a stale view, say). */
  set(node: NodeId, health: NodeHealth): void {
    this.healths.set(node, health)
  }

  /** Declares a node failed, with the event. */
  fail(node: NodeId, silentMs = 300): FailureDetectorEvent {
    this.healths.set(node, 'failed')
    const event: FailureDetectorEvent = { type: 'node:failed', node, silentMs }
    this.subject.next(event)
    return event
  }

  /** Declares a node alive again, with the event. */
  recover(node: NodeId): FailureDetectorEvent {
    this.healths.set(node, 'alive')
    const event: FailureDetectorEvent = { type: 'node:recovered', node }
    this.subject.next(event)
    return event
  }
}

/** Faults a test can put on one node's store. */
export interface StoreFaults {
  /** The next claim is applied, then its reply is lost. */
  loseNextClaimReply: boolean
  /** Every call waits this long (ms) and then fails, as a store cut off with a long timeout. */
  downWithTimeoutMs: number | undefined
  /** Every call answers after this long (ms), as a real store's round trip. Default 0. */
  latencyMs?: number
  /** Every ownership read is applied at once and answered this long (ms) later. */
  delayReadsMs?: number
  /** Runs once, after the next claim applied and before its reply (a failover, say). */
  afterNextClaim?: () => void
}

/** A node's store client that applies faults around a memory store. */
export function faultyStore(
  inner: MemoryCouplingStore,
  clock: Clock,
  faults: StoreFaults
): CouplingStore {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown
      if (
        typeof value !== 'function' ||
        prop === 'isStarted' ||
        prop === 'start' ||
        prop === 'stop'
      )
        return typeof value === 'function' ? value.bind(target) : value
      return async (...args: unknown[]) => {
        if (faults.downWithTimeoutMs !== undefined) {
          await clock.sleep(faults.downWithTimeoutMs)
          throw new StoreUnavailableError(`${String(prop)}: timed out`)
        }
        if (faults.latencyMs !== undefined) await clock.sleep(faults.latencyMs)
        const result = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args)
        if (prop === 'getOwnership' && faults.delayReadsMs !== undefined)
          await clock.sleep(faults.delayReadsMs)
        if (prop === 'claimOwnership' && faults.afterNextClaim !== undefined) {
          const then = faults.afterNextClaim
          faults.afterNextClaim = undefined
          then()
        }
        if (prop === 'claimOwnership' && faults.loseNextClaimReply) {
          faults.loseNextClaimReply = false
          throw new StoreUnavailableError('claimOwnership: the reply was lost')
        }
        return result
      }
    }
  }) as CouplingStore
}

/** The host side of one node: records what the unit asked for. */
export class RecordingActions implements OwnershipActions {
  readonly events: DistributionEvent[] = []
  readonly calls: string[] = []
  serving = false
  takeoverMs = 50
  failTakeover = false
  /** The next this many reasserts fail (a store that times out). */
  failReasserts = 0
  lastRun: TakeoverRun | undefined
  constructor(private readonly clock: Clock) {}

  async takeOver(run: TakeoverRun): Promise<TakeoverReport> {
    this.calls.push(`takeOver from ${run.from} at ${run.fence.epoch}`)
    this.lastRun = run
    this.serving = true
    await new Promise<void>((resolve, reject) => {
      const timer = this.clock.setTimeout(resolve, this.takeoverMs)
      run.signal.addEventListener('abort', () => {
        this.clock.clearTimeout(timer)
        reject(new Error('aborted'))
      })
    })
    if (this.failTakeover) throw new Error('cannot serve')
    return {
      dvipa: DVIPA,
      previousOwner: run.from,
      epoch: run.fence.epoch,
      steps: [],
      renegotiated: 0,
      failed: [],
      connections: 0,
      corrupt: [],
      durationMs: this.takeoverMs
    }
  }
  async serveFresh(fence: Fence): Promise<void> {
    this.calls.push(`serveFresh at ${fence.epoch}`)
    this.serving = true
  }
  async stopServing(): Promise<void> {
    if (this.serving) this.calls.push('stopServing')
    this.serving = false
  }
  async reassert(fence: Fence): Promise<void> {
    this.calls.push(`reassert at ${fence.epoch}`)
    if (this.failReasserts > 0) {
      this.failReasserts--
      throw new StoreUnavailableError('putRecords: timed out')
    }
  }
  /** Where the ownership query goes (the cluster wires it to the other nodes). */
  onQuery: () => void = () => undefined
  queries = 0
  query(): void {
    this.queries++
    this.onQuery()
  }
  emit(event: DistributionEvent): void {
    this.events.push(event)
  }
  changed(): void {}

  of<T extends DistributionEvent['type']>(type: T): Extract<DistributionEvent, { type: T }>[] {
    return this.events.filter((e) => e.type === type) as Extract<DistributionEvent, { type: T }>[]
  }
}

/** One node of a test cluster: its unit, host, detector, store and clock. */
export interface TestNode {
  id: NodeId
  unit: OwnershipController
  actions: RecordingActions
  detector: ScriptedDetector
  store: CouplingStore
  memory: MemoryCouplingStore
  faults: StoreFaults
  clock: HeldClock
}

/**
 * Lets virtual time pass in 10 ms steps until `work` settles (a start that waits out its join
 * window), at most 100 s of it; then settles as `work` did.
 */
export function whileAdvancing<T>(clock: VirtualClock, work: Promise<T>): Promise<T> {
  return clock.advanceUntilSettled(work)
}

/** A cluster of ownership units over one memory facility and one virtual clock. */
export class TestCluster {
  readonly clock = new VirtualClock({ startTime: Date.UTC(2026, 0, 1) })
  readonly facility = new MemoryCouplingFacility()
  readonly nodes = new Map<NodeId, TestNode>()
  readonly ranks: NodeId[]
  /** The cluster link is down: ownership queries go unanswered. */
  linkCut = false

  constructor(
    size = 3,
    private readonly init: Partial<OwnershipControllerInit> = {}
  ) {
    this.ranks = Array.from({ length: size }, (_, i) => `dp-${i + 1}`)
  }

  async add(id: NodeId, init: Partial<OwnershipControllerInit> = {}): Promise<TestNode> {
    const clock = new HeldClock(this.clock)
    const memory = new MemoryCouplingStore({ clock: this.clock }, { facility: this.facility })
    await memory.start()
    const faults: StoreFaults = { loseNextClaimReply: false, downWithTimeoutMs: undefined }
    const store = faultyStore(memory, clock, faults)
    const detector = new ScriptedDetector()
    const actions = new RecordingActions(clock)
    const unit = new OwnershipController(
      { store, clock, detector, actions },
      {
        node: id,
        dvipa: DVIPA,
        ranks: this.ranks,
        rankDelayMs: 200,
        ownershipCheckMs: 250,
        selfFenceMs: 0,
        ...this.init,
        ...init
      }
    )
    // the wiring a distribution processor does
    memory.events$.subscribe((e) => {
      if (e.type === 'ownership:claimed')
        unit.observe(e.ownership.epoch, e.ownership.owner, 'store', e.ownership.previousOwner)
      if (e.type === 'ownership:released' && e.dvipa === DVIPA)
        unit.observe(e.epoch, null, 'store', e.previousOwner)
    })
    detector.events$.subscribe((e) => unit.onDetectorEvent(e))
    // the ownership query on the cluster link: every owner answers with its notice
    actions.onQuery = () => {
      if (this.linkCut) return
      for (const other of this.nodes.values()) {
        const fence = other.id === id ? undefined : other.unit.fence()
        if (fence !== undefined) unit.observe(fence.epoch, other.id, 'link')
      }
    }
    const node = { id, unit, actions, detector, store, memory, faults, clock }
    this.nodes.set(id, node)
    return node
  }

  /** Starts nodes dp-1..dp-N in rank order. */
  async startAll(): Promise<void> {
    for (const id of this.ranks) await this.start(await this.add(id))
    await this.advance(100)
  }

  /** Starts a node's unit, letting virtual time pass until its start (its join window) is over. */
  async start(node: TestNode): Promise<void> {
    await whileAdvancing(this.clock, node.unit.start())
  }

  node(id: NodeId): TestNode {
    return this.nodes.get(id)!
  }

  /** Kills a node: its unit stops (no more reads, renewals or claims). */
  async kill(id: NodeId): Promise<void> {
    await this.node(id).unit.stop()
  }

  async advance(ms: number): Promise<void> {
    for (let t = 0; t < ms; t += 10) await this.clock.advance(Math.min(10, ms - t))
  }

  /** The ownership the store holds. */
  ownership(): { owner: NodeId | null; epoch: number } | undefined {
    const slot = this.facility.dvipas.get(DVIPA)
    return slot === undefined ? undefined : { owner: slot.owner, epoch: slot.epoch }
  }

  /** The nodes that may serve now. */
  serving(): NodeId[] {
    return [...this.nodes.values()].filter((n) => n.unit.mayServe()).map((n) => n.id)
  }
}
