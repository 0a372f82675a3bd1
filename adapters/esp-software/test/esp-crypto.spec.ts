import { readFileSync } from 'node:fs'
import { expect } from 'chai'
import { SequenceExhaustedError, type EspAlgorithm } from '@vipsec/interface'
import {
  EspSealer,
  espKey,
  espPadLength,
  espSequence,
  espSpi,
  openEsp,
  sealEsp
} from '../src/esp-crypto.js'

interface Vector {
  n: number
  algorithm: 'AES-GCM-ESP' | 'AES-GMAC-ESP'
  key: string
  spi: string
  seq: string
  nonce: string
  plaintext: string
  aad: string
  ctexttag: string
  packet: string
}

const vectors: Vector[] = JSON.parse(
  readFileSync(new URL('./vectors/esp-gcm-mcgrew.json', import.meta.url), 'utf8')
).vectors

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'))
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

/** The vector's parts as ESP sees them: payload and next header come from the trailer. */
function parts(v: Vector): {
  algorithm: EspAlgorithm
  keyMaterial: Uint8Array
  spi: number
  sequence: bigint
  esn: boolean
  iv: Uint8Array
  payload: Uint8Array
  nextHeader: number
} {
  const gmac = v.algorithm === 'AES-GMAC-ESP'
  const nonce = hex(v.nonce)
  // GMAC carries the payload and trailer in the clear, after SPI, sequence number and IV
  const seqBytes = v.seq.length / 2
  const text = gmac ? hex(v.aad).subarray(4 + seqBytes + 8) : hex(v.plaintext)
  const padLength = text[text.length - 2]
  return {
    algorithm: gmac ? 'null-aes-gmac' : 'aes-gcm-16',
    keyMaterial: new Uint8Array([...hex(v.key), ...nonce.subarray(0, 4)]),
    spi: parseInt(v.spi, 16),
    sequence: BigInt('0x' + v.seq),
    esn: seqBytes === 8,
    iv: nonce.subarray(4),
    payload: text.subarray(0, text.length - 2 - padLength),
    nextHeader: text[text.length - 1]
  }
}

describe('ESP transforms (RFC 4106, RFC 4543)', () => {
  it('should hold all 17 vectors of draft-mcgrew-gcm-test-01', () => {
    expect(vectors).to.have.length(17)
    expect(vectors.filter((v) => v.algorithm === 'AES-GMAC-ESP')).to.have.length(1)
    expect(vectors.filter((v) => v.seq.length === 16)).to.have.length.greaterThan(4)
  })

  describe('sealEsp', () => {
    for (const v of vectors) {
      describe(`when given vector ${v.n} (${v.algorithm}, ${v.key.length * 4}-bit key, ${v.seq.length * 4}-bit sequence)`, () => {
        it('should build the ESP packet byte for byte', () => {
          const p = parts(v)
          const packet = sealEsp({ ...p, key: espKey(p.keyMaterial) })
          expect(toHex(packet)).to.equal(v.packet)
        })
      })
    }
  })

  describe('openEsp', () => {
    for (const v of vectors) {
      describe(`when given vector ${v.n}`, () => {
        it('should verify it and return the payload and next header', () => {
          const p = parts(v)
          const result = openEsp({
            algorithm: p.algorithm,
            key: espKey(p.keyMaterial),
            esn: p.esn,
            sequenceHigh: Number(p.sequence >> 32n),
            packet: hex(v.packet)
          })
          expect(result.ok).to.equal(true)
          if (!result.ok) return
          expect(toHex(result.payload)).to.equal(toHex(p.payload))
          expect(result.nextHeader).to.equal(p.nextHeader)
        })

        it('should fail the ICV when the ESN high half is wrong or a byte is changed', () => {
          const p = parts(v)
          const key = espKey(p.keyMaterial)
          const high = Number(p.sequence >> 32n)
          if (p.esn) {
            const wrongHigh = openEsp({
              algorithm: p.algorithm,
              key,
              esn: true,
              sequenceHigh: (high + 1) >>> 0,
              packet: hex(v.packet)
            })
            expect(wrongHigh).to.deep.equal({ ok: false, reason: 'icv-failure' })
          }
          const changed = hex(v.packet)
          changed[changed.length - 20] ^= 0x01
          const result = openEsp({
            algorithm: p.algorithm,
            key,
            esn: p.esn,
            sequenceHigh: high,
            packet: changed
          })
          expect(result).to.deep.equal({ ok: false, reason: 'icv-failure' })
        })
      })
    }

    describe('when the packet is shorter than header, IV, trailer and ICV', () => {
      it('should report it malformed', () => {
        const key = espKey(new Uint8Array(20))
        for (const length of [0, 8, 16, 33]) {
          const result = openEsp({
            algorithm: 'aes-gcm-16',
            key,
            esn: false,
            packet: new Uint8Array(length)
          })
          expect(result).to.deep.equal({ ok: false, reason: 'malformed' })
        }
      })
    })
  })

  describe('espKey', () => {
    describe('when the keying material has a wrong length', () => {
      it('should throw an InvalidParametersError naming the argument', () => {
        for (const length of [0, 16, 19, 21, 32, 40]) {
          expect(() => espKey(new Uint8Array(length), 'params.keyMaterial'))
            .to.throw()
            .with.property('argument', 'params.keyMaterial')
        }
      })
    })
  })

  describe('espPadLength', () => {
    it('should align payload and trailer to four bytes', () => {
      for (let n = 0; n < 64; n++) {
        const pad = espPadLength(n)
        expect((n + pad + 2) % 4).to.equal(0)
        expect(pad).to.be.lessThan(4)
      }
    })
  })
})

