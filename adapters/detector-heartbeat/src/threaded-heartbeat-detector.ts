import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { Worker } from 'node:worker_threads'
import { Subject, type Observable } from 'rxjs'
import {
  InvalidParametersError,
  VipsecError,
  type FailureDetector,
  type FailureDetectorEvent,
  type NodeHealth,
  type NodeId,
  type WatchTarget
} from '@vipsec/interface'
import type { ClusterKey } from '@vipsec/cluster-link-udp'
import {
  checkHeartbeatInit,
  emptyHeartbeatCounters,
  type HeartbeatCounters,
  type HeartbeatFailureDetectorInit
} from './heartbeat-failure-detector.js'
import { readSharedCounters, SHARED_COUNTERS_BYTES } from './shared-counters.js'

/**
 * Starts the heartbeat worker. Built code runs `heartbeat-worker.js`; the TypeScript sources
 * (tests run them through tsx) register tsx inside the worker first, as loader hooks do not pass
 * to worker threads on Node 20.
 */
function spawnWorker(workerData: unknown): Worker {
  if (!import.meta.url.endsWith('.ts')) {
    return new Worker(new URL('./heartbeat-worker.js', import.meta.url), { workerData })
  }
  const script = new URL('./heartbeat-worker.ts', import.meta.url).href
  const packageJson = createRequire(import.meta.url).resolve('tsx/package.json')
  const tsx = pathToFileURL(join(dirname(packageJson), 'dist/esm/api/index.mjs')).href
  const code = `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(script)}) })`
  const execArgv = process.execArgv.filter((a) => !a.startsWith('--import'))
  return new Worker(code, { eval: true, execArgv, workerData })
}

/** What the worker says. */
type Report =
  | { kind: 'ready' }
  | { kind: 'event'; event: FailureDetectorEvent }
  | { kind: 'health'; node: NodeId; health: NodeHealth }
  | { kind: 'stopped'; counters: HeartbeatCounters }
  | { kind: 'error'; name: string; message: string; argument?: string }

/**
 * The heartbeat failure detector on a worker thread of its own: heartbeats are sent, received
 * and checked on an event loop that the data plane never blocks, so that a short detection time
 * (300 ms) holds under full load without false failovers. It sends from and listens on a real
 * UDP socket (node:dgram) at `init.local`; the options are those of the
 * `HeartbeatFailureDetector` it runs.
 */
export class ThreadedHeartbeatFailureDetector implements FailureDetector {
  private init: HeartbeatFailureDetectorInit
  private readonly watched = new Map<NodeId, WatchTarget>()
  private readonly healths = new Map<NodeId, NodeHealth>()
  private events = new Subject<FailureDetectorEvent>()
  private worker: Worker | undefined
  private lastCounters: HeartbeatCounters = emptyHeartbeatCounters()
  /** The running worker's counters, which it writes into shared memory. */
  private counterSlots: Float64Array | undefined

  /**
   * @param init - the heartbeat options (node, local endpoint, timing, announceTo, keys)
   * @throws InvalidParametersError when a timing option or a key is invalid, or there is no key
   * and `insecure` is not set
   */
  constructor(init: HeartbeatFailureDetectorInit) {
    checkHeartbeatInit(init)
    this.init = { ...init }
  }

  /** Whether heartbeats run without keys (`insecure: true`). */
  get insecure(): boolean {
    return (this.init.keys ?? []).length === 0
  }

  /**
   * Replaces the cluster keys (rotation), in the worker too if it runs.
   *
   * @param keys - one or two keys
   * @throws InvalidParametersError when they are invalid, or the detector is insecure
   */
  setKeys(keys: ClusterKey[]): void {
    if (this.insecure) throw new InvalidParametersError('keys', 'the detector was made insecure')
    checkHeartbeatInit({ ...this.init, keys })
    this.init = {
      ...this.init,
      keys: keys.map((k) => ({ id: k.id, secret: new Uint8Array(k.secret) }))
    }
    this.worker?.postMessage({ op: 'keys', keys: this.init.keys })
  }

