import { expect } from 'chai'
import { VirtualClock } from '../src/index.js'

describe('VirtualClock', () => {
  describe('.advance', () => {
    it('should move wall and monotonic time by exactly the amount', async () => {
      const clock = new VirtualClock({ startTime: 1000 })
      await clock.advance(250)
      expect(clock.now()).to.equal(1250)
      expect(clock.monotonic()).to.equal(250)
    })

    it('should fire timers that a timer sets within the same advance, at their own time', async () => {
      const clock = new VirtualClock()
      const fired: number[] = []
      clock.setTimeout(() => {
        fired.push(clock.monotonic())
        clock.setTimeout(() => fired.push(clock.monotonic()), 30)
      }, 10)
      await clock.advance(100)
      expect(fired).to.deep.equal([10, 40])
    })

    it('should let promise chains started by a timer run before time moves on', async () => {
      const clock = new VirtualClock()
      const seen: number[] = []
      const loop = async (): Promise<void> => {
        for (let i = 0; i < 3; i++) {
          await clock.sleep(100)
          seen.push(clock.monotonic())
        }
      }
      const done = loop()
      await clock.advance(1000)
      await done
      expect(seen).to.deep.equal([100, 200, 300])
    })

    describe('when the amount is negative', () => {
      it('should throw InvalidParametersError', async () => {
        const clock = new VirtualClock()
        const err = await clock.advance(-1).then(
          () => undefined,
          (e: Error) => e
        )
        expect(err?.name).to.equal('InvalidParametersError')
      })
    })
  })

  describe('.runNext', () => {
    it('should jump to the next timer and report when none is left', async () => {
      const clock = new VirtualClock()
      let fired = false
      clock.setTimeout(() => (fired = true), 5000)
      expect(clock.pending()).to.equal(1)
      expect(await clock.runNext()).to.equal(true)
      expect(fired).to.equal(true)
      expect(clock.monotonic()).to.equal(5000)
      expect(await clock.runNext()).to.equal(false)
    })
  })

  describe('.advanceUntilSettled', () => {
    it('should let time pass until the work settles, then settle as it did', async () => {
      const clock = new VirtualClock()
      const work = clock.sleep(250).then(() => 'joined')
      expect(await clock.advanceUntilSettled(work)).to.equal('joined')
      expect(clock.monotonic()).to.be.within(250, 260)
      const failing = clock.sleep(30).then(() => Promise.reject(new Error('refused')))
      const err = await clock.advanceUntilSettled(failing).catch((e: Error) => e)
      expect((err as Error).message).to.equal('refused')
    })

    it('should stop after the most time it may let pass', async () => {
      const clock = new VirtualClock()
      const never = new Promise<void>(() => undefined)
      const outcome = await Promise.race([
        clock.advanceUntilSettled(never, { stepMs: 100, maxMs: 1000 }).then(() => 'settled'),
        new Promise((r) => setTimeout(() => r('gave up'), 500))
      ])
      expect(outcome).to.equal('gave up')
      expect(clock.monotonic()).to.equal(1000)
    })
  })
})
