import { createCipheriv, createHmac } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { expect } from 'chai'
import type { EspIntegrityAlgorithm } from '@vipsec/interface'
import {
  ESP_INTEGRITY,
  EspSealer,
  espIcv,
  espPadLength,
  espTransformKey,
  openEsp,
  sealEsp
} from '../src/esp-crypto.js'

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'))
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
function vectors<T>(name: string): T {
  return JSON.parse(readFileSync(new URL(`./vectors/${name}`, import.meta.url), 'utf8')) as T
}

interface HmacVector {
  name: string
  hash: 'sha1' | 'sha256' | 'sha384' | 'sha512'
  icvBytes: number
  key: string
  data: string
  mac: string
  icv?: string
}

interface CbcVector {
  case: number
  key: string
  spi: string
  seq: string
  iv: string
  nextHeader: number
  payload: string
  packet: string
}

const INTEGRITY_OF: Record<HmacVector['hash'], EspIntegrityAlgorithm> = {
  sha1: 'hmac-sha1-96',
  sha256: 'hmac-sha2-256-128',
  sha384: 'hmac-sha2-384-192',
  sha512: 'hmac-sha2-512-256'
}

interface ChachaVectors {
  esp: Record<'keyMaterial' | 'spi' | 'seq' | 'iv' | 'text' | 'ciphertext' | 'tag', string>
  aead: Record<'key' | 'nonce' | 'aad' | 'plaintext' | 'ciphertext' | 'tag', string>
}

const rfc4868 = vectors<{ vectors: HmacVector[] }>('hmac-sha2-rfc4868.json').vectors
const rfc2202 = vectors<{ vectors: HmacVector[] }>('hmac-sha1-rfc2202.json').vectors
const rfc3602 = vectors<{ vectors: CbcVector[] }>('esp-cbc-rfc3602.json').vectors
const chacha = vectors<ChachaVectors>('chacha20-poly1305.json')

/** An HMAC key for the RFC 3602 packets, which the RFC publishes without an ICV. */
const INTEG_KEY = Uint8Array.from({ length: 32 }, (_, i) => 0x40 + i)

