/**
 * Clocks for vipsec: {@link SystemClock} for production and {@link VirtualClock}, whose time moves
 * only when a test advances it, so that timers (retransmissions, heartbeats, lifetimes) run
 * deterministically in one process.
 *
 * @example Advancing virtual time
 * ```ts
 * import { VirtualClock } from '@vipsec/clock'
 *
 * const clock = new VirtualClock()
 * const slept = clock.sleep(1000)
 * await clock.advance(1000) // the sleep resolves now, without waiting a real second
 * await slept
 * ```
 *
 * @packageDocumentation
 */
export { SystemClock, systemClock, sleepOn } from './system-clock.js'
export { VirtualClock, virtualClock, type VirtualClockInit } from './virtual-clock.js'
