import { performance } from 'node:perf_hooks'
import {
  AbortError,
  throwIfAborted,
  type AbortOptions,
  type Clock,
  type TimerHandle
} from '@vipsec/interface'

/** The real clock: `Date.now()` for wall time, `performance.now()` for monotonic time. */
export class SystemClock implements Clock {
  private readonly timers = new Map<number, NodeJS.Timeout>()
  private nextId = 1

  /** Wall time, ms since the Unix epoch. */
  now(): number {
    return Date.now()
  }

  /** Monotonic ms since the process started. */
  monotonic(): number {
    return performance.now()
  }

  /**
   * Calls `fn` once after `ms` (negative delays count as 0). The timer does not keep the process
   * alive on its own.
   *
   * @param fn - the callback
   * @param ms - the delay
   */
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.nextId++
    const timer = setTimeout(
      () => {
        this.timers.delete(id)
        fn()
      },
      Math.max(0, ms)
    )
    timer.unref()
    this.timers.set(id, timer)
    return { id }
  }

  /**
   * Cancels a pending timer.
   *
   * @param handle - from {@link SystemClock.setTimeout}
   */
  clearTimeout(handle: TimerHandle): void {
    const timer = this.timers.get(handle.id)
    if (timer !== undefined) {
      clearTimeout(timer)
      this.timers.delete(handle.id)
    }
  }

  /**
   * Resolves after `ms`; rejects with `AbortError` when the signal aborts.
   *
   * @param ms - the delay
   * @param options - an abort signal
   */
  async sleep(ms: number, options?: AbortOptions): Promise<void> {
    await sleepOn(this, ms, options)
  }
}

/**
 * Sleeps on any clock, honouring an abort signal. Shared by the clocks of this package.
 *
 * @param clock - the clock whose timers to use
 * @param ms - the delay
 * @param options - an abort signal
 */
export function sleepOn(clock: Clock, ms: number, options?: AbortOptions): Promise<void> {
  const signal = options?.signal
  throwIfAborted(signal)
  return new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      clock.clearTimeout(handle)
      reject(new AbortError(undefined, { cause: signal?.reason }))
    }
    const handle = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** Creates a {@link SystemClock}. */
export function systemClock(): SystemClock {
  return new SystemClock()
}
