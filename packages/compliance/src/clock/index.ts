import { expect } from 'chai'
import type { Clock } from '@vipsec/interface'
import type { TestSetup } from '../test-setup.js'

/** Options of {@link clockSuite}. */
export interface ClockSuiteOptions extends TestSetup<Clock> {
  /**
   * Lets `ms` of the clock's time pass: advance a virtual clock, or wait for a real one.
   *
   * @param clock - the clock under test
   * @param ms - how long
   */
  advance(clock: Clock, ms: number): Promise<void>
}

/**
 * Declares the mocha tests every {@link Clock} must pass: monotonic time, timers that fire once,
 * in order, and not early, cancellation, and sleeps that honour abort signals.
 *
 * @param options - how to make a clock and let its time pass
 */
export function clockSuite(options: ClockSuiteOptions): void {
  describe('Clock compliance', function () {
    this.timeout(10_000)
    let clock: Clock

    beforeEach(async () => {
      clock = await options.setup()
    })

    afterEach(async () => {
      await options.teardown?.(clock)
    })

    it('should give monotonic time that never goes backwards and wall time near the epoch', async () => {
      const a = clock.monotonic()
      await options.advance(clock, 5)
      const b = clock.monotonic()
      expect(b).to.be.at.least(a + 5 - 1)
      expect(clock.now()).to.be.greaterThan(1_500_000_000_000)
    })

    describe('.setTimeout', () => {
      it('should fire once, not before its time', async () => {
        let fired = 0
        clock.setTimeout(() => fired++, 60)
        await options.advance(clock, 10)
        expect(fired).to.equal(0)
        await options.advance(clock, 100)
        expect(fired).to.equal(1)
        await options.advance(clock, 100)
        expect(fired).to.equal(1)
      })

      it('should fire timers in the order they fall due', async () => {
        const order: number[] = []
        clock.setTimeout(() => order.push(30), 30)
        clock.setTimeout(() => order.push(10), 10)
        clock.setTimeout(() => order.push(20), 20)
        await options.advance(clock, 80)
        expect(order).to.deep.equal([10, 20, 30])
      })
    })

    describe('.clearTimeout', () => {
      it('should stop a pending timer from firing and ignore unknown handles', async () => {
        let fired = false
        const handle = clock.setTimeout(() => (fired = true), 20)
        clock.clearTimeout(handle)
        clock.clearTimeout({ id: -1 })
        await options.advance(clock, 60)
        expect(fired).to.equal(false)
      })
    })

    describe('.sleep', () => {
      it('should resolve once the time has passed', async () => {
        let done = false
        const sleeping = clock.sleep(20).then(() => (done = true))
        await options.advance(clock, 60)
        await sleeping
        expect(done).to.equal(true)
      })

      describe('when the signal aborts', () => {
        it('should reject with AbortError', async () => {
          const controller = new AbortController()
          const sleeping = clock.sleep(10_000, { signal: controller.signal })
          controller.abort()
          const err = await sleeping.then(
            () => undefined,
            (e: Error) => e
          )
          expect(err?.name).to.equal('AbortError')
        })

        it('should reject at once when the signal is already aborted', async () => {
          const controller = new AbortController()
          controller.abort()
          const err = await clock.sleep(10_000, { signal: controller.signal }).then(
            () => undefined,
            (e: Error) => e
          )
          expect(err?.name).to.equal('AbortError')
        })
      })
    })
  })
}
