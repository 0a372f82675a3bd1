import { expect } from 'chai'
import { NEVER } from 'rxjs'
import { VirtualClock } from '@vipsec/clock'
import { SoftwareEspEngine } from '@vipsec/esp-software'
import type { ClusterLink, FailureDetector, IkeService } from '@vipsec/interface'
import { VirtualNetwork } from '@vipsec/network-virtual'
import { MemoryCouplingStore } from '@vipsec/store-memory'
import { buildIpPacket, buildUdp } from '@vipsec/wire'
import {
  DefaultDistributionProcessor,
  type DefaultDistributionProcessorInit
} from '../src/index.js'
import { ScriptedDetector, whileAdvancing } from './helpers/ownership-harness.js'
import { DVIPA, fakeIke, installChild, sa, secret, stateOf } from './helpers/warm-harness.js'

const packet = (): Uint8Array =>
  buildIpPacket({
    source: '10.77.0.5',
    destination: '172.16.2.2',
    protocol: 17,
    payload: buildUdp({
      source: '10.77.0.5',
      destination: '172.16.2.2',
      sourcePort: 7,
      destinationPort: 4000,
      payload: new Uint8Array([1])
    })
  })

async function primary(init: Partial<DefaultDistributionProcessorInit> = {}) {
  const clock = new VirtualClock()
  const store = new MemoryCouplingStore({ clock })
  await store.start()
  const esp = new SoftwareEspEngine({ clock }, { sequenceLowWater: 4 })
  await esp.start()
  const network = new VirtualNetwork({ clock }).attach('dp-1')
  await network.start()
  const scripted = new ScriptedDetector()
  const detector = {
    events$: scripted.events$,
    health: (n: string) => scripted.health(n),
    watch: () => undefined,
    unwatch: () => undefined,
    start: async () => undefined,
    stop: async () => undefined,
    isStarted: () => true
  } as unknown as FailureDetector
  const link = { messages$: NEVER, send: async () => undefined } as unknown as ClusterLink
  let ike: ReturnType<typeof fakeIke> | undefined
  const dp = new DefaultDistributionProcessor(
    {
      store,
      esp,
      ikeFactory: () => (ike = fakeIke(esp)) as IkeService,
      detector,
      link,
      network,
      clock
    },
    {
      node: 'dp-1',
      dvipas: [{ dvipa: DVIPA, ranks: ['dp-1'], targets: [{ node: 'target-1' }], warm: true }],
      heartbeats: {},
      warm: { keys: { keys: { k1: secret(1) }, current: 'k1' }, blockSize: 8 },
      ...init
    }
  )
  return { dp, store, esp, clock, ike: () => ike }
}

describe('DefaultDistributionProcessor in warm mode', () => {
  it('should install its sink, record sealed states and renew sequence blocks', async () => {
    const { dp, store, esp, clock, ike } = await primary()
    await whileAdvancing(clock, dp.start())
    try {
      const service = ike()!
      expect(service.sink).to.be.a('function')
      const result = await service.sink!(stateOf(sa(1)))
      expect(result).to.deep.equal({ sequenceLimits: { 'child-1': 8n } })
      installChild(esp, sa(1).phase2[0]!, 0n, 8n)
      for (let i = 0; i < 20; i++) {
        expect(esp.protect(packet()).action).to.equal('protect')
        for (let j = 0; j < 5; j++) await Promise.resolve()
      }
      const stored = await store.listRecords(DVIPA)
      expect(stored.warm.map((w) => w.phase1Id)).to.deep.equal(['ike-1'])
      const end = BigInt(stored.sequence[0]!.reservedEnd)
      expect(end >= 20n).to.equal(true)
      expect(esp.listSas().find((s) => s.direction === 'outbound')!.sequenceLimit).to.equal(end)
      expect(dp.warmCounters()).to.include({ sealed: 1, statesRecorded: 1, writeFailures: 0 })
      expect(dp.warmCounters()!.blocksReserved).to.be.greaterThan(2)
      // the owner's audits keep them: they are its own records
      await whileAdvancing(clock, new Promise((r) => setTimeout(r, 50)))
      clock.advance(1000)
      await new Promise((r) => setTimeout(r, 20))
      const audited = await store.listRecords(DVIPA)
      expect(audited.warm).to.have.length(1)
      expect(audited.sequence).to.have.length(1)
    } finally {
      await dp.stop()
    }
  })

  it('should refuse to start a warm DVIPA without warm keys, naming the field', async () => {
    const { dp, clock } = await primary({ warm: undefined })
    const error = await whileAdvancing(clock, dp.start()).then(
      () => undefined,
      (e: Error) => e
    )
    expect(error).to.include({ name: 'InvalidConfigError', field: 'dvipas[0].warm' })
  })

  it('should refuse a bad key set at start, naming the field', async () => {
    const { dp, clock } = await primary({
      warm: { keys: { keys: { k1: new Uint8Array(5) }, current: 'k1' } }
    })
    const error = await whileAdvancing(clock, dp.start()).then(
      () => undefined,
      (e: Error) => e
    )
    expect(error).to.include({ name: 'InvalidConfigError', field: 'warm.keys.k1' })
  })
})
