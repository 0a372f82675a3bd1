import { expect } from 'chai'
import { MAX_REPLAY_WINDOW, ReplayWindow } from '../src/replay-window.js'

describe('ReplayWindow', () => {
  describe('.check and .accept', () => {
    describe('when numbers arrive in order', () => {
      it('should accept each once', () => {
        const w = new ReplayWindow(64)
        for (let s = 1; s <= 200; s++) {
          expect(w.check(0, s)).to.equal('ok')
          w.accept(0, s)
          expect(w.check(0, s)).to.equal('replay')
        }
        expect(w.top).to.equal(200n)
        expect(w.check(0, 136)).to.equal('outside-window')
        expect(w.check(0, 137)).to.equal('replay')
      })
    })

    describe('when sequence number 0 arrives', () => {
      it('should treat it as seen', () => {
        expect(new ReplayWindow().check(0, 0)).to.equal('replay')
        expect(new ReplayWindow(0).check(0, 0)).to.equal('replay')
      })
    })

    describe('when a check is not followed by accept (ICV failure)', () => {
      it('should leave the window unchanged', () => {
        const w = new ReplayWindow(32)
        expect(w.check(0, 10)).to.equal('ok')
        expect(w.check(0, 10)).to.equal('ok')
        expect(w.top).to.equal(0n)
      })
    })

    describe('when the window is the largest allowed', () => {
      it('should remember 4096 numbers back after a jump', () => {
        const w = new ReplayWindow(MAX_REPLAY_WINDOW)
        w.accept(0, 10_000)
        expect(w.check(0, 10_000 - 4095)).to.equal('ok')
        expect(w.check(0, 10_000 - 4096)).to.equal('outside-window')
        w.accept(0, 10_000 - 4095)
        expect(w.check(0, 10_000 - 4095)).to.equal('replay')
        w.accept(0, 10_001)
        expect(w.check(0, 10_000 - 4095)).to.equal('outside-window')
      })
    })

    describe('when the window is off (size 0)', () => {
      it('should accept anything but 0, including repeats', () => {
        const w = new ReplayWindow(0)
        w.accept(0, 5)
        expect(w.check(0, 5)).to.equal('ok')
        expect(w.check(0, 1)).to.equal('ok')
      })
    })
  })

  describe('.inferHigh', () => {
    describe('when the top is just below 2^32', () => {
      it('should place small low halves in the next subspace', () => {
        const w = new ReplayWindow(128)
        w.accept(0, 0xfffffff0)
        expect(w.inferHigh(5, true)).to.equal(1)
        expect(w.inferHigh(0xffffffa0, true)).to.equal(0)
        expect(w.inferHigh(5, false)).to.equal(0)
      })
    })

    describe('when the window spans two subspaces', () => {
      it('should place large low halves in the previous subspace', () => {
        const w = new ReplayWindow(128)
        w.accept(1, 10)
        expect(w.inferHigh(0xfffffff0, true)).to.equal(0)
        expect(w.inferHigh(11, true)).to.equal(1)
        expect(w.check(0, 0xfffffff0)).to.equal('ok')
        expect(w.check(0, 0xffffff00)).to.equal('outside-window')
      })
    })
  })

  describe('constructor', () => {
    it('should refuse sizes above 4096 naming replayWindow', () => {
      expect(() => new ReplayWindow(4097))
        .to.throw()
        .with.property('argument', 'replayWindow')
      expect(() => new ReplayWindow(-1))
        .to.throw()
        .with.property('argument', 'replayWindow')
    })
  })
})
