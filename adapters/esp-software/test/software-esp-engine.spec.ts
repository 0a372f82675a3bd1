import { expect } from 'chai'
import { VirtualClock } from '@vipsec/clock'
import {
  DuplicateSaError,
  IpProtocol,
  NotStartedError,
  type EspEvent,
  type EspSaParams,
  type InboundResult,
  type OutboundResult
} from '@vipsec/interface'
import { SoftwareEspEngine, espPadLength, softwareEspEngine } from '../src/index.js'
import { readFlow, withNonEspMarker } from '@vipsec/wire'
import { NO_LIMITS, anyFilter, inboundTwin, keyMaterial, saParams, udpPacket } from './fixtures.js'

function espOf(result: OutboundResult): Uint8Array {
  if (result.action !== 'protect')
    throw new Error(`expected protect, got ${JSON.stringify(result)}`)
  return result.packet
}

function accepted(result: InboundResult): Uint8Array {
  if (result.action !== 'accept') throw new Error(`expected accept, got ${JSON.stringify(result)}`)
  return result.packet
}

describe('SoftwareEspEngine', () => {
  let clock: VirtualClock
  let engine: SoftwareEspEngine
  let events: EspEvent[]

  beforeEach(async () => {
    clock = new VirtualClock()
    engine = softwareEspEngine({ clock })
    await engine.start()
    events = []
    engine.events$.subscribe((e) => events.push(e))
  })

  afterEach(async () => {
    await engine.stop()
  })

  /** An outbound SA, its inbound twin (same key), and protect filters both ways. */
  function loopback(overrides: Partial<EspSaParams> = {}): EspSaParams {
    const params = saParams(overrides)
    engine.addSa(params)
    engine.addSa(inboundTwin(params))
    engine.installFilter(anyFilter({ id: 'out', spi: params.spi }))
    engine.installFilter(anyFilter({ id: 'in', direction: 'inbound', spi: params.spi }))
    return params
  }

  describe('constructor', () => {
    describe('when the clock is missing or an option is out of range', () => {
      it('should throw InvalidParametersError naming it', () => {
        expect(() => new SoftwareEspEngine({} as never))
          .to.throw()
          .with.property('argument', 'components.clock')
        expect(() => new SoftwareEspEngine({ clock }, { replayWindow: 4097 }))
          .to.throw()
          .with.property('argument', 'init.replayWindow')
        expect(() => new SoftwareEspEngine({ clock }, { sequenceSoftMargin: -1 }))
          .to.throw()
          .with.property('argument', 'init.sequenceSoftMargin')
      })
    })
  })

  describe('.addSa', () => {
    describe('when the SA is valid', () => {
      it('should install it, list it and emit sa:installed with its tag', () => {
        engine.addSa(saParams({ tag: 'p2-1' }))
        expect(events).to.deep.equal([
          { type: 'sa:installed', spi: 0x1001, direction: 'outbound', tag: 'p2-1' }
        ])
        const [info] = engine.listSas()
        expect(info).to.include({ spi: 0x1001, direction: 'outbound', packets: 0, tag: 'p2-1' })
        expect(info.sequence).to.equal(0n)
      })
    })

    describe('when an SA with the same SPI and direction exists', () => {
      it('should throw DuplicateSaError, but accept the other direction', () => {
        engine.addSa(saParams())
        expect(() => engine.addSa(saParams({ keyMaterial: keyMaterial(9) }))).to.throw(
          DuplicateSaError
        )
        // the same SA again (same key) is a duplicate too, not a key-reuse error
        expect(() => engine.addSa(saParams())).to.throw(DuplicateSaError)
        engine.addSa(inboundTwin(saParams()))
        expect(engine.listSas()).to.have.length(2)
      })
    })

    describe('when a parameter is out of range', () => {
      const cases: [string, Partial<EspSaParams>][] = [
        ['params.spi', { spi: 255 }],
        ['params.spi', { spi: 2 ** 32 }],
        ['params.direction', { direction: 'sideways' as never }],
        ['params.mode', { mode: 'beet' as never }],
        ['params.algorithm', { algorithm: 'aes-ccm-16' as never }],
        ['params.integrity', { algorithm: 'aes-cbc' }],
        ['params.integrity', { integrity: 'hmac-sha2-256-128' }],
        ['params.integrity', { algorithm: 'aes-cbc', integrity: 'hmac-md5-96' as never }],
        ['params.keyMaterial', { algorithm: 'chacha20-poly1305', keyMaterial: keyMaterial(1, 28) }],
        [
          'params.keyMaterial',
          { algorithm: 'aes-cbc', integrity: 'hmac-sha2-256-128', keyMaterial: keyMaterial(1, 36) }
        ],
        ['params.keyMaterial', { keyMaterial: new Uint8Array(32) }],
        ['params.extendedSequenceNumbers', { extendedSequenceNumbers: 1 as never }],
        ['params.lifetime.hardBytes', { lifetime: { ...NO_LIMITS, hardBytes: -1 } }],
        [
          'params.lifetime.softPackets',
          { lifetime: { ...NO_LIMITS, softPackets: 9, hardPackets: 5 } }
        ],
        ['params.tunnel.remote', { tunnel: { local: '192.0.2.1', remote: '2001:db8::1' } }],
        ['params.tunnel.local', { tunnel: { local: '192.0.2.300', remote: '192.0.2.2' } }],
        ['params.tunnel', { tunnel: undefined }],
        ['params.initialSequence', { initialSequence: 1n << 32n }],
        [
          'params.udpEncapsulation.remote.port',
          {
            udpEncapsulation: {
              local: { address: '192.0.2.1', port: 4500 },
              remote: { address: '198.51.100.2', port: 0 }
            }
          }
        ]
      ]
      for (const [argument, overrides] of cases) {
        it(`should throw InvalidParametersError naming ${argument} (${JSON.stringify(overrides, (_, v) => (typeof v === 'bigint' ? String(v) : v))})`, () => {
          expect(() => engine.addSa(saParams(overrides)))
            .to.throw()
            .with.property('argument', argument)
          expect(engine.listSas()).to.have.length(0)
        })
      }

      it('should refuse a replay window above 4096', () => {
        expect(() => engine.addSa(inboundTwin(saParams({ replayWindow: 4097 }))))
          .to.throw()
          .with.property('argument', 'params.replayWindow')
      })
    })

    describe('when outbound keying material is in use or was used', () => {
      it('should refuse it unless the SA continues above the highest sequence number used', () => {
        engine.addSa(saParams())
        engine.installFilter(anyFilter())
        espOf(engine.protect(udpPacket()))
        espOf(engine.protect(udpPacket()))
        expect(() => engine.addSa(saParams({ spi: 0x2002 })))
          .to.throw()
          .with.property('argument', 'params.keyMaterial')
        engine.removeSa(0x1001, 'outbound')
        expect(() => engine.addSa(saParams({ spi: 0x2002, initialSequence: 1n })))
          .to.throw()
          .with.property('argument', 'params.initialSequence')
        engine.addSa(saParams({ spi: 0x2002, initialSequence: 2n }))
        engine.installFilter(anyFilter({ spi: 0x2002 }))
        const esp = espOf(engine.protect(udpPacket()))
        // sequence number 3; the IV's high half is masked, the key having been used before
        expect(Buffer.from(esp.subarray(4, 8)).toString('hex')).to.equal('00000003')
        expect(Buffer.from(esp.subarray(12, 16)).toString('hex')).to.equal('00000003')
        expect(Buffer.from(esp.subarray(8, 12)).toString('hex')).to.not.equal('00000000')
      })
    })

    describe('when more keys were retired than keyMemory holds', () => {
      it('should forget the oldest first', async () => {
        const small = new SoftwareEspEngine({ clock }, { keyMemory: 1 })
        await small.start()
        for (const [spi, seed] of [
          [0x3001, 30],
          [0x3002, 31]
        ]) {
          small.addSa(saParams({ spi, keyMaterial: keyMaterial(seed) }))
          small.installFilter(anyFilter({ spi }))
          expect(small.protect(udpPacket()).action).to.equal('protect')
        }
        small.removeSa(0x3001, 'outbound')
        small.removeSa(0x3002, 'outbound')
        expect(() => small.addSa(saParams({ spi: 0x3003, keyMaterial: keyMaterial(31) })))
          .to.throw()
          .with.property('argument', 'params.initialSequence')
        small.addSa(saParams({ spi: 0x3004, keyMaterial: keyMaterial(30) }))
        await small.stop()
      })
    })

    describe('when the engine is not started', () => {
      it('should throw NotStartedError', async () => {
        await engine.stop()
        expect(() => engine.addSa(saParams())).to.throw(NotStartedError)
        expect(() => engine.installFilter(anyFilter())).to.throw(NotStartedError)
      })
    })
  })

  describe('.removeSa', () => {
    describe('when the SA exists', () => {
      it('should remove it and emit sa:removed with reason deleted', () => {
        engine.addSa(saParams())
        expect(engine.removeSa(0x1001, 'outbound')).to.equal(true)
        expect(events.at(-1)).to.deep.equal({
          type: 'sa:removed',
          spi: 0x1001,
          direction: 'outbound',
          reason: 'deleted'
        })
        expect(engine.removeSa(0x1001, 'outbound')).to.equal(false)
        expect(engine.listSas()).to.deep.equal([])
      })
    })
  })

  describe('.installFilter', () => {
    describe('when a listener or a caller changes the filter it was given', () => {
      it('should keep the engine’s own copy: the event and listFilters() hand out copies', () => {
        const filter = anyFilter({ id: 'f', spi: 0x3003 })
        engine.installFilter(filter)
        const installed = events.find((e) => e.type === 'filter:installed')
        if (installed?.type !== 'filter:installed') throw new Error('no filter:installed event')
        expect(installed.filter).to.deep.equal(filter)
        installed.filter.selector.sourcePorts[0] = 7
        installed.filter.selector.source = '10.0.0.0/8'
        installed.filter.spi = 1
        const listed = engine.listFilters()
        expect(listed).to.deep.equal([filter])
        listed[0].selector.destinationPorts[1] = 9
        listed[0].priority = 1
        expect(engine.listFilters()).to.deep.equal([filter])
        filter.selector.sourcePorts[1] = 8
        expect(engine.listFilters()[0].selector.sourcePorts).to.deep.equal([0, 65535])
      })
    })
  })

  describe('.protect', () => {
    describe('when a protect filter and its SA match (tunnel mode)', () => {
      it('should encrypt the whole packet and address it to the tunnel peer', () => {
        loopback()
        const packet = udpPacket()
        const result = engine.protect(packet)
        expect(result).to.include({ action: 'protect', spi: 0x1001, udp: false })
        if (result.action !== 'protect') return
        expect(result.to).to.deep.equal({ address: '198.51.100.2', port: 0 })
        expect(result.packet.length).to.equal(
          8 + 8 + packet.length + espPadLength(packet.length) + 2 + 16
        )
        expect(accepted(engine.unprotect(result.packet))).to.deep.equal(packet)
        expect(engine.counters()).to.include({ encapsulated: 1, decapsulated: 1 })
      })
    })

    describe('when the SA is UDP-encapsulated', () => {
      it('should address the packet to the peer UDP endpoint', () => {
        loopback({
          udpEncapsulation: {
            local: { address: '192.0.2.1', port: 4500 },
            remote: { address: '203.0.113.9', port: 31000 }
          }
        })
        const result = engine.protect(udpPacket())
        expect(result).to.deep.include({
          action: 'protect',
          udp: true,
          to: { address: '203.0.113.9', port: 31000 }
        })
      })
    })

    describe('when the SA is in transport mode', () => {
      it('should encrypt only the upper-layer segment and rebuild the packet inbound', () => {
        const source = '192.0.2.1'
        const destination = '198.51.100.2'
        loopback({ mode: 'transport', tunnel: { local: source, remote: destination } })
        // inbound twin sees remote = 192.0.2.1, local = 198.51.100.2: the original addresses
        const packet = udpPacket(new Uint8Array([9, 9, 9]), source, destination, 500, 4500)
        const result = engine.protect(packet)
        const esp = espOf(result)
        expect(esp.length).to.equal(
          8 + 8 + (packet.length - 20) + espPadLength(packet.length - 20) + 2 + 16
        )
        const inbound = engine.unprotect(esp)
        expect(inbound).to.include({ action: 'accept', nextHeader: IpProtocol.UDP })
        expect(accepted(inbound)).to.deep.equal(packet)
      })
    })

    describe('when the packets are IPv6', () => {
      it('should protect and unprotect them', () => {
        const params = saParams({ tunnel: { local: '2001:db8::1', remote: '2001:db8::2' } })
        engine.addSa(params)
        engine.addSa(inboundTwin(params))
        const v6 = {
          source: '2001:db8:a::/48',
          destination: '::/0',
          protocol: 17,
          sourcePorts: [0, 65535] as [number, number],
          destinationPorts: [53, 53] as [number, number]
        }
        engine.installFilter(anyFilter({ id: 'o6', selector: v6 }))
        engine.installFilter(anyFilter({ id: 'i6', direction: 'inbound', selector: v6 }))
        const packet = udpPacket(new Uint8Array(7), '2001:db8:a::5', '2001:db8:b::7', 1234, 53)
        const result = engine.protect(packet)
        expect(result).to.deep.include({ to: { address: '2001:db8::2', port: 0 } })
        const inbound = engine.unprotect(espOf(result))
        expect(inbound).to.include({ action: 'accept', nextHeader: 41 })
        expect(accepted(inbound)).to.deep.equal(packet)
        expect(readFlow(accepted(inbound))).to.deep.equal({
          protocol: 17,
          sourceAddress: '2001:db8:a::5',
          sourcePort: 1234,
          destinationAddress: '2001:db8:b::7',
          destinationPort: 53
        })
      })
    })

    describe('when no filter matches', () => {
      it('should drop it as no-policy', () => {
        expect(engine.protect(udpPacket())).to.deep.equal({ action: 'drop', reason: 'no-policy' })
        expect(engine.counters().dropped['no-policy']).to.equal(1)
      })
    })

    describe('when a bypass or discard filter comes first', () => {
      it('should pass or drop the packet by the first match in priority order', () => {
        loopback()
        const dns = {
          source: '10.1.0.0/16',
          destination: '0.0.0.0/0',
          protocol: 17,
          sourcePorts: [0, 65535] as [number, number],
          destinationPorts: [53, 53] as [number, number]
        }
        engine.installFilter({
          id: 'bp',
          direction: 'outbound',
          selector: dns,
          action: 'bypass',
          priority: 10
        })
        const packet = udpPacket()
        expect(engine.protect(packet)).to.deep.equal({ action: 'bypass', packet })
        engine.installFilter({
          id: 'ds',
          direction: 'outbound',
          selector: { ...dns, source: '10.1.0.5/32' },
          action: 'discard',
          priority: 5
        })
        expect(engine.protect(packet)).to.deep.equal({ action: 'drop', reason: 'discard-policy' })
        expect(engine.protect(udpPacket(undefined, '10.1.0.5', '10.2.0.7', 40000, 54))).to.include({
          action: 'protect'
        })
        expect(engine.counters()).to.deep.include({ bypassed: 1, encapsulated: 1 })
        expect(engine.counters().dropped['discard-policy']).to.equal(1)
      })
    })

    describe('when the protect filter names no installed SA', () => {
      it('should drop it as no-sa', () => {
        engine.installFilter(anyFilter({ spi: 0x7777 }))
        expect(engine.protect(udpPacket())).to.deep.equal({ action: 'drop', reason: 'no-sa' })
      })
    })

    describe('when the packet is malformed', () => {
      it('should count and drop it without throwing', () => {
        loopback()
        const bad = [
          new Uint8Array(0),
          new Uint8Array([0x45]),
          new Uint8Array(19).fill(0x45),
          udpPacket().subarray(0, 22),
          new Uint8Array(60).fill(0x60),
          'not bytes' as never,
          undefined as never
        ]
        for (const packet of bad) {
          expect(engine.protect(packet)).to.deep.equal({ action: 'drop', reason: 'malformed' })
        }
        expect(engine.counters().dropped.malformed).to.equal(bad.length)
      })
    })
  })

  describe('.unprotect', () => {
    describe('when the SPI is unknown', () => {
      it('should drop it as unknown-spi', () => {
        const esp = new Uint8Array(64)
        esp[3] = 0x42
        expect(engine.unprotect(esp)).to.deep.equal({ action: 'drop', reason: 'unknown-spi' })
      })
    })

    describe('when a byte is changed', () => {
      it('should drop it as icv-failure and keep the window unchanged', () => {
        loopback()
        const esp = espOf(engine.protect(udpPacket()))
        const changed = esp.slice()
        changed[20] ^= 0x80
        expect(engine.unprotect(changed)).to.deep.equal({ action: 'drop', reason: 'icv-failure' })
        expect(engine.unprotect(esp)).to.include({ action: 'accept' })
      })
    })

    describe('when packets arrive out of order, replayed, or too old', () => {
      it('should accept each new number once and drop replays and numbers below the window', () => {
        loopback({ replayWindow: 32 })
        const sent = Array.from({ length: 40 }, () => espOf(engine.protect(udpPacket())))
        expect(engine.unprotect(sent[4])).to.include({ action: 'accept' })
        expect(engine.unprotect(sent[2])).to.include({ action: 'accept' })
        expect(engine.unprotect(sent[2])).to.deep.equal({ action: 'drop', reason: 'replay' })
        expect(engine.unprotect(sent[39])).to.include({ action: 'accept' }) // seq 40, window 9..40
        expect(engine.unprotect(sent[8])).to.include({ action: 'accept' }) // seq 9
        expect(engine.unprotect(sent[7])).to.deep.equal({
          action: 'drop',
          reason: 'outside-window'
        })
        expect(engine.unprotect(sent[39])).to.deep.equal({ action: 'drop', reason: 'replay' })
        const c = engine.counters()
        expect(c.decapsulated).to.equal(4)
        expect(c.dropped).to.include({ replay: 2, 'outside-window': 1 })
      })
    })

    describe('when extended sequence numbers cross 2^32', () => {
      it('should infer the high half and accept the packets', () => {
        loopback({ extendedSequenceNumbers: true, initialSequence: 0xfffffffdn })
        const inner = udpPacket()
        for (let i = 0; i < 5; i++) {
          const esp = espOf(engine.protect(inner))
          expect(accepted(engine.unprotect(esp))).to.deep.equal(inner)
        }
        const inbound = engine.listSas().find((s) => s.direction === 'inbound')
        expect(inbound?.sequence).to.equal(0x100000002n)
      })
    })

    describe('when the inner packet is not covered by the inbound policy', () => {
      it('should drop it as policy-mismatch', () => {
        const params = saParams()
        engine.addSa(params)
        engine.addSa(inboundTwin(params))
        engine.installFilter(anyFilter())
        const esp1 = espOf(engine.protect(udpPacket()))
        const esp2 = espOf(engine.protect(udpPacket()))
        expect(engine.unprotect(esp1)).to.deep.equal({ action: 'drop', reason: 'policy-mismatch' })
        engine.installFilter(anyFilter({ id: 'in', direction: 'inbound', spi: 0x9999 }))
        expect(engine.unprotect(esp2)).to.deep.equal({ action: 'drop', reason: 'policy-mismatch' })
        expect(engine.counters().dropped['policy-mismatch']).to.equal(2)
      })
    })

    describe('when the input is malformed', () => {
      it('should count and drop it without throwing', () => {
        loopback()
        const esp = espOf(engine.protect(udpPacket()))
        const bad = [
          new Uint8Array(0),
          esp.subarray(0, 7),
          esp.subarray(0, 30),
          42 as never,
          null as never
        ]
        for (const packet of bad) {
          expect(engine.unprotect(packet)).to.deep.equal({ action: 'drop', reason: 'malformed' })
        }
      })
    })
  })

  describe('.unprotectUdp', () => {
    describe('when the datagram is a keep-alive, IKE or ESP', () => {
      it('should ignore the keep-alive, hand back IKE without the marker and decrypt ESP', () => {
        loopback()
        expect(engine.unprotectUdp(new Uint8Array([0xff]))).to.deep.equal({ action: 'keepalive' })
        const ike = new Uint8Array(28).fill(7)
        expect(engine.unprotectUdp(withNonEspMarker(ike))).to.deep.equal({
          action: 'ike',
          message: ike
        })
        const packet = udpPacket()
        expect(engine.unprotectUdp(espOf(engine.protect(packet)))).to.deep.include({
          action: 'accept',
          packet
        })
        expect(engine.unprotectUdp(new Uint8Array([1, 2, 3]))).to.deep.equal({
          action: 'drop',
          reason: 'malformed'
        })
        expect(engine.counters()).to.include({ keepalives: 1, decapsulated: 1 })
      })
    })
  })

  describe('.checkInbound', () => {
    describe('when cleartext arrives', () => {
      it('should admit it only through a bypass filter', () => {
        loopback()
        const packet = udpPacket()
        expect(engine.checkInbound(packet)).to.deep.equal({
          action: 'drop',
          reason: 'policy-mismatch'
        })
        engine.installFilter(
          anyFilter({ id: 'ib', direction: 'inbound', action: 'bypass', priority: 1 })
        )
        expect(engine.checkInbound(packet)).to.deep.equal({ action: 'bypass', packet })
        engine.removeFilter('ib')
        engine.removeFilter('in')
        expect(engine.checkInbound(packet)).to.deep.equal({ action: 'drop', reason: 'no-policy' })
      })
    })
  })

  describe('lifetimes', () => {
    describe('when packet limits are reached', () => {
      it('should emit sa:soft-expired once at the soft limit and remove the SA at the hard limit', () => {
        loopback({ lifetime: { ...NO_LIMITS, softPackets: 2, hardPackets: 3 } })
        const results = Array.from({ length: 4 }, () => engine.protect(udpPacket()))
        expect(results.map((r) => r.action)).to.deep.equal([
          'protect',
          'protect',
          'protect',
          'drop'
        ])
        expect(results[3]).to.deep.equal({ action: 'drop', reason: 'sa-expired' })
        const lifecycle = events.filter(
          (e) => e.type === 'sa:soft-expired' || e.type === 'sa:removed'
        )
        expect(lifecycle).to.deep.equal([
          { type: 'sa:soft-expired', spi: 0x1001, direction: 'outbound', limit: 'packets' },
          { type: 'sa:removed', spi: 0x1001, direction: 'outbound', reason: 'hard-expired' }
        ])
      })
    })

    describe('when byte limits are reached', () => {
      it('should soft-expire by bytes and refuse a packet that would pass the hard limit', () => {
        const packet = udpPacket(new Uint8Array(72)) // 100 bytes inner
        loopback({ lifetime: { ...NO_LIMITS, softBytes: 150, hardBytes: 250 } })
        expect(engine.protect(packet).action).to.equal('protect')
        expect(engine.protect(packet).action).to.equal('protect')
        expect(events.some((e) => e.type === 'sa:soft-expired' && e.limit === 'bytes')).to.equal(
          true
        )
        expect(engine.protect(packet)).to.deep.equal({ action: 'drop', reason: 'sa-expired' })
        expect(engine.listSas().filter((s) => s.direction === 'outbound')).to.deep.equal([])
      })
    })

    describe('when time limits pass on the clock', () => {
      it('should soft-expire at softSeconds and remove the SA at hardSeconds', async () => {
        loopback({ lifetime: { ...NO_LIMITS, softSeconds: 10, hardSeconds: 20 } })
        await clock.advance(9_999)
        expect(events.some((e) => e.type === 'sa:soft-expired')).to.equal(false)
        await clock.advance(1)
        expect(events.filter((e) => e.type === 'sa:soft-expired')).to.have.length(2)
        expect(engine.protect(udpPacket()).action).to.equal('protect')
        await clock.advance(10_000)
        const removed = events.filter((e) => e.type === 'sa:removed')
        expect(removed.map((e) => e.type === 'sa:removed' && e.reason)).to.deep.equal([
          'hard-expired',
          'hard-expired'
        ])
        expect(engine.protect(udpPacket())).to.deep.equal({ action: 'drop', reason: 'sa-expired' })
        expect(clock.pending()).to.equal(0)
      })
    })

    describe('when the sequence number space runs out', () => {
      it('should use the last number, remove the SA and never use it again', () => {
        const small = new SoftwareEspEngine({ clock }, { sequenceSoftMargin: 3 })
        return small.start().then(async () => {
          const seen: EspEvent[] = []
          small.events$.subscribe((e) => seen.push(e))
          small.addSa(saParams({ initialSequence: 0xfffffffcn }))
          small.installFilter(anyFilter())
          const results = Array.from({ length: 5 }, () => small.protect(udpPacket()))
          expect(results.map((r) => r.action)).to.deep.equal([
            'protect',
            'protect',
            'protect',
            'drop',
            'drop'
          ])
          expect(Buffer.from(espOf(results[2]).subarray(4, 8)).toString('hex')).to.equal('ffffffff')
          expect(
            seen.filter((e) => e.type !== 'sa:installed' && e.type !== 'filter:installed')
          ).to.deep.equal([
            { type: 'sa:soft-expired', spi: 0x1001, direction: 'outbound', limit: 'sequence' },
            { type: 'sa:removed', spi: 0x1001, direction: 'outbound', reason: 'sequence-exhausted' }
          ])
          expect(small.counters().dropped['sa-expired']).to.equal(2)
          await small.stop()
        })
      })
    })
  })

  describe('.installFilter', () => {
    describe('when a filter duplicates an active one', () => {
      it('should remove the older one and emit filter:duplicate-removed', () => {
        engine.installFilter(anyFilter({ id: 'a' }))
        engine.installFilter(anyFilter({ id: 'b', direction: 'inbound' }))
        const removed = engine.installFilter(
          anyFilter({
            id: 'c',
            selector: { ...anyFilter().selector, source: '0.0.0.0/0' },
            spi: 0x2002
          })
        )
        expect(removed).to.deep.equal(['a'])
        expect(events.filter((e) => e.type === 'filter:duplicate-removed')).to.deep.equal([
          { type: 'filter:duplicate-removed', removed: 'a', keptId: 'c' }
        ])
        expect(engine.listFilters().map((f) => f.id)).to.deep.equal(['c', 'b'])
      })
    })

    describe('when the filter is malformed', () => {
      it('should throw InvalidParametersError naming the field', () => {
        const base = anyFilter()
        const cases: [string, unknown][] = [
          ['filter.id', { ...base, id: '' }],
          [
            'filter.selector.source',
            { ...base, selector: { ...base.selector, source: '10.0.0.0/33' } }
          ],
          [
            'filter.selector.destination',
            { ...base, selector: { ...base.selector, destination: '::/0' } }
          ],
          ['filter.selector.protocol', { ...base, selector: { ...base.selector, protocol: 256 } }],
          [
            'filter.selector.destinationPorts',
            { ...base, selector: { ...base.selector, destinationPorts: [9, 8] } }
          ],
          ['filter.action', { ...base, action: 'allow' }],
          ['filter.spi', { ...base, spi: 0 }]
        ]
        for (const [argument, filter] of cases) {
          expect(() => engine.installFilter(filter as never))
            .to.throw()
            .with.property('argument', argument)
        }
        expect(engine.listFilters()).to.deep.equal([])
      })
    })
  })

  describe('.stop', () => {
    describe('when called twice', () => {
      it('should complete events$, clear SAs and filters, and be idempotent', async () => {
        loopback({ lifetime: { ...NO_LIMITS, hardSeconds: 5 } })
        let completed = false
        engine.events$.subscribe({ complete: () => (completed = true) })
        await engine.stop()
        await engine.stop()
        expect(completed).to.equal(true)
        expect(engine.isStarted()).to.equal(false)
        expect(engine.listSas()).to.deep.equal([])
        expect(engine.listFilters()).to.deep.equal([])
        expect(clock.pending()).to.equal(0)
        await engine.start()
        const again: EspEvent[] = []
        engine.events$.subscribe((e) => again.push(e))
        engine.addSa(saParams({ keyMaterial: keyMaterial(50) }))
        expect(again.map((e) => e.type)).to.deep.equal(['sa:installed'])
      })
    })
  })

  describe('.counters', () => {
    it('should return a copy', () => {
      const c = engine.counters()
      c.dropped.replay = 99
      c.encapsulated = 5
      expect(engine.counters().dropped.replay).to.equal(0)
      expect(engine.counters().encapsulated).to.equal(0)
    })
  })

  describe('GMAC', () => {
    describe('when the SA uses null-aes-gmac', () => {
      it('should carry the packet in the clear and still detect changes', () => {
        loopback({ algorithm: 'null-aes-gmac', keyMaterial: keyMaterial(3, 20) })
        const packet = udpPacket(new TextEncoder().encode('visible'))
        const esp = espOf(engine.protect(packet))
        expect(Buffer.from(esp.subarray(16, 16 + packet.length))).to.deep.equal(Buffer.from(packet))
        const changed = esp.slice()
        changed[30] ^= 1
        expect(engine.unprotect(changed)).to.deep.equal({ action: 'drop', reason: 'icv-failure' })
        expect(accepted(engine.unprotect(esp))).to.deep.equal(packet)
      })
    })
  })
})

describe('softwareEspEngine', () => {
  it('should make a stopped engine', () => {
    const engine = softwareEspEngine({ clock: new VirtualClock() })
    expect(engine).to.be.instanceOf(SoftwareEspEngine)
    expect(engine.isStarted()).to.equal(false)
  })
})
