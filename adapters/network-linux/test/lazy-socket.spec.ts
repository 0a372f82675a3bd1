import { expect } from 'chai'
import { LazySocket } from '../src/lazy-socket.js'

/** A socket that knows whether it was closed. */
class FakeSocket {
  closed = 0
  close(): void {
    this.closed++
  }
}

describe(LazySocket.name, () => {
  /** The sockets `open` made, in order; `fail` makes it find none. */
  let opened: FakeSocket[]
  let fail: boolean
  const open = (): FakeSocket | undefined => {
    if (fail) return undefined
    const socket = new FakeSocket()
    opened.push(socket)
    return socket
  }

  beforeEach(() => {
    opened = []
    fail = false
  })

  describe('when the caller gives a socket', () => {
    it('should serve it, open none and leave it open on close', () => {
      const given = new FakeSocket()
      const lazy = new LazySocket(given, true, open)
      expect(lazy.get()).to.equal(given)
      lazy.close()
      expect(lazy.get()).to.equal(given)
      expect(given.closed).to.equal(0)
      expect(opened).to.deep.equal([])
    })
  })

  describe('when the caller says none (null)', () => {
    it('should serve none and open none, even where the default is one of its own', () => {
      const lazy = new LazySocket<FakeSocket>(null, true, open)
      expect(lazy.get()).to.equal(undefined)
      expect(opened).to.deep.equal([])
    })
  })

  describe('when the default is none', () => {
    it('should serve none and open none', () => {
      const lazy = new LazySocket<FakeSocket>(undefined, false, open)
      expect(lazy.get()).to.equal(undefined)
      expect(opened).to.deep.equal([])
    })
  })

  describe('when the default is one of its own', () => {
    it('should open none until first use, then one for every use', () => {
      const lazy = new LazySocket<FakeSocket>(undefined, true, open)
      expect(opened).to.deep.equal([])
      const first = lazy.get()
      expect(opened).to.have.length(1)
      expect(lazy.get()).to.equal(first)
      expect(opened).to.have.length(1)
    })

    it('should close it on close, and open a new one on the next use', () => {
      const lazy = new LazySocket<FakeSocket>(undefined, true, open)
      const first = lazy.get()
      lazy.close()
      lazy.close()
      expect(first?.closed).to.equal(1)
      const second = lazy.get()
      expect(second).to.not.equal(first)
      expect(opened).to.have.length(2)
      expect(second?.closed).to.equal(0)
    })

    it('should serve none while it cannot be opened, and ask again on the next use', () => {
      const lazy = new LazySocket<FakeSocket>(undefined, true, open)
      fail = true
      expect(lazy.get()).to.equal(undefined)
      lazy.close()
      fail = false
      expect(lazy.get()).to.equal(opened[0])
      expect(opened).to.have.length(1)
    })
  })
})
