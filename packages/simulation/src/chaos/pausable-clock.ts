import { sleepOn } from '@vipsec/clock'
import type { AbortOptions, Clock, TimerHandle } from '@vipsec/interface'

interface Timer {
  fn: () => void
  inner: TimerHandle | undefined
}

/**
 * One node's view of the cluster's clock, which the chaos runner can freeze: while paused, time
 * goes on (`now()` and `monotonic()` keep moving) but no timer of the node fires; the timers that
 * fell due fire, in order, when it resumes, as in a process stopped by SIGSTOP and continued.
 */
export class PausableClock implements Clock {
  private paused = false
  private readonly timers = new Map<number, Timer>()
  private dueWhilePaused: number[] = []
  private nextId = 1

  /** @param base - the cluster's clock */
  constructor(private readonly base: Clock) {}

  /** Whether the node is paused. */
  isPaused(): boolean {
    return this.paused
  }

  /** Freezes the node's timers. */
  pause(): void {
    this.paused = true
  }

  /** The process died: the timers that fell due while paused never fire; new ones do (its shutdown). */
  discardPaused(): void {
    this.paused = false
    for (const id of this.dueWhilePaused) this.timers.delete(id)
    this.dueWhilePaused = []
  }

  /** Fires the timers that fell due while paused, in order, and goes on normally. */
  resume(): void {
    this.paused = false
    const due = this.dueWhilePaused
    this.dueWhilePaused = []
    for (const id of due) this.fire(id)
  }

  /** {@inheritDoc @vipsec/interface!Clock.now} */
  now(): number {
    return this.base.now()
  }

  /** {@inheritDoc @vipsec/interface!Clock.monotonic} */
  monotonic(): number {
    return this.base.monotonic()
  }

  /** {@inheritDoc @vipsec/interface!Clock.setTimeout} */
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.nextId++
    const timer: Timer = { fn, inner: undefined }
    this.timers.set(id, timer)
    timer.inner = this.base.setTimeout(() => {
      timer.inner = undefined
      if (this.paused) this.dueWhilePaused.push(id)
      else this.fire(id)
    }, ms)
    return { id }
  }

  /** {@inheritDoc @vipsec/interface!Clock.clearTimeout} */
  clearTimeout(handle: TimerHandle): void {
    const timer = this.timers.get(handle.id)
    if (timer === undefined) return
    this.timers.delete(handle.id)
    if (timer.inner !== undefined) this.base.clearTimeout(timer.inner)
  }

  /** {@inheritDoc @vipsec/interface!Clock.sleep} */
  sleep(ms: number, options?: AbortOptions): Promise<void> {
    return sleepOn(this, ms, options)
  }

  private fire(id: number): void {
    const timer = this.timers.get(id)
    if (timer === undefined) return
    this.timers.delete(id)
    timer.fn()
  }
}
