import { expect } from 'chai'
import {
  ESP_DROP_REASONS,
  type EspEngine,
  type EspEvent,
  type EspSaParams,
  type InboundResult,
  type OutboundResult
} from '@vipsec/interface'
import type { TestSetup } from '../test-setup.js'
import {
  ANY_IPV4,
  NO_LIFETIME_LIMITS,
  inboundOf,
  sampleFilter,
  sampleKeyMaterial,
  sampleOutboundSa as sampleGcmSa,
  sampleUdpPacket,
  type EspSuiteTransform
} from './fixtures.js'

export * from './fixtures.js'

/** Options of {@link espEngineSuite}. */
export interface EspEngineSuiteOptions extends TestSetup<EspEngine> {
  /**
   * Moves the time of the clock the engine was made with forward by `ms` (a virtual clock's
   * `advance`). Optional: without it the tests of time lifetimes are not declared.
   *
   * @param engine - the engine under test
   * @param ms - how far
   */
  advanceTime?(engine: EspEngine, ms: number): Promise<void>
  /**
   * The transform of every SA the suite installs (one of `ESP_SUITE_TRANSFORMS`, or the engine's
   * own). Default: AES-256-GCM, with the AES-128-GCM and AES-GMAC cases that only it runs.
   */
  transform?: EspSuiteTransform
}

function thrown(fn: () => unknown): Error & Record<string, unknown> {
  try {
    fn()
  } catch (err) {
    return err as Error & Record<string, unknown>
  }
  throw new Error('expected a throw, but the call returned')
}

function protectedPacket(result: OutboundResult): Uint8Array {
  if (result.action !== 'protect') {
    throw new Error(`expected the packet to be protected, got ${JSON.stringify(result)}`)
  }
  return result.packet
}

function acceptedPacket(result: InboundResult): Uint8Array {
  if (result.action !== 'accept') {
    throw new Error(`expected the packet to be accepted, got ${JSON.stringify(result)}`)
  }
  return result.packet
}

/** A deterministic byte generator (xorshift32), so that failures reproduce. */
function noise(seed: number): (length: number) => Uint8Array {
  let x = seed >>> 0 || 1
  return (length) =>
    Uint8Array.from({ length }, () => {
      x ^= x << 13
      x >>>= 0
      x ^= x >>> 17
      x ^= x << 5
      x >>>= 0
      return x & 0xff
    })
}

/**
 * Declares the mocha tests every {@link EspEngine} must pass: lifecycle and events, SA install
 * and removal (duplicate SPI, argument checks), the protect/unprotect round trip and its wire
 * format (SPI, sequence numbers from 1, IVs never repeated), dynamic filters in priority order
 * with duplicate removal, bypass and discard, anti-replay, ICV failures, policy mismatches,
 * ESP-in-UDP demultiplexing, lifetimes, and malformed input that is counted and never thrown.
 *
 * The suite installs an outbound SA and the matching inbound SA (same SPI and key) in one engine,
 * so that the engine decrypts what it encrypted. Call it inside a `describe` of the adapter's test.
 *
 * @param options - how to make and dispose of an engine
 */
