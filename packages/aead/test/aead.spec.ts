import { readFileSync } from 'node:fs'
import { expect } from 'chai'
import fc from 'fast-check'
import { InvalidParametersError } from '@vipsec/wire'
import {
  AEAD_NONCE_LENGTH,
  aeadBackend,
  aeadBackendProblem,
  aeadKey,
  type AeadBackend,
  type AeadCipher
} from '../src/index.js'

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'))
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the vector files' JSON
const read = (name: string): any =>
  JSON.parse(readFileSync(new URL(`./vectors/${name}`, import.meta.url), 'utf8'))

interface Known {
  name: string
  cipher: AeadCipher
  key: string
  nonce: string
  aad: string
  plaintext: string
  ciphertext: string
  tag: string
}

interface McGrew {
  n: number
  algorithm: string
  key: string
  nonce: string
  aad: string
  plaintext: string
  ctexttag: string
}

const gcmCipher = (key: string): AeadCipher =>
  (({ 16: 'aes-128-gcm', 24: 'aes-192-gcm', 32: 'aes-256-gcm' }) as const)[
    (key.length / 2) as 16 | 24 | 32
  ]

/** draft-mcgrew-gcm-test-01 (GCM in ESP) and RFC 8439 section 2.8.2 / RFC 7634 appendix A. */
const known: Known[] = [
  ...read('esp-gcm-mcgrew.json')
    .vectors.filter((v: McGrew) => v.algorithm === 'AES-GCM-ESP')
    .map((v: McGrew) => ({
      name: `McGrew ${v.n}`,
      cipher: gcmCipher(v.key),
      key: v.key,
      nonce: v.nonce,
      aad: v.aad,
      plaintext: v.plaintext,
      ciphertext: v.ctexttag.slice(0, v.plaintext.length),
      tag: v.ctexttag.slice(v.plaintext.length)
    })),
  (() => {
    const { aead, esp } = read('chacha20-poly1305.json')
    return [
      { name: 'RFC 8439 2.8.2', cipher: 'chacha20-poly1305', ...aead },
      {
        name: 'RFC 7634 A',
        cipher: 'chacha20-poly1305',
        key: esp.keyMaterial.slice(0, 64),
        nonce: esp.nonce,
        aad: esp.aad,
        plaintext: esp.text,
        ciphertext: esp.ciphertext,
        tag: esp.tag
      }
    ]
  })()
].flat()

const ciphers: AeadCipher[] = ['aes-128-gcm', 'aes-192-gcm', 'aes-256-gcm', 'chacha20-poly1305']
const keyLength = (cipher: AeadCipher): number =>
  cipher === 'aes-128-gcm' ? 16 : cipher === 'aes-192-gcm' ? 24 : 32

