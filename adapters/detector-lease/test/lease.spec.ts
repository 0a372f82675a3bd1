import { expect } from 'chai'
import { VirtualClock } from '@vipsec/clock'
import type { CouplingStore, FailureDetectorEvent } from '@vipsec/interface'
import { MemoryCouplingFacility, MemoryCouplingStore } from '@vipsec/store-memory'
import { LeaseFailureDetector } from '../src/index.js'

describe('LeaseFailureDetector', () => {
  describe('when the store cannot be reached', () => {
    it('should declare nobody failed, count the errors, and go on when the store is back', async () => {
      const clock = new VirtualClock()
      const facility = new MemoryCouplingFacility()
      const mine = new MemoryCouplingStore({ clock }, { facility })
      const theirs = new MemoryCouplingStore({ clock }, { facility })
      await mine.start()
      await theirs.start()
      let down = false
      const flaky = new Proxy(mine, {
        get(target, prop, receiver) {
          const value = Reflect.get(target, prop, receiver) as unknown
          if (typeof value !== 'function') return value
          return (...args: unknown[]) => {
            if (down && (prop === 'renewLease' || prop === 'readLeases'))
              return Promise.reject(new Error('store down'))
            return (value as (...a: unknown[]) => unknown).apply(target, args)
          }
        }
      }) as CouplingStore
      const detector = new LeaseFailureDetector(
        { store: flaky, clock },
        { node: 'dp-2', intervalMs: 100 }
      )
      const peer = new LeaseFailureDetector(
        { store: theirs, clock },
        { node: 'dp-1', intervalMs: 100 }
      )
      const events: FailureDetectorEvent[] = []
      detector.events$.subscribe((e) => events.push(e))
      detector.watch({ node: 'dp-1' })
      await peer.start()
      await detector.start()
      await clock.advance(500)
      down = true
      await clock.advance(2000)
      expect(events.filter((e) => e.type === 'node:failed')).to.deep.equal([])
      expect(detector.counters().storeErrors).to.be.greaterThan(10)
      down = false
      await peer.stop()
      await clock.advance(1000)
      expect(events.filter((e) => e.type === 'node:failed')).to.have.length(1)
      await detector.stop()
    })
  })

  describe('when the store loses every lease (a restart without its data)', () => {
    it('should not declare a node failed whose lease vanished before its lifetime was over', async () => {
      const clock = new VirtualClock()
      const facility = new MemoryCouplingFacility()
      const mine = new MemoryCouplingStore({ clock }, { facility })
      const theirs = new MemoryCouplingStore({ clock }, { facility })
      await mine.start()
      await theirs.start()
      // the store loses its data just before this detector reads, for a few reads
      let losses = 0
      const lossy = new Proxy(mine, {
        get(target, prop, receiver) {
          const value = Reflect.get(target, prop, receiver) as unknown
          if (typeof value !== 'function') return value
          return (...args: unknown[]) => {
            if (prop === 'readLeases' && losses > 0) {
              losses--
              facility.leases.clear()
            }
            return (value as (...a: unknown[]) => unknown).apply(target, args)
          }
        }
      }) as CouplingStore
      const detector = new LeaseFailureDetector(
        { store: lossy, clock },
        { node: 'dp-2', intervalMs: 100 }
      )
      const peer = new LeaseFailureDetector(
        { store: theirs, clock },
        { node: 'dp-1', intervalMs: 100 }
      )
      const events: FailureDetectorEvent[] = []
      detector.events$.subscribe((e) => events.push(e))
      detector.watch({ node: 'dp-1' })
      await peer.start()
      await detector.start()
      await clock.advance(500)
      expect(detector.health('dp-1')).to.equal('alive')
      losses = 1
      await clock.advance(1000)
      expect(events.filter((e) => e.type === 'node:failed')).to.deep.equal([])
      expect(detector.health('dp-1')).to.equal('alive')
      // a node that really stops is still failed, one lease lifetime after its last renewal
      await peer.stop()
      await clock.advance(400)
      expect(events.filter((e) => e.type === 'node:failed')).to.have.length(1)
      await detector.stop()
    })
  })

  describe('constructor', () => {
    it('should refuse a lease shorter than two intervals, naming it', () => {
      const store = new MemoryCouplingStore()
      expect(
        () =>
          new LeaseFailureDetector(
            { store, clock: new VirtualClock() },
            { node: 'x', intervalMs: 100, ttlMs: 150 }
          )
      )
        .to.throw()
        .with.property('argument', 'init.ttlMs')
    })
  })
})
