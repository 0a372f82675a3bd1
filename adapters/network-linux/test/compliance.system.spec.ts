import { networkAdapterSuite } from '@vipsec/compliance/network-adapter'
import { LinuxNetworkAdapter } from '../src/index.js'
import { Lan } from './helpers/lan.js'
import { AdapterChild } from './helpers/remote-adapter.js'

// Each adapter runs in its own network namespace (a child process under `ip netns exec`); the
// suite drives them through thin proxies. Addresses exist only inside those namespaces.
describe(`${LinuxNetworkAdapter.name} in network namespaces`, () => {
  const lan = new Lan('cmp')
  const movable = '10.77.0.100'
  const movable6 = 'fd77::100'
  let childA: AdapterChild
  let childB: AdapterChild

  before(async () => {
    lan.up()
    childA = new AdapterChild(lan.a)
    childB = new AdapterChild(lan.b)
    await Promise.all([childA.start(), childB.start()])
  })

  after(async () => {
    await Promise.all([childA?.stop(), childB?.stop()])
    lan.down()
  })

  const init = { interface: lan.device, gratuitousArp: { count: 1 } }

  const settle = async (): Promise<void> => {
    await new Promise((r) => setTimeout(r, 300))
    await Promise.all([childA.call('ping'), childB.call('ping')])
  }

  describe('over IPv4', () => {
    networkAdapterSuite({
      setup: async () => ({
        a: await childA.createAdapter(init),
        b: await childB.createAdapter(init),
        addressA: '10.77.0.11',
        addressB: '10.77.0.12',
        movable
      }),
      teardown: () => {
        // the suite leaves the DVIPA where the last test put it: start each test without it
        lan.forget(lan.a, movable)
        lan.forget(lan.b, movable)
      },
      settle
    })
  })

  describe('over IPv6', () => {
    networkAdapterSuite({
      setup: async () => ({
        a: await childA.createAdapter(init),
        b: await childB.createAdapter(init),
        addressA: 'fd77::11',
        addressB: 'fd77::12',
        movable: movable6
      }),
      teardown: () => {
        lan.forget(lan.a, movable6)
        lan.forget(lan.b, movable6)
      },
      settle
    })
  })
})
