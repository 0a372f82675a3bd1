import type { Clock } from '@vipsec/interface'

/** The timers a hedged call runs on: the store's clock, or the system's. */
export type HedgeTimers = Pick<Clock, 'setTimeout' | 'clearTimeout'>

/** How a hedged call is run. */
export interface HedgeOptions {
  /** How many members there are (asked in order from `first`, wrapping around). */
  count: number
  /** The member asked first. */
  first: number
  /** After how long without an answer the next member is asked as well, in ms. */
  hedgeMs: number
  /** Where the hedge timer runs. */
  timers: HedgeTimers
  /** Whether an error would be the same on every member: it rejects at once, nobody else is asked. */
  final: (err: unknown) => boolean
}

/**
 * Runs a read on member `first`; every `hedgeMs` without an answer (or at once when every member
 * asked so far failed) the next member is asked as well. The first answer wins and resolves with
 * the index of the member that gave it; it rejects with the last error when every member failed,
 * or at once on a `final` error. Answers that come after the winner are ignored.
 *
 * @param options - the members, the first one, the hedge delay, the timers
 * @param attempt - asks member `i`
 */
export async function hedged<T>(
  options: HedgeOptions,
  attempt: (i: number) => Promise<T>
): Promise<{ value: T; member: number }> {
  const { count, first, hedgeMs, timers, final } = options
  return new Promise((resolve, reject) => {
    let started = 0
    let failed = 0
    let settled = false
    let timer: ReturnType<HedgeTimers['setTimeout']> | undefined
    const stopTimer = (): void => {
      if (timer !== undefined) timers.clearTimeout(timer)
      timer = undefined
    }
    const finish = (): void => {
      settled = true
      stopTimer()
    }
    const launch = (): void => {
      if (settled || started >= count) return
      const i = (first + started++) % count
      stopTimer()
      if (started < count) timer = timers.setTimeout(launch, hedgeMs)
      let answer: Promise<T>
      try {
        answer = attempt(i)
      } catch (err) {
        answer = Promise.reject(err as Error)
      }
      answer.then(
        (value) => {
          if (settled) return
          finish()
          resolve({ value, member: i })
        },
        (err: unknown) => {
          if (settled) return
          failed++
          if (final(err) || failed === count) {
            finish()
            reject(err as Error)
          } else if (failed === started) {
            // every member asked so far failed: ask the next one now
            launch()
          }
        }
      )
    }
    launch()
  })
}