describe('@vipsec/aead', () => {
  it('uses libcrypto on this machine, unless told not to', () => {
    // every machine of this project has libssl3; a machine without it falls back, and says why
    const forced = process.env.VIPSEC_AEAD === 'node'
    expect(aeadBackend(), aeadBackendProblem()).to.equal(forced ? 'node' : 'libcrypto')
    const saved = process.env.VIPSEC_AEAD
    process.env.VIPSEC_AEAD = 'node'
    try {
      expect(aeadBackend()).to.equal('node')
      expect(aeadKey('aes-256-gcm', new Uint8Array(32)).backend).to.equal('node')
    } finally {
      if (saved === undefined) delete process.env.VIPSEC_AEAD
      else process.env.VIPSEC_AEAD = saved
    }
  })

  for (const backend of ['libcrypto', 'node'] as AeadBackend[]) {
    describe(backend, () => {
      for (const v of known) {
        it(`seals and opens ${v.name} (${v.cipher})`, () => {
          const key = aeadKey(v.cipher, hex(v.key), { backend })
          expect(key.backend).to.equal(backend)
          const plaintext = hex(v.plaintext)
          const out = new Uint8Array(plaintext.length)
          const tag = new Uint8Array(16)
          key.seal(hex(v.nonce), hex(v.aad), plaintext, out, tag)
          expect(toHex(out)).to.equal(v.ciphertext)
          expect(toHex(tag)).to.equal(v.tag)
          const back = new Uint8Array(out.length)
          expect(key.open(hex(v.nonce), hex(v.aad), out, back, tag)).to.equal(true)
          expect(toHex(back)).to.equal(v.plaintext)
        })
      }

      it('refuses a changed tag, ciphertext, AAD or nonce', () => {
        const v = known[0]!
        const key = aeadKey(v.cipher, hex(v.key), { backend })
        const ciphertext = hex(v.ciphertext)
        const out = new Uint8Array(ciphertext.length)
        const flip = (b: Uint8Array, i: number): Uint8Array => {
          const c = Uint8Array.from(b)
          c[i]! ^= 0x01
          return c
        }
        const [n, a, t] = [hex(v.nonce), hex(v.aad), hex(v.tag)]
        expect(key.open(n, a, ciphertext, out, t)).to.equal(true)
        expect(key.open(n, a, ciphertext, out, flip(t, 15))).to.equal(false)
        expect(key.open(n, a, flip(ciphertext, 3), out, t)).to.equal(false)
        expect(key.open(n, flip(a, 0), ciphertext, out, t)).to.equal(false)
        expect(key.open(flip(n, 11), a, ciphertext, out, t)).to.equal(false)
        // and a failure leaves the key usable
        expect(key.open(n, a, ciphertext, out, t)).to.equal(true)
        expect(toHex(out)).to.equal(v.plaintext)
      })

      it('seals and opens in place, and authenticates AAD alone (GMAC)', () => {
        const key = aeadKey('aes-128-gcm', new Uint8Array(16).fill(9), { backend })
        const nonce = new Uint8Array(12).fill(3)
        const text = Uint8Array.from({ length: 100 }, (_, i) => i)
        const buffer = Uint8Array.from(text)
        const tag = new Uint8Array(16)
        key.seal(nonce, new Uint8Array(0), buffer, buffer, tag)
        expect(toHex(buffer)).to.not.equal(toHex(text))
        expect(key.open(nonce, new Uint8Array(0), buffer, buffer, tag)).to.equal(true)
        expect(toHex(buffer)).to.equal(toHex(text))
        const empty = new Uint8Array(0)
        key.seal(nonce, text, empty, empty, tag)
        expect(key.open(nonce, text, empty, empty, tag)).to.equal(true)
        text[50]! ^= 1
        expect(key.open(nonce, text, empty, empty, tag)).to.equal(false)
      })

      it('takes 8- and 12-byte tags for AES-GCM: the 16-byte tag cut short', () => {
        const bytes = new Uint8Array(32).fill(5)
        const full = new Uint8Array(16)
        const nonce = new Uint8Array(12).fill(1)
        const text = new Uint8Array(40).fill(2)
        aeadKey('aes-256-gcm', bytes, { backend }).seal(nonce, text, text, new Uint8Array(40), full)
        for (const tagLength of [8, 12]) {
          const key = aeadKey('aes-256-gcm', bytes, { backend, tagLength })
          const tag = new Uint8Array(tagLength)
          const out = new Uint8Array(40)
          key.seal(nonce, text, text, out, tag)
          expect(toHex(tag)).to.equal(toHex(full.subarray(0, tagLength)))
          expect(key.open(nonce, text, out, new Uint8Array(40), tag)).to.equal(true)
          tag[tagLength - 1]! ^= 1
          expect(key.open(nonce, text, out, new Uint8Array(40), tag)).to.equal(false)
        }
      })

      it('says which length is wrong, with a typed error, before touching memory', () => {
        const key = aeadKey('aes-256-gcm', new Uint8Array(32), { backend })
        const ok = { nonce: new Uint8Array(12), text: new Uint8Array(20), tag: new Uint8Array(16) }
        const cases: [string, () => unknown][] = [
          ['nonce', () => key.seal(new Uint8Array(8), ok.text, ok.text, ok.text, ok.tag)],
          ['output', () => key.seal(ok.nonce, ok.text, ok.text, new Uint8Array(19), ok.tag)],
          ['tag', () => key.seal(ok.nonce, ok.text, ok.text, ok.text, new Uint8Array(12))],
          ['tag', () => key.open(ok.nonce, ok.text, ok.text, ok.text, new Uint8Array(20))],
          ['key', () => aeadKey('aes-256-gcm', new Uint8Array(16), { backend })],
          ['key', () => aeadKey('chacha20-poly1305', new Uint8Array(16), { backend })],
          [
            'tagLength',
            () => aeadKey('chacha20-poly1305', new Uint8Array(32), { backend, tagLength: 12 })
          ],
          [
            'tagLength',
            () => aeadKey('aes-128-gcm', new Uint8Array(16), { backend, tagLength: 4 })
          ],
          ['cipher', () => aeadKey('aes-256-cbc' as AeadCipher, new Uint8Array(32), { backend })]
        ]
        for (const [argument, call] of cases) {
          expect(call).to.throw(InvalidParametersError).with.property('argument', argument)
        }
      })

      it('refuses to work once disposed', () => {
        const key = aeadKey('chacha20-poly1305', new Uint8Array(32), { backend })
        const tag = new Uint8Array(16)
        key.seal(new Uint8Array(12), new Uint8Array(0), new Uint8Array(4), new Uint8Array(4), tag)
        key.dispose()
        key.dispose()
        expect(() =>
          key.seal(new Uint8Array(12), new Uint8Array(0), new Uint8Array(4), new Uint8Array(4), tag)
        ).to.throw(InvalidParametersError)
      })
    })
  }

  it('libcrypto and node:crypto agree on any key, nonce, AAD and text', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...ciphers),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: AEAD_NONCE_LENGTH, maxLength: AEAD_NONCE_LENGTH }),
        fc.uint8Array({ maxLength: 40 }),
        fc.uint8Array({ maxLength: 1500 }),
        (cipher, bytes, nonce, aad, text) => {
          const key = bytes.subarray(0, keyLength(cipher))
          const sealed: string[] = []
          for (const backend of ['libcrypto', 'node'] as AeadBackend[]) {
            const k = aeadKey(cipher, key, { backend })
            const out = new Uint8Array(text.length)
            const tag = new Uint8Array(16)
            k.seal(nonce, aad, text, out, tag)
            sealed.push(toHex(out) + toHex(tag))
            const back = new Uint8Array(text.length)
            expect(k.open(nonce, aad, out, back, tag)).to.equal(true)
            expect(toHex(back)).to.equal(toHex(text))
          }
          expect(sealed[0]).to.equal(sealed[1])
        }
      ),
      { numRuns: 300 }
    )
  })

  it('each key keeps its own context: interleaved keys and directions give the right bytes', () => {
    const a = aeadKey('aes-256-gcm', new Uint8Array(32).fill(1), { backend: 'libcrypto' })
    const b = aeadKey('aes-256-gcm', new Uint8Array(32).fill(2), { backend: 'libcrypto' })
    const ref = aeadKey('aes-256-gcm', new Uint8Array(32).fill(1), { backend: 'node' })
    const text = new Uint8Array(64).fill(7)
    for (let i = 0; i < 20; i++) {
      const nonce = new Uint8Array(12)
      nonce[11] = i
      const [outA, tagA, outB, tagB, outR, tagR] = [64, 16, 64, 16, 64, 16].map(
        (n) => new Uint8Array(n)
      ) as Uint8Array[]
      a.seal(nonce, text, text, outA!, tagA!)
      b.seal(nonce, text, text, outB!, tagB!)
      expect(a.open(nonce, text, outA!, new Uint8Array(64), tagA!)).to.equal(true)
      expect(a.open(nonce, text, outB!, new Uint8Array(64), tagB!)).to.equal(false)
      ref.seal(nonce, text, text, outR!, tagR!)
      expect(toHex(outA!) + toHex(tagA!)).to.equal(toHex(outR!) + toHex(tagR!))
    }
  })
})
