import { expect } from 'chai'
import { VirtualClock } from '@vipsec/clock'
import { generateClusterKey } from '@vipsec/cluster-link-udp'
import {
  DefaultDistributionProcessor,
  DefaultTargetStack,
  UnsupportedProposalError,
  requestResponse
} from '@vipsec/core'
import { LeaseFailureDetector } from '@vipsec/detector-lease'
import { SoftwareEspEngine } from '@vipsec/esp-software'
import { unsupportedInIkeProposal } from '@vipsec/ike-v2'
import {
  TOKENS,
  type DistributionEvent,
  type IkeProposal,
  type Phase1Policy
} from '@vipsec/interface'
import { VirtualNetwork } from '@vipsec/network-virtual'
import { MemoryCouplingFacility } from '@vipsec/store-memory'
import { createNode, type NodeConfig, type VipsecNode } from '../src/index.js'

const DVIPA = '10.0.0.100'
const dps = ['dp-1', 'dp-2']
const address = (node: string): string =>
  node.startsWith('dp') ? `10.9.0.${node.slice(3)}` : `10.9.1.${node.slice(7)}`
// one cluster key for the link and the heartbeats of every node
const keys = [generateClusterKey()]
const heartbeats = Object.fromEntries(dps.map((n) => [n, { address: address(n), port: 7500 }]))

function dpConfig(
  node: string,
  clock: VirtualClock,
  network: VirtualNetwork,
  facility: MemoryCouplingFacility
): NodeConfig {
  return {
    role: node === 'dp-1' ? 'primary' : 'backup',
    nodeId: node,
    store: { type: 'memory', facility },
    clock: { type: 'custom', component: { instance: clock } },
    random: { type: 'seeded', seed: node },
    components: {
      networkAdapter: { type: 'virtual', network, addresses: [address(node)] },
      espEngine: { type: 'software' },
      ikeServiceFactory: { type: 'ike-v2', init: {} },
      failureDetector: {
        type: 'heartbeat',
        init: { local: { address: address(node), port: 7500 }, keys }
      },
      clusterLink: {
        type: 'udp',
        init: {
          local: { address: address(node), port: 7400 },
          peers: { 'target-1': { address: address('target-1'), port: 7400 } },
          keys
        }
      },
      distributionProcessor: {
        type: 'default',
        init: {
          dvipas: [{ dvipa: DVIPA, ranks: dps, targets: [{ node: 'target-1' }] }],
          heartbeats
        }
      }
    }
  }
}

