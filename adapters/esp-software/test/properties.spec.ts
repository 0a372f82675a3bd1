import { expect } from 'chai'
import fc from 'fast-check'
import { VirtualClock } from '@vipsec/clock'
import {
  IpProtocol,
  type EspAlgorithm,
  type EspIntegrityAlgorithm,
  type EspSaParams
} from '@vipsec/interface'
import { softwareEspEngine, type SoftwareEspEngine } from '../src/index.js'
import { buildIpPacket, buildTcp, buildUdp, TcpFlags } from '@vipsec/wire'
import { anyFilter, inboundTwin, keyMaterial, saParams } from './fixtures.js'

const RUNS = 200

const ipv4 = fc
  .tuple(
    fc.integer({ min: 1, max: 223 }),
    fc.nat(255),
    fc.nat(255),
    fc.integer({ min: 1, max: 254 })
  )
  .map((a) => a.join('.'))
const ipv6 = fc
  .array(fc.nat(0xffff), { minLength: 8, maxLength: 8 })
  .map((g) => ['2001', 'db8', ...g.slice(2).map((n) => n.toString(16))].join(':'))

/** A random UDP or TCP packet over IPv4 or IPv6. */
const innerPacket = fc
  .record({
    v6: fc.boolean(),
    a4: ipv4,
    b4: ipv4,
    a6: ipv6,
    b6: ipv6,
    tcp: fc.boolean(),
    sourcePort: fc.nat(0xffff),
    destinationPort: fc.nat(0xffff),
    payload: fc.uint8Array({ maxLength: 1500 })
  })
  .map((r) => {
    const source = r.v6 ? r.a6 : r.a4
    const destination = r.v6 ? r.b6 : r.b4
    const segment = r.tcp
      ? buildTcp({
          source,
          destination,
          sourcePort: r.sourcePort,
          destinationPort: r.destinationPort,
          sequence: 1,
          acknowledgement: 2,
          flags: TcpFlags.ACK,
          payload: r.payload
        })
      : buildUdp({
          source,
          destination,
          sourcePort: r.sourcePort,
          destinationPort: r.destinationPort,
          payload: r.payload
        })
    return buildIpPacket({
      source,
      destination,
      protocol: r.tcp ? IpProtocol.TCP : IpProtocol.UDP,
      payload: segment
    })
  })

/** Every transform with a key length for it (AES-CBC: AES key and HMAC key together). */
const TRANSFORMS: {
  algorithm: EspAlgorithm
  integrity?: EspIntegrityAlgorithm
  keyLength: number
}[] = [
  { algorithm: 'aes-gcm-16', keyLength: 20 },
  { algorithm: 'aes-gcm-16', keyLength: 36 },
  { algorithm: 'null-aes-gmac', keyLength: 20 },
  { algorithm: 'null-aes-gmac', keyLength: 36 },
  { algorithm: 'chacha20-poly1305', keyLength: 36 },
  { algorithm: 'aes-cbc', integrity: 'hmac-sha2-256-128', keyLength: 16 + 32 },
  { algorithm: 'aes-cbc', integrity: 'hmac-sha2-384-192', keyLength: 24 + 48 },
  { algorithm: 'aes-cbc', integrity: 'hmac-sha2-512-256', keyLength: 32 + 64 },
  { algorithm: 'aes-cbc', integrity: 'hmac-sha1-96', keyLength: 32 + 20 }
]

const saShape = fc.record({
  transform: fc.constantFrom(...TRANSFORMS),
  esn: fc.boolean(),
  mode: fc.constantFrom('tunnel' as const, 'transport' as const),
  start: fc.bigInt({ min: 0n, max: 0xfffffff0n })
})

/** A started engine with an outbound SA, its inbound twin, and catch-all filters for both families. */
async function loopbackEngine(shape: Parameters<typeof makeParams>[0]): Promise<SoftwareEspEngine> {
  const engine = softwareEspEngine({ clock: new VirtualClock() })
  await engine.start()
  const params = makeParams(shape)
  engine.addSa(params)
  engine.addSa({ ...inboundTwin(params), initialSequence: params.initialSequence })
  for (const [family, any] of [
    ['4', '0.0.0.0/0'],
    ['6', '::/0']
  ]) {
    const selector = { ...anyFilter().selector, source: any, destination: any }
    engine.installFilter(anyFilter({ id: `o${family}`, selector }))
    engine.installFilter(anyFilter({ id: `i${family}`, direction: 'inbound', selector }))
  }
  return engine
}

