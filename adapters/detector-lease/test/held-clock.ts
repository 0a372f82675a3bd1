import type { VirtualClock } from '@vipsec/clock'
import type { Clock, TimerHandle } from '@vipsec/interface'

/**
 * A clock over a virtual clock whose timers can be held back: while `pause()`d, every timer
 * that falls due waits until `resume()`, as the timers of a stopped (SIGSTOP) process do,
 * while time goes on.
 */
export class HeldClock implements Clock {
  private paused = false
  private held: (() => void)[] = []
  constructor(private readonly inner: VirtualClock) {}
  now(): number {
    return this.inner.now()
  }
  monotonic(): number {
    return this.inner.monotonic()
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.inner.setTimeout(() => {
      if (this.paused) this.held.push(fn)
      else fn()
    }, ms)
  }
  clearTimeout(handle: TimerHandle): void {
    this.inner.clearTimeout(handle)
  }
  async sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => this.setTimeout(resolve, ms))
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
