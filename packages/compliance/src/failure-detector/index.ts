import { expect } from 'chai'
import type { FailureDetector, FailureDetectorEvent, WatchTarget } from '@vipsec/interface'

/** A detector under test and a node it can watch, whose signals the suite switches on and off. */
export interface FailureDetectorHarness {
  /** The detector, not yet started. */
  detector: FailureDetector
  /** The node to watch. */
  target: WatchTarget
  /** Makes the watched node signal (start) or fall silent as if it crashed (stop). */
  peer: {
    /** Starts the node's signals. */
    start(): Promise<void>
    /** Stops them. */
    stop(): Promise<void>
  }
  /** The silence after which the detector is configured to declare a node failed, in ms. */
  detectionTimeMs: number
}

/** Options of {@link failureDetectorSuite}. */
export interface FailureDetectorSuiteOptions {
  /** Returns a fresh harness. */
  setup(): FailureDetectorHarness | Promise<FailureDetectorHarness>
  /**
   * Releases what `setup` made.
   *
   * @param harness - what `setup` returned
   */
  teardown?(harness: FailureDetectorHarness): void | Promise<void>
  /**
   * Lets `ms` of the detector's time pass.
   *
   * @param harness - what `setup` returned
   * @param ms - how long
   */
  advance(harness: FailureDetectorHarness, ms: number): Promise<void>
}

/**
 * Declares the mocha tests every {@link FailureDetector} must pass: a signalling node is
 * `alive` and never declared failed; a silent one is declared failed once, after the detection
 * time and not long before; a node never heard is declared failed too; a failed node that
 * signals again is `node:recovered`; unwatched nodes produce no events; the lifecycle is
 * idempotent and `events$` completes on stop.
 *
 * @param options - how to make a harness and let time pass
 */
export function failureDetectorSuite(options: FailureDetectorSuiteOptions): void {
  describe('FailureDetector compliance', function () {
    this.timeout(60_000)
    let h: FailureDetectorHarness
    let events: FailureDetectorEvent[]

    beforeEach(async () => {
      h = await options.setup()
      events = []
      h.detector.events$.subscribe((e) => events.push(e))
    })

    afterEach(async () => {
      await h.peer.stop()
      await h.detector.stop()
      await options.teardown?.(h)
    })

    const of = (type: FailureDetectorEvent['type']): FailureDetectorEvent[] =>
      events.filter((e) => e.type === type && e.node === h.target.node)

    async function running(): Promise<void> {
      await h.peer.start()
      h.detector.watch(h.target)
      await h.detector.start()
      await options.advance(h, h.detectionTimeMs / 2)
    }

    it('should say unknown for a node it does not watch', () => {
      expect(h.detector.health('nobody')).to.equal('unknown')
    })

    describe('when the watched node keeps signalling', () => {
      it('should hold it alive and never declare it failed', async () => {
        await running()
        expect(h.detector.health(h.target.node)).to.equal('alive')
        for (let i = 0; i < 20; i++) await options.advance(h, h.detectionTimeMs)
        expect(of('node:failed')).to.deep.equal([])
        expect(of('node:suspect')).to.deep.equal([])
        expect(h.detector.health(h.target.node)).to.equal('alive')
      })
    })

    describe('when the watched node falls silent', () => {
      it('should not declare it failed within half the detection time', async () => {
        await running()
        await h.peer.stop()
        await options.advance(h, h.detectionTimeMs / 2)
        expect(of('node:failed')).to.deep.equal([])
      })

      it('should declare it failed once, after any suspicion', async () => {
        await running()
        await h.peer.stop()
        for (let i = 0; i < 6; i++) await options.advance(h, h.detectionTimeMs / 2)
        expect(of('node:failed')).to.have.length(1)
        expect(h.detector.health(h.target.node)).to.equal('failed')
        const types = events.filter((e) => e.node === h.target.node).map((e) => e.type)
        expect(types[types.length - 1]).to.equal('node:failed')
      })

      describe('and then signals again', () => {
        it('should report it recovered and alive', async () => {
          await running()
          await h.peer.stop()
          await options.advance(h, h.detectionTimeMs * 2)
          await h.peer.start()
          await options.advance(h, h.detectionTimeMs)
          expect(of('node:recovered')).to.have.length(1)
          expect(h.detector.health(h.target.node)).to.equal('alive')
        })
      })
    })

    describe('when the watched node is never heard', () => {
      it('should declare it failed after the detection time', async () => {
        h.detector.watch(h.target)
        await h.detector.start()
        await options.advance(h, h.detectionTimeMs * 2)
        expect(of('node:failed')).to.have.length(1)
      })
    })

    describe('.unwatch', () => {
      it('should stop every event about the node', async () => {
        await running()
        h.detector.unwatch(h.target.node)
        await h.peer.stop()
        await options.advance(h, h.detectionTimeMs * 3)
        expect(events.filter((e) => e.node === h.target.node)).to.deep.equal([])
        expect(h.detector.health(h.target.node)).to.equal('unknown')
      })
    })

    describe('lifecycle', () => {
      it('should be idempotent and complete events$ on stop', async () => {
        await h.detector.start()
        await h.detector.start()
        let completed = false
        h.detector.events$.subscribe({ complete: () => (completed = true) })
        await h.detector.stop()
        await h.detector.stop()
        expect(completed).to.equal(true)
        expect(h.detector.isStarted()).to.equal(false)
      })
    })
  })
}