describe('EspSealer', () => {
  const keyMaterial = hex(
    '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f' + 'cafebabe'
  )

  describe('.seal', () => {
    describe('when called repeatedly', () => {
      it('should take each IV from the sequence counter and verify with openEsp', () => {
        const sealer = new EspSealer('aes-gcm-16', keyMaterial, 0x1000, false)
        for (let i = 1; i <= 3; i++) {
          const packet = sealer.seal(new Uint8Array([1, 2, 3]), 17)
          expect(espSpi(packet)).to.equal(0x1000)
          expect(espSequence(packet)).to.equal(i)
          expect(toHex(packet.subarray(8, 16))).to.equal(i.toString(16).padStart(16, '0'))
          const opened = openEsp({
            algorithm: 'aes-gcm-16',
            key: espKey(keyMaterial),
            esn: false,
            packet
          })
          expect(opened.ok).to.equal(true)
        }
        expect(sealer.sequence).to.equal(3n)
      })
    })

    describe('when the 32-bit counter reaches 2^32-1', () => {
      it('should seal that last number and then throw SequenceExhaustedError', () => {
        const sealer = new EspSealer('aes-gcm-16', keyMaterial, 0x1000, false, 0xfffffffen)
        expect(sealer.exhausted).to.equal(false)
        expect(sealer.remaining).to.equal(1)
        const last = sealer.seal(new Uint8Array(4), 4)
        expect(espSequence(last)).to.equal(0xffffffff)
        expect(sealer.exhausted).to.equal(true)
        expect(() => sealer.seal(new Uint8Array(4), 4)).to.throw(SequenceExhaustedError)
        expect(sealer.sequence).to.equal(0xffffffffn)
      })
    })

    describe('when extended sequence numbers cross a 2^32 boundary', () => {
      it('should carry into the high half, put only the low half on the wire and use the full IV', () => {
        const sealer = new EspSealer('aes-gcm-16', keyMaterial, 0x1000, true, 0xffffffffn)
        const packet = sealer.seal(new Uint8Array(4), 4)
        expect(espSequence(packet)).to.equal(0)
        // it goes on from another copy of itself: the IV's high half is masked (see ivMask)
        expect(sealer.ivMask).to.not.equal(0)
        const ivHigh = ((1 ^ sealer.ivMask) >>> 0).toString(16).padStart(8, '0')
        expect(toHex(packet.subarray(8, 16))).to.equal(`${ivHigh}00000000`)
        const key = espKey(keyMaterial)
        expect(
          openEsp({ algorithm: 'aes-gcm-16', key, esn: true, sequenceHigh: 1, packet }).ok
        ).to.equal(true)
        expect(
          openEsp({ algorithm: 'aes-gcm-16', key, esn: true, sequenceHigh: 0, packet }).ok
        ).to.equal(false)
      })
    })

    describe('when the 64-bit counter reaches 2^64-1', () => {
      it('should throw SequenceExhaustedError after the last number', () => {
        const sealer = new EspSealer(
          'null-aes-gmac',
          keyMaterial,
          0x1000,
          true,
          0xfffffffffffffffen
        )
        sealer.seal(new Uint8Array(4), 4)
        expect(() => sealer.seal(new Uint8Array(4), 4)).to.throw(SequenceExhaustedError)
      })
    })
  })

  describe('constructor', () => {
    describe('when initialSequence is out of range', () => {
      it('should throw an InvalidParametersError naming initialSequence', () => {
        expect(() => new EspSealer('aes-gcm-16', keyMaterial, 0x1000, false, 1n << 32n))
          .to.throw()
          .with.property('argument', 'initialSequence')
        expect(() => new EspSealer('aes-gcm-16', keyMaterial, 0x1000, true, -1n))
          .to.throw()
          .with.property('argument', 'initialSequence')
      })
    })
  })
})