describe('createNode with the built-in adapters', function () {
  this.timeout(30_000)
  let nodes: VipsecNode[]

  afterEach(async () => {
    for (const node of nodes) await node.stop()
  })

  it('should stop every part it began when stopped during the join window, and not count as started', async () => {
    const clock = new VirtualClock()
    const network = new VirtualNetwork({ clock })
    const facility = new MemoryCouplingFacility()
    const dp2 = createNode(dpConfig('dp-2', clock, network, facility))
    nodes = [dp2]
    const starting = dp2.start()
    await clock.advance(10) // in the join window: the parts below the processor are up
    expect(dp2.get(TOKENS.NetworkAdapter).isStarted()).to.equal(true)
    expect(dp2.isStarted()).to.equal(false)
    await dp2.stop()
    await starting
    expect(dp2.isStarted()).to.equal(false)
    expect(dp2.get(TOKENS.DistributionProcessor).isStarted()).to.equal(false)
    expect(dp2.get(TOKENS.NetworkAdapter).isStarted()).to.equal(false)
    expect(dp2.get(TOKENS.CouplingStore).isStarted()).to.equal(false)
  })

  it('should wire real distribution processors and a target on a virtual network, and fail over', async () => {
    const clock = new VirtualClock()
    const network = new VirtualNetwork({ clock })
    const facility = new MemoryCouplingFacility()
    const target = createNode({
      role: 'target',
      nodeId: 'target-1',
      clock: { type: 'custom', component: { instance: clock } },
      components: {
        networkAdapter: { type: 'virtual', network, addresses: [address('target-1')] },
        clusterLink: {
          type: 'udp',
          init: {
            local: { address: address('target-1'), port: 7400 },
            peers: Object.fromEntries(dps.map((n) => [n, { address: address(n), port: 7400 }])),
            keys
          }
        },
        targetStack: {
          type: 'default',
          apps: [{ protocol: 17, port: 7, handler: requestResponse('target-1') }]
        }
      }
    })
    const [dp1, dp2] = dps.map((n) => createNode(dpConfig(n, clock, network, facility))) as [
      VipsecNode,
      VipsecNode
    ]
    nodes = [target, dp1, dp2]
    expect(dp1.get(TOKENS.DistributionProcessor)).to.be.instanceOf(DefaultDistributionProcessor)
    expect(dp1.get(TOKENS.EspEngine)).to.be.instanceOf(SoftwareEspEngine)
    expect(target.get(TOKENS.TargetStack)).to.be.instanceOf(DefaultTargetStack)
    const events: DistributionEvent[] = []
    dp2.get(TOKENS.DistributionProcessor).events$.subscribe((e) => events.push(e))
    // a distribution processor's start lasts its join window: let virtual time pass meanwhile
    for (const node of nodes) await clock.advanceUntilSettled(node.start())
    await clock.advance(500)
    const store = dp2.get(TOKENS.CouplingStore)
    expect((await store.getOwnership(DVIPA)).owner).to.equal('dp-1')
    expect(network.routeOf(DVIPA)).to.equal('dp-1')
    expect((target.get(TOKENS.TargetStack) as DefaultTargetStack).ownerOf(DVIPA)).to.deep.equal({
      owner: 'dp-1',
      epoch: 1
    })

    await dp1.get(TOKENS.NetworkAdapter).stop() // dp-1 drops off the network
    for (let i = 0; i < 20; i++) await clock.advance(50)
    expect(events.map((e) => e.type)).to.include('takeover:completed')
    expect(await store.getOwnership(DVIPA)).to.include({ owner: 'dp-2', epoch: 2 })
    expect(network.routeOf(DVIPA)).to.equal('dp-2')
    expect((target.get(TOKENS.TargetStack) as DefaultTargetStack).ownerOf(DVIPA)).to.deep.equal({
      owner: 'dp-2',
      epoch: 2
    })
  })

  describe('when the failure detector is the lease one', () => {
    it('should build it on the node’s coupling store', () => {
      const config = dpConfig(
        'dp-1',
        new VirtualClock(),
        new VirtualNetwork({ clock: new VirtualClock() }),
        new MemoryCouplingFacility()
      )
      ;(config.components as Record<string, unknown>).failureDetector = {
        type: 'lease',
        init: { intervalMs: 100 }
      }
      const node = createNode(config)
      nodes = []
      expect(node.get(TOKENS.FailureDetector)).to.be.instanceOf(LeaseFailureDetector)
    })

    it('should give it the store call timeout, so the self-fence bound sees the real one (fault 5)', () => {
      const config = (operationTimeoutMs?: number): NodeConfig => {
        const c = dpConfig(
          'dp-1',
          new VirtualClock(),
          new VirtualNetwork({ clock: new VirtualClock() }),
          new MemoryCouplingFacility()
        )
        return {
          ...c,
          store: {
            type: 'redis',
            init: {
              host: '127.0.0.1',
              port: 1,
              ...(operationTimeoutMs ? { operationTimeoutMs } : {})
            }
          },
          components: {
            ...c.components,
            failureDetector: { type: 'lease', init: { intervalMs: 100, ttlMs: 1000 } }
          }
        }
      }
      nodes = []
      const detector = createNode(config(300)).get(TOKENS.FailureDetector)
      // ttl - interval - the store call's timeout
      expect(detector.minDetectionMs).to.equal(600)
      // the Redis store's default timeout (5 s) is longer than the lease: refused, by its field
      expect(() => createNode(config()))
        .to.throw()
        .with.property('argument', 'init.ttlMs')
    })
  })

  describe('when an IKE proposal names what the IKE engine cannot do (fault 8)', () => {
    const proposal = (prf: string, group: string): IkeProposal =>
      ({
        encryption: [{ algorithm: 'aes-gcm-16', keyBits: 256 }],
        integrity: ['none'],
        prf: [prf],
        keyExchange: [group]
      }) as IkeProposal

    it('should say what the engine cannot do, from its own tables', () => {
      expect(unsupportedInIkeProposal(proposal('hmac-sha2-256', 'curve25519'))).to.deep.equal([])
      expect(unsupportedInIkeProposal(proposal('hmac-md5', 'modp1024'))).to.deep.equal([
        'hmac-md5',
        'modp1024'
      ])
      // an algorithm a Child SA may use but an IKE SA may not
      expect(
        unsupportedInIkeProposal({
          ...proposal('hmac-sha2-256', 'ecp256'),
          encryption: [{ algorithm: 'null-aes-gmac', keyBits: 128 }]
        })
      ).to.deep.equal(['null-aes-gmac/128'])
    })

    it('should refuse to build the node, as `vipsec check` and the start do, before anything is claimed or bound', async () => {
      const facility = new MemoryCouplingFacility()
      const clock = new VirtualClock()
      const config = dpConfig('dp-1', clock, new VirtualNetwork({ clock }), facility)
      const phase1: Phase1Policy = {
        proposals: [proposal('hmac-sha2-256', 'curve25519'), proposal('hmac-md5', 'curve25519')],
        authMethod: 'psk',
        lifetime: { rekeySeconds: 0, reauthSeconds: 0 },
        liveness: { intervalMs: 0, timeoutMs: 0 }
      }
      ;(config.components as Record<string, unknown>).ikeServiceFactory = {
        type: 'ike-v2',
        init: {
          psks: [{ remote: { type: 'fqdn', value: 'peer' }, secret: 'x'.repeat(32) }],
          peers: [
            {
              localIdentity: { type: 'fqdn', value: 'dvipa' },
              remoteIdentity: { type: 'fqdn', value: 'peer' },
              phase1,
              children: []
            }
          ]
        }
      }
      nodes = []
      let error: Error | undefined
      try {
        createNode(config)
      } catch (e) {
        error = e as Error
      }
      expect(error).to.be.instanceOf(UnsupportedProposalError)
      expect(error).to.include({
        field: 'components.ikeServiceFactory.init.peers[0].phase1.proposals[1]',
        engine: 'IKE'
      })
      expect(facility.dvipas.size, 'nothing claimed').to.equal(0)
    })
  })

  describe('when a built-in type does not fit the part', () => {
    it('should name the field', () => {
      const config = dpConfig(
        'dp-1',
        new VirtualClock(),
        new VirtualNetwork({ clock: new VirtualClock() }),
        new MemoryCouplingFacility()
      )
      ;(config.components as Record<string, unknown>).espEngine = { type: 'hardware' }
      nodes = []
      expect(() => createNode(config))
        .to.throw()
        .with.property('field', 'components.espEngine.type')
    })
  })
})
