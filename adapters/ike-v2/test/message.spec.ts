import { expect } from 'chai'
import {
  ExchangeType,
  HeaderFlag,
  NotifyType,
  PayloadType,
  TransformType
} from '../src/constants.js'
import {
  encodeMessage,
  findNotify,
  notify,
  parseMessage,
  type DeletePayload,
  type IdPayload,
  type KePayload,
  type Payload,
  type SaPayload,
  type TsPayload
} from '../src/message.js'

const header = {
  spiI: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8),
  spiR: new Uint8Array(8),
  version: 0x20,
  exchange: ExchangeType.IKE_SA_INIT,
  flags: HeaderFlag.INITIATOR,
  messageId: 0
}

const every: Payload[] = [
  {
    type: PayloadType.SA,
    proposals: [
      {
        number: 1,
        protocol: 1,
        spi: new Uint8Array(0),
        transforms: [
          { type: TransformType.ENCR, id: 20, keyLength: 256 },
          { type: TransformType.PRF, id: 5 },
          { type: TransformType.KE, id: 31 }
        ]
      },
      {
        number: 2,
        protocol: 1,
        spi: new Uint8Array(0),
        transforms: [{ type: TransformType.KE, id: 19 }]
      }
    ]
  } as SaPayload,
  { type: PayloadType.KE, group: 31, data: new Uint8Array(32).fill(5) } as KePayload,
  { type: PayloadType.NONCE, data: new Uint8Array(32).fill(6) },
  notify(NotifyType.NAT_DETECTION_SOURCE_IP, new Uint8Array(20).fill(7)),
  { type: PayloadType.IDi, idType: 2, data: new TextEncoder().encode('a.example') } as IdPayload,
  { type: PayloadType.AUTH, method: 2, data: new Uint8Array(32).fill(8) },
  { type: PayloadType.CERT, encoding: 4, data: Uint8Array.of(0x30, 0) },
  { type: PayloadType.CERTREQ, encoding: 4, data: new Uint8Array(20) },
  {
    type: PayloadType.DELETE,
    protocol: 3,
    spis: [Uint8Array.of(0, 0, 1, 0), Uint8Array.of(0, 0, 2, 0)]
  } as DeletePayload,
  {
    type: PayloadType.TSi,
    selectors: [
      {
        type: 7,
        protocol: 17,
        startPort: 0,
        endPort: 65535,
        startAddress: Uint8Array.of(10, 0, 0, 1),
        endAddress: Uint8Array.of(10, 0, 0, 9)
      },
      {
        type: 8,
        protocol: 0,
        startPort: 0,
        endPort: 65535,
        startAddress: new Uint8Array(16),
        endAddress: new Uint8Array(16).fill(255)
      }
    ]
  } as TsPayload,
  { type: PayloadType.VENDOR, body: Uint8Array.of(1, 2, 3) }
]

describe('IKEv2 message codec', () => {
  describe('encodeMessage and parseMessage', () => {
    it('should round-trip every payload type it builds', () => {
      const raw = encodeMessage(header, every)
      const m = parseMessage(raw)
      expect(m.header.exchange).to.equal(ExchangeType.IKE_SA_INIT)
      expect(m.payloads.map((p) => p.type)).to.deep.equal(every.map((p) => p.type))
      expect(encodeMessage(header, m.payloads)).to.deep.equal(raw)
      expect(findNotify(m.payloads, NotifyType.NAT_DETECTION_SOURCE_IP)?.data).to.have.length(20)
      expect((m.payloads[0] as SaPayload).proposals[0].transforms[0].keyLength).to.equal(256)
    })

    describe('when the message is truncated or its lengths lie', () => {
      it('should throw IkeProtocolError INVALID_SYNTAX for every truncation', () => {
        const raw = encodeMessage(header, every)
        for (let n = 0; n < raw.length; n++) {
          const cut = raw.slice(0, n)
          if (n >= 28) ((cut[27] = n & 0xff), (cut[26] = (n >> 8) & 0xff))
          expect(() => parseMessage(cut))
            .to.throw()
            .with.property('kind')
        }
      })
      it('should reject a header length that differs from the datagram', () => {
        const raw = encodeMessage(header, every)
        expect(() => parseMessage(raw.subarray(0, raw.length - 1)))
          .to.throw()
          .with.property('kind', 'INVALID_SYNTAX')
      })
    })

    describe('when an unknown payload is critical', () => {
      it('should throw UNSUPPORTED_CRITICAL_PAYLOAD', () => {
        const raw = encodeMessage(header, [{ type: 99, critical: true, body: new Uint8Array(2) }])
        expect(() => parseMessage(raw))
          .to.throw()
          .with.property('kind', 'UNSUPPORTED_CRITICAL_PAYLOAD')
      })
      it('should keep a non-critical unknown payload as bytes', () => {
        const raw = encodeMessage(header, [{ type: 99, body: new Uint8Array(2) }])
        expect(parseMessage(raw).payloads[0].type).to.equal(99)
      })
    })

    describe('when the major version is not 2', () => {
      it('should throw INVALID_MAJOR_VERSION', () => {
        const raw = encodeMessage({ ...header, version: 0x30 }, [])
        expect(() => parseMessage(raw))
          .to.throw()
          .with.property('kind', 'INVALID_MAJOR_VERSION')
      })
    })
  })
})
