import type { AbortOptions, Clock, TimerHandle } from '@vipsec/interface'
import { sleepOn, type VirtualClock } from '../src/index.js'

/**
 * A test clock over a {@link VirtualClock} whose timers can be held back: while `pause()`d, every
 * timer that falls due waits until `resume()`, as the timers of a stopped (SIGSTOP) process do,
 * while time goes on. Shared by the detectors' tests as `@vipsec/clock/test/held-clock`; not part
 * of the published package.
 */
export class HeldClock implements Clock {
  private paused = false
  private held: (() => void)[] = []
  /** Timers fire this much (ms) early, as Node's may by up to a millisecond. Default 0. */
  earlyMs = 0
  /** @param inner the virtual clock whose time this clock reads and whose timers it wraps */
  constructor(private readonly inner: VirtualClock) {}
  /** The inner clock's wall time. */
  now(): number {
    return this.inner.now()
  }
  /** The inner clock's monotonic time. */
  monotonic(): number {
    return this.inner.monotonic()
  }
  /** A timer on the inner clock that runs `fn` when due, or on `resume()` if held then. */
  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.inner.setTimeout(
      () => {
        if (this.paused) this.held.push(fn)
        else fn()
      },
      ms > this.earlyMs ? ms - this.earlyMs : ms
    )
  }
  /** Cancels a timer of {@link setTimeout}. */
  clearTimeout(handle: TimerHandle): void {
    this.inner.clearTimeout(handle)
  }
  /** Resolves after `ms` on this clock (held while paused); rejects if `signal` aborts first. */
  sleep(ms: number, options?: AbortOptions): Promise<void> {
    return sleepOn(this, ms, options)
  }
  /** Holds every timer that falls due from now on. */
  pause(): void {
    this.paused = true
  }
  /** Lets the held timers run, late, in order. */
  resume(): void {
    this.paused = false
    const held = this.held
    this.held = []
    for (const fn of held) fn()
  }
}
