import { expect } from 'chai'
import fc from 'fast-check'
import type { DynamicFilter, EspDirection } from '@vipsec/interface'
import { buildIpPacket, parseIpPacket, type IpPacketInfo } from '@vipsec/wire'
import { Spd, type CompiledFilter } from '../src/spd.js'
import { LinearSpd } from './linear-spd.js'

// small pools, so that prefixes nest and overlap, ids and selectors repeat and priorities tie
const V4_PREFIXES = [
  '0.0.0.0/0',
  '0.0.0.0/0',
  '10.0.0.0/8',
  '10.0.0.0/8',
  '10.1.0.0/16',
  '10.1.2.0/24',
  '10.1.2.77/24',
  '10.1.2.128/25',
  '10.1.2.3/32',
  '10.1.3.0/24',
  '192.168.0.0/16'
]
const V6_PREFIXES = [
  '::/0',
  '2001:db8::/32',
  '2001:db8:1::/48',
  '2001:db8:1::5/128',
  '2001:db8:2::/47'
]
const V4_ADDRESSES = ['10.1.2.3', '10.1.2.200', '10.1.3.9', '10.1.2.3', '192.168.5.5', '8.8.8.8']
const V6_ADDRESSES = ['2001:db8:1::5', '2001:db8:1::6', '2001:db8:3::1', '2001:dead::1']
const PORT_RANGES: [number, number][] = [
  [0, 65535],
  [0, 65535],
  [0, 65535],
  [0, 65535],
  [0, 65535],
  [5001, 5001],
  [1000, 6000],
  [0, 0],
  [80, 443]
]
const PORTS = [0, 443, 1000, 5001, 6001]

const direction = fc.constantFrom<EspDirection>('inbound', 'outbound')

const filter: fc.Arbitrary<DynamicFilter> = fc
  .record({
    id: fc.constantFrom(...'abcdefghijklmnopqrstuvwx'.split('')),
    direction,
    v6: fc.boolean(),
    source: fc.nat(V4_PREFIXES.length - 1),
    destination: fc.nat(V4_PREFIXES.length - 1),
    protocol: fc.constantFrom(0, 0, 0, 6, 17, 1),
    sourcePorts: fc.constantFrom(...PORT_RANGES),
    destinationPorts: fc.constantFrom(...PORT_RANGES),
    action: fc.constantFrom<DynamicFilter['action']>('protect', 'bypass', 'discard'),
    priority: fc.constantFrom(0, 1, 2, 5, -3),
    spi: fc.option(fc.integer({ min: 1, max: 9 }), { nil: undefined })
  })
  .map((f) => {
    const prefixes = f.v6 ? V6_PREFIXES : V4_PREFIXES
    return {
      id: f.id,
      direction: f.direction,
      selector: {
        source: prefixes[f.source % prefixes.length],
        destination: prefixes[f.destination % prefixes.length],
        protocol: f.protocol,
        sourcePorts: f.sourcePorts,
        destinationPorts: f.destinationPorts
      },
      action: f.action,
      priority: f.priority,
      ...(f.spi !== undefined ? { spi: f.spi } : {})
    }
  })

/** An IP packet with an upper-layer header of 4 bytes (UDP, TCP: ports), 2 (ICMP) or 1 (cut). */
const packet: fc.Arbitrary<Uint8Array> = fc
  .record({
    v6: fc.boolean(),
    source: fc.nat(5),
    destination: fc.nat(5),
    protocol: fc.constantFrom(6, 17, 1, 47),
    sourcePort: fc.constantFrom(...PORTS),
    destinationPort: fc.constantFrom(...PORTS),
    truncated: fc.nat(5).map((n) => n === 0)
  })
  .map((p) => {
    const addresses = p.v6 ? V6_ADDRESSES : V4_ADDRESSES
    const protocol = p.v6 && p.protocol === 1 ? 58 : p.protocol
    const header = [
      p.sourcePort >> 8,
      p.sourcePort & 0xff,
      p.destinationPort >> 8,
      p.destinationPort
    ]
    return buildIpPacket({
      source: addresses[p.source % addresses.length],
      destination: addresses[p.destination % addresses.length],
      protocol,
      payload: Uint8Array.from(p.truncated ? header.slice(0, 1) : header)
    })
  })

type Op =
  | { op: 'install'; filter: DynamicFilter }
  | { op: 'remove'; id: string }
  | { op: 'clear' }
  | { op: 'match'; direction: EspDirection; packet: Uint8Array }

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 24, arbitrary: filter.map((f) => ({ op: 'install' as const, filter: f })) },
  {
    weight: 10,
    arbitrary: fc
      .constantFrom(...'abcdefghijklz'.split(''))
      .map((id) => ({ op: 'remove' as const, id }))
  },
  { weight: 1, arbitrary: fc.constant({ op: 'clear' as const }) },
  {
    weight: 40,
    arbitrary: fc
      .tuple(direction, packet)
      .map(([d, p]) => ({ op: 'match' as const, direction: d, packet: p }))
  }
)

const idOf = (c: CompiledFilter | null | undefined): string | null | undefined =>
  c == null ? c : c.filter.id

