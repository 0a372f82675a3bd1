import { expect } from 'chai'
import { VirtualClock } from '@vipsec/clock'
import type { Endpoint, FailureDetectorEvent } from '@vipsec/interface'
import { VirtualNetwork } from '@vipsec/network-virtual'
import { SeededRandomSource } from '@vipsec/random'
import { HeartbeatFailureDetector } from '../src/index.js'
import { HeldClock } from '@vipsec/clock/test/held-clock'

const WATCHER: Endpoint = { address: '10.9.0.2', port: 7500 }
const OWNER: Endpoint = { address: '10.9.0.1', port: 7500 }

/**
 * dp-2 watches dp-1; dp-2's process can be paused: its timers wait, and the datagrams that reach
 * its socket meanwhile wait there. On `resume()` the timers that fell due run first (Node's timers
 * phase), then the waiting datagrams are read (its poll phase), then later timers.
 *
 * @param options - the watcher's pause threshold, and how much later than dp-2 dp-1 starts (ms)
 */
async function pausablePair(options: { pauseThresholdMs?: number; offsetMs?: number } = {}) {
  const clock = new VirtualClock()
  const random = new SeededRandomSource({ seed: 'pause' })
  const net = new VirtualNetwork({ clock, random }, { latencyMs: 0.5, lossRate: 0 })
  const [na, nb] = [net.attach('dp-2'), net.attach('dp-1')]
  for (const n of [na, nb]) await n.start()
  await na.acquireAddress(WATCHER.address)
  await nb.acquireAddress(OWNER.address)
  const held = new HeldClock(clock)
  const watcher = new HeartbeatFailureDetector(
    { network: na, clock: held },
    {
      node: 'dp-2',
      local: WATCHER,
      intervalMs: 100,
      insecure: true,
      pauseThresholdMs: options.pauseThresholdMs
    }
  )
  const watched = new HeartbeatFailureDetector(
    { network: nb, clock },
    { node: 'dp-1', local: OWNER, intervalMs: 100, insecure: true }
  )
  watcher.watch({ node: 'dp-1', endpoint: OWNER })
  watched.watch({ node: 'dp-2', endpoint: WATCHER })
  const events: FailureDetectorEvent[] = []
  watcher.events$.subscribe((e) => events.push(e))
  await watcher.start()
  if (options.offsetMs !== undefined) await clock.advance(options.offsetMs)
  await watched.start()
  let paused = false
  let queued: (() => boolean)[] = []
  const receive = na.receive.bind(na)
  na.receive = (to, datagram) => {
    if (!paused) return receive(to, datagram)
    queued.push(() => receive(to, datagram))
    return true
  }
  const pause = (): void => {
    paused = true
    held.pause()
  }
  const resume = (): void => {
    paused = false
    held.resume()
    const q = queued
    queued = []
    for (const read of q) read()
  }
  return { clock, watcher, watched, events, pause, resume }
}

