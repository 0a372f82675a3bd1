import { expect } from 'chai'
import { SeededRandomSource } from '../src/index.js'

describe('SeededRandomSource', () => {
  describe('when two sources share a seed', () => {
    it('should produce the same bytes however the reads are split', () => {
      const a = new SeededRandomSource({ seed: 'seed-1' })
      const b = new SeededRandomSource({ seed: 'seed-1' })
      const whole = a.randomBytes(10_000)
      const parts = Buffer.concat([b.randomBytes(3), b.randomBytes(4093), b.randomBytes(5904)])
      expect(Buffer.from(whole).equals(parts)).to.equal(true)
    })
  })

  describe('when the seeds differ', () => {
    it('should produce different bytes', () => {
      const a = new SeededRandomSource({ seed: 'seed-1' }).randomBytes(32)
      const b = new SeededRandomSource({ seed: new TextEncoder().encode('seed-2') }).randomBytes(32)
      expect(Buffer.from(a).equals(Buffer.from(b))).to.equal(false)
    })
  })
})
