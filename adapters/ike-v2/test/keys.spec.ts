import { expect } from 'chai'
import { SeededRandomSource } from '@vipsec/random'
import { publicBytesEqual, toHex } from '../src/crypto.js'
import { spiHex } from '../src/ike-sa.js'
import { spiKey } from '../src/sa-table.js'

describe('keys and comparisons of public values', () => {
  describe('publicBytesEqual', () => {
    it('should hold for equal bytes and fail at any differing byte or length', () => {
      const a = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8)
      expect(publicBytesEqual(a, a.slice())).to.equal(true)
      expect(publicBytesEqual(new Uint8Array(0), new Uint8Array(0))).to.equal(true)
      for (let i = 0; i < a.length; i++) {
        const b = a.slice()
        b[i] ^= 0x80
        expect(publicBytesEqual(a, b), `byte ${i}`).to.equal(false)
      }
      expect(publicBytesEqual(a, a.subarray(0, 7))).to.equal(false)
      expect(publicBytesEqual(a.subarray(0, 7), a)).to.equal(false)
    })
  })

  describe('spiKey', () => {
    it('should give one key per SPI: equal SPIs the same key, different SPIs different keys', () => {
      const random = new SeededRandomSource({ seed: 'spi-keys' })
      const seen = new Map<string, string>()
      for (let i = 0; i < 2000; i++) {
        const spi = random.randomBytes(8)
        // a few SPIs that differ from another in one byte only
        if (i % 10 === 0) spi[i % 8] = 0
        const hex = toHex(spi)
        const key = spiKey(spi)
        expect(spiKey(spi.slice())).to.equal(key)
        const other = seen.get(key)
        if (other !== undefined) expect(other).to.equal(hex)
        seen.set(key, hex)
      }
      // every SPI of one bit set, and none set: 65 keys
      const keys = new Set<string>([spiKey(new Uint8Array(8))])
      for (let i = 0; i < 64; i++) {
        const spi = new Uint8Array(8)
        spi[i >> 3] = 1 << (i & 7)
        keys.add(spiKey(spi))
      }
      expect(keys.size).to.equal(65)
    })
  })

  describe('spiHex', () => {
    it('should be the SPI as 8 lower-case hexadecimal digits', () => {
      for (const spi of [0, 1, 0xff, 0x100, 0x1234abcd, 0x80000000, 0xffffffff]) {
        expect(spiHex(spi)).to.equal(spi.toString(16).padStart(8, '0'))
      }
    })
  })
})
