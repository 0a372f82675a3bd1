import { networkAdapterSuite } from '@vipsec/compliance/network-adapter'
import { VirtualClock } from '@vipsec/clock'
import { VirtualNetwork } from '../src/index.js'

describe('VirtualNetworkAdapter', () => {
  let clock: VirtualClock
  networkAdapterSuite({
    setup: () => {
      clock = new VirtualClock()
      const network = new VirtualNetwork({ clock })
      return {
        a: network.attach('a'),
        b: network.attach('b'),
        addressA: '10.1.0.1',
        addressB: '10.1.0.2',
        movable: '10.1.0.100'
      }
    },
    settle: async () => clock.advance(10)
  })
})
