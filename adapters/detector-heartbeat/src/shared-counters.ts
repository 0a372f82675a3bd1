import { CLUSTER_FRAME_DROP_REASONS } from '@vipsec/cluster-link-udp'
import { emptyHeartbeatCounters, type HeartbeatCounters } from './heartbeat-failure-detector.js'

/** The plain counters, in their slot order; the drop reasons follow them. */
const FIELDS = [
  'sent',
  'received',
  'ignored',
  'selfSuspicions',
  'verdictsWithheld',
  'judgementsDeferred'
] as const satisfies readonly Exclude<keyof HeartbeatCounters, 'dropped'>[]

/** Bytes of the shared memory that carries a worker's {@link HeartbeatCounters} to its owner. */
export const SHARED_COUNTERS_BYTES = 8 * (FIELDS.length + CLUSTER_FRAME_DROP_REASONS.length)

/**
 * Writes counters into shared memory (the worker's side): the owning thread reads them when it
 * wants them, with no message per change.
 *
 * @param slots - a view of {@link SHARED_COUNTERS_BYTES} of shared memory
 * @param counters - the detector's counters
 */
export function writeSharedCounters(slots: Float64Array, counters: HeartbeatCounters): void {
  let i = 0
  for (const f of FIELDS) slots[i++] = counters[f]
  for (const r of CLUSTER_FRAME_DROP_REASONS) slots[i++] = counters.dropped[r]
}

/**
 * Reads what {@link writeSharedCounters} wrote (the owner's side), as a new object.
 *
 * @param slots - the same shared memory
 */
export function readSharedCounters(slots: Float64Array): HeartbeatCounters {
  const counters = emptyHeartbeatCounters()
  let i = 0
  for (const f of FIELDS) counters[f] = slots[i++]!
  for (const r of CLUSTER_FRAME_DROP_REASONS) counters.dropped[r] = slots[i++]!
  return counters
}