describe('Spd', () => {
  describe('when filters come and go at random', () => {
    it('should install, remove, list and match exactly as a linear scan does', () => {
      let matched = 0
      let truncated = 0
      let replaced = 0
      // matches with more than eight filters in the direction, and removals down to eight
      let large = 0
      let shrunk = 0
      fc.assert(
        fc.property(fc.array(op, { minLength: 60, maxLength: 160, size: 'max' }), (ops) => {
          const indexed = new Spd()
          const linear = new LinearSpd()
          for (const o of ops) {
            if (o.op === 'install') {
              const a = indexed.install(o.filter)
              const b = linear.install(o.filter)
              expect(a.compiled).to.deep.equal(b.compiled)
              expect(a.removed.map(idOf)).to.deep.equal(b.removed.map(idOf))
              replaced += b.removed.length
            } else if (o.op === 'remove') {
              const before = linear.list()
              expect(indexed.remove(o.id)).to.equal(linear.remove(o.id))
              const gone = before.find((f) => f.id === o.id)
              if (gone && before.filter((f) => f.direction === gone.direction).length === 9) {
                shrunk++
              }
            } else if (o.op === 'clear') {
              indexed.clear()
              linear.clear()
            } else {
              const info = parseIpPacket(o.packet) as IpPacketInfo
              const expected = linear.match(o.direction, o.packet, info)
              expect(idOf(indexed.match(o.direction, o.packet, info))).to.equal(idOf(expected))
              if (expected != null) matched++
              if (linear.list().filter((f) => f.direction === o.direction).length > 8) large++
              if (expected === undefined) truncated++
            }
            expect(indexed.list()).to.deep.equal(linear.list())
          }
        }),
        { numRuns: 150 }
      )
      // the runs exercised matches, truncated packets and duplicate replacement
      expect(matched).to.be.greaterThan(500)
      expect(truncated).to.be.greaterThan(300)
      expect(replaced).to.be.greaterThan(100)
      expect(large).to.be.greaterThan(200)
      expect(shrunk).to.be.greaterThan(10)
    })
  })

  describe('when most filters are removed and others installed again', () => {
    it('should still agree with a linear scan after its maps are rebuilt', () => {
      fc.assert(
        fc.property(
          fc.array(filter, { minLength: 300, maxLength: 300 }),
          fc.array(
            packet.chain((p) => direction.map((d) => [d, p] as const)),
            {
              minLength: 30,
              maxLength: 30
            }
          ),
          (all, packets) => {
            const indexed = new Spd()
            const linear = new LinearSpd()
            const compare = (): void => {
              expect(indexed.list()).to.deep.equal(linear.list())
              for (const [d, p] of packets) {
                const info = parseIpPacket(p) as IpPacketInfo
                expect(idOf(indexed.match(d, p, info))).to.equal(idOf(linear.match(d, p, info)))
              }
            }
            // distinct ids, so that hundreds are live at once and then removed
            const unique = all.map((f, i) => ({ ...f, id: `${f.id}${i}` }))
            for (const f of unique) {
              expect(indexed.install(f).removed.map(idOf)).to.deep.equal(
                linear.install(f).removed.map(idOf)
              )
            }
            compare()
            for (const f of unique.slice(0, 250)) {
              expect(indexed.remove(f.id)).to.equal(linear.remove(f.id))
            }
            compare()
            for (const f of unique.slice(100, 200)) {
              indexed.install(f)
              linear.install(f)
            }
            compare()
          }
        ),
        { numRuns: 20 }
      )
    })
  })

  describe('when ten thousand Child SAs have their filters', () => {
    it('should match each packet to its own tunnel and drop the rest', () => {
      const spd = new Spd()
      const selector = (n: number, reverse: boolean): DynamicFilter['selector'] => {
        const local = `10.${(n >> 8) & 0xff}.${n & 0xff}.0/24`
        const remote = `172.16.${(n >> 8) & 0xff}.${n & 0xff}/32`
        return {
          source: reverse ? remote : local,
          destination: reverse ? local : remote,
          protocol: 0,
          sourcePorts: [0, 65535],
          destinationPorts: [0, 65535]
        }
      }
      for (let n = 0; n < 10000; n++) {
        for (const d of ['outbound', 'inbound'] as const) {
          spd.install({
            id: `${d}-${n}`,
            direction: d,
            selector: selector(n, d === 'inbound'),
            action: 'protect',
            priority: 100,
            spi: 256 + n
          })
        }
      }
      for (const n of [0, 1, 4097, 9999]) {
        const out = buildIpPacket({
          source: `10.${(n >> 8) & 0xff}.${n & 0xff}.9`,
          destination: `172.16.${(n >> 8) & 0xff}.${n & 0xff}`,
          protocol: 47,
          payload: new Uint8Array(4)
        })
        const info = parseIpPacket(out) as IpPacketInfo
        expect(spd.match('outbound', out, info)?.filter.spi).to.equal(256 + n)
        expect(spd.match('inbound', out, info)).to.equal(null)
      }
      const stray = buildIpPacket({
        source: '10.0.0.9',
        destination: '172.16.0.1',
        protocol: 47,
        payload: new Uint8Array(4)
      })
      expect(spd.match('outbound', stray, parseIpPacket(stray) as IpPacketInfo)).to.equal(null)
      expect(spd.remove('outbound-4097')).to.equal(true)
      expect(spd.list()).to.have.length(19999)
    })
  })
})
