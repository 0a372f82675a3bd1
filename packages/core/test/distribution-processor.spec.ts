import { expect } from 'chai'
import { NEVER } from 'rxjs'
import { VirtualClock } from '@vipsec/clock'
import {
  NetworkCommandError,
  type ClusterLink,
  type EspEngine,
  type EspProposalShape,
  type FailureDetector,
  type IkeServiceFactory,
  type NetworkAdapter
} from '@vipsec/interface'
import { MemoryCouplingStore } from '@vipsec/store-memory'
import {
  DefaultDistributionProcessor,
  FencingConfigError,
  JoinWindowConfigError,
  UnsupportedProposalError,
  joinWindowBound,
  type DefaultDistributionProcessorInit
} from '../src/index.js'
import { DVIPA, ScriptedDetector, whileAdvancing } from './helpers/ownership-harness.js'

/** A processor over a memory store whose network cannot take the address (a wrong interface). */
function processor(
  init: Partial<DefaultDistributionProcessorInit> = {},
  detectorExtras: Partial<FailureDetector> = {}
): {
  dp: DefaultDistributionProcessor
  store: MemoryCouplingStore
  released: string[]
  prepared: string[]
  clock: VirtualClock
} {
  const clock = new VirtualClock()
  const store = new MemoryCouplingStore({ clock })
  const scripted = new ScriptedDetector()
  const detector = {
    events$: scripted.events$,
    health: (n: string) => scripted.health(n),
    watch: () => undefined,
    unwatch: () => undefined,
    start: async () => undefined,
    stop: async () => undefined,
    isStarted: () => true,
    ...detectorExtras
  } as unknown as FailureDetector
  const released: string[] = []
  const prepared: string[] = []
  const network = {
    events$: NEVER,
    isStarted: () => true,
    acquireAddress: async (address: string) => {
      throw new NetworkCommandError(`ip addr add ${address}/32 dev nosuch0`, 'Cannot find device')
    },
    releaseAddress: async (address: string) => void released.push(address),
    prepareAddress: async (address: string) => void prepared.push(address),
    openUdp: async () => {
      throw new Error('no sockets expected')
    }
  } as unknown as NetworkAdapter
  const link = { messages$: NEVER, send: async () => undefined } as unknown as ClusterLink
  // an engine that knows AES-GCM and nothing with a separate integrity algorithm
  const unsupportedIn = (p: EspProposalShape): string[] => [
    ...p.encryption
      .filter((e) => e.algorithm !== 'aes-gcm-16')
      .map((e) => `${e.algorithm}/${e.keyBits}`),
    ...p.integrity.filter((i) => i !== 'none')
  ]
  const esp = {
    events$: NEVER,
    listFilters: () => [],
    removeSa: () => false,
    unsupportedIn
  } as unknown as EspEngine
  const ikeFactory: IkeServiceFactory = () => {
    throw new Error('no IKE service expected')
  }
  const dp = new DefaultDistributionProcessor(
    { store, esp, ikeFactory, detector, link, network, clock },
    {
      node: 'dp-1',
      dvipas: [{ dvipa: DVIPA, ranks: ['dp-1', 'dp-2'], targets: [{ node: 'target-1' }] }],
      heartbeats: {},
      ...init
    }
  )
  return { dp, store, released, prepared, clock }
}

