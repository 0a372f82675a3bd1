import { expect } from 'chai'
import fc from 'fast-check'
import { VirtualClock } from '@vipsec/clock'
import { buildIpPacket, buildUdp } from '@vipsec/wire'
import { IpProtocol, type DvipaRecord, type SequenceRecord } from '@vipsec/interface'
import { MemoryCouplingStore } from '@vipsec/store-memory'
import { WarmKeySet, WarmRecorder, saRecords } from '../src/index.js'
import {
  DVIPA,
  espSequence,
  fakeIke,
  installChild,
  keySet,
  sa,
  secret,
  stateOf,
  takeOver,
  warmNode,
  type WarmNode
} from './helpers/warm-harness.js'
import { whileAdvancing } from './helpers/ownership-harness.js'

const packet = (): Uint8Array =>
  buildIpPacket({
    source: '10.77.0.5',
    destination: '172.16.2.2',
    protocol: IpProtocol.UDP,
    payload: buildUdp({
      source: '10.77.0.5',
      destination: '172.16.2.2',
      sourcePort: 7,
      destinationPort: 4000,
      payload: new Uint8Array([1, 2, 3])
    })
  })

/** An owner at epoch 1 over a fresh store. */
async function owner(
  blockSize = 8n,
  lowWater = 4
): Promise<{ store: MemoryCouplingStore; clock: VirtualClock; dp1: WarmNode }> {
  const clock = new VirtualClock()
  const store = new MemoryCouplingStore({ clock })
  await store.start()
  const claimed = await store.claimOwnership(DVIPA, {
    owner: 'dp-1',
    ranks: ['dp-2'],
    expectedEpoch: 0
  })
  const dp1 = await warmNode('dp-1', store, clock, keySet(), blockSize, lowWater)
  dp1.setFence({ owner: 'dp-1', epoch: claimed.epoch })
  return { store, clock, dp1 }
}

/** What an owner records for IKE SA n through the sink; installs its outbound SA with the limit. */
async function establish(dp: WarmNode, n: number, midSync = true): Promise<void> {
  const records = sa(n)
  const result = await dp.recorder.sink(stateOf(records, midSync))
  const limit = result?.sequenceLimits?.[records.phase2[0]!.id]
  await dp1Records(dp, records)
  installChild(dp.esp, records.phase2[0]!, 0n, limit)
}

/** The renegotiation records of an IKE SA, as the owner writes them on its IKE events. */
async function dp1Records(dp: WarmNode, records: ReturnType<typeof sa>): Promise<void> {
  await dp.recorder['options'].write(saRecords(records.phase1, records.phase2) as DvipaRecord[])
}

/** Lets the recorder's low-water writes (one store round trip each) finish. */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve))
}

