import { expect } from 'chai'
import { VirtualClock } from '@vipsec/clock'
import type { CouplingStore, FailureDetectorEvent } from '@vipsec/interface'
import { MemoryCouplingFacility, MemoryCouplingStore } from '@vipsec/store-memory'
import { LeaseFailureDetector } from '../src/index.js'
import { HeldClock } from '@vipsec/clock/test/held-clock'

/** dp-2 watches dp-1's lease; dp-2's timers can be held (a paused process), its reads delayed. */
async function pair() {
  const clock = new VirtualClock()
  const facility = new MemoryCouplingFacility()
  const mine = new MemoryCouplingStore({ clock }, { facility })
  const theirs = new MemoryCouplingStore({ clock }, { facility })
  await mine.start()
  await theirs.start()
  const faults = { delayNextReadMs: 0, wipeBeforeRead: false }
  const store = new Proxy(mine, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown
      if (typeof value !== 'function') return value
      return async (...args: unknown[]) => {
        if (prop === 'readLeases' && faults.wipeBeforeRead) {
          faults.wipeBeforeRead = false
          facility.leases.clear() // the store restarts empty just as the read arrives
        }
        const result = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args)
        if (prop === 'readLeases' && faults.delayNextReadMs > 0) {
          const ms = faults.delayNextReadMs
          faults.delayNextReadMs = 0
          await clock.sleep(ms) // applied at once, answered late
        }
        return result
      }
    }
  }) as CouplingStore
  const held = new HeldClock(clock)
  const detector = new LeaseFailureDetector(
    { store, clock: held },
    { node: 'dp-2', intervalMs: 100 }
  )
  const peer = new LeaseFailureDetector({ store: theirs, clock }, { node: 'dp-1', intervalMs: 100 })
  const events: FailureDetectorEvent[] = []
  detector.events$.subscribe((e) => events.push(e))
  detector.watch({ node: 'dp-1' })
  await peer.start()
  await detector.start()
  await clock.advance(500)
  return { clock, held, detector, peer, events, faults }
}

describe('LeaseFailureDetector when it runs late itself', () => {
  it('should not judge a lease read that came back late, and judge the next fresh one', async () => {
    const { clock, detector, events, faults } = await pair()
    faults.wipeBeforeRead = true
    faults.delayNextReadMs = 1500
    await clock.advance(1650)
    expect(events.filter((e) => e.node === 'dp-1')).to.deep.equal([])
    expect(events[0]).to.deep.include({ type: 'node:suspect', node: 'dp-2' })
    expect(detector.counters().selfSuspicions).to.equal(1)
    expect(detector.counters().verdictsWithheld).to.equal(1)
    await clock.advance(300)
    expect(detector.suspectsItself).to.equal(false)
    expect(events.at(-1)).to.deep.equal({ type: 'node:recovered', node: 'dp-2' })
    expect(events.filter((e) => e.node === 'dp-1')).to.deep.equal([])
    expect(detector.health('dp-1')).to.equal('alive')
    await detector.stop()
  })

  it('should suspect itself when its own timer fires late, then judge a read sent after it', async () => {
    const { clock, held, detector, peer, events } = await pair()
    held.pause()
    await peer.stop()
    await clock.advance(1500)
    held.resume()
    await clock.advance(1)
    expect(events[0]).to.deep.include({ type: 'node:suspect', node: 'dp-2' })
    // the read sent after it woke is fresh: dp-1's lease ran out long ago
    expect(events.find((e) => e.type === 'node:failed')).to.deep.include({ node: 'dp-1' })
    expect(detector.suspectsItself).to.equal(false)
    await detector.stop()
  })

  it('should reject a pauseThresholdMs that is not a positive number of ms', () => {
    const clock = new VirtualClock()
    const store = new MemoryCouplingStore({ clock }, { facility: new MemoryCouplingFacility() })
    expect(
      () => new LeaseFailureDetector({ store, clock }, { node: 'dp-1', pauseThresholdMs: -1 })
    ).to.throw(/pauseThresholdMs/)
  })
})

describe('LeaseFailureDetector with slow store calls (storeTimeoutMs)', () => {
  it('should shorten minDetectionMs by one store call: a renewal waits for the call before it', () => {
    const clock = new VirtualClock()
    const store = new MemoryCouplingStore({ clock }, { facility: new MemoryCouplingFacility() })
    const d = new LeaseFailureDetector(
      { store, clock },
      { node: 'dp-1', intervalMs: 100, ttlMs: 600, storeTimeoutMs: 300 }
    )
    expect(d.minDetectionMs).to.equal(200)
  })

  it('should reject a lease that does not outlast one interval and one store call', () => {
    const clock = new VirtualClock()
    const store = new MemoryCouplingStore({ clock }, { facility: new MemoryCouplingFacility() })
    expect(
      () =>
        new LeaseFailureDetector(
          { store, clock },
          { node: 'dp-1', intervalMs: 100, ttlMs: 300, storeTimeoutMs: 1000 }
        )
    ).to.throw(/init.ttlMs.*storeTimeoutMs 1000/)
  })
})
