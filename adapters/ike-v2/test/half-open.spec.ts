import { expect } from 'chai'
import { VirtualClock } from '@vipsec/clock'
import { SeededRandomSource } from '@vipsec/random'
import { tryParseIp } from '@vipsec/wire'
import {
  COOKIE_SECRET_LIFETIME_MS,
  HalfOpenTable,
  scanInitialRequest,
  writeAddressBytes
} from '../src/half-open.js'
import { wire } from '../src/index.js'

const { ExchangeType, HeaderFlag, NotifyType, PayloadType } = wire

const NI = new Uint8Array(32).fill(7)
const SPI = new Uint8Array(8).fill(1)
const FROM = { address: '10.0.0.1', port: 500 }

/** An initial IKE_SA_INIT request: SA, KE, the given notifies, Nonce (`NI`). */
function request(
  notifies: wire.Payload[] = [],
  header: Partial<wire.IkeHeader> = {},
  nonce = NI
): Uint8Array {
  return wire.encodeMessage(
    {
      spiI: SPI,
      spiR: new Uint8Array(8),
      version: 0x20,
      exchange: ExchangeType.IKE_SA_INIT,
      flags: HeaderFlag.INITIATOR,
      messageId: 0,
      ...header
    },
    [
      ...notifies,
      {
        type: PayloadType.SA,
        proposals: [
          {
            number: 1,
            protocol: 1,
            spi: new Uint8Array(0),
            transforms: [{ type: 4, id: 31 }]
          }
        ]
      } as wire.SaPayload,
      { type: PayloadType.KE, group: 31, data: new Uint8Array(32).fill(3) } as wire.KePayload,
      { type: PayloadType.NONCE, data: nonce } as wire.NoncePayload
    ]
  )
}

