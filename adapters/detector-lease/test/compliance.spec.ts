import { failureDetectorSuite } from '@vipsec/compliance/failure-detector'
import { VirtualClock } from '@vipsec/clock'
import { MemoryCouplingFacility, MemoryCouplingStore } from '@vipsec/store-memory'
import { LeaseFailureDetector } from '../src/index.js'

describe('LeaseFailureDetector', () => {
  let clock: VirtualClock
  failureDetectorSuite({
    setup: async () => {
      clock = new VirtualClock()
      const facility = new MemoryCouplingFacility()
      const store = (): MemoryCouplingStore => new MemoryCouplingStore({ clock }, { facility })
      const mine = store()
      const theirs = store()
      await mine.start()
      await theirs.start()
      const detector = new LeaseFailureDetector(
        { store: mine, clock },
        { node: 'dp-2', intervalMs: 100 }
      )
      // the watched node renews its own lease through its own detector
      const peer = new LeaseFailureDetector(
        { store: theirs, clock },
        { node: 'dp-1', intervalMs: 100 }
      )
      return {
        detector,
        target: { node: 'dp-1' },
        peer: { start: async () => peer.start(), stop: async () => peer.stop() },
        detectionTimeMs: detector.detectionTimeMs
      }
    },
    advance: async (_h, ms) => clock.advance(ms)
  })
})