describe(DefaultDistributionProcessor.name, () => {
  describe('.start', () => {
    describe('fault 8: when the primary cannot take the DVIPA address (a wrong interface)', () => {
      it('should reject, release the epoch it claimed and the address, and stop', async () => {
        const { dp, store, released, prepared, clock } = processor()
        await store.start()
        const error = await whileAdvancing(clock, dp.start()).then(
          () => undefined,
          (e: Error) => e
        )
        expect(error?.name).to.equal('NetworkCommandError')
        expect(dp.isStarted()).to.equal(false)
        const ownership = await store.getOwnership(DVIPA)
        expect(ownership).to.include({ owner: null, epoch: 1 })
        expect(released).to.include(DVIPA)
        // made ready to take over when it started, and again when the failed serve gave the
        // address up (before the start failed and stopped it)
        expect(prepared).to.deep.equal([DVIPA, DVIPA])
      })
    })

    describe('when the configuration is invalid', () => {
      it('should reject before anything is claimed: a DVIPA that does not rank this node', async () => {
        const { dp, store } = processor({
          dvipas: [{ dvipa: DVIPA, ranks: ['dp-2', 'dp-3'], targets: [] }]
        })
        await store.start()
        const error = await dp.start().then(
          () => undefined,
          (e: Error) => e
        )
        expect(error).to.include({ name: 'InvalidConfigError', field: 'dvipas[0].ranks' })
        expect(dp.isStarted()).to.equal(false)
        const read = await store.getOwnership(DVIPA).catch((e: Error) => e.name)
        expect(read).to.equal('NotFoundError')
      })

      it('fault 5: should reject a selfFenceMs longer than the detector’s shortest detection', async () => {
        const { dp, store } = processor({ selfFenceMs: 400 }, { minDetectionMs: 200 } as never)
        await store.start()
        const error = await dp.start().then(
          () => undefined,
          (e: Error) => e
        )
        expect(error).to.include({ name: 'InvalidConfigError', field: 'selfFenceMs' })
        expect(error!.message).to.match(/shortest detection \(200 ms/)
        const read = await store.getOwnership(DVIPA).catch((e: Error) => e.name)
        expect(read).to.equal('NotFoundError')
      })

      it('should reject a selfFenceMs that a lease detector with slow store calls cannot keep, naming the fields', async () => {
        // 600 ms leases renewed every 100 ms, but a store call may take 300 ms: a backup may
        // take over 200 ms after the last renewal, before a 250 ms self-fence
        const { dp, store } = processor({ selfFenceMs: 250 }, { minDetectionMs: 200 } as never)
        await store.start()
        const error = await dp.start().then(
          () => undefined,
          (e: Error) => e
        )
        expect(error).to.be.instanceOf(FencingConfigError)
        expect((error as FencingConfigError).fields).to.deep.equal([
          'selfFenceMs',
          'detector.minDetectionMs'
        ])
        expect(dp.isStarted()).to.equal(false)
        const read = await store.getOwnership(DVIPA).catch((e: Error) => e.name)
        expect(read).to.equal('NotFoundError')
      })

      it('fault 8: should reject an ESP proposal the engine cannot do before claiming or binding anything', async () => {
        const { dp, store, released } = processor({
          espProposals: [
            {
              field: 'connections.peer-1.children.net.proposals[0]',
              proposal: {
                encryption: [{ algorithm: 'aes-gcm-16', keyBits: 256 }],
                integrity: ['none']
              }
            },
            {
              field: 'connections.peer-1.children.net.proposals[1]',
              proposal: {
                encryption: [{ algorithm: 'aes-cbc', keyBits: 192 }],
                integrity: ['hmac-md5-96']
              }
            }
          ]
        })
        await store.start()
        const error = await dp.start().then(
          () => undefined,
          (e: Error) => e
        )
        expect(error).to.be.instanceOf(UnsupportedProposalError)
        expect(error).to.include({
          name: 'InvalidConfigError',
          field: 'connections.peer-1.children.net.proposals[1]'
        })
        expect((error as UnsupportedProposalError).unsupported).to.deep.equal([
          'aes-cbc/192',
          'hmac-md5-96'
        ])
        expect(dp.isStarted()).to.equal(false)
        const read = await store.getOwnership(DVIPA).catch((e: Error) => e.name)
        expect(read).to.equal('NotFoundError')
        expect(released).to.deep.equal([])
      })

      it('should reject a join window shorter than two read-backs, naming the fields', async () => {
        const { dp, store } = processor({ joinWindowMs: 300, ownershipCheckMs: 250 })
        await store.start()
        const error = await dp.start().then(
          () => undefined,
          (e: Error) => e
        )
        expect(error).to.be.instanceOf(JoinWindowConfigError)
        expect(error).to.include({ name: 'InvalidConfigError', field: 'joinWindowMs' })
        expect((error as JoinWindowConfigError).fields).to.deep.equal([
          'joinWindowMs',
          'ownershipCheckMs',
          'detector.detectionTimeMs'
        ])
        expect((error as JoinWindowConfigError).minimumMs).to.equal(500)
        expect(dp.isStarted()).to.equal(false)
        const read = await store.getOwnership(DVIPA).catch((e: Error) => e.name)
        expect(read).to.equal('NotFoundError')
      })

      it('should reject a join window shorter than the detector’s detection time', async () => {
        const { dp, store } = processor({ joinWindowMs: 600 }, { detectionTimeMs: 900 } as never)
        await store.start()
        const error = await dp.start().then(
          () => undefined,
          (e: Error) => e
        )
        expect(error).to.be.instanceOf(JoinWindowConfigError)
        expect((error as JoinWindowConfigError).minimumMs).to.equal(900)
        const read = await store.getOwnership(DVIPA).catch((e: Error) => e.name)
        expect(read).to.equal('NotFoundError')
      })

      it('should derive the join window from the detector when none is given', () => {
        const { dp } = processor({}, { detectionTimeMs: 900 } as never)
        expect(dp.init.joinWindowMs).to.equal(900)
        expect(joinWindowBound(250, {})).to.equal(500)
      })

      it('fault 8: should reject an IKE proposal the IKE engine cannot do before claiming or binding anything', async () => {
        const { dp, store, released } = processor({
          ikeProposals: [
            {
              field: 'connections.peer-1.proposals[0]',
              proposal: {
                encryption: [{ algorithm: 'aes-gcm-16', keyBits: 256 }],
                integrity: ['none'],
                prf: ['hmac-sha2-256'],
                keyExchange: ['curve25519']
              }
            },
            {
              field: 'connections.peer-1.proposals[1]',
              proposal: {
                encryption: [{ algorithm: 'null-aes-gmac', keyBits: 128 }],
                integrity: ['none'],
                prf: ['hmac-sha2-256'],
                keyExchange: ['curve25519']
              }
            }
          ],
          // an engine that cannot encrypt an IKE SA with null-aes-gmac
          ikeCapabilities: (p) =>
            p.encryption
              .filter((e) => e.algorithm === 'null-aes-gmac')
              .map((e) => `${e.algorithm}/${e.keyBits}`)
        })
        await store.start()
        const error = await dp.start().then(
          () => undefined,
          (e: Error) => e
        )
        expect(error).to.be.instanceOf(UnsupportedProposalError)
        expect(error).to.include({ field: 'connections.peer-1.proposals[1]', engine: 'IKE' })
        expect(error!.message).to.match(/the IKE engine cannot do null-aes-gmac\/128/)
        expect(dp.isStarted()).to.equal(false)
        const read = await store.getOwnership(DVIPA).catch((e: Error) => e.name)
        expect(read).to.equal('NotFoundError')
        expect(released, 'no address touched').to.deep.equal([])
      })

      it('should reject selfFenceMs without read-backs (ownershipCheckMs 0)', async () => {
        const { dp, store } = processor({ selfFenceMs: 400, ownershipCheckMs: 0 })
        await store.start()
        const error = await dp.start().then(
          () => undefined,
          (e: Error) => e
        )
        expect(error).to.include({ name: 'InvalidConfigError', field: 'selfFenceMs' })
        expect((error as FencingConfigError).fields).to.deep.equal([
          'selfFenceMs',
          'ownershipCheckMs'
        ])
      })
    })
  })
})
