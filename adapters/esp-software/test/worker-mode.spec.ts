import { expect } from 'chai'
import { VirtualClock } from '@vipsec/clock'
import type { EspEvent, RandomSource } from '@vipsec/interface'
import { SoftwareEspEngine } from '../src/index.js'
import { anyFilter, inboundTwin, saParams, udpPacket } from './fixtures.js'

describe('SoftwareEspEngine', () => {
  describe('worker-thread mode', () => {
    let engine: SoftwareEspEngine
    let plain: SoftwareEspEngine

    beforeEach(async () => {
      engine = new SoftwareEspEngine({ clock: new VirtualClock() }, { workers: 2 })
      plain = new SoftwareEspEngine({ clock: new VirtualClock() })
      await engine.start()
      await plain.start()
      for (const e of [engine, plain]) {
        const params = saParams({ extendedSequenceNumbers: true })
        e.addSa(params)
        e.addSa(inboundTwin(params))
        e.installFilter(anyFilter())
        e.installFilter(anyFilter({ id: 'in', direction: 'inbound' }))
      }
    })

    afterEach(async () => {
      await engine.stop()
      await plain.stop()
    })

    describe('.protectBatch', () => {
      describe('when given a batch larger than one chunk', () => {
        it('should produce byte for byte what the inline engine produces, in order', async () => {
          const packets = Array.from({ length: 200 }, (_, i) => udpPacket(new Uint8Array(i)))
          const threaded = await engine.protectBatch(packets)
          const inline = packets.map((p) => plain.protect(p))
          expect(threaded).to.deep.equal(inline)
          expect(engine.counters().encapsulated).to.equal(200)
        })
      })

      describe('when the batch mixes policies and malformed packets', () => {
        it('should keep each result in its place', async () => {
          engine.installFilter({
            id: 'bp',
            direction: 'outbound',
            selector: { ...anyFilter().selector, destination: '10.9.0.0/16' },
            action: 'bypass',
            priority: 1
          })
          const bypass = udpPacket(undefined, '10.1.0.5', '10.9.0.1')
          const results = await engine.protectBatch([
            udpPacket(),
            new Uint8Array(3),
            bypass,
            udpPacket()
          ])
          expect(results.map((r) => r.action)).to.deep.equal([
            'protect',
            'drop',
            'bypass',
            'protect'
          ])
        })
      })

      describe('when the batch exhausts the SA', () => {
        it('should seal up to the last sequence number and drop the rest', async () => {
          const seen: EspEvent[] = []
          engine.events$.subscribe((e) => seen.push(e))
          engine.addSa(
            saParams({
              spi: 0x2002,
              keyMaterial: new Uint8Array(36).fill(5),
              initialSequence: 0xfffffff0n
            })
          )
          engine.installFilter(anyFilter({ id: 'x', spi: 0x2002, priority: 1 }))
          const results = await engine.protectBatch(Array.from({ length: 40 }, () => udpPacket()))
          expect(results.filter((r) => r.action === 'protect')).to.have.length(15)
          expect(
            results.slice(15).every((r) => r.action === 'drop' && r.reason === 'sa-expired')
          ).to.equal(true)
          const last = results[14]
          if (last.action !== 'protect') throw new Error('not protected')
          expect(last.packet.length).to.be.greaterThan(0)
          expect(Buffer.from(last.packet.subarray(4, 8)).toString('hex')).to.equal('ffffffff')
          expect(
            seen.some((e) => e.type === 'sa:removed' && e.reason === 'sequence-exhausted')
          ).to.equal(true)
        })
      })
    })

    describe('.unprotectBatch', () => {
      describe('when the batch holds fresh, replayed and forged packets', () => {
        it('should accept each fresh packet once and drop the rest with their reasons', async () => {
          const packets = Array.from({ length: 100 }, (_, i) => udpPacket(new Uint8Array(i)))
          const esp = (await engine.protectBatch(packets)).map((r) => {
            if (r.action !== 'protect') throw new Error('not protected')
            return r.packet
          })
          const forged = esp[7].slice()
          forged[40] ^= 1
          const batch = [...esp.slice(0, 50), esp[3], forged, ...esp.slice(50)]
          const results = await engine.unprotectBatch(batch)
          expect(results.filter((r) => r.action === 'accept')).to.have.length(100)
          expect(results[50]).to.deep.equal({ action: 'drop', reason: 'replay' })
          // a forged copy of a number accepted earlier in the same batch fails its ICV first
          expect(results[51]).to.deep.equal({ action: 'drop', reason: 'icv-failure' })
          results.forEach((r, i) => {
            if (r.action === 'accept') expect(r.packet).to.deep.equal(packets[i < 50 ? i : i - 2])
          })
          const again = await engine.unprotectBatch([esp[99]])
          expect(again).to.deep.equal([{ action: 'drop', reason: 'replay' }])
        })

        it('should report a forged packet that is not a replay as an ICV failure', async () => {
          const out = await engine.protectBatch([udpPacket()])
          if (out[0].action !== 'protect') throw new Error('not protected')
          const forged = out[0].packet.slice()
          forged[forged.length - 1] ^= 1
          expect(await engine.unprotectBatch([forged])).to.deep.equal([
            { action: 'drop', reason: 'icv-failure' }
          ])
        })
      })
    })

    describe('when SAs use ChaCha20-Poly1305 and AES-CBC with HMAC-SHA2-384-192', () => {
      /** The same bytes every time: both engines get the same AES-CBC IV keys. */
      const fixed: RandomSource = {
        randomBytes: (length) => Uint8Array.from({ length }, (_, i) => 0x5a ^ i),
        randomInt: () => 0
      }
      let threaded: SoftwareEspEngine
      let inline: SoftwareEspEngine

      beforeEach(async () => {
        threaded = new SoftwareEspEngine(
          { clock: new VirtualClock(), random: fixed },
          { workers: 2 }
        )
        inline = new SoftwareEspEngine({ clock: new VirtualClock(), random: fixed })
        for (const e of [threaded, inline]) {
          await e.start()
          const chacha = saParams({
            spi: 0x3003,
            algorithm: 'chacha20-poly1305',
            keyMaterial: new Uint8Array(36).fill(3)
          })
          const cbc = saParams({
            spi: 0x4004,
            algorithm: 'aes-cbc',
            integrity: 'hmac-sha2-384-192',
            keyMaterial: new Uint8Array(32 + 48).fill(4),
            extendedSequenceNumbers: true
          })
          for (const sa of [chacha, cbc]) {
            e.addSa(sa)
            e.addSa(inboundTwin(sa))
          }
          const half = { ...anyFilter().selector, destination: '10.2.0.0/24' }
          e.installFilter(anyFilter({ id: 'c', spi: 0x3003, selector: half }))
          e.installFilter(anyFilter({ id: 'b', spi: 0x4004 }))
          e.installFilter(anyFilter({ id: 'in', direction: 'inbound', spi: undefined }))
        }
      })

      afterEach(async () => {
        await threaded.stop()
        await inline.stop()
      })

      it('should seal byte for byte what the inline engine seals, and open it again', async () => {
        const packets = Array.from({ length: 150 }, (_, i) =>
          udpPacket(new Uint8Array(i * 7), '10.1.0.5', i % 2 === 0 ? '10.2.0.7' : '10.2.1.7')
        )
        const sealed = await threaded.protectBatch(packets)
        expect(sealed).to.deep.equal(packets.map((p) => inline.protect(p)))
        expect(new Set(sealed.map((r) => (r.action === 'protect' ? r.spi : 0)))).to.deep.equal(
          new Set([0x3003, 0x4004])
        )
        const esp = sealed.map((r) => (r.action === 'protect' ? r.packet : new Uint8Array()))
        const forged = esp[1].slice()
        forged[30] ^= 1
        const opened = await threaded.unprotectBatch([...esp, forged])
        opened.slice(0, 150).forEach((r, i) => {
          expect(r.action, `packet ${i}`).to.equal('accept')
          if (r.action === 'accept') expect(r.packet).to.deep.equal(packets[i])
        })
        // a forged copy of a number accepted earlier in the same batch fails its ICV first
        expect(opened[150]).to.deep.equal({ action: 'drop', reason: 'icv-failure' })
        expect(await threaded.unprotectBatch([esp[1]])).to.deep.equal([
          { action: 'drop', reason: 'replay' }
        ])
        const fresh = await inline.protectBatch([packets[1]])
        const late = fresh[0].action === 'protect' ? fresh[0].packet.slice() : new Uint8Array()
        late[late.length - 1] ^= 1
        expect(await threaded.unprotectBatch([late])).to.deep.equal([
          { action: 'drop', reason: 'icv-failure' }
        ])
      })
    })

    describe('when no workers are configured', () => {
      it('should run batches inline', async () => {
        const results = await plain.protectBatch([udpPacket()])
        expect(results[0].action).to.equal('protect')
        if (results[0].action !== 'protect') return
        const back = await plain.unprotectBatch([results[0].packet])
        expect(back[0].action).to.equal('accept')
      })
    })
  })
})
