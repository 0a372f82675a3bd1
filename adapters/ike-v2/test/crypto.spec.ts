import { readFileSync } from 'node:fs'
import { expect } from 'chai'
import type { KeyExchangeGroup } from '@vipsec/interface'
import {
  decryptMessage,
  deriveChildKeys,
  deriveIkeKeys,
  createKeyExchange,
  encryptMessage,
  keyExchangeFromPrivate,
  openSk,
  prf,
  prfPlus,
  pskAuth,
  signedOctets,
  type SkKeys
} from '../src/crypto.js'
import { ExchangeType, HeaderFlag, PayloadType } from '../src/constants.js'
import { concat, notify, parseMessage, type NoncePayload } from '../src/message.js'
import { SeededRandomSource } from '@vipsec/random'

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
  x448: { source: string; a: string; b: string; A: string; B: string; shared: string }[]
} & Record<
  'ecp256' | 'ecp384' | 'ecp521',
  {
    source: string
    i: string
    r?: string
    gi_x: string
    gi_y: string
    gr_x: string
    gr_y: string
    g_ir: string
  }[]
>
const chacha = JSON.parse(
  readFileSync(new URL('./vectors/chacha20-poly1305-ikev2.json', import.meta.url), 'utf8')
) as {
  ikev2: {
    keyMaterial: string
    iv: string
    header: string
    skHeader: string
    plaintext: string
    ciphertext: string
    tag: string
    message: string
  }
}
const sha1 = JSON.parse(
  readFileSync(new URL('./vectors/hmac-sha1-rfc2202.json', import.meta.url), 'utf8')
) as { vectors: { name: string; key: string; data: string; mac: string }[] }

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
    for (const v of kex.x448) {
      it(`should match X448 ${v.source}`, () => {
        const a = keyExchangeFromPrivate('curve448', hex(v.a))
        const b = keyExchangeFromPrivate('curve448', hex(v.b))
        expect(toHex(a.publicValue)).to.equal(v.A.toUpperCase())
        expect(toHex(b.publicValue)).to.equal(v.B.toUpperCase())
        expect(toHex(a.computeSharedSecret(b.publicValue))).to.equal(v.shared.toUpperCase())
        expect(toHex(b.computeSharedSecret(a.publicValue))).to.equal(v.shared.toUpperCase())
      })
    }
    for (const group of ['ecp256', 'ecp384', 'ecp521'] as const) {
      for (const v of kex[group]) {
        it(`should match ${group.toUpperCase()} ${v.source}`, () => {
          const i = keyExchangeFromPrivate(group, hex(v.i))
          expect(toHex(i.publicValue)).to.equal(v.gi_x + v.gi_y)
          expect(toHex(i.computeSharedSecret(hex(v.gr_x + v.gr_y)))).to.equal(v.g_ir)
          if (v.r !== undefined) {
            const r = keyExchangeFromPrivate(group, hex(v.r))
            expect(toHex(r.publicValue)).to.equal(v.gr_x + v.gr_y)
            expect(toHex(r.computeSharedSecret(i.publicValue))).to.equal(v.g_ir)
          }
        })
      }
    }
    for (const [group, bytes] of [
      ['modp3072', 384],
      ['modp4096', 512]
    ] as const) {
      it(`should agree on a ${group.toUpperCase()} shared secret of ${bytes} bytes and refuse 1 and p-1's neighbours`, () => {
        const a = keyExchangeFromPrivate(group, new Uint8Array(32).fill(7))
        const b = keyExchangeFromPrivate(group, new Uint8Array(48).fill(9))
        expect(a.publicValue).to.have.length(bytes)
        const s = a.computeSharedSecret(b.publicValue)
        expect(s).to.have.length(bytes)
        expect(toHex(s)).to.equal(toHex(b.computeSharedSecret(a.publicValue)))
        const one = new Uint8Array(bytes)
        one[bytes - 1] = 1
        expect(() => a.computeSharedSecret(one))
          .to.throw()
          .with.property('kind', 'INVALID_SYNTAX')
        expect(() => a.computeSharedSecret(new Uint8Array(bytes - 1)))
          .to.throw()
          .with.property('kind', 'INVALID_SYNTAX')
      })
    }
    it('should draw private values that work for every group, and agree', () => {
      const random = new SeededRandomSource({ seed: 'groups' })
      const groups: Exclude<KeyExchangeGroup, 'none'>[] = [
        'curve25519',
        'curve448',
        'ecp256',
        'ecp384',
        'ecp521',
        'modp2048',
        'modp3072',
        'modp4096'
      ]
      for (const g of groups) {
        const a = createKeyExchange(g, random)
        const b = createKeyExchange(g, random)
        expect(toHex(a.computeSharedSecret(b.publicValue)), g).to.equal(
          toHex(b.computeSharedSecret(a.publicValue))
        )
      }
    })
    it('should refuse an X448 value of the wrong length and the all-zero point', () => {
      const a = keyExchangeFromPrivate('curve448', new Uint8Array(56).fill(1))
      expect(() => a.computeSharedSecret(new Uint8Array(32)))
        .to.throw()
        .with.property('kind', 'INVALID_SYNTAX')
      expect(() => a.computeSharedSecret(new Uint8Array(56)))
        .to.throw()
        .with.property('kind', 'INVALID_SYNTAX')
    })
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

  describe('SK payload with ChaCha20-Poly1305 (chacha20-poly1305-ikev2.json, RFC 7634 appendix B)', () => {
    const v = chacha.ikev2
    const keys: SkKeys = {
      encryption: { algorithm: 'chacha20-poly1305', keyBits: 256 },
      integrity: 'none',
      encryptionKey: hex(v.keyMaterial),
      integrityKey: new Uint8Array(0)
    }
    const h = hex(v.header)
    const header = {
      spiI: h.slice(0, 8),
      spiR: h.slice(8, 16),
      version: h[17],
      exchange: h[18],
      flags: h[19],
      messageId: Buffer.from(h).readUInt32BE(20)
    }
    it('should build the RFC message byte for byte (no padding, salt then IV as the nonce)', () => {
      // the plaintext is a SET_WINDOW_SIZE notify of 10 and a pad length of 0
      const msg = encryptMessage(
        header,
        [notify(16385, Uint8Array.of(0, 0, 0, 10))],
        keys,
        hex(v.iv)
      )
      expect(toHex(msg)).to.equal(v.message.toUpperCase())
      expect(toHex(msg.subarray(28, 32))).to.equal(v.skHeader.toUpperCase())
    })
    it('should open the RFC message and refuse it with any bit flipped', () => {
      const opened = openSk(parseMessage(hex(v.message)), keys)
      expect(opened.ok).to.equal(true)
      if (opened.ok) expect(toHex(opened.sk.body!)).to.equal(v.plaintext.slice(0, -2).toUpperCase())
      const msg = hex(v.message)
      for (let pos = 0; pos < msg.length; pos += 7) {
        const bad = msg.slice()
        bad[pos] ^= 0x10
        let parsed
        try {
          parsed = parseMessage(bad)
        } catch {
          continue // a header no longer parsed is refused before the SK payload
        }
        expect(openSk(parsed, keys).ok, `bit flipped at ${pos}`).to.equal(false)
      }
    })
  })

  describe('prf HMAC-SHA1 (hmac-sha1-rfc2202.json)', () => {
    for (const v of sha1.vectors) {
      it(`should match RFC 2202 case ${v.name}`, () => {
        expect(toHex(prf('hmac-sha1', hex(v.key), hex(v.data)))).to.equal(v.mac.toUpperCase())
      })
    }
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
        'ChaCha20-Poly1305',
        {
          encryption: { algorithm: 'chacha20-poly1305', keyBits: 256 },
          integrity: 'none',
          encryptionKey: new Uint8Array(36).fill(3),
          integrityKey: new Uint8Array(0)
        },
        8
      ],
      [
        'AES-CBC-128 + HMAC-SHA1-96',
        {
          encryption: { algorithm: 'aes-cbc', keyBits: 128 },
          integrity: 'hmac-sha1-96',
          encryptionKey: new Uint8Array(16).fill(3),
          integrityKey: new Uint8Array(20).fill(4)
        },
        16
      ],
      [
        'AES-CBC-192 + HMAC-SHA2-384-192',
        {
          encryption: { algorithm: 'aes-cbc', keyBits: 192 },
          integrity: 'hmac-sha2-384-192',
          encryptionKey: new Uint8Array(24).fill(3),
          integrityKey: new Uint8Array(48).fill(4)
        },
        16
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
