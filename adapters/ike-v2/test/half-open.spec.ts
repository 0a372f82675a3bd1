import { expect } from 'chai'
import { VirtualClock } from '@vipsec/clock'
import { SeededRandomSource } from '@vipsec/random'
import { COOKIE_SECRET_LIFETIME_MS, HalfOpenTable } from '../src/half-open.js'

const NI = new Uint8Array(32).fill(7)
const SPI = new Uint8Array(8).fill(1)
const FROM = { address: '10.0.0.1', port: 500 }

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
  })
})
