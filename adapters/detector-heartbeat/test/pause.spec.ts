import { expect } from 'chai'
import { VirtualClock } from '@vipsec/clock'
import type { Endpoint, FailureDetectorEvent } from '@vipsec/interface'
import { VirtualNetwork } from '@vipsec/network-virtual'
import { SeededRandomSource } from '@vipsec/random'
import { HeartbeatFailureDetector } from '../src/index.js'
import { HeldClock } from '@vipsec/clock/test/held-clock'

const WATCHER: Endpoint = { address: '10.9.0.2', port: 7500 }
const OWNER: Endpoint = { address: '10.9.0.1', port: 7500 }

/** dp-2 watches dp-1; dp-2's process can be paused: its timers and its socket wait. */
async function pausablePair() {
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
    { node: 'dp-2', local: WATCHER, intervalMs: 100, insecure: true }
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
  await watched.start()
  // datagrams to a paused process wait in its socket, and are read after its due timers
  let paused = false
  let queued: (() => void)[] = []
  const transmit = net.transmit.bind(net)
  net.transmit = (fromNode, from, to, data) => {
    if (paused && to.address === WATCHER.address)
      queued.push(() => transmit(fromNode, from, to, data))
    else transmit(fromNode, from, to, data)
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
    for (const send of q) send()
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
    await clock.advance(50)
    expect(events.some((e) => e.type === 'node:failed')).to.equal(false)
    expect(watcher.counters().verdictsWithheld).to.be.greaterThan(0)
    await clock.advance(400)
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
