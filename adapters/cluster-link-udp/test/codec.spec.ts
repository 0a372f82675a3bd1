import { expect } from 'chai'
import fc from 'fast-check'
import type { ClusterMessage, FiveTuple } from '@vipsec/interface'
import { buildIcmpEcho, buildIpPacket, buildUdp, readFlow } from '@vipsec/wire'
import { decodeMessage, encodeMessage, messageLength, writeMessage } from '../src/index.js'
import {
  ANNOUNCEMENT_LENGTH,
  CAPABILITY_COMPACT_PACKETS,
  decodePayload,
  writeAnnouncement
} from '../src/codec.js'

const notice = { type: 'ownership:notice', dvipa: '10.0.0.100', owner: 'dp-2', epoch: 9 } as const
const inbound: ClusterMessage = {
  type: 'packet:inbound',
  dvipa: '10.0.0.100',
  epoch: 3,
  flow: {
    protocol: 17,
    sourceAddress: '172.16.2.1',
    sourcePort: 41000,
    destinationAddress: '10.77.0.10',
    destinationPort: 7
  },
  packet: new Uint8Array([0x45, 0, 0, 28, 1, 2, 3])
}

/** A UDP packet from `source` to `destination` with `payload` bytes. */
function udpPacket(
  source: string,
  destination: string,
  ports: [number, number],
  payload = 12
): Uint8Array {
  const udp = buildUdp({
    source,
    destination,
    sourcePort: ports[0],
    destinationPort: ports[1],
    payload: new Uint8Array(payload).fill(7)
  })
  return buildIpPacket({ source, destination, protocol: 17, payload: udp })
}

/** The flow as the connection table sees it: inbound as is, outbound reversed. */
function reversed(flow: FiveTuple): FiveTuple {
  return {
    protocol: flow.protocol,
    sourceAddress: flow.destinationAddress,
    sourcePort: flow.destinationPort,
    destinationAddress: flow.sourceAddress,
    destinationPort: flow.sourcePort
  }
}

