// The worker-thread side of ThreadedHeartbeatFailureDetector: a HeartbeatFailureDetector on
// its own event loop, its own UDP socket and the system clock, so that a busy main thread
// (crypto bursts of the data plane) cannot delay heartbeats or their checks.
import { parentPort, workerData } from 'node:worker_threads'
import { SystemClock } from '@vipsec/clock'
import type { ClusterKey } from '@vipsec/cluster-link-udp'
import type { WatchTarget } from '@vipsec/interface'
import { DgramNetwork } from './dgram-network.js'
import { writeSharedCounters } from './shared-counters.js'
import {
  HeartbeatFailureDetector,
  type HeartbeatFailureDetectorInit
} from './heartbeat-failure-detector.js'

/** A message from the main thread. */
type Command =
  | { op: 'watch'; target: WatchTarget }
  | { op: 'unwatch'; node: string }
  | { op: 'keys'; keys: ClusterKey[] }
  | { op: 'stop' }

const port = parentPort!
const { init, watched, counters } = workerData as {
  init: HeartbeatFailureDetectorInit
  watched: WatchTarget[]
  /** Shared memory the owner reads the counters from (SHARED_COUNTERS_BYTES). */
  counters: SharedArrayBuffer
}
const counterSlots = new Float64Array(counters)
const network = new DgramNetwork()
const detector = new HeartbeatFailureDetector({ network, clock: new SystemClock() }, init)
const targets = new Map<string, WatchTarget>()
for (const target of watched) {
  targets.set(target.node, target)
  detector.watch(target)
}
detector.events$.subscribe((event) => port.postMessage({ kind: 'event', event }))
// Health changes that have no event (a node heard for the first time) are reported as they
// happen. The counters go to shared memory, not in messages, once per interval: the owner's
// event loop (the data plane's) is not woken for them, and this one wakes for them no more often
// than for its heartbeats.
detector.healthChanges$.subscribe(({ node, health }) => {
  if (targets.has(node)) port.postMessage({ kind: 'health', node, health })
})
const countersTimer = setInterval(
  () => writeSharedCounters(counterSlots, detector.counters()),
  init.intervalMs ?? 100
)
port.on('message', (command: Command) => {
  if (command.op === 'watch') {
    targets.set(command.target.node, command.target)
    detector.watch(command.target)
  } else if (command.op === 'keys') {
    detector.setKeys(command.keys)
  } else if (command.op === 'unwatch') {
    targets.delete(command.node)
    detector.unwatch(command.node)
  } else {
    clearInterval(countersTimer)
    void detector.stop().then(async () => {
      await network.stop()
      port.postMessage({ kind: 'stopped', counters: detector.counters() })
      port.close()
    })
  }
})
await network.start()
try {
  await detector.start()
  port.postMessage({ kind: 'ready' })
} catch (err) {
  port.postMessage({
    kind: 'error',
    name: (err as Error).name,
    message: (err as Error).message,
    argument: (err as { argument?: string }).argument
  })
}
