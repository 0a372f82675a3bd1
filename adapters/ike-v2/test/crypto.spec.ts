import { readFileSync } from 'node:fs'
import { expect } from 'chai'
import {
  decryptMessage,
  deriveChildKeys,
  deriveIkeKeys,
  encryptMessage,
  keyExchangeFromPrivate,
  prf,
  prfPlus,
  pskAuth,
  signedOctets,
  type SkKeys
} from '../src/crypto.js'
import { ExchangeType, HeaderFlag, PayloadType } from '../src/constants.js'
import { concat, parseMessage, type NoncePayload } from '../src/message.js'

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'))
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex').toUpperCase()
const kdf = JSON.parse(
  readFileSync(new URL('./vectors/ikev2-kdf.json', import.meta.url), 'utf8')
) as {
  Ni: string
  Nr: string
  SPIi: string
  SPIr: string
  g_ir: string
  g_ir_new: string
  expected: Record<string, string>
}
const kex = JSON.parse(
  readFileSync(new URL('./vectors/key-exchange.json', import.meta.url), 'utf8')
) as {
  x25519: { source: string; a: string; b: string; A: string; B: string; shared: string }[]
  ecp256: {
    source: string
    i: string
    gi_x: string
    gi_y: string
    gr_x: string
    gr_y: string
    g_ir: string
  }[]
}