describe('cluster link codec', () => {
  describe('packet messages whose flow is the packet’s', () => {
    const request = udpPacket('172.16.2.1', '10.77.0.10', [41000, 7], 1372)
    const reply = udpPacket('10.77.0.10', '172.16.2.1', [7, 41000], 1372)
    const inboundFull = {
      type: 'packet:inbound',
      dvipa: '10.88.0.50',
      epoch: 4,
      flow: readFlow(request)!,
      packet: request
    } as const
    const outboundFull = {
      type: 'packet:outbound',
      dvipa: '10.88.0.50',
      epoch: 4,
      flow: reversed(readFlow(reply)!),
      packet: reply
    } as const

    it('should leave the flow out and carry the DVIPA as 4 bytes, so that a 1400-byte packet fits a 1500-byte LAN in one frame', () => {
      for (const m of [inboundFull, outboundFull]) {
        // type, DVIPA length and bytes, epoch, then the packet
        expect(messageLength(m), m.type).to.equal(1 + 1 + 4 + 8 + 1400)
        expect(decodeMessage(encodeMessage(m))).to.deep.equal(m)
        // frame: 25-byte header, sender id (`target-1`), 16-byte tag; UDP payload of 1472
        expect(25 + 'target-1'.length + messageLength(m) + 16).to.be.at.most(1472)
      }
    })

    it('should keep the full form when the flow is not what the packet says', () => {
      const icmp = buildIpPacket({
        source: '10.88.0.50',
        destination: '172.16.2.1',
        protocol: 1,
        payload: buildIcmpEcho({
          kind: 'request',
          source: '10.88.0.50',
          destination: '172.16.2.1',
          identifier: 1,
          sequence: 2
        })
      })
      const cases: Extract<ClusterMessage, { type: `packet:${string}` }>[] = [
        // an ICMP error sent for a connection carries the connection's flow
        { ...inboundFull, packet: icmp },
        // a flow that differs in one field
        { ...inboundFull, flow: { ...inboundFull.flow, sourcePort: 41001 } },
        { ...outboundFull, flow: readFlow(reply)! },
        { ...inboundFull, flow: { ...inboundFull.flow, sourceAddress: '172.16.2.01' } },
        // a DVIPA that is not an address in its canonical form
        { ...inboundFull, dvipa: 'dvipa-1' },
        { ...inboundFull, dvipa: '2001:DB8::1' }
      ]
      for (const m of cases) {
        expect(decodeMessage(encodeMessage(m)), JSON.stringify(m.flow)).to.deep.equal(m)
        expect(messageLength(m)).to.be.greaterThan(1 + 1 + 4 + 8 + m.packet.length)
      }
    })

    it('should round-trip any flow exactly, compact or not', () => {
      const octet = fc.integer({ min: 0, max: 255 })
      const v4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join('.'))
      const text = fc.oneof(v4, fc.constantFrom('01.2.3.4', '1.2.3', '1.2.3.4.5', '', '::1'))
      const port = fc.integer({ min: 0, max: 65535 })
      fc.assert(
        fc.property(v4, v4, port, port, text, text, fc.boolean(), (a, b, p, q, x, y, out) => {
          const packet = udpPacket(a, b, [p, q])
          const own = out ? reversed(readFlow(packet)!) : readFlow(packet)!
          for (const flow of [
            own,
            { ...own, sourceAddress: x },
            { ...own, destinationAddress: y }
          ]) {
            const m = {
              type: out ? 'packet:outbound' : 'packet:inbound',
              dvipa: y,
              epoch: 2,
              flow,
              packet
            } as const
            const bytes = new Uint8Array(messageLength(m))
            expect(writeMessage(bytes, 0, m)).to.equal(bytes.length)
            expect(decodeMessage(bytes)).to.deep.equal(m)
          }
        }),
        { numRuns: 2000 }
      )
    })
  })

  describe('decodeMessage', () => {
    it('should never throw, whatever the bytes', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
          const result = decodeMessage(bytes)
          return result === 'malformed' || typeof result.type === 'string'
        }),
        { numRuns: 5000 }
      )
    })

    it('should round-trip every message type', () => {
      for (const m of [notice, inbound, { type: 'heartbeat', sequence: 7 } as const]) {
        expect(decodeMessage(encodeMessage(m))).to.deep.equal(m)
      }
    })

    it('should reject every truncation of a notice, and trailing bytes', () => {
      const bytes = encodeMessage(notice)
      for (let n = 0; n < bytes.length; n++)
        expect(decodeMessage(bytes.subarray(0, n))).to.equal('malformed')
      expect(decodeMessage(new Uint8Array([...bytes, 0]))).to.equal('malformed')
    })
  })

  describe('the full form, for a receiver not known to read the compact one', () => {
    it('should carry the flow and the DVIPA as text, type 1 or 2, and decode to the same message', () => {
      const request = udpPacket('172.16.2.1', '10.77.0.10', [41000, 7], 100)
      const m = {
        type: 'packet:inbound',
        dvipa: '10.88.0.50',
        epoch: 4,
        flow: readFlow(request)!,
        packet: request
      } as const
      const full = encodeMessage(m, false)
      expect(full[0]).to.equal(1)
      expect(full.length).to.equal(messageLength(m, false))
      expect(messageLength(m, false)).to.be.greaterThan(messageLength(m))
      expect(decodeMessage(full)).to.deep.equal(m)
      const out = { ...m, type: 'packet:outbound', flow: reversed(readFlow(request)!) } as const
      expect(encodeMessage(out, false)[0]).to.equal(2)
      expect(encodeMessage(out)[0]).to.equal(6)
    })
  })

  describe('decodePayload', () => {
    it('should read an announcement, ignoring bits and fields it does not know', () => {
      const bytes = new Uint8Array(ANNOUNCEMENT_LENGTH + 3).fill(0xaa)
      const at = writeAnnouncement(bytes, 0, {
        capabilities: CAPABILITY_COMPACT_PACKETS | 0x80000000,
        knowsYou: true
      })
      expect(at).to.equal(ANNOUNCEMENT_LENGTH)
      const decoded = decodePayload(bytes)
      expect(decoded).to.deep.equal({
        type: 'link:announcement',
        capabilities: (CAPABILITY_COMPACT_PACKETS | 0x80000000) >>> 0,
        knowsYou: true
      })
      writeAnnouncement(bytes, 0, { capabilities: 0, knowsYou: false })
      expect(decodePayload(bytes)).to.deep.include({ capabilities: 0, knowsYou: false })
      for (let n = 0; n < ANNOUNCEMENT_LENGTH; n++) {
        expect(decodePayload(bytes.subarray(0, n))).to.equal('malformed')
      }
      // a cluster message decoder (what the link hands on) never takes one
      expect(decodeMessage(bytes)).to.equal('malformed')
      expect(decodePayload(encodeMessage(notice))).to.deep.equal(notice)
    })
  })

  describe('writeMessage', () => {
    it('should write exactly messageLength bytes at the offset, ASCII or not, as before', () => {
      const texts = fc.oneof(
        fc.constantFrom('10.0.0.100', '2001:db8::1', ''),
        fc.string({ unit: 'grapheme' })
      )
      fc.assert(
        fc.property(texts, texts, fc.nat({ max: 2 ** 40 }), (dvipa, owner, epoch) => {
          for (const m of [
            { type: 'ownership:notice', dvipa, owner, epoch } as const,
            { ...inbound, dvipa, flow: { ...inbound.flow, sourceAddress: owner }, epoch }
          ] satisfies ClusterMessage[]) {
            const out = new Uint8Array(messageLength(m) + 5).fill(0xee)
            expect(writeMessage(out, 3, m)).to.equal(3 + messageLength(m))
            expect([...out.subarray(0, 3), ...out.subarray(out.length - 2)]).to.deep.equal([
              0xee, 0xee, 0xee, 0xee, 0xee
            ])
            expect(decodeMessage(out.subarray(3, 3 + messageLength(m)))).to.deep.equal(m)
            // the same bytes as a UTF-8 encoding with 2-byte lengths would give
            const enc = new TextEncoder().encode(m.dvipa)
            expect([...out.subarray(6, 6 + enc.length)]).to.deep.equal([...enc])
          }
        }),
        { numRuns: 500 }
      )
    })

    it('should refuse a string longer than 65535 bytes', () => {
      expect(() => messageLength({ ...notice, owner: 'x'.repeat(65536) })).to.throw(RangeError)
    })
  })
})
