import { expect } from 'chai'
import fc from 'fast-check'
import type { ClusterMessage } from '@vipsec/interface'
import { decodeMessage, encodeMessage, messageLength, writeMessage } from '../src/index.js'

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

describe('cluster link codec', () => {
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
