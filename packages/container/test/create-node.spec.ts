import { expect } from 'chai'
import { SystemClock, VirtualClock } from '@vipsec/clock'
import { type InvalidConfigError, TOKENS, type CouplingStore } from '@vipsec/interface'
import { CryptoRandomSource } from '@vipsec/random'
import { MemoryCouplingFacility, MemoryCouplingStore } from '@vipsec/store-memory'
import { EtcdCouplingStore } from '@vipsec/store-etcd'
import { RedisCouplingStore } from '@vipsec/store-redis'
import { createNode, nodeConfigIssues, type NodeConfig } from '../src/index.js'
import { processorDoubles, RecordingPart } from './doubles.js'

function configError(config: unknown): InvalidConfigError {
  try {
    createNode(config as NodeConfig)
  } catch (err) {
    expect((err as Error).name).to.equal('InvalidConfigError')
    return err as InvalidConfigError
  }
  throw new Error('expected createNode to throw')
}

describe('createNode', () => {
  describe('when the role is primary', () => {
    it('should resolve the embedded defaults and the supplied parts', () => {
      const journal: string[] = []
      const node = createNode({
        role: 'primary',
        nodeId: 'dp-1',
        components: processorDoubles(journal)
      })
      expect(node.role).to.equal('primary')
      expect(node.get(TOKENS.NodeId)).to.equal('dp-1')
      expect(node.get(TOKENS.CouplingStore)).to.be.instanceOf(MemoryCouplingStore)
      expect(node.get(TOKENS.Clock)).to.be.instanceOf(SystemClock)
      expect(node.get(TOKENS.RandomSource)).to.be.instanceOf(CryptoRandomSource)
      expect((node.get(TOKENS.DistributionProcessor) as unknown as RecordingPart).name).to.equal(
        'processor'
      )
    })

    it('should start parts foundations first and stop them in reverse, once', async () => {
      const journal: string[] = []
      const node = createNode({
        role: 'primary',
        nodeId: 'dp-1',
        components: processorDoubles(journal)
      })
      await node.start()
      await node.start()
      expect(node.isStarted()).to.equal(true)
      expect(node.get(TOKENS.CouplingStore).isStarted()).to.equal(true)
      expect(journal).to.deep.equal([
        'start network',
        'start link',
        'start esp',
        'start detector',
        'start processor'
      ])
      journal.length = 0
      await node.stop()
      await node.stop()
      expect(journal).to.deep.equal([
        'stop processor',
        'stop detector',
        'stop esp',
        'stop link',
        'stop network'
      ])
      expect(node.get(TOKENS.CouplingStore).isStarted()).to.equal(false)
    })
  })

  describe('when the role is backup', () => {
    it('should give factories the node’s other parts, each built once', () => {
      const journal: string[] = []
      const clock = new VirtualClock()
      const components = {
        ...(processorDoubles(journal) as object),
        failureDetector: {
          factory: (resolve: <T>(t: symbol) => T) =>
            new RecordingPart('detector', journal, [
              resolve(TOKENS.EspEngine),
              resolve(TOKENS.Clock)
            ])
        }
      }
      const node = createNode({
        role: 'backup',
        nodeId: 'dp-2',
        clock: { type: 'custom', component: { instance: clock } },
        components: components as never
      })
      const detector = node.get(TOKENS.FailureDetector) as unknown as RecordingPart
      expect(detector.dependencies[0]).to.equal(node.get(TOKENS.EspEngine))
      expect(detector.dependencies[1]).to.equal(clock)
      expect(node.get(TOKENS.FailureDetector)).to.equal(detector)
    })
  })

  describe('when the role is target', () => {
    it('should bind the target stack and no coupling store', () => {
      const journal: string[] = []
      const node = createNode({
        role: 'target',
        nodeId: 'target-1',
        components: {
          clusterLink: { instance: new RecordingPart('link', journal) as never },
          targetStack: { instance: new RecordingPart('target', journal) as never }
        }
      })
      expect(node.has(TOKENS.TargetStack)).to.equal(true)
      expect(node.has(TOKENS.CouplingStore)).to.equal(false)
      expect(node.has(TOKENS.DistributionProcessor)).to.equal(false)
    })
  })

  describe('when nodes share a memory facility', () => {
    it('should let each see the other’s claims', async () => {
      const facility = new MemoryCouplingFacility()
      const nodes = ['dp-1', 'dp-2'].map((nodeId) =>
        createNode({
          role: 'backup',
          nodeId,
          store: { type: 'memory', facility },
          components: processorDoubles([])
        })
      )
      await Promise.all(nodes.map(async (n) => n.start()))
      const [a, b] = nodes.map((n) => n.get(TOKENS.CouplingStore)) as [CouplingStore, CouplingStore]
      await a.claimOwnership('10.0.0.100', { owner: 'dp-1', ranks: ['dp-2'], expectedEpoch: 0 })
      expect((await b.getOwnership('10.0.0.100')).owner).to.equal('dp-1')
      await Promise.all(nodes.map(async (n) => n.stop()))
    })
  })

  describe('when the store is Redis', () => {
    it('should build a RedisCouplingStore from the options, and name a bad option', () => {
      const node = createNode({
        role: 'primary',
        nodeId: 'dp-1',
        store: { type: 'redis', init: { url: 'redis://127.0.0.1:6390', keyPrefix: 'cluster-a:' } },
        components: processorDoubles([])
      })
      expect(node.get(TOKENS.CouplingStore)).to.be.instanceOf(RedisCouplingStore)
      const err = configError({
        role: 'primary',
        nodeId: 'dp-1',
        store: { type: 'redis', init: { keyPrefix: 'has space' } },
        components: processorDoubles([])
      })
      expect(err.field).to.match(/keyPrefix/)
    })
  })

  describe('when the store is etcd', () => {
    it('should build an EtcdCouplingStore from the options, and name a bad option', () => {
      const node = createNode({
        role: 'primary',
        nodeId: 'dp-1',
        store: {
          type: 'etcd',
          init: { hosts: ['http://127.0.0.1:2379'], keyPrefix: 'cluster-a/' }
        },
        components: processorDoubles([])
      })
      const store = node.get(TOKENS.CouplingStore)
      expect(store).to.be.instanceOf(EtcdCouplingStore)
      expect((store as EtcdCouplingStore).keys.prefix).to.equal('cluster-a/')
      const err = configError({
        role: 'primary',
        nodeId: 'dp-1',
        store: { type: 'etcd', init: { hosts: ['ftp://x'] } },
        components: processorDoubles([])
      })
      expect(err.field).to.match(/hosts/)
    })
  })

  describe('when randomness is seeded', () => {
    it('should give equal bytes to nodes with equal seeds', () => {
      const make = () =>
        createNode({
          role: 'primary',
          nodeId: 'dp-1',
          random: { type: 'seeded', seed: 's1' },
          components: processorDoubles([])
        })
      expect(make().get(TOKENS.RandomSource).randomBytes(32)).to.deep.equal(
        make().get(TOKENS.RandomSource).randomBytes(32)
      )
    })
  })

  describe('when the configuration is invalid', () => {
    it('should name an unknown role', () => {
      expect(configError({ role: 'leader', nodeId: 'dp-1' }).field).to.equal('role')
    })

    it('should name a bad node id', () => {
      expect(configError({ role: 'target', nodeId: 'has space' }).field).to.equal('nodeId')
    })

    it('should name a part the role needs and was not given', () => {
      const components = processorDoubles([]) as Record<string, unknown>
      delete components.distributionProcessor
      expect(configError({ role: 'primary', nodeId: 'dp-1', components }).field).to.equal(
        'components.distributionProcessor'
      )
    })

    it('should name an unknown store type', () => {
      const err = configError({
        role: 'primary',
        nodeId: 'dp-1',
        store: { type: 'zookeeper' },
        components: processorDoubles([])
      })
      expect(err.field).to.equal('store.type')
    })

    it('should name an empty seed', () => {
      const err = configError({
        role: 'primary',
        nodeId: 'dp-1',
        random: { type: 'seeded', seed: '' },
        components: processorDoubles([])
      })
      expect(err.field).to.equal('random.seed')
    })

    it('should call a misspelt field unknown and suggest the nearest one', () => {
      const err = configError({
        role: 'primary',
        nodeId: 'dp-1',
        compnents: processorDoubles([])
      })
      expect(err.field).to.equal('compnents')
      expect(err.message).to.include("unknown field 'compnents'; did you mean 'components'?")
    })

    it('should name an unknown option of a built-in part, with its path', () => {
      const components = processorDoubles([]) as Record<string, unknown>
      components.failureDetector = { type: 'heartbeat', init: {}, wroker: true }
      const err = configError({ role: 'backup', nodeId: 'dp-2', components })
      expect(err.field).to.equal('components.failureDetector.wroker')
      expect(err.message).to.include("did you mean 'worker'?")
    })

    it('should list every problem, not only the first', () => {
      expect(
        nodeConfigIssues({ role: 'primary', nodeId: 'a b', random: { type: 'seeded', seed: '' } })
          .map((i) => i.path)
          .sort()
      ).to.include.members(['nodeId', 'random.seed', 'components.espEngine'])
    })

    it('should name a component that is neither an instance nor a factory', () => {
      const err = configError({
        role: 'target',
        nodeId: 't-1',
        components: { clusterLink: { instance: {} }, targetStack: { make: () => ({}) } }
      })
      expect(err.field).to.equal('components.targetStack')
    })
  })
})
