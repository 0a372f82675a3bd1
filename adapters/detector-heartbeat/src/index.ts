/**
 * A BFD-like UDP heartbeat failure detector for vipsec: each node sends a small authenticated
 * heartbeat every `intervalMs` to the nodes it watches; a node silent for
 * `intervalMs * multiplier` is declared failed (`node:failed`), and `node:recovered` when heard
 * again. It runs on any `NetworkAdapter` and `Clock`, so the same detector serves a virtual
 * cluster and a real one; {@link ThreadedHeartbeatFailureDetector} runs it on a worker thread.
 *
 * A heartbeat is a cluster frame of `@vipsec/cluster-link-udp` ({@link heartbeatGuard}): the
 * key id, the sender's incarnation (a new, higher one per start) and its sequence number, and an
 * AES-256-GCM tag under a key derived from the cluster key for heartbeats. Only an authenticated
 * heartbeat newer than the last one accepted from that node counts as a sign of life: forged,
 * replayed, late, stale-incarnation, unknown-key, oversized, malformed and wrong-source
 * heartbeats are dropped and counted by reason ({@link HeartbeatFailureDetector.counters}). So a
 * forged heartbeat cannot keep a dead node alive, and one claiming a huge incarnation cannot make
 * a live node's heartbeats look old. A restarted node is heard again at once. A detector without
 * keys refuses to be built unless `insecure: true`; two keys can be held while rotating
 * (`setKeys`).
 *
 * @example Backup watching the owner
 * ```ts
 * import { readFileSync } from 'node:fs'
 * import { decodeKeyFile } from '@vipsec/cluster-link-udp'
 * import { HeartbeatFailureDetector } from '@vipsec/detector-heartbeat'
 *
 * // the cluster key that `vipsec keygen` wrote, the same on every node
 * const keys = [decodeKeyFile(readFileSync('/etc/vipsec/cluster.key', 'utf8'))]
 * const detector = new HeartbeatFailureDetector({ network, clock }, {
 *   node: 'dp-2',
 *   local: { address: '10.9.0.2', port: 7500 },
 *   intervalMs: 100,
 *   multiplier: 3,
 *   keys
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
  type HealthChange,
  type HeartbeatCounters,
  type HeartbeatFailureDetectorComponents,
  type HeartbeatFailureDetectorInit,
  type HeartbeatTiming
} from './heartbeat-failure-detector.js'
export { DgramNetwork } from './dgram-network.js'
export { ThreadedHeartbeatFailureDetector } from './threaded-heartbeat-detector.js'