describe('IKEv2 crypto', () => {
  describe('key derivation (ikev2-kdf.json)', () => {
    const ni = hex(kdf.Ni)
    const nr = hex(kdf.Nr)
    const spiI = hex(kdf.SPIi)
    const spiR = hex(kdf.SPIr)
    const gir = hex(kdf.g_ir)
    const e = kdf.expected

    it('should compute SKEYSEED = prf(Ni|Nr, g_ir)', () => {
      expect(toHex(prf('hmac-sha2-256', concat(ni, nr), gir))).to.equal(
        e['SKEYSEED = prf(Ni|Nr, g_ir)']
      )
    })

    it('should compute DKM = prf+(SKEYSEED, Ni|Nr|SPIi|SPIr)', () => {
      const want = e['DKM = prf+(SKEYSEED, Ni|Nr|SPIi|SPIr)']
      const skeyseed = hex(e['SKEYSEED = prf(Ni|Nr, g_ir)'])
      const dkm = prfPlus('hmac-sha2-256', skeyseed, concat(ni, nr, spiI, spiR), want.length / 2)
      expect(toHex(dkm)).to.equal(want)
    })

    it('should split DKM into the IKE SA keys in RFC 7296 order', () => {
      const dkm = hex(e['DKM = prf+(SKEYSEED, Ni|Nr|SPIi|SPIr)'])
      const keys = deriveIkeKeys({
        prf: 'hmac-sha2-256',
        encryption: { algorithm: 'aes-cbc', keyBits: 256 },
        integrity: 'hmac-sha2-256-128',
        ni,
        nr,
        spiI,
        spiR,
        sharedSecret: gir
      })
      expect(toHex(keys.skeyseed)).to.equal(e['SKEYSEED = prf(Ni|Nr, g_ir)'])
      const all = concat(keys.skD, keys.skAi, keys.skAr, keys.skEi, keys.skEr, keys.skPi, keys.skPr)
      expect(toHex(all)).to.equal(toHex(dkm.subarray(0, all.length)))
    })

    it('should compute Child SA KEYMAT = prf+(SK_d, Ni|Nr)', () => {
      const want = e['KEYMAT = prf+(SK_d, Ni|Nr), SK_d = first 32 bytes of DKM']
      const skD = hex(e['DKM = prf+(SKEYSEED, Ni|Nr|SPIi|SPIr)']).subarray(0, 32)
      expect(toHex(prfPlus('hmac-sha2-256', skD, concat(ni, nr), want.length / 2))).to.equal(want)
      const keys = deriveChildKeys(
        'hmac-sha2-256',
        skD,
        ni,
        nr,
        { algorithm: 'aes-gcm-16', keyBits: 256 },
        'none'
      )
      expect(toHex(concat(keys.encrI, keys.encrR))).to.equal(want.slice(0, 144))
    })

    it('should compute KEYMAT with PFS = prf+(SK_d, g_ir_new|Ni|Nr)', () => {
      const want = e['KEYMAT with PFS = prf+(SK_d, g_ir_new|Ni|Nr)']
      const skD = hex(e['DKM = prf+(SKEYSEED, Ni|Nr|SPIi|SPIr)']).subarray(0, 32)
      const keys = deriveChildKeys(
        'hmac-sha2-256',
        skD,
        ni,
        nr,
        { algorithm: 'aes-cbc', keyBits: 128 },
        'hmac-sha2-256-128',
        hex(kdf.g_ir_new)
      )
      expect(toHex(concat(keys.encrI, keys.integI, keys.encrR, keys.integR))).to.equal(
        want.slice(0, 192)
      )
    })

    it('should compute the rekey SKEYSEED = prf(SK_d, g_ir_new|Ni|Nr)', () => {
      const skD = hex(e['DKM = prf+(SKEYSEED, Ni|Nr|SPIi|SPIr)']).subarray(0, 32)
      const keys = deriveIkeKeys({
        prf: 'hmac-sha2-256',
        encryption: { algorithm: 'aes-gcm-16', keyBits: 256 },
        integrity: 'none',
        ni,
        nr,
        spiI,
        spiR,
        sharedSecret: hex(kdf.g_ir_new),
        rekey: { skD, prf: 'hmac-sha2-256' }
      })
      expect(toHex(keys.skeyseed)).to.equal(e['rekey SKEYSEED = prf(SK_d, g_ir_new|Ni|Nr)'])
    })
  })

  describe('key exchange (key-exchange.json)', () => {
    for (const v of kex.x25519) {
      it(`should match X25519 ${v.source}`, () => {
        const a = keyExchangeFromPrivate('curve25519', hex(v.a))
        const b = keyExchangeFromPrivate('curve25519', hex(v.b))
        expect(toHex(a.publicValue)).to.equal(v.A.toUpperCase())
        expect(toHex(b.publicValue)).to.equal(v.B.toUpperCase())
        expect(toHex(a.computeSharedSecret(b.publicValue))).to.equal(v.shared.toUpperCase())
        expect(toHex(b.computeSharedSecret(a.publicValue))).to.equal(v.shared.toUpperCase())
      })
    }
    for (const v of kex.ecp256) {
      it(`should match ECP-256 ${v.source}`, () => {
        const i = keyExchangeFromPrivate('ecp256', hex(v.i))
        expect(toHex(i.publicValue)).to.equal(v.gi_x + v.gi_y)
        expect(toHex(i.computeSharedSecret(hex(v.gr_x + v.gr_y)))).to.equal(v.g_ir)
      })
    }
    it('should agree on a MODP-2048 shared secret of 256 bytes', () => {
      const a = keyExchangeFromPrivate('modp2048', new Uint8Array(32).fill(7))
      const b = keyExchangeFromPrivate('modp2048', new Uint8Array(32).fill(9))
      expect(a.publicValue).to.have.length(256)
      const s = a.computeSharedSecret(b.publicValue)
      expect(s).to.have.length(256)
      expect(toHex(s)).to.equal(toHex(b.computeSharedSecret(a.publicValue)))
    })
    it('should reject an X25519 value of the wrong length and a MODP value of 1', () => {
      const a = keyExchangeFromPrivate('curve25519', new Uint8Array(32).fill(1))
      expect(() => a.computeSharedSecret(new Uint8Array(31)))
        .to.throw()
        .with.property('kind', 'INVALID_SYNTAX')
      const m = keyExchangeFromPrivate('modp2048', new Uint8Array(32).fill(1))
      const one = new Uint8Array(256)
      one[255] = 1
      expect(() => m.computeSharedSecret(one))
        .to.throw()
        .with.property('kind', 'INVALID_SYNTAX')
    })
  })

  describe('SK payload', () => {
    const header = {
      spiI: new Uint8Array(8).fill(1),
      spiR: new Uint8Array(8).fill(2),
      version: 0x20,
      exchange: ExchangeType.INFORMATIONAL,
      flags: HeaderFlag.INITIATOR,
      messageId: 5
    }
    const payloads = [
      { type: PayloadType.NONCE, data: new Uint8Array(20).fill(0xab) } as NoncePayload
    ]
    const suites: [string, SkKeys, number][] = [
      [
        'AES-GCM-16-128',
        {
          encryption: { algorithm: 'aes-gcm-16', keyBits: 128 },
          integrity: 'none',
          encryptionKey: new Uint8Array(20).fill(3),
          integrityKey: new Uint8Array(0)
        },
        8
      ],
      [
        'AES-GCM-16-256',
        {
          encryption: { algorithm: 'aes-gcm-16', keyBits: 256 },
          integrity: 'none',
          encryptionKey: new Uint8Array(36).fill(3),
          integrityKey: new Uint8Array(0)
        },
        8
      ],
      [
        'AES-CBC-256 + HMAC-SHA2-256-128',
        {
          encryption: { algorithm: 'aes-cbc', keyBits: 256 },
          integrity: 'hmac-sha2-256-128',
          encryptionKey: new Uint8Array(32).fill(3),
          integrityKey: new Uint8Array(32).fill(4)
        },
        16
      ]
    ]
    for (const [name, keys, ivLength] of suites) {
      describe(`when the suite is ${name}`, () => {
        it('should round-trip and reject any flipped bit', () => {
          const msg = encryptMessage(header, payloads, keys, new Uint8Array(ivLength).fill(9))
          const parsed = parseMessage(msg)
          const inner = decryptMessage(parsed, keys)
          expect((inner[0] as NoncePayload).data).to.deep.equal(payloads[0].data)
          for (const pos of [0, 20, 30, msg.length - 20, msg.length - 1]) {
            const bad = msg.slice()
            bad[pos] ^= 1
            expect(() => decryptMessage(parseMessage(bad), keys)).to.throw()
          }
        })
      })
    }
  })

  describe('pskAuth', () => {
    it('should equal prf(prf(psk, "Key Pad for IKEv2"), octets)', () => {
      const octets = signedOctets('hmac-sha2-256', hex('00'), hex('01'), hex('02'), hex('03'))
      const inner = prf('hmac-sha2-256', hex('aa'), new TextEncoder().encode('Key Pad for IKEv2'))
      expect(pskAuth('hmac-sha2-256', hex('aa'), octets)).to.deep.equal(
        prf('hmac-sha2-256', inner, octets)
      )
    })
  })
})