export function espEngineSuite(options: EspEngineSuiteOptions): void {
  const transform = options.transform
  const ivLength = transform?.ivLength ?? 8
  const icvLength = transform?.icvLength ?? 16
  const blockSize = transform?.blockSize ?? 4
  const keyMaterialOf = (seed: number): Uint8Array =>
    transform != null ? transform.keyMaterial(seed) : sampleKeyMaterial(seed)
  /** An outbound SA of the suite's transform. */
  const sampleOutboundSa = (overrides: Partial<EspSaParams> = {}): EspSaParams =>
    sampleGcmSa(
      transform != null
        ? {
            algorithm: transform.algorithm,
            ...(transform.integrity !== undefined ? { integrity: transform.integrity } : {}),
            keyMaterial: transform.keyMaterial(1),
            ...overrides
          }
        : overrides
    )
  const title =
    transform != null ? `EspEngine compliance (${transform.name})` : 'EspEngine compliance'
  describe(title, function () {
    this.timeout(30_000)
    let engine: EspEngine
    let events: EspEvent[]

    beforeEach(async () => {
      engine = await options.setup()
      await engine.start()
      events = []
      engine.events$.subscribe((e) => events.push(e))
    })

    afterEach(async () => {
      await engine.stop()
      await options.teardown?.(engine)
    })

    /** Installs an outbound SA, its inbound twin and protect filters both ways. */
    function loopback(overrides: Partial<EspSaParams> = {}): EspSaParams {
      const outbound = sampleOutboundSa(overrides)
      engine.addSa(outbound)
      engine.addSa(inboundOf(outbound))
      engine.installFilter(sampleFilter({ id: 'out', spi: outbound.spi }))
      engine.installFilter(sampleFilter({ id: 'in', direction: 'inbound', spi: outbound.spi }))
      return outbound
    }

    describe('lifecycle', () => {
      it('should report started after start and not after stop', async () => {
        expect(engine.isStarted()).to.equal(true)
        await engine.stop()
        expect(engine.isStarted()).to.equal(false)
      })

      it('should treat a second start and a second stop as no-ops', async () => {
        await engine.start()
        expect(engine.isStarted()).to.equal(true)
        await engine.stop()
        await engine.stop()
        expect(engine.isStarted()).to.equal(false)
      })

      it('should complete events$ on stop', async () => {
        let completed = false
        engine.events$.subscribe({ complete: () => (completed = true) })
        await engine.stop()
        expect(completed).to.equal(true)
      })

      it('should throw NotStartedError from addSa and installFilter while stopped', async () => {
        await engine.stop()
        expect(thrown(() => engine.addSa(sampleOutboundSa())).name).to.equal('NotStartedError')
        expect(thrown(() => engine.installFilter(sampleFilter())).name).to.equal('NotStartedError')
      })

      it('should hold no SAs and no filters after stop and start', async () => {
        loopback()
        await engine.stop()
        await engine.start()
        expect(engine.listSas()).to.deep.equal([])
        expect(engine.listFilters()).to.deep.equal([])
      })
    })

    describe('SAs', () => {
      it('should install an SA, list it and emit sa:installed', () => {
        engine.addSa(sampleOutboundSa({ tag: 'child-1' }))
        expect(events).to.deep.equal([
          { type: 'sa:installed', spi: 0xc001, direction: 'outbound', tag: 'child-1' }
        ])
        expect(engine.listSas()).to.have.length(1)
        expect(engine.listSas()[0]).to.include({ spi: 0xc001, direction: 'outbound' })
      })

      it('should throw DuplicateSaError for a second SA with the same SPI and direction', () => {
        engine.addSa(sampleOutboundSa())
        const err = thrown(() => engine.addSa(sampleOutboundSa({ keyMaterial: keyMaterialOf(77) })))
        expect(err.name).to.equal('DuplicateSaError')
        engine.addSa(inboundOf(sampleOutboundSa()))
        expect(engine.listSas()).to.have.length(2)
      })

      it('should throw InvalidParametersError naming the argument for a reserved SPI or bad key', () => {
        for (const [argument, overrides] of [
          ['params.spi', { spi: 0 }],
          ['params.spi', { spi: 255 }],
          ['params.keyMaterial', { keyMaterial: new Uint8Array(32) }]
        ] as const) {
          const err = thrown(() => engine.addSa(sampleOutboundSa(overrides)))
          expect(err.name).to.equal('InvalidParametersError')
          expect(err.argument).to.equal(argument)
        }
        expect(engine.listSas()).to.deep.equal([])
      })

      it('should remove an SA once, emitting sa:removed with reason deleted', () => {
        engine.addSa(sampleOutboundSa())
        expect(engine.removeSa(0xc001, 'outbound')).to.equal(true)
        expect(engine.removeSa(0xc001, 'outbound')).to.equal(false)
        expect(events.filter((e) => e.type === 'sa:removed')).to.deep.equal([
          { type: 'sa:removed', spi: 0xc001, direction: 'outbound', reason: 'deleted' }
        ])
        expect(engine.protect(sampleUdpPacket()).action).to.equal('drop')
      })
    })

    describe('protect and unprotect', () => {
      const keys =
        transform != null
          ? [{ label: transform.name, keyMaterial: transform.keyMaterial(16) }]
          : [16, 32].map((keyBytes) => ({
              label: `AES-${keyBytes * 8}-GCM`,
              keyMaterial: sampleKeyMaterial(keyBytes, keyBytes)
            }))
      for (const { label, keyMaterial } of keys) {
        for (const esn of [false, true]) {
          it(`should give back the packet (${label}, ${esn ? '64' : '32'}-bit sequence numbers)`, () => {
            loopback({ keyMaterial, extendedSequenceNumbers: esn })
            const packet = sampleUdpPacket()
            const out = engine.protect(packet)
            expect(out).to.deep.include({
              action: 'protect',
              spi: 0xc001,
              udp: false,
              to: { address: '198.51.100.2', port: 0 }
            })
            const back = engine.unprotect(protectedPacket(out))
            expect(back).to.include({ action: 'accept', spi: 0xc001, nextHeader: 4 })
            expect(acceptedPacket(back)).to.deep.equal(packet)
            expect(engine.counters()).to.include({ encapsulated: 1, decapsulated: 1 })
          })
        }
      }

      it('should write the SPI, count sequence numbers from 1 and never repeat an IV', () => {
        loopback()
        const ivs = new Set<string>()
        for (let seq = 1; seq <= 50; seq++) {
          const esp = protectedPacket(engine.protect(sampleUdpPacket()))
          const view = new DataView(esp.buffer, esp.byteOffset, esp.byteLength)
          expect(view.getUint32(0)).to.equal(0xc001)
          expect(view.getUint32(4)).to.equal(seq)
          ivs.add(Array.from(esp.subarray(8, 8 + ivLength)).join(','))
          // header, IV, payload, padding to the block with the trailer, ICV
          expect((esp.length - 8 - ivLength - icvLength) % blockSize).to.equal(0)
          expect(esp.length).to.be.at.least(8 + ivLength + sampleUdpPacket().length + 2 + icvLength)
        }
        expect(ivs.size).to.equal(50)
      })

      it('should carry extended sequence numbers across 2^32 with the high half only in the ICV', () => {
        const outbound = sampleOutboundSa({
          extendedSequenceNumbers: true,
          initialSequence: 0xfffffffen
        })
        engine.addSa(outbound)
        engine.addSa({ ...inboundOf(outbound), initialSequence: 0xfffffffdn })
        engine.installFilter(sampleFilter())
        engine.installFilter(sampleFilter({ id: 'in', direction: 'inbound' }))
        const packet = sampleUdpPacket()
        const lows: number[] = []
        for (let i = 0; i < 4; i++) {
          const esp = protectedPacket(engine.protect(packet))
          lows.push(new DataView(esp.buffer, esp.byteOffset).getUint32(4))
          expect(acceptedPacket(engine.unprotect(esp))).to.deep.equal(packet)
        }
        expect(lows).to.deep.equal([0xffffffff, 0, 1, 2])
      })

      it('should address a UDP-encapsulated SA to the peer NAT-T endpoint', () => {
        loopback({
          udpEncapsulation: {
            local: { address: '192.0.2.1', port: 4500 },
            remote: { address: '203.0.113.9', port: 31000 }
          }
        })
        const out = engine.protect(sampleUdpPacket())
        expect(out).to.deep.include({ udp: true, to: { address: '203.0.113.9', port: 31000 } })
        expect(engine.unprotectUdp(protectedPacket(out)).action).to.equal('accept')
      })

      if (transform == null) {
        it('should carry the packet in the clear but authenticated with null-aes-gmac', () => {
          loopback({ algorithm: 'null-aes-gmac', keyMaterial: sampleKeyMaterial(9, 16) })
          const packet = sampleUdpPacket()
          const esp = protectedPacket(engine.protect(packet))
          expect(Array.from(esp.subarray(16, 16 + packet.length))).to.deep.equal(Array.from(packet))
          expect(acceptedPacket(engine.unprotect(esp))).to.deep.equal(packet)
        })
      }
    })

    describe('dynamic filters', () => {
      it('should emit filter:installed and list the filter', () => {
        engine.installFilter(sampleFilter())
        expect(events.map((e) => e.type)).to.deep.equal(['filter:installed'])
        expect(engine.listFilters().map((f) => f.id)).to.deep.equal(['protect-all'])
      })

      it('should remove an active duplicate and emit filter:duplicate-removed', () => {
        engine.installFilter(sampleFilter({ id: 'old' }))
        engine.installFilter(sampleFilter({ id: 'inbound', direction: 'inbound' }))
        const removed = engine.installFilter(sampleFilter({ id: 'new', spi: 0xc002 }))
        expect(removed).to.deep.equal(['old'])
        expect(events.filter((e) => e.type === 'filter:duplicate-removed')).to.deep.equal([
          { type: 'filter:duplicate-removed', removed: 'old', keptId: 'new' }
        ])
        expect(
          engine
            .listFilters()
            .map((f) => f.id)
            .sort()
        ).to.deep.equal(['inbound', 'new'])
      })

      it('should keep filters whose selectors differ', () => {
        engine.installFilter(sampleFilter({ id: 'a' }))
        const removed = engine.installFilter(
          sampleFilter({ id: 'b', selector: { ...ANY_IPV4, destinationPorts: [53, 53] } })
        )
        expect(removed).to.deep.equal([])
        expect(engine.listFilters()).to.have.length(2)
      })

      it('should throw InvalidParametersError for a malformed selector', () => {
        const err = thrown(() =>
          engine.installFilter(sampleFilter({ selector: { ...ANY_IPV4, source: 'nowhere' } }))
        )
        expect(err.name).to.equal('InvalidParametersError')
        expect(engine.listFilters()).to.deep.equal([])
      })

      it('should match by priority: bypass and discard before protect', () => {
        loopback()
        const packet = sampleUdpPacket()
        const dns = { ...ANY_IPV4, protocol: 17, destinationPorts: [53, 53] as [number, number] }
        engine.installFilter({
          id: 'bp',
          direction: 'outbound',
          selector: dns,
          action: 'bypass',
          priority: 10
        })
        expect(engine.protect(packet)).to.deep.equal({ action: 'bypass', packet })
        engine.installFilter({
          id: 'dc',
          direction: 'outbound',
          selector: { ...dns, source: '10.1.0.5/32' },
          action: 'discard',
          priority: 5
        })
        expect(engine.protect(packet)).to.deep.equal({ action: 'drop', reason: 'discard-policy' })
        expect(engine.removeFilter('dc')).to.equal(true)
        expect(engine.removeFilter('dc')).to.equal(false)
        expect(engine.removeFilter('bp')).to.equal(true)
        expect(engine.protect(packet).action).to.equal('protect')
        expect(events.filter((e) => e.type === 'filter:removed')).to.have.length(2)
      })

      it('should drop outbound packets no filter covers as no-policy', () => {
        expect(engine.protect(sampleUdpPacket())).to.deep.equal({
          action: 'drop',
          reason: 'no-policy'
        })
      })

      it('should admit inbound cleartext only through a bypass filter', () => {
        loopback()
        const packet = sampleUdpPacket()
        expect(engine.checkInbound(packet)).to.deep.equal({
          action: 'drop',
          reason: 'policy-mismatch'
        })
        engine.installFilter(
          sampleFilter({
            id: 'ib',
            direction: 'inbound',
            action: 'bypass',
            priority: 1,
            spi: undefined
          })
        )
        expect(engine.checkInbound(packet)).to.deep.equal({ action: 'bypass', packet })
      })
    })

    describe('inbound checks', () => {
      it('should drop an unknown SPI', () => {
        loopback()
        const esp = protectedPacket(engine.protect(sampleUdpPacket())).slice()
        esp[0] ^= 0x40
        expect(engine.unprotect(esp)).to.deep.equal({ action: 'drop', reason: 'unknown-spi' })
        expect(engine.counters().dropped['unknown-spi']).to.equal(1)
      })

      it('should drop a packet with any byte after the sequence number changed as icv-failure', () => {
        loopback()
        const esp = protectedPacket(engine.protect(sampleUdpPacket()))
        for (let i = 8; i < esp.length; i++) {
          const changed = esp.slice()
          changed[i] ^= 0x01
          expect(engine.unprotect(changed), `byte ${i}`).to.deep.equal({
            action: 'drop',
            reason: 'icv-failure'
          })
        }
        expect(engine.counters().dropped['icv-failure']).to.equal(esp.length - 8)
        expect(engine.unprotect(esp).action).to.equal('accept')
      })

      it('should drop a replayed packet and one older than the window', () => {
        loopback({ replayWindow: 32 })
        const sent = Array.from({ length: 40 }, () =>
          protectedPacket(engine.protect(sampleUdpPacket()))
        )
        expect(engine.unprotect(sent[0]).action).to.equal('accept')
        expect(engine.unprotect(sent[0])).to.deep.equal({ action: 'drop', reason: 'replay' })
        expect(engine.unprotect(sent[39]).action).to.equal('accept')
        expect(engine.unprotect(sent[5])).to.deep.equal({
          action: 'drop',
          reason: 'outside-window'
        })
        expect(engine.unprotect(sent[20]).action).to.equal('accept')
        expect(engine.unprotect(sent[20])).to.deep.equal({ action: 'drop', reason: 'replay' })
        expect(engine.counters().dropped).to.include({ replay: 2, 'outside-window': 1 })
      })

      it('should drop a decrypted packet the inbound filters do not give to its SA as policy-mismatch', () => {
        const outbound = sampleOutboundSa()
        engine.addSa(outbound)
        engine.addSa(inboundOf(outbound))
        engine.installFilter(sampleFilter())
        engine.installFilter(sampleFilter({ id: 'in', direction: 'inbound', spi: 0xc0de }))
        const esp = protectedPacket(engine.protect(sampleUdpPacket()))
        expect(engine.unprotect(esp)).to.deep.equal({ action: 'drop', reason: 'policy-mismatch' })
      })

      it('should hand IKE behind the non-ESP marker back and ignore NAT keep-alives', () => {
        const ike = Uint8Array.from({ length: 28 }, (_, i) => i + 1)
        const marked = new Uint8Array(32)
        marked.set(ike, 4)
        expect(engine.unprotectUdp(marked)).to.deep.equal({ action: 'ike', message: ike })
        expect(engine.unprotectUdp(new Uint8Array([0xff]))).to.deep.equal({ action: 'keepalive' })
        expect(engine.counters().keepalives).to.equal(1)
      })
    })

    describe('malformed input', () => {
      it('should be counted and dropped by every data-path method, never thrown', () => {
        loopback()
        const next = noise(0x5eed)
        const inputs: unknown[] = [
          new Uint8Array(0),
          new Uint8Array(3),
          undefined,
          null,
          'text',
          42
        ]
        for (let i = 0; i < 300; i++) inputs.push(next(i % 90))
        // truncations of a valid ESP packet
        const esp = protectedPacket(engine.protect(sampleUdpPacket()))
        for (let n = 0; n < esp.length; n += 3) inputs.push(esp.subarray(0, n))
        const before = engine.counters()
        let drops = 0
        for (const input of inputs) {
          for (const call of [
            () => engine.protect(input as Uint8Array),
            () => engine.unprotect(input as Uint8Array),
            () => engine.unprotectUdp(input as Uint8Array),
            () => engine.checkInbound(input as Uint8Array)
          ]) {
            const result = call()
            if (result.action === 'drop') {
              expect(ESP_DROP_REASONS).to.include(result.reason)
              drops++
            }
          }
        }
        const after = engine.counters()
        const total = (c: typeof after): number =>
          Object.values(c.dropped).reduce((a, b) => a + b, 0)
        expect(total(after) - total(before)).to.equal(drops)
        expect(after.dropped.malformed).to.be.greaterThan(before.dropped.malformed)
        expect(after.decapsulated).to.equal(before.decapsulated)
      })
    })

    describe('lifetimes', () => {
      it('should emit sa:soft-expired at the soft packet limit and remove the SA at the hard one', () => {
        loopback({ lifetime: { ...NO_LIFETIME_LIMITS, softPackets: 2, hardPackets: 4 } })
        const results = Array.from({ length: 5 }, () => engine.protect(sampleUdpPacket()))
        expect(results.map((r) => r.action)).to.deep.equal([
          'protect',
          'protect',
          'protect',
          'protect',
          'drop'
        ])
        expect(events.filter((e) => e.type === 'sa:soft-expired')).to.deep.equal([
          { type: 'sa:soft-expired', spi: 0xc001, direction: 'outbound', limit: 'packets' }
        ])
        expect(events.filter((e) => e.type === 'sa:removed')).to.deep.equal([
          { type: 'sa:removed', spi: 0xc001, direction: 'outbound', reason: 'hard-expired' }
        ])
      })

      it('should never send past the last 32-bit sequence number', () => {
        loopback({ initialSequence: 0xfffffffen })
        const results = Array.from({ length: 3 }, () => engine.protect(sampleUdpPacket()))
        expect(results.map((r) => r.action)).to.deep.equal(['protect', 'drop', 'drop'])
        const esp = protectedPacket(results[0])
        expect(new DataView(esp.buffer, esp.byteOffset).getUint32(4)).to.equal(0xffffffff)
        expect(
          events.some(
            (e) =>
              e.type === 'sa:removed' &&
              e.direction === 'outbound' &&
              e.reason === 'sequence-exhausted'
          )
        ).to.equal(true)
      })

      if (options.advanceTime != null) {
        const advance = options.advanceTime
        it('should soft-expire and then remove SAs by time', async () => {
          loopback({ lifetime: { ...NO_LIFETIME_LIMITS, softSeconds: 30, hardSeconds: 60 } })
          await advance(engine, 29_000)
          expect(events.filter((e) => e.type === 'sa:soft-expired')).to.have.length(0)
          await advance(engine, 1_000)
          expect(events.filter((e) => e.type === 'sa:soft-expired')).to.have.length(2)
          expect(engine.protect(sampleUdpPacket()).action).to.equal('protect')
          await advance(engine, 30_000)
          expect(events.filter((e) => e.type === 'sa:removed')).to.have.length(2)
          expect(engine.listSas()).to.deep.equal([])
          expect(engine.protect(sampleUdpPacket()).action).to.equal('drop')
        })
      }
    })

    describe('counters', () => {
      it('should start at zero for every drop reason and be returned as a copy', () => {
        const counters = engine.counters()
        for (const reason of ESP_DROP_REASONS) expect(counters.dropped[reason], reason).to.equal(0)
        counters.dropped.replay = 7
        expect(engine.counters().dropped.replay).to.equal(0)
      })
    })
  })
}