describe('ESP transforms beyond AES-GCM', () => {
  describe('espIcv (RFC 4868 section 2.7.2, RFC 2202, RFC 2404)', () => {
    it('should hold the published vectors', () => {
      expect(rfc4868).to.have.length(11)
      expect(rfc2202).to.have.length(7)
    })

    for (const v of [...rfc4868, ...rfc2202]) {
      const algorithm = INTEGRITY_OF[v.hash]
      describe(`when given ${v.hash === 'sha1' ? 'RFC 2202 case' : ''} ${v.name}`, () => {
        it(`should compute the ${algorithm} ICV: the first ${v.icvBytes} bytes of the HMAC`, () => {
          expect(ESP_INTEGRITY[algorithm].icvLength).to.equal(v.icvBytes)
          const icv = espIcv(algorithm, hex(v.key), hex(v.data))
          expect(toHex(icv)).to.equal(v.mac.slice(0, v.icvBytes * 2))
          if (v.icv !== undefined) expect(toHex(icv)).to.equal(v.icv)
        })

        it('should give the same ICV over the data in two parts', () => {
          const data = hex(v.data)
          const icv = espIcv(algorithm, hex(v.key), data.subarray(0, 3), data.subarray(3))
          expect(toHex(icv)).to.equal(v.mac.slice(0, v.icvBytes * 2))
        })
      })
    }

    it('should take RFC 4868 keys as long as the hash output (section 2.1.1)', () => {
      for (const v of rfc4868) {
        expect(hex(v.key).length, v.name).to.equal(ESP_INTEGRITY[INTEGRITY_OF[v.hash]].keyLength)
      }
    })
  })

  describe('AES-CBC ESP (RFC 3602 section 4, cases 5 to 8)', () => {
    for (const v of rfc3602) {
      const keyMaterial = new Uint8Array([...hex(v.key), ...INTEG_KEY])
      const icvOf = (packet: Uint8Array): Uint8Array =>
        createHmac('sha256', INTEG_KEY).update(packet).digest().subarray(0, 16)

      describe(`when given case #${v.case}`, () => {
        it('should build the published packet byte for byte, followed by its HMAC-SHA-256-128', () => {
          const packet = sealEsp({
            algorithm: 'aes-cbc',
            key: espTransformKey('aes-cbc', 'hmac-sha2-256-128', keyMaterial),
            spi: parseInt(v.spi, 16),
            sequence: BigInt('0x' + v.seq),
            esn: false,
            iv: hex(v.iv),
            payload: hex(v.payload),
            nextHeader: v.nextHeader
          })
          expect(toHex(packet.subarray(0, packet.length - 16))).to.equal(v.packet)
          expect(toHex(packet.subarray(packet.length - 16))).to.equal(toHex(icvOf(hex(v.packet))))
        })

        it('should verify and decrypt it to the payload and next header', () => {
          const wire = new Uint8Array([...hex(v.packet), ...icvOf(hex(v.packet))])
          const result = openEsp({
            algorithm: 'aes-cbc',
            key: espTransformKey('aes-cbc', 'hmac-sha2-256-128', keyMaterial),
            esn: false,
            packet: wire
          })
          expect(result).to.deep.include({ ok: true, nextHeader: v.nextHeader })
          if (result.ok) expect(toHex(result.payload)).to.equal(v.payload)
        })

        it('should refuse it as icv-failure with any byte after the SPI changed, before decrypting', () => {
          const key = espTransformKey('aes-cbc', 'hmac-sha2-256-128', keyMaterial)
          const wire = new Uint8Array([...hex(v.packet), ...icvOf(hex(v.packet))])
          for (let i = 4; i < wire.length; i++) {
            const changed = wire.slice()
            changed[i] ^= 0x01
            expect(
              openEsp({ algorithm: 'aes-cbc', key, esn: false, packet: changed }),
              `byte ${i}`
            ).to.deep.equal({ ok: false, reason: 'icv-failure' })
          }
        })
      })
    }

    it('should count an authenticated packet whose padding is not 1, 2, 3, ... as bad-padding', () => {
      const aes = hex(rfc3602[0].key)
      const key = espTransformKey(
        'aes-cbc',
        'hmac-sha2-256-128',
        new Uint8Array([...aes, ...INTEG_KEY])
      )
      const iv = new Uint8Array(16).fill(7)
      for (const text of [
        // pad length 3, but the padding reads 1, 2, 4
        [...new Uint8Array(11), 1, 2, 4, 3, 4],
        // pad length 20: longer than the text
        [...new Uint8Array(14), 20, 4]
      ]) {
        const cipher = createCipheriv('aes-128-cbc', aes, iv).setAutoPadding(false)
        const body = new Uint8Array([
          0,
          0,
          0x43,
          0x21,
          0,
          0,
          0,
          1,
          ...iv,
          ...cipher.update(Uint8Array.from(text))
        ])
        const packet = new Uint8Array([
          ...body,
          ...createHmac('sha256', INTEG_KEY).update(body).digest().subarray(0, 16)
        ])
        expect(openEsp({ algorithm: 'aes-cbc', key, esn: false, packet })).to.deep.equal({
          ok: false,
          reason: 'bad-padding'
        })
      }
    })

    it('should call a ciphertext that is not whole AES blocks malformed', () => {
      const key = espTransformKey('aes-cbc', 'hmac-sha1-96', new Uint8Array(16 + 20))
      for (const length of [0, 8 + 16 + 12, 8 + 16 + 15 + 12, 8 + 16 + 17 + 12]) {
        expect(
          openEsp({ algorithm: 'aes-cbc', key, esn: false, packet: new Uint8Array(length) })
        ).to.deep.equal({
          ok: false,
          reason: 'malformed'
        })
      }
    })

    it('should pad payload and trailer to the 16-byte block', () => {
      for (let n = 0; n < 64; n++) {
        const pad = espPadLength(n, 16)
        expect((n + pad + 2) % 16).to.equal(0)
        expect(pad).to.be.lessThan(16)
      }
    })

    it('should put the ESN high half into the ICV only (RFC 4303 section 2.2.1)', () => {
      const keyMaterial = new Uint8Array([...hex(rfc3602[0].key), ...INTEG_KEY])
      const key = espTransformKey('aes-cbc', 'hmac-sha2-256-128', keyMaterial)
      const payload = hex(rfc3602[0].payload)
      const iv = hex(rfc3602[0].iv)
      const common = { algorithm: 'aes-cbc' as const, key, spi: 0x4321, iv, payload, nextHeader: 1 }
      const esn = sealEsp({ ...common, sequence: 0x0000000500000001n, esn: true })
      const plain = sealEsp({ ...common, sequence: 1n, esn: false })
      expect(toHex(esn.subarray(0, esn.length - 16))).to.equal(
        toHex(plain.subarray(0, plain.length - 16))
      )
      const body = esn.subarray(0, esn.length - 16)
      expect(toHex(esn.subarray(esn.length - 16))).to.equal(
        toHex(espIcv('hmac-sha2-256-128', INTEG_KEY, body, Uint8Array.of(0, 0, 0, 5)))
      )
      expect(
        openEsp({ algorithm: 'aes-cbc', key, esn: true, sequenceHigh: 5, packet: esn }).ok
      ).to.equal(true)
      expect(
        openEsp({ algorithm: 'aes-cbc', key, esn: true, sequenceHigh: 6, packet: esn })
      ).to.deep.equal({
        ok: false,
        reason: 'icv-failure'
      })
    })
  })

  describe('EspSealer with AES-CBC', () => {
    const keyMaterial = new Uint8Array([...hex(rfc3602[2].key), ...INTEG_KEY])
    const ivKey = Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i)

    it('should take each IV as the sequence number encrypted under the local IV key and then the SA key, never the counter itself', () => {
      const sealer = new EspSealer(
        'aes-cbc',
        keyMaterial,
        0x8765,
        true,
        0xfffffffen,
        'hmac-sha2-256-128',
        ivKey
      )
      const aesKey = hex(rfc3602[2].key)
      const ecb = createCipheriv('aes-128-ecb', ivKey, null).setAutoPadding(false)
      const sa = createCipheriv(`aes-${aesKey.length * 8}-ecb`, aesKey, null).setAutoPadding(false)
      const seen = new Set<string>()
      // payload sizes that end the ciphertext on different blocks: the IV must not depend on them
      for (const [sequence, length] of [
        [0xffffffffn, 30],
        [0x100000000n, 1],
        [0x100000001n, 200]
      ] as const) {
        const packet = sealer.seal(new Uint8Array(length), 4)
        const block = Buffer.alloc(16)
        block.writeBigUInt64BE(sequence, 0)
        const iv = toHex(packet.subarray(8, 24))
        expect(iv).to.equal(toHex(sa.update(ecb.update(block))))
        expect(iv).to.not.include(sequence.toString(16).padStart(16, '0'))
        seen.add(iv)
      }
      expect(seen.size).to.equal(3)
    })

    it('should end each packet with the HMAC of its integrity transform, with and without ESN', () => {
      for (const integrity of Object.keys(ESP_INTEGRITY) as EspIntegrityAlgorithm[]) {
        const spec = ESP_INTEGRITY[integrity]
        const hmacKey = Uint8Array.from({ length: spec.keyLength }, (_, i) => 0x80 + i * 5)
        const material = new Uint8Array([...hex(rfc3602[2].key), ...hmacKey])
        for (const esn of [false, true]) {
          // with ESN across a change of the high half
          const sealer = new EspSealer(
            'aes-cbc',
            material,
            0x1234,
            esn,
            esn ? 0xfffffffen : 0n,
            integrity
          )
          for (const [length, high] of [
            [0, 0],
            [100, esn ? 1 : 0],
            [1400, esn ? 1 : 0]
          ]) {
            const packet = sealer.seal(new Uint8Array(length).fill(length), 4)
            const body = packet.subarray(0, packet.length - spec.icvLength)
            const parts = esn ? [body, Uint8Array.of(0, 0, 0, high)] : [body]
            expect(toHex(packet.subarray(body.length)), `${integrity} esn ${esn}`).to.equal(
              toHex(espIcv(integrity, hmacKey, ...parts))
            )
          }
        }
      }
    })

    it('should open packets with one key in any order and after forged ones, leaving nothing but the payload in its buffer', () => {
      const sealer = new EspSealer('aes-cbc', keyMaterial, 0x8765, false, 0n, 'hmac-sha2-256-128')
      const key = espTransformKey('aes-cbc', 'hmac-sha2-256-128', keyMaterial)
      const payloads = [0, 1, 14, 15, 16, 31, 600, 1400].map((length) =>
        Uint8Array.from({ length }, (_, i) => (length + i) & 0xff)
      )
      const packets = payloads.map((payload) => sealer.seal(payload, 4))
      for (const i of [3, 0, 7, 7, 1, 6, 2, 5, 4]) {
        const forged = packets[(i + 1) % packets.length].slice()
        forged[forged.length - 20] ^= 0x80
        expect(openEsp({ algorithm: 'aes-cbc', key, esn: false, packet: forged })).to.deep.equal({
          ok: false,
          reason: 'icv-failure'
        })
        const opened = openEsp({ algorithm: 'aes-cbc', key, esn: false, packet: packets[i] })
        expect(opened, `packet ${i}`).to.deep.include({ ok: true, nextHeader: 4 })
        if (!opened.ok) continue
        expect(toHex(opened.payload)).to.equal(toHex(payloads[i]))
        const before = new Uint8Array(opened.payload.buffer, 0, opened.payload.byteOffset)
        expect(before.every((b) => b === 0)).to.equal(true)
      }
    })

    it('should make different IVs for the same sequence numbers under another IV key', () => {
      const a = new EspSealer('aes-cbc', keyMaterial, 0x8765, false, 0n, 'hmac-sha2-256-128')
      const b = new EspSealer('aes-cbc', keyMaterial, 0x8765, false, 0n, 'hmac-sha2-256-128')
      expect(toHex(a.seal(new Uint8Array(4), 4).subarray(8, 24))).to.not.equal(
        toHex(b.seal(new Uint8Array(4), 4).subarray(8, 24))
      )
    })

    it('should seal packets its opening side gives back, for every key length and integrity transform', () => {
      for (const integrity of Object.keys(ESP_INTEGRITY) as EspIntegrityAlgorithm[]) {
        for (const aesBytes of [16, 24, 32]) {
          const material = Uint8Array.from(
            { length: aesBytes + ESP_INTEGRITY[integrity].keyLength },
            (_, i) => i * 3
          )
          const sealer = new EspSealer('aes-cbc', material, 0x1234, false, 0n, integrity)
          const key = espTransformKey('aes-cbc', integrity, material)
          for (const length of [0, 1, 13, 14, 15, 16, 1400]) {
            const payload = Uint8Array.from({ length }, (_, i) => i & 0xff)
            const packet = sealer.seal(payload, 41)
            expect(packet.length).to.equal(
              8 + 16 + length + espPadLength(length, 16) + 2 + ESP_INTEGRITY[integrity].icvLength
            )
            const opened = openEsp({ algorithm: 'aes-cbc', key, esn: false, packet })
            expect(opened, `${integrity} AES-${aesBytes * 8} ${length} B`).to.deep.include({
              ok: true,
              nextHeader: 41
            })
            if (opened.ok) expect(toHex(opened.payload)).to.equal(toHex(payload))
          }
        }
      }
    })
  })

  describe('ChaCha20-Poly1305 ESP (RFC 7634)', () => {
    const v = chacha.esp
    const text = hex(v.text)
    const padLength = text[text.length - 2]
    const payload = text.subarray(0, text.length - 2 - padLength)

    it('should build the appendix A packet byte for byte', () => {
      const packet = sealEsp({
        algorithm: 'chacha20-poly1305',
        key: espTransformKey('chacha20-poly1305', undefined, hex(v.keyMaterial)),
        spi: parseInt(v.spi, 16),
        sequence: BigInt('0x' + v.seq),
        esn: false,
        iv: hex(v.iv),
        payload,
        nextHeader: text[text.length - 1]
      })
      expect(toHex(packet)).to.equal(v.spi + v.seq + v.iv + v.ciphertext + v.tag)
    })

    it('should verify and decrypt the appendix A packet, and refuse it with a changed byte', () => {
      const key = espTransformKey('chacha20-poly1305', undefined, hex(v.keyMaterial))
      const wire = hex(v.spi + v.seq + v.iv + v.ciphertext + v.tag)
      const result = openEsp({ algorithm: 'chacha20-poly1305', key, esn: false, packet: wire })
      expect(result).to.deep.include({ ok: true, nextHeader: 4 })
      if (result.ok) expect(toHex(result.payload)).to.equal(toHex(payload))
      for (const i of [4, 8, 20, wire.length - 1]) {
        const changed = wire.slice()
        changed[i] ^= 0x10
        expect(
          openEsp({ algorithm: 'chacha20-poly1305', key, esn: false, packet: changed })
        ).to.deep.equal({
          ok: false,
          reason: 'icv-failure'
        })
      }
    })

    it('should prepare the key as RFC 8439 ChaCha20-Poly1305 (section 2.8.2 vector)', () => {
      const a = chacha.aead
      const key = espTransformKey(
        'chacha20-poly1305',
        undefined,
        new Uint8Array([...hex(a.key), 0, 0, 0, 0])
      )
      const cipher = createCipheriv('chacha20-poly1305', key.key, hex(a.nonce), {
        authTagLength: 16
      })
      cipher.setAAD(hex(a.aad), { plaintextLength: hex(a.plaintext).length })
      const ciphertext = cipher.update(hex(a.plaintext))
      cipher.final()
      expect(toHex(ciphertext)).to.equal(a.ciphertext)
      expect(toHex(cipher.getAuthTag())).to.equal(a.tag)
    })

    it('should take its 12-byte nonce as the salt then the sequence counter (EspSealer)', () => {
      const sealer = new EspSealer('chacha20-poly1305', hex(v.keyMaterial), 0x01020304, false, 4n)
      const packet = sealer.seal(payload, 4)
      // sequence 5 makes the IV's low half 00000005 (the high half is masked: the SA goes on
      // from sequence 4): not the appendix's IV, so not its ciphertext
      const ivHigh = (sealer.ivMask >>> 0).toString(16).padStart(8, '0')
      expect(toHex(packet.subarray(8, 16))).to.equal(`${ivHigh}00000005`)
      const key = espTransformKey('chacha20-poly1305', undefined, hex(v.keyMaterial))
      const opened = openEsp({ algorithm: 'chacha20-poly1305', key, esn: false, packet })
      expect(opened.ok).to.equal(true)
    })
  })

  describe('espTransformKey', () => {
    it('should split AES-CBC keying material encryption key first, then integrity key (RFC 7296 section 2.17)', () => {
      const material = Uint8Array.from({ length: 32 + 48 }, (_, i) => i)
      const key = espTransformKey('aes-cbc', 'hmac-sha2-384-192', material)
      expect(key.cipher).to.equal('aes-256-cbc')
      expect(toHex(key.key.export())).to.equal(toHex(material.subarray(0, 32)))
      expect(toHex(key.integrity?.key.export() ?? new Uint8Array())).to.equal(
        toHex(material.subarray(32))
      )
      expect(key).to.include({ ivLength: 16, icvLength: 24, blockSize: 16 })
    })

    it('should name the argument for lengths that fit no transform', () => {
      for (const [algorithm, integrity, length, argument] of [
        ['chacha20-poly1305', undefined, 32, 'keyMaterial'],
        ['aes-cbc', 'hmac-sha2-256-128', 16 + 20, 'keyMaterial'],
        ['aes-cbc', 'hmac-sha1-96', 16 + 32, 'keyMaterial'],
        ['aes-cbc', undefined, 48, 'integrity'],
        ['aes-gcm-16', 'hmac-sha2-256-128', 20, 'integrity']
      ] as const) {
        expect(() => espTransformKey(algorithm, integrity, new Uint8Array(length)))
          .to.throw()
          .with.property('argument', argument)
      }
    })
  })
})
