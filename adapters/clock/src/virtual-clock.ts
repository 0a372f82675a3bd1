import {
  type AbortOptions,
  type Clock,
  InvalidParametersError,
  type TimerHandle
} from '@vipsec/interface'
import { sleepOn } from './system-clock.js'

/** Options of {@link VirtualClock}. */
export interface VirtualClockInit {
  /** The wall time the clock starts at, ms since the Unix epoch. Default: 1,700,000,000,000. */
  startTime?: number
}

interface PendingTimer {
  id: number
  at: number
  seq: number
  fn: () => void
}

/**
 * A clock whose time moves only when told to. Timers fire in time order (ties in the order they
 * were set) as {@link VirtualClock.advance} passes them, so a whole cluster runs deterministically
 * in one process.
 */
export class VirtualClock implements Clock {
  private time = 0
  private readonly origin: number
  private readonly timers = new Map<number, PendingTimer>()
  private nextId = 1
  private seq = 0

  /** @param init - the start time */
  constructor(init: VirtualClockInit = {}) {
    this.origin = init.startTime ?? 1_700_000_000_000
  }

  /** Wall time in whole ms, like `Date.now()`: the start time plus the virtual time elapsed. */
  now(): number {
    return Math.floor(this.origin + this.time)
  }

  /** Virtual ms elapsed since the clock was made. */
  monotonic(): number {
    return this.time
  }

  /**
   * Schedules `fn` at the current virtual time plus `ms`.
   *
   * @param fn - the callback
   * @param ms - the delay (negative counts as 0)
   */
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.nextId++
    this.timers.set(id, { id, at: this.time + Math.max(0, ms), seq: this.seq++, fn })
    return { id }
  }

  /**
   * Cancels a pending timer.
   *
   * @param handle - from {@link VirtualClock.setTimeout}
   */
  clearTimeout(handle: TimerHandle): void {
    this.timers.delete(handle.id)
  }

  /**
   * Resolves when virtual time has advanced by `ms`.
   *
   * @param ms - the delay
   * @param options - an abort signal
   */
  async sleep(ms: number, options?: AbortOptions): Promise<void> {
    await sleepOn(this, ms, options)
  }

  /** How many timers are pending. */
  pending(): number {
    return this.timers.size
  }

  /**
   * Moves time forward by `ms`, firing every timer that falls due, in order. After each timer it
   * lets pending promise callbacks and I/O callbacks run, so that work a timer starts can set
   * the next timers before time moves on.
   *
   * @param ms - how far, 0 or more
   * @throws InvalidParametersError when `ms` is negative or not finite
   */
  async advance(ms: number): Promise<void> {
    if (!Number.isFinite(ms) || ms < 0)
      throw new InvalidParametersError('ms', 'must be a finite number >= 0')
    const end = this.time + ms
    await settle()
    for (;;) {
      const next = this.nextDue(end)
      if (next === undefined) break
      this.timers.delete(next.id)
      this.time = next.at
      next.fn()
      await settle()
    }
    this.time = end
  }

  /**
   * Lets time pass in `stepMs` steps while `work` is pending (a start that waits out a window on
   * this clock, say), at most `maxMs` of it, then settles as `work` did.
   *
   * @param work - what to wait for
   * @param options - the step (default 10 ms) and the most time to let pass (default 100 s)
   */
  async advanceUntilSettled<T>(
    work: Promise<T>,
    options: { stepMs?: number; maxMs?: number } = {}
  ): Promise<T> {
    const step = options.stepMs ?? 10
    const steps = Math.ceil((options.maxMs ?? 100_000) / step)
    let done = false
    const settled = work.finally(() => {
      done = true
    })
    settled.catch(() => undefined)
    for (let i = 0; !done && i < steps; i++) await this.advance(step)
    return settled
  }

  /**
   * Advances to the next pending timer and fires it (and any due at the same instant).
   *
   * @returns false when no timer was pending
   */
  async runNext(): Promise<boolean> {
    const next = this.nextDue(Number.POSITIVE_INFINITY)
    if (next === undefined) return false
    await this.advance(next.at - this.time)
    return true
  }

  private nextDue(end: number): PendingTimer | undefined {
    let best: PendingTimer | undefined
    for (const timer of this.timers.values()) {
      if (timer.at > end) continue
      if (
        best === undefined ||
        timer.at < best.at ||
        (timer.at === best.at && timer.seq < best.seq)
      ) {
        best = timer
      }
    }
    return best
  }
}

/** Lets queued promise callbacks and immediates run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/**
 * Creates a {@link VirtualClock}.
 *
 * @param init - the start time
 */
export function virtualClock(init?: VirtualClockInit): VirtualClock {
  return new VirtualClock(init)
}
