import { expect } from 'chai'
import { SoftwareEspEngine, buildIpPacket, buildUdp } from '@vipsec/esp-software'
import { SeededRandomSource } from '@vipsec/random'
import { IkeV2Service } from '../src/index.js'
import { A_ID, B_ID, makePair } from './helpers/pair.js'

describe('IkeV2Service', () => {
  describe('.renegotiate', () => {
    describe('when a backup node takes the DVIPA over from a dead owner', () => {
      it('should renegotiate every SA from the records, leave the peer one IKE SA per identity, and carry traffic', async () => {
        const p = makePair()
        await p.start()
        const first = await p.drive(p.a.connect(p.request()))
        await p.settle()
        const records = p.a.list()
        expect(records).to.have.length(1)
        // the owner dies without a word: no Delete reaches the peer
        p.net.filter = () => 'drop'
        await p.a.stop()
        p.net.filter = () => 'deliver'
        // the backup binds the DVIPA (the virtual network now delivers 10.0.0.1 to it)
        const cEngine = new SoftwareEspEngine({ clock: p.clock })
        const c = new IkeV2Service(
          {
            clock: p.clock,
            random: new SeededRandomSource({ seed: 'backup' }),
            espEngine: cEngine,
            udp500: p.net.bind('10.0.0.1', 500),
            udp4500: p.net.bind('10.0.0.1', 4500)
          },
          { psks: [{ remote: B_ID, secret: 'shared secret' }] }
        )
        await cEngine.start()
        await c.start()
        const [outcome] = await p.drive(c.renegotiate(records))
        if (outcome.status !== 'renegotiated') throw new Error(outcome.message)
        await p.settle()
        expect(outcome.current.phase1.localIdentity).to.deep.equal(A_ID)
        expect(outcome.current.phase2[0].selectors).to.deep.equal(first.phase2[0].selectors)
        const b = p.b.list()
        expect(b.map((x) => x.phase1.ikeSaId)).to.deep.equal([outcome.current.phase1.ikeSaId])
        expect(
          p.bEvents.some((e) => e.type === 'ike:deleted' && e.reason === 'initial-contact')
        ).to.equal(true)
        // the old Child SA is gone from the peer's engine: only the new pair is installed
        expect(
          p.bEngine
            .listSas()
            .map((s) => s.spi)
            .sort()
        ).to.deep.equal(
          [parseInt(b[0].phase2[0].inboundSpi, 16), parseInt(b[0].phase2[0].outboundSpi, 16)].sort()
        )
        const inner = buildIpPacket({
          source: '172.16.1.5',
          destination: '172.16.2.7',
          protocol: 17,
          payload: buildUdp({
            source: '172.16.1.5',
            destination: '172.16.2.7',
            sourcePort: 1,
            destinationPort: 2,
            payload: new Uint8Array(4)
          })
        })
        const out = cEngine.protect(inner)
        expect(out.action).to.equal('protect')
        if (out.action === 'protect')
          expect(p.bEngine.unprotect(out.packet).action).to.equal('accept')
        await c.stop()
        await cEngine.stop()
        await p.stop()
      })
    })
  })

  describe('liveness and lifetimes from the phase 1 policy', () => {
    it('should probe an idle peer at the liveness interval and delete the IKE SA once it is dead', async () => {
      const p = makePair()
      await p.start()
      const pol = { ...p.request().phase1, liveness: { intervalMs: 10_000, timeoutMs: 30_000 } }
      await p.drive(p.a.connect(p.request({ phase1: pol })))
      await p.clock.advance(25_000)
      expect(p.a.list()).to.have.length(1)
      const probes = p.a.counters().sent
      expect(probes).to.be.greaterThan(2)
      p.net.filter = () => 'drop'
      await p.clock.advance(120_000)
      expect(p.a.list()).to.have.length(0)
      expect(p.aEvents.some((e) => e.type === 'ike:deleted' && e.reason === 'dead-peer')).to.equal(
        true
      )
      await p.stop()
    })

    it('should re-authenticate at the reauth time: new IKE and Child SAs, the old ones deleted', async () => {
      const p = makePair()
      await p.start()
      const pol = { ...p.request().phase1, lifetime: { rekeySeconds: 0, reauthSeconds: 7200 } }
      const r = await p.drive(p.a.connect(p.request({ phase1: pol })))
      await p.clock.advance(7_200_000 + 10_000)
      await p.settle()
      const a = p.a.list()
      const b = p.b.list()
      expect(a).to.have.length(1)
      expect(a[0].phase1.ikeSaId).to.not.deep.equal(r.phase1.ikeSaId)
      expect(b.map((x) => x.phase1.ikeSaId)).to.deep.equal([a[0].phase1.ikeSaId])
      expect(a[0].phase2).to.have.length(1)
      expect(a[0].phase2[0].id).to.not.equal(r.phase2[0].id)
      expect(p.aEngine.listSas()).to.have.length(2)
      expect(p.bEngine.listSas()).to.have.length(2)
      await p.stop()
    })

    it('should rekey the IKE SA when its rekey time comes', async () => {
      const p = makePair()
      await p.start()
      const pol = { ...p.request().phase1, lifetime: { rekeySeconds: 3600, reauthSeconds: 0 } }
      const r = await p.drive(p.a.connect(p.request({ phase1: pol })))
      await p.clock.advance(3_600_000 + 10_000)
      await p.settle()
      const a = p.a.list()
      expect(a).to.have.length(1)
      expect(a[0].phase1.ikeSaId).to.not.deep.equal(r.phase1.ikeSaId)
      expect(p.b.list().map((x) => x.phase1.ikeSaId)).to.deep.equal([a[0].phase1.ikeSaId])
      expect(a[0].phase2).to.have.length(1)
      // and again, from the new SA's own timer
      await p.clock.advance(3_600_000 + 10_000)
      await p.settle()
      const again = p.a.list()
      expect(again).to.have.length(1)
      expect(again[0].phase1.ikeSaId).to.not.deep.equal(a[0].phase1.ikeSaId)
      expect(again[0].phase2).to.have.length(1)
      await p.stop()
    })
  })
})
