/**
 * A failure detector on coupling-store leases: each node renews its lease in the store
 * (`renewLease`) and reads the leases of the nodes it watches (`readLeases`); a node whose lease
 * has run out is failed. Expiry follows the store's own clock, so nodes with skewed clocks agree,
 * and a store outage is never taken for a node failure.
 *
 * @example Backup watching the owner through a Redis store
 * ```ts
 * import { LeaseFailureDetector } from '@vipsec/detector-lease'
 *
 * const detector = new LeaseFailureDetector({ store, clock }, { node: 'dp-2', intervalMs: 200, ttlMs: 600 })
 * detector.watch({ node: 'dp-1' })
 * detector.events$.subscribe((e) => { if (e.type === 'node:failed') console.log('dp-1 is gone') })
 * await detector.start()
 * ```
 *
 * @packageDocumentation
 */
export {
  LeaseFailureDetector,
  leaseFailureDetector,
  type LeaseCounters,
  type LeaseFailureDetectorComponents,
  type LeaseFailureDetectorInit
} from './lease-failure-detector.js'