function makeParams(shape: {
  transform: (typeof TRANSFORMS)[number]
  esn: boolean
  mode: 'tunnel' | 'transport'
  start: bigint
}): EspSaParams {
  return saParams({
    algorithm: shape.transform.algorithm,
    ...(shape.transform.integrity !== undefined ? { integrity: shape.transform.integrity } : {}),
    keyMaterial: keyMaterial(shape.transform.keyLength, shape.transform.keyLength),
    extendedSequenceNumbers: shape.esn,
    mode: shape.mode,
    initialSequence: shape.start,
    replayWindow: 4096
  })
}

describe('ESP properties', () => {
  describe('decapsulate(encapsulate(p))', () => {
    it('should give back p for any UDP or TCP packet, IPv4 or IPv6, in tunnel mode', async () => {
      await fc.assert(
        fc.asyncProperty(saShape, innerPacket, async (shape, packet) => {
          const engine = await loopbackEngine({ ...shape, mode: 'tunnel' })
          const out = engine.protect(packet)
          expect(out.action).to.equal('protect')
          if (out.action !== 'protect') return
          const back = engine.unprotect(out.packet)
          expect(back.action).to.equal('accept')
          if (back.action === 'accept') expect(back.packet).to.deep.equal(packet)
          await engine.stop()
        }),
        { numRuns: RUNS }
      )
    })

    it('should give back p in transport mode when the SA knows the hosts', async () => {
      await fc.assert(
        fc.asyncProperty(
          saShape,
          fc.uint8Array({ maxLength: 600 }),
          fc.nat(0xffff),
          async (shape, data, port) => {
            const engine = await loopbackEngine({ ...shape, mode: 'transport' })
            // transport mode: the packet travels between the SA's own hosts
            const source = '192.0.2.1'
            const destination = '198.51.100.2'
            const packet = buildIpPacket({
              source,
              destination,
              protocol: IpProtocol.UDP,
              payload: buildUdp({
                source,
                destination,
                sourcePort: port,
                destinationPort: 4500,
                payload: data
              })
            })
            const out = engine.protect(packet)
            if (out.action !== 'protect') expect.fail(`protect gave ${JSON.stringify(out)}`)
            const back = engine.unprotect(out.packet)
            if (back.action !== 'accept') expect.fail(`unprotect gave ${JSON.stringify(back)}`)
            expect(back.packet).to.deep.equal(packet)
            await engine.stop()
          }
        ),
        { numRuns: RUNS / 2 }
      )
    })
  })

  describe('a single-bit flip', () => {
    it('should be an ICV failure after the sequence number, and never accepted anywhere after the SPI', async () => {
      await fc.assert(
        fc.asyncProperty(saShape, innerPacket, fc.nat(), async (shape, packet, where) => {
          const engine = await loopbackEngine({ ...shape, mode: 'tunnel' })
          const out = engine.protect(packet)
          if (out.action !== 'protect') return expect.fail('not protected')
          const esp = out.packet.slice()
          const bit = 32 + (where % ((esp.length - 4) * 8))
          esp[bit >> 3] ^= 0x80 >> (bit & 7)
          const result = engine.unprotect(esp)
          if (bit >= 64) {
            // IV, ciphertext or ICV
            expect(result).to.deep.equal({ action: 'drop', reason: 'icv-failure' })
          } else if (!shape.esn) {
            // the sequence number: a number the window has taken as seen is refused before the ICV
            const flipped = BigInt(new DataView(esp.buffer, esp.byteOffset).getUint32(4))
            const expected =
              flipped > shape.start
                ? 'icv-failure'
                : shape.start - flipped >= 4096n
                  ? 'outside-window'
                  : 'replay'
            expect(result).to.deep.equal({ action: 'drop', reason: expected })
          } else {
            expect(result.action).to.equal('drop')
          }
          expect(engine.counters().decapsulated).to.equal(0)
          await engine.stop()
        }),
        { numRuns: RUNS }
      )
    })

    it('should make a flip in the SPI an unknown SPI', async () => {
      await fc.assert(
        fc.asyncProperty(fc.nat(31), async (bit) => {
          const engine = await loopbackEngine({
            transform: TRANSFORMS[1],
            esn: false,
            mode: 'tunnel',
            start: 0n
          })
          const out = engine.protect(
            buildIpPacket({
              source: '10.0.0.1',
              destination: '10.0.0.2',
              protocol: 17,
              payload: new Uint8Array(8)
            })
          )
          if (out.action !== 'protect') return expect.fail('not protected')
          const esp = out.packet.slice()
          esp[bit >> 3] ^= 0x80 >> (bit & 7)
          expect(engine.unprotect(esp)).to.deep.equal({ action: 'drop', reason: 'unknown-spi' })
          await engine.stop()
        }),
        { numRuns: 32 }
      )
    })
  })

  describe('anti-replay', () => {
    it('should accept each sequence number once and only inside the window, in any arrival order', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 1, max: 64 }),
          fc.boolean(),
          fc.array(fc.integer({ min: 0, max: 199 }), { minLength: 1, maxLength: 400 }),
          async (window, esn, arrivals) => {
            const engine = softwareEspEngine({ clock: new VirtualClock() })
            await engine.start()
            const params = saParams({
              extendedSequenceNumbers: esn,
              initialSequence: esn ? 0xffffff80n : 0n
            })
            engine.addSa(params)
            engine.addSa({
              ...inboundTwin(params),
              replayWindow: window,
              initialSequence: params.initialSequence
            })
            engine.installFilter(anyFilter())
            engine.installFilter(anyFilter({ id: 'in', direction: 'inbound' }))
            const packet = buildIpPacket({
              source: '10.0.0.1',
              destination: '10.0.0.2',
              protocol: 17,
              payload: new Uint8Array(8)
            })
            const sent = Array.from({ length: 200 }, () => {
              const out = engine.protect(packet)
              if (out.action !== 'protect') throw new Error('not protected')
              return out.packet
            })
            // the model: a number is accepted if never accepted before and newer than top - window
            const seen = new Set<number>()
            let top = 0
            for (const i of arrivals) {
              const seq = i + 1
              const result = engine.unprotect(sent[i])
              let expected: string
              if (seq > top) expected = 'accept'
              else if (top - seq >= window) expected = 'outside-window'
              else if (seen.has(seq)) expected = 'replay'
              else expected = 'accept'
              expect(result.action === 'accept' ? 'accept' : result.reason).to.equal(expected)
              if (expected === 'accept') {
                seen.add(seq)
                top = Math.max(top, seq)
              }
            }
            await engine.stop()
          }
        ),
        { numRuns: RUNS / 2 }
      )
    })
  })

  describe('arbitrary input', () => {
    it('should never throw from the data path, only drop and count', async () => {
      const engine = await loopbackEngine({
        transform: TRANSFORMS[1],
        esn: true,
        mode: 'tunnel',
        start: 0n
      })
      const valid = engine.protect(
        buildIpPacket({
          source: '10.0.0.1',
          destination: '10.0.0.2',
          protocol: 17,
          payload: new Uint8Array(8)
        })
      )
      if (valid.action !== 'protect') return expect.fail('not protected')
      // random bytes, and random mutations of a valid IP packet and of a valid ESP packet
      const input = fc.oneof(
        fc.uint8Array({ maxLength: 200 }),
        fc.tuple(fc.nat(), fc.nat(255), fc.nat(120)).map(([at, value, cut]) => {
          const p = buildIpPacket({
            source: '10.0.0.1',
            destination: '10.0.0.2',
            protocol: 6,
            payload: new Uint8Array(40)
          })
          p[at % p.length] = value
          return p.subarray(0, p.length - (cut % p.length))
        }),
        fc.tuple(fc.nat(), fc.nat(255)).map(([at, value]) => {
          const p = valid.packet.slice()
          p[at % p.length] = value
          return p
        })
      )
      await fc.assert(
        fc.property(input, (bytes) => {
          const before = engine.counters()
          const results = [
            engine.protect(bytes),
            engine.unprotect(bytes),
            engine.unprotectUdp(bytes),
            engine.checkInbound(bytes)
          ]
          const after = engine.counters()
          const drops = results.filter((r) => r.action === 'drop').length
          const counted = (c: typeof after): number =>
            Object.values(c.dropped).reduce((a, b) => a + b, 0)
          expect(counted(after) - counted(before)).to.equal(drops)
        }),
        { numRuns: RUNS * 5 }
      )
      await engine.stop()
    })
  })

  describe('IVs', () => {
    for (const variant of [
      { name: 'AES-GCM', transform: TRANSFORMS[1], ivLength: 8 },
      { name: 'ChaCha20-Poly1305', transform: TRANSFORMS[4], ivLength: 8 },
      { name: 'AES-CBC', transform: TRANSFORMS[5], ivLength: 16 }
    ]) {
      const transformOf = (seed: number): Partial<EspSaParams> => ({
        algorithm: variant.transform.algorithm,
        ...(variant.transform.integrity !== undefined
          ? { integrity: variant.transform.integrity }
          : {}),
        keyMaterial: keyMaterial(seed, variant.transform.keyLength)
      })
      it(`should never repeat under one key, whatever SAs are removed and reinstalled (${variant.name})`, async () => {
        const op = fc.oneof(
          fc.record({
            kind: fc.constant('send' as const),
            key: fc.nat(2),
            count: fc.integer({ min: 1, max: 5 })
          }),
          fc.record({
            kind: fc.constant('reinstall' as const),
            key: fc.nat(2),
            start: fc.bigInt({ min: 0n, max: 30n })
          })
        )
        await fc.assert(
          fc.asyncProperty(fc.array(op, { maxLength: 60 }), async (ops) => {
            const engine = softwareEspEngine({ clock: new VirtualClock() })
            await engine.start()
            const spiOf = [0x1001, 0x2002, 0x3003]
            let nextSpi = 0x4000
            const ivs = [new Set<string>(), new Set<string>(), new Set<string>()]
            let sent = 0
            spiOf.forEach((spi, k) => {
              engine.addSa(saParams({ spi, ...transformOf(k * 40) }))
              engine.installFilter(
                anyFilter({
                  id: `k${k}`,
                  spi,
                  selector: { ...anyFilter().selector, destination: `10.0.${k}.0/24` }
                })
              )
            })
            for (const o of ops) {
              if (o.kind === 'send') {
                for (let i = 0; i < o.count; i++) {
                  const packet = buildIpPacket({
                    source: '10.9.0.1',
                    destination: `10.0.${o.key}.1`,
                    protocol: 17,
                    payload: new Uint8Array(8)
                  })
                  const out = engine.protect(packet)
                  if (out.action !== 'protect') continue
                  const iv = Buffer.from(out.packet.subarray(8, 8 + variant.ivLength)).toString(
                    'hex'
                  )
                  expect(ivs[o.key].has(iv), `IV ${iv} repeated under key ${o.key}`).to.equal(false)
                  ivs[o.key].add(iv)
                  sent++
                }
              } else {
                engine.removeSa(spiOf[o.key], 'outbound')
                const spi = nextSpi++
                try {
                  engine.addSa(
                    saParams({ spi, ...transformOf(o.key * 40), initialSequence: o.start })
                  )
                  spiOf[o.key] = spi
                } catch (err) {
                  expect(err).to.have.property('argument', 'params.initialSequence')
                  continue
                }
                engine.installFilter(
                  anyFilter({
                    id: `k${o.key}`,
                    spi,
                    selector: { ...anyFilter().selector, destination: `10.0.${o.key}.0/24` }
                  })
                )
              }
            }
            expect(ivs.reduce((n, s) => n + s.size, 0)).to.equal(sent)
            await engine.stop()
          }),
          { numRuns: RUNS }
        )
      })
    }
  })
})