  /** Health changes, as the worker reports them; completes on `stop()`. */
  get events$(): Observable<FailureDetectorEvent> {
    return this.events.asObservable()
  }

  /** How long a watched node may be silent before it is declared failed, in ms. */
  get detectionTimeMs(): number {
    return (this.init.intervalMs ?? 100) * (this.init.multiplier ?? 3)
  }

  /** The worker's counters, as it last wrote them (within an interval). */
  counters(): HeartbeatCounters {
    if (this.counterSlots !== undefined) return readSharedCounters(this.counterSlots)
    return { ...this.lastCounters, dropped: { ...this.lastCounters.dropped } }
  }

  /**
   * Starts the worker and waits until its socket is bound. Idempotent.
   *
   * @throws InvalidParametersError naming `local.port`/`local.address` when the socket cannot be bound
   */
  async start(): Promise<void> {
    if (this.worker !== undefined) return
    if (this.events.isStopped) this.events = new Subject()
    const counters = new SharedArrayBuffer(SHARED_COUNTERS_BYTES)
    const worker = spawnWorker({ init: this.init, watched: [...this.watched.values()], counters })
    this.worker = worker
    await new Promise<void>((resolve, reject) => {
      worker.on('message', (report: Report) => {
        if (report.kind === 'ready') resolve()
        else if (report.kind === 'error') {
          const err =
            report.name === 'InvalidParametersError'
              ? new InvalidParametersError(report.argument ?? 'init', report.message)
              : new VipsecError(report.message)
          reject(err)
        } else if (report.kind === 'event') {
          const e = report.event
          this.healths.set(
            e.node,
            e.type === 'node:recovered' ? 'alive' : e.type === 'node:suspect' ? 'suspect' : 'failed'
          )
          if (!this.events.isStopped) this.events.next(e)
        } else if (report.kind === 'health') {
          if (this.watched.has(report.node)) this.healths.set(report.node, report.health)
        } else if (report.kind === 'stopped') {
          this.lastCounters = report.counters
          this.counterSlots = undefined
        }
      })
      worker.once('error', reject)
      this.counterSlots = new Float64Array(counters)
    }).catch(async (err: unknown) => {
      this.worker = undefined
      this.counterSlots = undefined
      await worker.terminate()
      throw err
    })
  }

  /** Stops the worker (its socket closes) and completes `events$`. Idempotent. */
  async stop(): Promise<void> {
    const worker = this.worker
    if (worker === undefined) return
    this.worker = undefined
    const exited = new Promise((resolve) => worker.once('exit', resolve))
    worker.postMessage({ op: 'stop' })
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 2000))])
    await worker.terminate()
    // a worker that did not say 'stopped' leaves what it last wrote
    if (this.counterSlots !== undefined) this.lastCounters = readSharedCounters(this.counterSlots)
    this.counterSlots = undefined
    this.events.complete()
  }

  /** Whether the worker runs. */
  isStarted(): boolean {
    return this.worker !== undefined
  }

  /**
   * Watches a node at its heartbeat endpoint.
   *
   * @param target - the node and its endpoint
   * @throws InvalidParametersError when the endpoint is missing
   */
  watch(target: WatchTarget): void {
    if (target.endpoint === undefined)
      throw new InvalidParametersError('target.endpoint', 'a heartbeat endpoint is required')
    this.watched.set(target.node, { node: target.node, endpoint: { ...target.endpoint } })
    if (!this.healths.has(target.node)) this.healths.set(target.node, 'unknown')
    this.worker?.postMessage({ op: 'watch', target })
  }

  /**
   * Stops watching a node.
   *
   * @param node - the node
   */
  unwatch(node: NodeId): void {
    this.watched.delete(node)
    this.healths.delete(node)
    this.worker?.postMessage({ op: 'unwatch', node })
  }

  /**
   * What the detector believes of a node, as the worker reported it (each change as it happens).
   *
   * @param node - the node
   */
  health(node: NodeId): NodeHealth {
    return this.healths.get(node) ?? 'unknown'
  }
}
