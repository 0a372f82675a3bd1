import { expect } from 'chai'
import {
  ByteSlab,
  concat,
  readU16,
  readU32,
  u16Bytes,
  u32Bytes,
  writeU16,
  writeU32
} from '../src/index.js'

describe('bytes', () => {
  describe('readU16 and readU32', () => {
    it('should read big-endian numbers at an offset, unsigned', () => {
      const b = Uint8Array.of(0xaa, 0x12, 0x34, 0xff, 0xff, 0xff, 0xfe)
      expect(readU16(b, 1)).to.equal(0x1234)
      expect(readU32(b, 3)).to.equal(0xfffffffe)
      expect(readU32(b, 0)).to.equal(0xaa1234ff)
    })
  })

  describe('writeU16 and writeU32', () => {
    it('should write the low bits big-endian and round-trip through the readers', () => {
      const b = new Uint8Array(7)
      writeU16(b, 0, 0x1abcd)
      writeU32(b, 3, 0x1_8765_4321)
      expect([...b]).to.deep.equal([0xab, 0xcd, 0, 0x87, 0x65, 0x43, 0x21])
      expect(readU32(b, 3)).to.equal(0x87654321)
      expect([...u16Bytes(0x0102)]).to.deep.equal([1, 2])
      expect([...u32Bytes(0x01020304)]).to.deep.equal([1, 2, 3, 4])
    })
  })

  describe('concat', () => {
    it('should join arrays in order into a new one', () => {
      const a = Uint8Array.of(1, 2)
      const out = concat(a, new Uint8Array(0), Uint8Array.of(3))
      expect([...out]).to.deep.equal([1, 2, 3])
      out[0] = 9
      expect(a[0]).to.equal(1)
    })
  })

  describe('ByteSlab', () => {
    it('should hand out zero-filled views that never overlap, across slabs', () => {
      const slab = new ByteSlab(256)
      const views = Array.from({ length: 40 }, (_, i) => slab.take(1 + (i % 50)))
      views.forEach((v, i) => {
        expect(v.length).to.equal(1 + (i % 50))
        expect(v.every((b) => b === 0)).to.equal(true)
        v.fill(i + 1)
      })
      views.forEach((v, i) => expect(v.every((b) => b === i + 1)).to.equal(true))
      expect(new Set(views.map((v) => v.buffer)).size).to.be.greaterThan(1)
      expect(slab.take(200).buffer.byteLength).to.equal(200)
    })
  })
})