describe('HalfOpenTable', () => {
  describe('.validCookie', () => {
    it('should accept its own cookie, for that request only', () => {
      const t = new HalfOpenTable(new VirtualClock(), new SeededRandomSource({ seed: 'c' }), 10)
      const c = t.cookieFor(NI, FROM, SPI)
      expect(t.validCookie(c, NI, FROM, SPI)).to.equal(true)
      expect(t.validCookie(c, NI, { address: '10.0.0.9', port: 500 }, SPI)).to.equal(false)
      expect(t.validCookie(c, NI, { ...FROM, port: 4500 }, SPI)).to.equal(false)
      expect(t.validCookie(c, NI, FROM, new Uint8Array(8).fill(2))).to.equal(false)
      expect(t.validCookie(c.subarray(1), NI, FROM, SPI)).to.equal(false)
    })

    describe('when the secret has been replaced', () => {
      it('should accept a cookie of the previous secret, not of the one before', async () => {
        const clock = new VirtualClock()
        const t = new HalfOpenTable(clock, new SeededRandomSource({ seed: 'c' }), 10)
        const c = t.cookieFor(NI, FROM, SPI)
        await clock.advance(COOKIE_SECRET_LIFETIME_MS)
        expect(t.validCookie(c, NI, FROM, SPI)).to.equal(true)
        expect(t.cookieFor(NI, FROM, SPI)).to.not.deep.equal(c)
        await clock.advance(COOKIE_SECRET_LIFETIME_MS)
        expect(t.validCookie(c, NI, FROM, SPI)).to.equal(false)
      })
    })

    it('should hash the bytes of the source address, not its text', () => {
      const t = new HalfOpenTable(new VirtualClock(), new SeededRandomSource({ seed: 'c' }), 4)
      const forms = [
        '2001:db8::1',
        '2001:0db8:0000:0000:0000:0000:0000:0001',
        '2001:DB8:0:0::1',
        '2001:db8:0:0:0:0:0:1'
      ]
      const c = t.cookieFor(NI, { address: forms[0]!, port: 500 }, SPI)
      for (const address of forms) {
        expect(t.validCookie(c, NI, { address, port: 500 }, SPI), address).to.equal(true)
      }
      expect(t.validCookie(c, NI, { address: '2001:db8::2', port: 500 }, SPI)).to.equal(false)
      // an IPv4-mapped address in its two forms
      const m = t.cookieFor(NI, { address: '::ffff:10.0.0.1', port: 500 }, SPI)
      expect(t.validCookie(m, NI, { address: '::ffff:a00:1', port: 500 }, SPI)).to.equal(true)
      expect(t.validCookie(m, NI, FROM, SPI)).to.equal(false)
      // the stateless response of the flood path makes the same cookie
      const data = request()
      const at = scanInitialRequest(data)
      const r = t.cookieResponse(data, at >> 9, at & 511, { address: forms[1]!, port: 500 }, 0)
      const cookie = wire.findNotify(wire.parseMessage(r).payloads, NotifyType.COOKIE)!.data
      expect(t.validCookie(cookie, NI, { address: forms[0]!, port: 500 }, SPI)).to.equal(true)
    })

    it('should read the bytes of an address as the IP parser does', () => {
      const texts = [
        '10.0.0.1',
        '255.255.255.255',
        '0.0.0.0',
        '::',
        '::1',
        '1::',
        'fe80::1:2',
        '1:2:3:4:5:6:7:8',
        '1:2:3:4:5:6:7::',
        '::ffff:192.0.2.1',
        '64:ff9b::198.51.100.7',
        'ABCD:ef01::',
        '256.0.0.1',
        '1.2.3',
        '1.2.3.4.5',
        '1..2.3',
        ':::',
        '1:::2',
        '1::2::3',
        '1:2:3:4:5:6:7:8:9',
        '12345::',
        ':1',
        '1:',
        'fe80::1%eth0',
        '::1.2.3',
        'g::1',
        ''
      ]
      const out = new Uint8Array(20)
      for (const text of texts) {
        const want = tryParseIp(text)
        out.fill(0xee)
        const n = writeAddressBytes(text, out, 2)
        expect(n, text).to.equal(want?.length ?? 0)
        if (want !== undefined) expect([...out.subarray(2, 2 + n)], text).to.deep.equal([...want])
      }
    })
  })

  describe('.cookieResponse', () => {
    it('should be the COOKIE response the encoder makes, with a cookie validCookie accepts', () => {
      const t = new HalfOpenTable(new VirtualClock(), new SeededRandomSource({ seed: 'c' }), 10)
      const data = request()
      const at = scanInitialRequest(data)
      const r = t.cookieResponse(data, at >> 9, at & 511, FROM, 0)
      const expected = wire.encodeMessage(
        {
          spiI: SPI,
          spiR: new Uint8Array(8),
          version: 0x20,
          exchange: ExchangeType.IKE_SA_INIT,
          flags: HeaderFlag.RESPONSE,
          messageId: 0
        },
        [wire.notify(NotifyType.COOKIE, t.cookieFor(NI, FROM, SPI))]
      )
      expect(Buffer.from(r).equals(expected)).to.equal(true)
      const cookie = wire.findNotify(wire.parseMessage(r).payloads, NotifyType.COOKIE)!.data
      expect(t.validCookie(cookie, NI, FROM, SPI)).to.equal(true)
      expect(t.validCookie(cookie, NI, { ...FROM, address: '10.0.0.10' }, SPI)).to.equal(false)
      // behind the non-ESP marker of port 4500
      const natT = t.cookieResponse(data, at >> 9, at & 511, FROM, 4)
      expect(Buffer.from(natT).equals(Buffer.concat([Buffer.alloc(4), expected]))).to.equal(true)
    })
  })

  describe('scanInitialRequest', () => {
    it('should find the Nonce of a well-formed initial request', () => {
      const data = request([wire.notify(NotifyType.NAT_DETECTION_SOURCE_IP, new Uint8Array(20))])
      const at = scanInitialRequest(data)
      expect(at & 511).to.equal(32)
      expect(Buffer.from(data.subarray(at >> 9, (at >> 9) + 32)).equals(NI)).to.equal(true)
      expect(scanInitialRequest(request([], {}, new Uint8Array(256).fill(9))) & 511).to.equal(256)
    })

    it('should leave every other shape to the full parser', () => {
      const cases: Record<string, Uint8Array> = {
        'a COOKIE': request([wire.notify(NotifyType.COOKIE, new Uint8Array(33))]),
        'a SPIr': request([], { spiR: new Uint8Array(8).fill(1) }),
        'a response': request([], { flags: HeaderFlag.RESPONSE | HeaderFlag.INITIATOR }),
        'the responder flag cleared': request([], { flags: 0 }),
        'message ID 1': request([], { messageId: 1 }),
        'another exchange': request([], { exchange: ExchangeType.IKE_AUTH }),
        'a short Nonce': request([], {}, new Uint8Array(15)),
        'a long Nonce': request([], {}, new Uint8Array(257)),
        'a truncated datagram': request().subarray(0, 100),
        'a trailing byte': wire.concat(request(), Uint8Array.of(0)),
        'an unknown payload': request([
          { type: 200, critical: true, body: new Uint8Array(4) } as wire.OpaquePayload
        ])
      }
      const full = wire.parseMessage(request())
      const without = (type: number): Uint8Array =>
        wire.encodeMessage(
          full.header,
          full.payloads.filter((x) => x.type !== type)
        )
      cases['no KE'] = without(PayloadType.KE)
      cases['no SA'] = without(PayloadType.SA)
      cases['no Nonce'] = without(PayloadType.NONCE)
      cases['two SAs'] = wire.encodeMessage(full.header, [full.payloads[0]!, ...full.payloads])
      for (const [what, data] of Object.entries(cases)) {
        expect(scanInitialRequest(data), what).to.equal(-1)
      }
      const bad = request()
      bad[17] = 0x30 // IKEv3
      expect(scanInitialRequest(bad)).to.equal(-1)
      const short = request()
      short[27] -= 1 // the header's length is not the datagram's
      expect(scanInitialRequest(short)).to.equal(-1)
    })
  })

  describe('.mayHold', () => {
    it('should say whether a half-open SA may have that SPIi, until it settles', () => {
      const t = new HalfOpenTable(new VirtualClock(), new SeededRandomSource({ seed: 'c' }), 4)
      const data = request()
      expect(t.mayHold(data, 0)).to.equal(false)
      const sa = {} as never
      t.add(SPI, FROM, sa)
      expect(t.mayHold(data, 0)).to.equal(true)
      t.settle(sa)
      expect(t.mayHold(data, 0)).to.equal(false)
    })
  })

  describe('.takeNotify', () => {
    it('should allow a burst of the rate, then refill over time', async () => {
      const clock = new VirtualClock()
      const t = new HalfOpenTable(clock, new SeededRandomSource({ seed: 'c' }), 4)
      const first = Array.from({ length: 6 }, () => t.takeNotify())
      expect(first).to.deep.equal([true, true, true, true, false, false])
      await clock.advance(500)
      expect([t.takeNotify(), t.takeNotify(), t.takeNotify()]).to.deep.equal([true, true, false])
    })
  })

  describe('.settle', () => {
    it('should forget the SA and its address count once', () => {
      const t = new HalfOpenTable(new VirtualClock(), new SeededRandomSource({ seed: 'c' }), 4)
      const sa = {} as never
      t.add(SPI, FROM, sa)
      expect(t.countFor(FROM.address)).to.equal(1)
      expect(t.settle(sa)).to.equal(true)
      expect(t.settle(sa)).to.equal(false)
      expect(t.countFor(FROM.address)).to.equal(0)
      expect(t.size).to.equal(0)
    })

    it('should take back the SPI prefix that add filed, whatever the SPI and address', () => {
      const t = new HalfOpenTable(new VirtualClock(), new SeededRandomSource({ seed: 'c' }), 4)
      // three SPIs whose first 30 bits are equal: they differ only in the top two bits
      const spi = (top: number): Uint8Array => Uint8Array.of(top, 0xfe, 0xdc, 0xba, 9, 8, 7, 6)
      const [a, b, c] = [spi(0xff), spi(0x3f), spi(0x7f)]
      const from6 = { address: '2001:db8::7', port: 4500 }
      const [sa1, sa2, sa3] = [{}, {}, {}] as never[]
      t.add(a, FROM, sa1)
      t.add(b, from6, sa2)
      t.add(c, from6, sa3)
      expect(t.countFor(from6.address)).to.equal(2)
      expect(t.settle(sa1)).to.equal(true)
      expect(t.mayHold(b, 0)).to.equal(true)
      expect(t.settle(sa2)).to.equal(true)
      expect(t.mayHold(a, 0)).to.equal(true)
      expect(t.settle(sa3)).to.equal(true)
      for (const s of [a, b, c]) expect(t.mayHold(s, 0)).to.equal(false)
      expect(t.countFor(from6.address)).to.equal(0)
      expect(t.size).to.equal(0)
    })
  })
})
