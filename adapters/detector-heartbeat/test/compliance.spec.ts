import { failureDetectorSuite } from '@vipsec/compliance/failure-detector'
import { VirtualClock } from '@vipsec/clock'
import { VirtualNetwork } from '@vipsec/network-virtual'
import { generateClusterKey } from '@vipsec/cluster-link-udp'
import { HeartbeatFailureDetector } from '../src/index.js'

describe('HeartbeatFailureDetector', () => {
  let clock: VirtualClock
  failureDetectorSuite({
    setup: async () => {
      clock = new VirtualClock()
      const keys = [generateClusterKey()]
      const net = new VirtualNetwork({ clock }, { latencyMs: 0.5 })
      const [na, nb] = [net.attach('dp-2'), net.attach('dp-1')]
      await na.start()
      await nb.start()
      await na.acquireAddress('10.9.0.2')
      await nb.acquireAddress('10.9.0.1')
      const detector = new HeartbeatFailureDetector(
        { network: na, clock },
        { node: 'dp-2', local: { address: '10.9.0.2', port: 7500 }, keys }
      )
      // The watched node runs its own detector, announcing to dp-2.
      const peer = new HeartbeatFailureDetector(
        { network: nb, clock },
        {
          node: 'dp-1',
          local: { address: '10.9.0.1', port: 7500 },
          keys,
          announceTo: [{ address: '10.9.0.2', port: 7500 }]
        }
      )
      return {
        detector,
        target: { node: 'dp-1', endpoint: { address: '10.9.0.1', port: 7500 } },
        peer: { start: async () => peer.start(), stop: async () => peer.stop() },
        detectionTimeMs: detector.detectionTimeMs
      }
    },
    advance: async (_h, ms) => clock.advance(ms)
  })
})
