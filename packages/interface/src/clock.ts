import type { AbortOptions } from './abort.js'

/** A handle returned by {@link Clock.setTimeout}, passed to {@link Clock.clearTimeout}. */
export interface TimerHandle {
  /** An identifier unique among this clock's pending timers. */
  readonly id: number
}

/**
 * Time for every vipsec component. The system clock serves production; a virtual clock lets a
 * whole cluster run deterministically in one process (time moves only when the test advances it).
 */
export interface Clock {
  /** Milliseconds since the Unix epoch, as wall time (for records and logs). */
  now(): number
  /** Milliseconds from an arbitrary origin that never goes backwards (for durations). */
  monotonic(): number
  /**
   * Calls `fn` once after `ms` milliseconds.
   *
   * @param fn - the callback
   * @param ms - the delay, at least 0
   */
  setTimeout(fn: () => void, ms: number): TimerHandle
  /**
   * Cancels a pending timer; unknown or fired handles are ignored.
   *
   * @param handle - from {@link Clock.setTimeout}
   */
  clearTimeout(handle: TimerHandle): void
  /**
   * Resolves after `ms` milliseconds; rejects with `AbortError` when `signal` aborts.
   *
   * @param ms - the delay
   * @param options - an abort signal
   */
  sleep(ms: number, options?: AbortOptions): Promise<void>
}
