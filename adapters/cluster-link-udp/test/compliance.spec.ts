import { clusterLinkSuite } from '@vipsec/compliance/cluster-link'
import { VirtualClock } from '@vipsec/clock'
import { VirtualNetwork } from '@vipsec/network-virtual'
import { generateClusterKey, UdpClusterLink } from '../src/index.js'

describe('UdpClusterLink', () => {
  let clock: VirtualClock
  for (const encrypt of [false, true]) {
    describe(encrypt ? 'with encryption' : 'authenticated', () => {
      clusterLinkSuite({
        setup: async () => {
          clock = new VirtualClock()
          const keys = [generateClusterKey()]
          const net = new VirtualNetwork({ clock })
          const [na, nb] = [net.attach('dp-1'), net.attach('target-1')]
          await na.start()
          await nb.start()
          await na.acquireAddress('10.9.0.1')
          await nb.acquireAddress('10.9.0.11')
          const a = new UdpClusterLink(
            { network: na },
            { node: 'dp-1', local: { address: '10.9.0.1', port: 7400 }, keys, encrypt }
          )
          const b = new UdpClusterLink(
            { network: nb },
            { node: 'target-1', local: { address: '10.9.0.11', port: 7400 }, keys, encrypt }
          )
          a.addPeer('target-1', { address: '10.9.0.11', port: 7400 })
          b.addPeer('dp-1', { address: '10.9.0.1', port: 7400 })
          return { a, b }
        },
        settle: async () => clock.advance(5)
      })
    })
  }
})
