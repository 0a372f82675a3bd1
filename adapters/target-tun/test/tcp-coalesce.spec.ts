import { expect } from 'chai'
import fc from 'fast-check'
import { buildIpPacket, buildTcp, buildUdp, checksumAdd } from '@vipsec/wire'
import { segmentPayload, TcpCoalescer, VNET_HDR_LEN } from '../src/index.js'

const CLIENT = '172.16.2.1'
const SERVICE = '10.77.0.10'

interface Segment {
  seq: number
  data: number
  push?: boolean
  port?: number
  ack?: number
  window?: number
  options?: number[]
  flags?: number
}

/** A TCP/IPv4 segment from the client to the service with valid checksums. */
function segment(s: Segment): Uint8Array {
  const tcp = buildTcp({
    source: CLIENT,
    destination: SERVICE,
    sourcePort: s.port ?? 40000,
    destinationPort: 5201,
    sequence: s.seq,
    acknowledgement: s.ack ?? 777,
    flags: 0x10 | (s.push === true ? 0x08 : 0),
    window: s.window ?? 500,
    payload: new Uint8Array(s.data).map((_, i) => (s.seq + i) & 0xff)
  })
  let packet = buildIpPacket({ source: CLIENT, destination: SERVICE, protocol: 6, payload: tcp })
  if (s.options !== undefined || s.flags !== undefined) packet = rebuild(packet, s)
  return packet
}

/** The same segment with TCP options or other flags, checksums made again. */
function rebuild(packet: Uint8Array, s: Segment): Uint8Array {
  const options = s.options ?? []
  const tcp = packet.subarray(20)
  const out = new Uint8Array(20 + 20 + options.length + (tcp.length - 20))
  out.set(packet.subarray(0, 20))
  out.set(tcp.subarray(0, 20), 20)
  out.set(options, 40)
  out.set(tcp.subarray(20), 40 + options.length)
  out[32] = ((20 + options.length) / 4) << 4
  if (s.flags !== undefined) out[33] = s.flags
  out[2] = out.length >> 8
  out[3] = out.length & 0xff
  out[10] = out[11] = 0
  const ip = ~checksumAdd(0, out, 0, 20) & 0xffff
  out[10] = ip >> 8
  out[11] = ip & 0xff
  out[36] = out[37] = 0
  let sum = checksumAdd(0, out, 12, 20) + 6 + (out.length - 20)
  sum = checksumAdd(sum, out, 20, out.length)
  const c = ~sum & 0xffff
  out[36] = c >> 8
  out[37] = c & 0xff
  return out
}

/** Runs one flush; the units written (copies). */
function flush(packets: Uint8Array[]): Uint8Array[] {
  const units: Uint8Array[] = []
  new TcpCoalescer().flush(packets, packets.length, (u) => units.push(new Uint8Array(u)))
  return units
}

/** What the kernel makes of a unit: the segments it stands for (GSO split by gso_size). */
function segmentsOf(unit: Uint8Array): { seq: number; payload: number[] }[] | Uint8Array {
  const gsoType = unit[1]!
  const packet = unit.subarray(VNET_HDR_LEN)
  if (gsoType === 0) return packet
  const headers = unit[2]! | (unit[3]! << 8)
  const size = unit[4]! | (unit[5]! << 8)
  const seq0 = new DataView(packet.buffer, packet.byteOffset).getUint32(24)
  const out: { seq: number; payload: number[] }[] = []
  for (let o = headers; o < packet.length; o += size) {
    out.push({ seq: seq0 + o - headers, payload: [...packet.subarray(o, o + size)] })
  }
  return out
}