describe('HeartbeatFailureDetector when its own process pauses', () => {
  it('should suspect itself, not the node it watches, and say so', async () => {
    const { clock, watcher, events, pause, resume } = await pausablePair()
    await clock.advance(1000)
    pause()
    await clock.advance(1500)
    resume()
    await clock.advance(50)
    expect(events.filter((e) => e.node === 'dp-1')).to.deep.equal([])
    expect(events[0]).to.deep.include({ type: 'node:suspect', node: 'dp-2' })
    expect(watcher.suspectsItself).to.equal(true)
    expect(watcher.counters().selfSuspicions).to.equal(1)
    expect(watcher.health('dp-1')).to.equal('alive')
    // three rounds on time again: fresh evidence, verdicts resume
    await clock.advance(300)
    expect(watcher.suspectsItself).to.equal(false)
    expect(events.at(-1)).to.deep.equal({ type: 'node:recovered', node: 'dp-2' })
    expect(events.filter((e) => e.node === 'dp-1')).to.deep.equal([])
  })

  it('should declare a node that died during the pause failed once it has fresh evidence', async () => {
    const { clock, watcher, watched, events, pause, resume } = await pausablePair()
    await clock.advance(1000)
    pause()
    await watched.stop()
    await clock.advance(1500)
    resume()
    const resumedAt = clock.monotonic()
    // its last heartbeat waited in the socket: silence counts from when it is read, on resume
    await clock.advance(50)
    expect(events.some((e) => e.type === 'node:failed')).to.equal(false)
    await clock.advance(150)
    expect(events.some((e) => e.type === 'node:failed')).to.equal(false)
    expect(watcher.counters().verdictsWithheld).to.be.greaterThan(0)
    await clock.advance(250)
    const failed = events.find((e) => e.type === 'node:failed')
    expect(failed).to.deep.include({ node: 'dp-1' })
    expect(watcher.health('dp-1')).to.equal('failed')
    expect(clock.monotonic() - resumedAt).to.be.at.most(450)
  })

  it('should not suspect itself for a tick late by less than the threshold', async () => {
    const { clock, watcher, events, pause, resume } = await pausablePair()
    await clock.advance(1000)
    pause()
    await clock.advance(150)
    resume()
    await clock.advance(500)
    expect(watcher.counters().selfSuspicions).to.equal(0)
    expect(events.filter((e) => e.node === 'dp-2')).to.deep.equal([])
  })

  it('should read the heartbeats that waited in its socket before judging a silence', async () => {
    // dp-1's heartbeats reach dp-2 at 50.5 ms past each of dp-2's ticks. dp-2 stalls from just
    // before one arrives (1040) to 199 ms after its next tick was due (1100): too little to
    // suspect itself, but the heartbeat it last read (950.5) is then 348.5 ms old, past the
    // 300 ms detection time, while three newer ones wait in its socket.
    const { clock, watcher, events, pause, resume } = await pausablePair({ offsetMs: 50 })
    await clock.advance(990)
    expect(watcher.health('dp-1')).to.equal('alive')
    pause()
    await clock.advance(259)
    resume()
    await clock.advance(500)
    expect(watcher.counters().selfSuspicions).to.equal(0)
    expect(events).to.deep.equal([])
    expect(watcher.health('dp-1')).to.equal('alive')
  })

  it('should read them first too when it stalls between a tick and its judgement', async () => {
    // the stall starts in the same turn of the event loop as the tick at 1100, after it (a
    // timer set after the tick at 1000 runs after the one of the tick at 1100), and lasts to
    // 1360: the judgement of 1100 then finds the heartbeat of 1050.5 309.5 ms old
    const { clock, watcher, events, pause, resume } = await pausablePair({ offsetMs: 50 })
    await clock.advance(1010) // to 1060 (dp-1 started 50 ms after dp-2)
    clock.setTimeout(pause, 1100 - clock.monotonic())
    await clock.advance(300)
    resume()
    await clock.advance(500)
    expect(events).to.deep.equal([])
    expect(watcher.health('dp-1')).to.equal('alive')
    expect(watcher.counters().selfSuspicions).to.equal(0)
    expect(watcher.counters().judgementsDeferred).to.equal(1)
  })

  it('should still fail a node that died during a short stall, once it has read its socket', async () => {
    const { clock, watcher, watched, events, pause, resume } = await pausablePair({ offsetMs: 50 })
    await clock.advance(990)
    pause()
    await watched.stop()
    await clock.advance(259)
    resume()
    await clock.advance(500)
    expect(events.filter((e) => e.type === 'node:failed')).to.have.length(1)
    expect(watcher.health('dp-1')).to.equal('failed')
  })

  it('should reject a pauseThresholdMs that is not a positive number of ms', () => {
    expect(
      () =>
        new HeartbeatFailureDetector(
          { network: undefined as never, clock: new VirtualClock() },
          { node: 'dp-1', local: OWNER, insecure: true, pauseThresholdMs: 0 }
        )
    ).to.throw(/pauseThresholdMs/)
  })
})

describe('HeartbeatFailureDetector detection time', () => {
  it('should fail a node the detection time after its last heartbeat, not at the tick after', async () => {
    // dp-1's last heartbeat reaches dp-2 at 1050.5, between dp-2's ticks at 1000 and 1100
    const { clock, watcher, watched, events } = await pausablePair({ offsetMs: 50 })
    await clock.advance(1010) // to 1060
    await watched.stop()
    await clock.advance(290) // to 1350
    expect(watcher.health('dp-1')).to.not.equal('failed')
    await clock.advance(1)
    expect(events.find((e) => e.type === 'node:failed')).to.deep.equal({
      type: 'node:failed',
      node: 'dp-1',
      silentMs: 300
    })
    await clock.advance(500)
    expect(events.filter((e) => e.type === 'node:failed')).to.have.length(1)
  })
})