describe('warm takeover', () => {
  describe('WarmRecorder on the owner', () => {
    it('should write the sealed state and the first block before the sink resolves', async () => {
      const { store, dp1 } = await owner()
      const result = await dp1.recorder.sink(stateOf(sa(1)))
      expect(result).to.deep.equal({ sequenceLimits: { 'child-1': 8n } })
      const stored = await store.listRecords(DVIPA)
      expect(stored.warm.map((w) => w.phase1Id)).to.deep.equal(['ike-1'])
      expect(stored.sequence).to.have.length(1)
      expect(stored.sequence[0]).to.include({
        v: 1,
        kind: 'sequence',
        id: 'child-1',
        dvipa: DVIPA,
        phase2Id: 'child-1',
        outboundSpi: sa(1).phase2[0]!.outboundSpi,
        reservedEnd: '8',
        inbound: '0',
        keyId: 'k1'
      })
      // authenticated under the warm key
      expect(dp1.recorder.keys.verify(stored.sequence[0]!)).to.equal(stored.sequence[0])
    })

    it('should reject, and reserve nothing, when the write is refused (newer epoch)', async () => {
      const { store, dp1 } = await owner()
      await store.claimOwnership(DVIPA, { owner: 'dp-2', ranks: [], expectedEpoch: 1 })
      let error: Error | undefined
      await dp1.recorder.sink(stateOf(sa(1))).catch((err: Error) => (error = err))
      expect(error?.name).to.equal('StaleEpochError')
      expect(dp1.recorder.records()).to.deep.equal([])
    })

    it('should reserve the next block at the low water, then raise the limit', async () => {
      const { store, dp1 } = await owner(8n, 4)
      await establish(dp1, 1)
      const sent: number[] = []
      for (let i = 0; i < 30; i++) {
        const r = dp1.esp.protect(packet())
        if (r.action === 'protect') sent.push(espSequence(r.packet))
        await settle()
      }
      expect(sent).to.deep.equal(Array.from({ length: 30 }, (_, i) => i + 1))
      const [reservation] = (await store.listRecords(DVIPA)).sequence
      // each block is written before the engine may use it
      expect(BigInt(reservation!.reservedEnd) >= 30n).to.equal(true)
      expect(dp1.esp.listSas()[0]!.sequenceLimit).to.equal(BigInt(reservation!.reservedEnd))
    })

    it('should stop at the limit when the next block cannot be written', async () => {
      const { store, dp1 } = await owner(8n, 4)
      await establish(dp1, 1)
      // a newer owner: the reservation is refused, the engine stays at 8
      await store.claimOwnership(DVIPA, { owner: 'dp-2', ranks: [], expectedEpoch: 1 })
      const actions = []
      for (let i = 0; i < 12; i++) {
        actions.push(dp1.esp.protect(packet()).action)
        await settle()
      }
      expect(actions.filter((a) => a === 'protect')).to.have.length(8)
      expect(dp1.esp.counters().dropped['sequence-unreserved']).to.equal(4)
      expect(dp1.recorder.counters().writeFailures).to.be.greaterThan(0)
    })
  })

  describe('WarmRecorder.refreshInbound', () => {
    it('should record the inbound top, never taking the reserved end back', async () => {
      const { store, dp1 } = await owner(8n, 4)
      await establish(dp1, 1)
      const child = sa(1).phase2[0]!
      dp1.esp.addSa({
        spi: Number.parseInt(child.inboundSpi, 16),
        direction: 'inbound',
        mode: 'tunnel',
        algorithm: 'aes-gcm-16',
        keyMaterial: new Uint8Array(36).fill(3),
        extendedSequenceNumbers: false,
        lifetime: {
          softSeconds: 0,
          hardSeconds: 0,
          softBytes: 0,
          hardBytes: 0,
          softPackets: 0,
          hardPackets: 0
        },
        initialSequence: 40n
      })
      // the low water fires at 4: the next block's write (end 16) is in flight...
      for (let i = 0; i < 4; i++) dp1.esp.protect(packet())
      // ...when the refresh is queued behind it
      expect(await dp1.recorder.refreshInbound()).to.equal(1)
      await settle()
      const [reservation] = (await store.listRecords(DVIPA)).sequence
      expect(reservation).to.include({ inbound: '40', reservedEnd: '16' })
      expect(dp1.recorder.reservation('child-1')).to.include({ inbound: '40', reservedEnd: '16' })
      expect(await dp1.recorder.refreshInbound()).to.equal(0)
    })
  })

  describe('WarmRecorder with many SAs', () => {
    it('should record each new IKE SA and renew its blocks without listing every SA', async () => {
      const { store, dp1 } = await owner(8n, 4)
      let listings = 0
      const listSas = dp1.esp.listSas.bind(dp1.esp)
      dp1.esp.listSas = () => {
        listings++
        return listSas()
      }
      for (let n = 1; n <= 50; n++) {
        const limits = await dp1.recorder.sink(stateOf(sa(n)))
        expect(limits, `IKE SA ${n}`).to.deep.equal({ sequenceLimits: { [`child-${n}`]: 8n } })
        installChild(dp1.esp, sa(n).phase2[0]!, 0n, limits?.sequenceLimits?.[`child-${n}`])
      }
      // a block running low is renewed by one lookup too
      for (let i = 0; i < 6; i++) dp1.esp.protect(packet())
      await settle()
      // (every filter here matches everything: the last one installed, child-50's, takes them)
      expect(dp1.recorder.reservation('child-50')!.reservedEnd, 'renewed').to.equal('16')
      expect(listings, 'listings of the engine').to.equal(0)
      expect((await store.listRecords(DVIPA)).sequence).to.have.length(50)
    })
  })

  describe('WarmRecorder when a sink failed and the Child SA went on without a limit', () => {
    it('should reserve past the numbers it sent, pausing it until the block is stored', async () => {
      const { store, dp1 } = await owner(8n, 4)
      let fail = true
      const recorder = new WarmRecorder({
        dvipa: DVIPA,
        keys: keySet(),
        blockSize: 8n,
        esp: dp1.esp,
        epoch: () => 1,
        write: async (put) => {
          if (fail) throw new Error('store down')
          await store.putRecords(DVIPA, put, { owner: 'dp-1', epoch: 1 })
        }
      })
      const err = await recorder.sink(stateOf(sa(1))).catch((e: Error) => e)
      expect((err as Error).message).to.equal('store down')
      // the service installs it without a limit, and it carries traffic
      installChild(dp1.esp, sa(1).phase2[0]!)
      for (let i = 0; i < 20; i++) dp1.esp.protect(packet())
      fail = false
      // its next key change (here the IKE SA's) hands the sink the Child SA again
      const pending = recorder.sink(stateOf(sa(1)))
      expect(dp1.esp.protect(packet())).to.deep.equal({
        action: 'drop',
        reason: 'sequence-unreserved'
      })
      expect(await pending).to.deep.equal({ sequenceLimits: {} })
      const [reservation] = (await store.listRecords(DVIPA)).sequence
      expect(reservation!.reservedEnd).to.equal('28')
      expect(dp1.esp.listSas()[0]!.sequenceLimit).to.equal(28n)
    })
  })

  describe('runTakeover in warm mode', () => {
    it('should adopt what it can, renegotiate the rest and report which way each went', async () => {
      const { store, clock, dp1 } = await owner(8n, 4)
      await establish(dp1, 1) // adoptable
      await establish(dp1, 2, false) // peer without RFC 6311
      await establish(dp1, 3) // sync will time out
      // IKE SA 4: recorded without warm state (a peer established before warm was on)
      await dp1Records(dp1, sa(4))
      // IKE SA 5: sealed under a key the heir does not have
      const stranger = new WarmKeySet({ keys: { k9: secret(9) }, current: 'k9' })
      await dp1Records(dp1, sa(5))
      await store.putRecords(
        DVIPA,
        [stranger.seal(stateOf(sa(5)), { dvipa: DVIPA, phase1Id: 'ike-5', epoch: 1, version: 1 })],
        { owner: 'dp-1', epoch: 1 }
      )
      // IKE SA 6: a state whose blob was changed in the store
      await establish(dp1, 6)
      const six = await store.getRecord(DVIPA, 'warm', 'ike-6')
      const bytes = Buffer.from(six.sealed, 'base64')
      bytes[3]! ^= 1
      await store.putRecords(DVIPA, [{ ...six, sealed: bytes.toString('base64') }], {
        owner: 'dp-1',
        epoch: 1
      })

      // IKE SA 7: a store writer lowered its reservation
      await establish(dp1, 7)
      const seven = await store.getRecord(DVIPA, 'sequence', 'child-7')
      await store.putRecords(DVIPA, [{ ...seven, reservedEnd: '0' }], { owner: 'dp-1', epoch: 1 })

      const heir = await warmNode('dp-2', store, clock, keySet(), 8n, 4)
      const ike = fakeIke(heir.esp, { failSync: new Set(['ike-3']) })
      const report = await takeOver(store, heir, ike, 'dp-1')

      expect(report.adopted).to.deep.equal(['ike-1'])
      expect(report.fellBack).to.have.deep.members([
        { phase1Id: 'ike-2', reason: 'UNSUPPORTED' },
        { phase1Id: 'ike-3', reason: 'TIMEOUT' },
        { phase1Id: 'ike-4', reason: 'no-state' },
        { phase1Id: 'ike-5', reason: 'unsealed:unknown-key' },
        { phase1Id: 'ike-6', reason: 'unsealed:authentication' },
        { phase1Id: 'ike-7', reason: 'sequence:authentication' }
      ])
      expect(report.renegotiated).to.equal(6)
      expect(report.failed).to.deep.equal([])
      expect(ike.log.renegotiated.sort()).to.deep.equal([
        'ike-2',
        'ike-3',
        'ike-4',
        'ike-5',
        'ike-6',
        'ike-7'
      ])
      const renegotiated = heir.events.find((e) => e.type === 'takeover:renegotiated')
      expect(renegotiated).to.deep.include({ adopted: 1, renegotiated: 6, failed: 0 })
      expect(heir.recorder.keys.counters()).to.include({ unknownKey: 1, authentication: 2 })

      // deletes go to the dead owner for everything but the adopted SAs
      const [message] = await store.takeMessages('dp-1')
      const adoptedIke = sa(1).phase1.ikeSaId
      expect(message!.ikeSas).to.have.length(6)
      expect(message!.ikeSas).not.to.deep.include(adoptedIke)
      expect(message!.childSas.map((c) => c.outboundSpi)).not.to.include(
        sa(1).phase2[0]!.outboundSpi
      )
      expect(message!.childSas).to.have.length(6)

      // the heir's own records: its reservation for the adopted Child SA and its sealed state
      const stored = await store.listRecords(DVIPA)
      expect(stored.sequence.map((s) => [s.id, s.reservedEnd])).to.deep.equal([['child-1', '16']])
      const warm = stored.warm.find((w) => w.phase1Id === 'ike-1')!
      expect(warm.epoch).to.equal(2)
      expect(heir.recorder.keys.open(warm).records.phase1.id).to.equal('ike-1')
    })

    it('should hand every candidate to the IKE service in one call', async () => {
      const { store, clock, dp1 } = await owner()
      for (let n = 1; n <= 3; n++) await establish(dp1, n)
      const heir = await warmNode('dp-2', store, clock, keySet(), 8n, 4)
      const ike = fakeIke(heir.esp)
      const report = await takeOver(store, heir, ike, 'dp-1')
      expect(report.adopted).to.have.members(['ike-1', 'ike-2', 'ike-3'])
      // one call: the service installs all of them before it syncs any
      expect(ike.log.adoptCalls).to.deep.equal([3])
    })

    it('should keep the reservation of an SA installed before its sync failed, and renegotiate it', async () => {
      const { store, clock, dp1 } = await owner()
      await establish(dp1, 1)
      await establish(dp1, 2) // installed, then its sync fails
      await establish(dp1, 3) // fails before anything is installed
      const heir = await warmNode('dp-2', store, clock, keySet(), 8n, 4)
      const ike = fakeIke(heir.esp, {
        failAfterInstall: new Set(['ike-2']),
        failSync: new Set(['ike-3'])
      })
      const report = await takeOver(store, heir, ike, 'dp-1')
      expect(report.adopted).to.deep.equal(['ike-1'])
      expect(report.fellBack).to.have.deep.members([
        { phase1Id: 'ike-2', reason: 'TIMEOUT' },
        { phase1Id: 'ike-3', reason: 'TIMEOUT' }
      ])
      expect(ike.log.renegotiated.sort()).to.deep.equal(['ike-2', 'ike-3'])
      // child-2 may have sent under the heir's block: a later heir must start past it
      const stored = await store.listRecords(DVIPA)
      expect(stored.sequence.map((r) => [r.id, r.reservedEnd]).sort()).to.deep.equal([
        ['child-1', '16'],
        ['child-2', '16']
      ])
      // the heir no longer renews it, nor writes it again with its own records
      expect(heir.recorder.reservation('child-2')).to.equal(undefined)
      expect(heir.recorder.records().map((r) => r.id)).to.not.include('child-2')
      // the dead owner's SAs of ike-2 get their deletes
      const [message] = await store.takeMessages('dp-1')
      expect(message!.ikeSas).to.deep.include(sa(2).phase1.ikeSaId)
    })

    it('should abort a sync still unanswered at the deadline and renegotiate it', async () => {
      const { store, clock, dp1 } = await owner()
      await establish(dp1, 1)
      const heir = await warmNode('dp-2', store, clock, keySet(), 8n, 4)
      const ike = fakeIke(heir.esp)
      // a peer that never answers the sync: the adoption ends only when aborted
      ike.adopt = (_requests, options) =>
        new Promise((_resolve, reject) =>
          options?.signal?.addEventListener('abort', () => reject(new Error('aborted')))
        )
      const report = await whileAdvancing(clock, takeOver(store, heir, ike, 'dp-1'))
      expect(report.adopted).to.deep.equal([])
      expect(report.fellBack).to.deep.equal([{ phase1Id: 'ike-1', reason: 'TIMEOUT' }])
      expect(report.renegotiated).to.equal(1)
      expect((await store.listRecords(DVIPA)).sequence).to.deep.equal([])
    })

    it('should renegotiate everything when the IKE service cannot adopt', async () => {
      const { store, clock, dp1 } = await owner()
      await establish(dp1, 1)
      const heir = await warmNode('dp-2', store, clock, keySet(), 8n, 4)
      const report = await takeOver(store, heir, fakeIke(heir.esp, { noAdopt: true }), 'dp-1')
      expect(report.adopted).to.deep.equal([])
      expect(report.fellBack).to.deep.equal([{ phase1Id: 'ike-1', reason: 'no-adopt' }])
      expect(report.renegotiated).to.equal(1)
      // no reservation is left for a Child SA that was not adopted
      expect((await store.listRecords(DVIPA)).sequence).to.deep.equal([])
    })

    it('should start the heir past the dead owner reservation, and reserve before adopting', async () => {
      const { store, clock, dp1 } = await owner(8n, 4)
      await establish(dp1, 1)
      for (let i = 0; i < 3; i++) dp1.esp.protect(packet())
      const heir = await warmNode('dp-2', store, clock, keySet(), 8n, 4)
      const ike = fakeIke(heir.esp)
      const adopt = ike.adopt!.bind(ike)
      let reservedAtAdopt: SequenceRecord[] = []
      const duringSync: string[] = []
      ike.adopt = async (requests, options) => {
        reservedAtAdopt = (await store.listRecords(DVIPA)).sequence
        const outcomes = await adopt(requests, options)
        // traffic before the sync answer: a block running low is renewed already
        for (let i = 0; i < 12; i++) {
          duringSync.push(heir.esp.protect(packet()).action)
          await settle()
        }
        return outcomes
      }
      await takeOver(store, heir, ike, 'dp-1')
      expect(duringSync).to.deep.equal(new Array(12).fill('protect'))
      expect(ike.log.adopted[0]!.sequences).to.deep.equal({
        'child-1': { outbound: 8n, inbound: 0n, limit: 16n }
      })
      expect(reservedAtAdopt.map((s) => s.reservedEnd)).to.deep.equal(['16'])
      const r = heir.esp.protect(packet())
      expect(r.action === 'protect' && espSequence(r.packet)).to.equal(21)
    })
  })

  describe('property: across owner and heirs no outbound sequence number is used twice', () => {
    it('should hold for random traffic and kill points', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.integer({ min: 0, max: 40 }), { minLength: 1, maxLength: 4 }),
          fc.integer({ min: 2, max: 16 }),
          // how often the owner lets its store writes land: every n packets, 0 for never (it is
          // killed with its reservations still in flight)
          fc.integer({ min: 0, max: 4 }),
          async (bursts, block, settleEvery) => {
            const blockSize = BigInt(block)
            const lowWater = Math.max(1, Math.floor(block / 2))
            const { store, clock, dp1 } = await owner(blockSize, lowWater)
            await establish(dp1, 1)
            const used = new Set<number>()
            let node = dp1
            for (const [i, burst] of bursts.entries()) {
              for (let p = 0; p < burst; p++) {
                const r = node.esp.protect(packet())
                if (r.action === 'protect') {
                  const seq = espSequence(r.packet)
                  if (used.has(seq)) throw new Error(`sequence ${seq} used twice`)
                  used.add(seq)
                }
                if (settleEvery > 0 && p % settleEvery === 0) await settle()
              }
              if (i === bursts.length - 1) break
              // kill: the node stops (its engine never sends again, its writes in flight are
              // lost); the next one takes over
              await node.kill()
              const heir = await warmNode(
                `dp-${i + 2}`,
                store,
                clock,
                keySet(),
                blockSize,
                lowWater
              )
              await takeOver(store, heir, fakeIke(heir.esp), node.node)
              node = heir
            }
            await node.kill()
          }
        ),
        { numRuns: 80, seed: 17 }
      )
    })

    it('should hold when the old owner goes on sending after the takeover (cut off, not dead)', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 0, max: 30 }),
          fc.integer({ min: 0, max: 30 }),
          fc.integer({ min: 2, max: 16 }),
          async (before, after, block) => {
            const blockSize = BigInt(block)
            const lowWater = Math.max(1, Math.floor(block / 2))
            const { store, clock, dp1 } = await owner(blockSize, lowWater)
            await establish(dp1, 1)
            const used = new Set<number>()
            const send = async (node: WarmNode, count: number): Promise<void> => {
              for (let p = 0; p < count; p++) {
                const r = node.esp.protect(packet())
                if (r.action === 'protect') {
                  const seq = espSequence(r.packet)
                  if (used.has(seq)) throw new Error(`sequence ${seq} used twice`)
                  used.add(seq)
                }
                await settle()
              }
            }
            await send(dp1, before)
            const heir = await warmNode('dp-2', store, clock, keySet(), blockSize, lowWater)
            await takeOver(store, heir, fakeIke(heir.esp), 'dp-1')
            // both send: the old owner's reservations are fenced out, so it stops at its end
            for (let i = 0; i < after; i++) {
              await send(dp1, 1)
              await send(heir, 1)
            }
            await dp1.kill()
            await heir.kill()
          }
        ),
        { numRuns: 60, seed: 6311 }
      )
    })
  })
})
