import { expect } from 'chai'
import { ExchangeType, HeaderFlag, PayloadType, TransformType } from '../src/constants.js'
import { encodeMessage, parseMessage, type SaPayload } from '../src/message.js'

const header = {
  spiI: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8),
  spiR: Uint8Array.of(8, 7, 6, 5, 4, 3, 2, 1),
  version: 0x20,
  exchange: ExchangeType.IKE_SA_INIT,
  flags: HeaderFlag.RESPONSE,
  messageId: 0
}

function sa(numbers: number[]): SaPayload {
  return {
    type: PayloadType.SA,
    proposals: numbers.map((number) => ({
      number,
      protocol: 1,
      spi: new Uint8Array(0),
      transforms: [
        { type: TransformType.ENCR, id: 20, keyLength: 128 },
        { type: TransformType.PRF, id: 5 },
        { type: TransformType.KE, id: 31 }
      ]
    }))
  } as SaPayload
}

describe('parseMessage', () => {
  describe('when an SA payload answers with the responder’s choice (RFC 7296 section 3.3.1)', () => {
    it('should keep the chosen proposal’s own number, not only 1', () => {
      for (const n of [2, 3, 17]) {
        const parsed = parseMessage(encodeMessage(header, [sa([n])]))
        const got = parsed.payloads.find((p) => p.type === PayloadType.SA) as SaPayload
        expect(got.proposals.map((p) => p.number)).to.deep.equal([n])
      }
    })

    it('should still refuse proposal number 0 and numbers out of sequence', () => {
      expect(() => parseMessage(encodeMessage(header, [sa([0])]))).to.throw(/out of sequence/)
      expect(() => parseMessage(encodeMessage(header, [sa([1, 3])]))).to.throw(/out of sequence/)
    })
  })
})
