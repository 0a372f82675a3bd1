/**
 * A BFD-like UDP heartbeat failure detector for vipsec: each node sends a small (optionally
 * authenticated) heartbeat every `intervalMs` to the nodes it watches; a node silent for
 * `intervalMs * multiplier` is declared failed (`node:failed`), and `node:recovered` when heard
 * again. It runs on any `NetworkAdapter` and `Clock`, so the same detector serves a virtual
 * cluster and a real one.
 *
 * @example Backup watching the owner
 * ```ts
 * import { HeartbeatFailureDetector } from '@vipsec/detector-heartbeat'
 *
 * const detector = new HeartbeatFailureDetector({ network, clock }, {
 *   node: 'dp-2',
 *   local: { address: '10.9.0.2', port: 7500 },
 *   intervalMs: 100,
 *   multiplier: 3
 * })
 * detector.watch({ node: 'dp-1', endpoint: { address: '10.9.0.1', port: 7500 } })
 * detector.events$.subscribe((e) => { if (e.type === 'node:failed') startTakeover(e.node) })
 * await detector.start()
 * ```
 *
 * @packageDocumentation
 */
export {
  HEARTBEAT_MAGIC,
  heartbeatGuard,
  MAX_HEARTBEAT_BYTES,
  type Heartbeat
} from './heartbeat-codec.js'
export {
  checkHeartbeatInit,
  emptyHeartbeatCounters,
  HeartbeatFailureDetector,
  heartbeatFailureDetector,
  type HeartbeatCounters,
  type HeartbeatFailureDetectorComponents,
  type HeartbeatFailureDetectorInit,
  type HeartbeatTiming
} from './heartbeat-failure-detector.js'
export { DgramNetwork } from './dgram-network.js'
export { ThreadedHeartbeatFailureDetector } from './threaded-heartbeat-detector.js'
