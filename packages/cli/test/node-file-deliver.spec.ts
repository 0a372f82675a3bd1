import { expect } from 'chai'
import { SystemClock } from '@vipsec/clock'
import { VirtualNetwork } from '@vipsec/network-virtual'
import { KernelDelivery } from '@vipsec/target-tun'
import { checkNodeFile, toNodeConfig, type NodeFile } from '../src/index.js'

const target = (extra: Record<string, unknown>): unknown => ({
  role: 'target',
  nodeId: 'target-1',
  network: { type: 'linux', init: { interface: 'eth0' } },
  link: { local: { address: '10.9.1.1', port: 7400 }, peers: {} },
  clusterKeys: [{ id: 1, secret: '11'.repeat(32) }],
  ...extra
})

async function targetStackOf(file: unknown) {
  const network = new VirtualNetwork({ clock: new SystemClock() }).attach('target-1')
  const config = await toNodeConfig(checkNodeFile(file), '/tmp/target-1.json', network)
  return config.components!.targetStack as { apps?: unknown[]; delivery?: unknown }
}

describe('node files: deliver', () => {
  describe('checkNodeFile', () => {
    it('should want the service addresses when a target delivers to the kernel (the default)', () => {
      expect(() => checkNodeFile(target({}))).to.throw('kernel.addresses')
      expect(() =>
        checkNodeFile(target({ deliver: 'kernel', kernel: { addresses: [] } }))
      ).to.throw('kernel.addresses')
      expect(() => checkNodeFile(target({ deliver: 'tun' }))).to.throw('deliver')
    })
  })

  describe('toNodeConfig', () => {
    it('should give a target kernel delivery of its service addresses, beside its apps', async () => {
      const stack = await targetStackOf(
        target({ kernel: { addresses: ['10.77.0.10'] }, apps: [{ port: 7, app: 'echo' }] })
      )
      expect(stack.delivery).to.be.instanceOf(KernelDelivery)
      expect(stack.apps).to.have.length(1)
    })

    it('should give a target with only apps no delivery, and one with deliver: apps none either', async () => {
      expect((await targetStackOf(target({ apps: [{ port: 7, app: 'echo' }] }))).delivery).to.equal(
        undefined
      )
      const file = target({ deliver: 'apps', kernel: { addresses: ['10.77.0.10'] } }) as NodeFile
      expect((await targetStackOf(file)).delivery).to.equal(undefined)
    })
  })
})
