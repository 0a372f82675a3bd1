import { expect } from 'chai'
import { ReplayWindow } from '../src/index.js'

describe('ReplayWindow', () => {
  describe('.check', () => {
    it('should accept each counter once, in any order inside the window', () => {
      const w = new ReplayWindow(64)
      for (const c of [5, 3, 4, 0, 70, 10, 69]) {
        expect(w.check(1, c), `counter ${c}`).to.equal(undefined)
        w.accept(1, c)
        expect(w.check(1, c), `counter ${c} again`).to.equal('replayed')
      }
    })

    it('should refuse a counter that fell below the window as too-old', () => {
      const w = new ReplayWindow(64)
      w.accept(1, 100)
      expect(w.check(1, 37)).to.equal(undefined)
      expect(w.check(1, 36)).to.equal('too-old')
      w.accept(1, 1000)
      expect(w.check(1, 936)).to.equal('too-old')
      expect(w.check(1, 937)).to.equal(undefined)
    })

    it('should forget the counters the window slid past, and not mix them with new ones', () => {
      const w = new ReplayWindow(32)
      w.accept(1, 1)
      w.accept(1, 33) // slot of 1 is reused: 33 was not seen before
      expect(w.check(1, 33)).to.equal('replayed')
      expect(w.check(1, 2)).to.equal(undefined)
      expect(w.check(1, 1)).to.equal('too-old')
    })

    it('should start a new incarnation afresh and refuse the older one', () => {
      const w = new ReplayWindow(64)
      w.accept(5, 500)
      expect(w.check(6, 0)).to.equal(undefined)
      w.accept(6, 0)
      expect(w.check(5, 501)).to.equal('stale-incarnation')
      expect(w.check(6, 0)).to.equal('replayed')
      expect(w.check(6, 1)).to.equal(undefined)
    })

    it('should not change when only checked', () => {
      const w = new ReplayWindow(64)
      w.accept(1, 10)
      expect(w.check(2 ** 50, 0)).to.equal(undefined)
      expect(w.incarnation).to.equal(1)
      expect(w.check(1, 11)).to.equal(undefined)
    })
  })
})