describe('TcpCoalescer', () => {
  describe('when a connection’s segments come in order', () => {
    it('should write them as one TCP GSO packet of their segment size, with valid IP header and the pseudo-header sum', () => {
      const packets = [0, 1, 2, 3].map((i) => segment({ seq: 1000 + i * 1348, data: 1348 }))
      packets.push(segment({ seq: 1000 + 4 * 1348, data: 100, push: true }))
      const units = flush(packets)
      expect(units).to.have.length(1)
      const u = units[0]!
      // virtio_net_hdr: NEEDS_CSUM, GSO_TCPV4, hdr_len 40, gso_size 1348, csum at 20 + 16
      expect([...u.subarray(0, VNET_HDR_LEN)]).to.deep.equal([1, 1, 40, 0, 0x44, 5, 20, 0, 16, 0])
      const p = u.subarray(VNET_HDR_LEN)
      expect((p[2]! << 8) | p[3]!).to.equal(40 + 4 * 1348 + 100)
      expect(p.length).to.equal(40 + 4 * 1348 + 100)
      expect(checksumAdd(0, p, 0, 20)).to.equal(0xffff)
      expect(p[33]! & 0x08, 'PSH of the last segment').to.equal(0x08)
      const pseudo = checksumAdd(0, p, 12, 20) + 6 + (p.length - 20)
      expect((p[36]! << 8) | p[37]!).to.equal(checksumAdd(pseudo, new Uint8Array(0)))
      const parts = segmentsOf(u) as { seq: number; payload: number[] }[]
      expect(parts.map((s) => s.seq)).to.deep.equal([1000, 2348, 3696, 5044, 6392])
      parts.forEach((s, i) => expect(s.payload).to.deep.equal([...packets[i]!.subarray(40)]))
    })
  })

  describe('when segments may not be merged', () => {
    it('should write each on its own, in order', () => {
      const cases: [string, Uint8Array[]][] = [
        ['a gap', [segment({ seq: 0, data: 100 }), segment({ seq: 101, data: 100 })]],
        ['another ack', [segment({ seq: 0, data: 100 }), segment({ seq: 100, data: 100, ack: 9 })]],
        [
          'another window',
          [segment({ seq: 0, data: 100 }), segment({ seq: 100, data: 100, window: 9 })]
        ],
        [
          'other options',
          [
            segment({ seq: 0, data: 100, options: [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2] }),
            segment({ seq: 100, data: 100, options: [1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 2] })
          ]
        ],
        ['a longer second', [segment({ seq: 0, data: 100 }), segment({ seq: 100, data: 200 })]],
        [
          'after PSH',
          [segment({ seq: 0, data: 100, push: true }), segment({ seq: 100, data: 100 })]
        ],
        ['FIN', [segment({ seq: 0, data: 100 }), segment({ seq: 100, data: 100, flags: 0x11 })]],
        ['no data', [segment({ seq: 0, data: 0 }), segment({ seq: 0, data: 0 })]]
      ]
      for (const [what, packets] of cases) {
        const units = flush(packets)
        expect(
          units.map((u) => [...u.subarray(VNET_HDR_LEN)]),
          what
        ).to.deep.equal(packets.map((p) => [...p]))
        for (const u of units)
          expect([...u.subarray(0, VNET_HDR_LEN)], what).to.deep.equal(
            new Array(VNET_HDR_LEN).fill(0)
          )
      }
    })

    it('should end a run with its first shorter segment', () => {
      const packets = [
        segment({ seq: 0, data: 100 }),
        segment({ seq: 100, data: 50 }),
        segment({ seq: 150, data: 50 })
      ]
      const units = flush(packets)
      expect(units).to.have.length(2)
      expect(units[0]![1], 'a GSO run').to.equal(1)
      expect([...units[1]!.subarray(VNET_HDR_LEN)]).to.deep.equal([...packets[2]!])
    })

    it('should not merge a segment whose TCP or IP checksum is wrong', () => {
      const bad = segment({ seq: 100, data: 100 })
      bad[60] = bad[60]! ^ 0xff
      expect(segmentPayload(bad)).to.equal(0)
      const badIp = segment({ seq: 100, data: 100 })
      badIp[8] = 1 // TTL changed, IP checksum not
      expect(segmentPayload(badIp)).to.equal(0)
      expect(flush([segment({ seq: 0, data: 100 }), bad])).to.have.length(2)
    })

    it('should pass UDP, IPv6 and anything malformed through untouched', () => {
      const udp = buildIpPacket({
        source: CLIENT,
        destination: SERVICE,
        protocol: 17,
        payload: buildUdp({
          source: CLIENT,
          destination: SERVICE,
          sourcePort: 1,
          destinationPort: 2,
          payload: new Uint8Array(30)
        })
      })
      const packets = [udp, new Uint8Array([0x60, 0, 0]), new Uint8Array([0x45])]
      expect(flush(packets).map((u) => [...u.subarray(VNET_HDR_LEN)])).to.deep.equal(
        packets.map((p) => [...p])
      )
    })
  })

  describe('when connections interleave', () => {
    it('should never let a connection’s packets overtake each other, whatever the mix', () => {
      const step = fc.record({
        port: fc.constantFrom(1, 2, 3),
        size: fc.constantFrom(0, 40, 100, 100, 100),
        push: fc.boolean(),
        skip: fc.constantFrom(0, 0, 0, 7)
      })
      fc.assert(
        fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
          const seqs = new Map<number, number>()
          const packets = steps.map((s) => {
            const seq = (seqs.get(s.port) ?? 0) + s.skip
            seqs.set(s.port, seq + s.size)
            return segment({ seq, data: s.size, port: s.port, push: s.push })
          })
          const units = flush(packets)
          // per connection: the bytes (and pure ACKs) in the order they were given
          const want = new Map<number, number[][]>()
          const got = new Map<number, number[][]>()
          for (const p of packets) {
            const port = (p[20]! << 8) | p[21]!
            want.set(port, [...(want.get(port) ?? []), [...p.subarray(24, 28), ...p.subarray(40)]])
          }
          for (const u of units) {
            const parts = segmentsOf(u)
            const list = Array.isArray(parts)
              ? parts.map((s) => {
                  const b = new Uint8Array(4)
                  new DataView(b.buffer).setUint32(0, s.seq)
                  return [...b, ...s.payload]
                })
              : [[...parts.subarray(24, 28), ...parts.subarray(40)]]
            const p = u.subarray(VNET_HDR_LEN)
            const port = (p[20]! << 8) | p[21]!
            got.set(port, [...(got.get(port) ?? []), ...list])
          }
          expect(got).to.deep.equal(want)
          expect(units.length).to.be.at.most(packets.length)
        }),
        { numRuns: 300 }
      )
    })
  })
})
