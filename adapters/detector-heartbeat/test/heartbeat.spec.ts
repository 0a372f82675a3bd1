import { expect } from 'chai'
import fc from 'fast-check'
import { VirtualClock } from '@vipsec/clock'
import type { FailureDetectorEvent } from '@vipsec/interface'
import { VirtualNetwork } from '@vipsec/network-virtual'
import { SeededRandomSource } from '@vipsec/random'
import { decodeHeartbeat, encodeHeartbeat, HeartbeatFailureDetector } from '../src/index.js'

const key = new Uint8Array(16).fill(3)

async function pair(init: { lossRate?: number; key?: Uint8Array; intervalMs?: number } = {}) {
  const clock = new VirtualClock()
  const random = new SeededRandomSource({ seed: 'heartbeat' })
  const net = new VirtualNetwork(
    { clock, random },
    { latencyMs: 0.5, lossRate: init.lossRate ?? 0 }
  )
  const [na, nb] = [net.attach('dp-2'), net.attach('dp-1')]
  for (const n of [na, nb]) await n.start()
  await na.acquireAddress('10.9.0.2')
  await nb.acquireAddress('10.9.0.1')
  const common = {
    intervalMs: init.intervalMs ?? 100,
    ...(init.key === undefined ? {} : { key: init.key })
  }
  const watcher = new HeartbeatFailureDetector(
    { network: na, clock },
    { node: 'dp-2', local: { address: '10.9.0.2', port: 7500 }, ...common }
  )
  const watched = new HeartbeatFailureDetector(
    { network: nb, clock },
    { node: 'dp-1', local: { address: '10.9.0.1', port: 7500 }, ...common }
  )
  watcher.watch({ node: 'dp-1', endpoint: { address: '10.9.0.1', port: 7500 } })
  watched.watch({ node: 'dp-2', endpoint: { address: '10.9.0.2', port: 7500 } })
  const events: FailureDetectorEvent[] = []
  watcher.events$.subscribe((e) => events.push(e))
  await watcher.start()
  await watched.start()
  return { clock, net, watcher, watched, events }
}

describe('HeartbeatFailureDetector', () => {
  describe('when the detection time is 300 ms', () => {
    it('should declare the owner failed between 300 and 400 ms after its last heartbeat', async () => {
      const { clock, watcher, watched, events } = await pair()
      await clock.advance(1000)
      await watched.stop()
      const stoppedAt = clock.monotonic()
      await clock.advance(1000)
      const failed = events.find((e) => e.type === 'node:failed')
      expect(failed).to.not.equal(undefined)
      expect(failed!.type === 'node:failed' && failed!.silentMs).to.be.within(300, 400)
      expect(watcher.health('dp-1')).to.equal('failed')
      expect(stoppedAt).to.equal(1000)
    })
  })

  describe('when 1% of the heartbeats are lost', () => {
    it('should never declare the live node failed in ten minutes', async () => {
      const { clock, events, watcher } = await pair({ lossRate: 0.01 })
      for (let t = 0; t < 600_000; t += 1000) await clock.advance(1000)
      expect(events.filter((e) => e.type === 'node:failed')).to.deep.equal([])
      expect(watcher.health('dp-1')).to.not.equal('failed')
      expect(watcher.counters().received).to.be.within(5850, 6000)
    })
  })

  describe('when the watched node restarts', () => {
    it('should accept its heartbeats although their sequence starts again', async () => {
      const { clock, watched, events, watcher } = await pair()
      await clock.advance(500)
      await watched.stop()
      await clock.advance(1000)
      await watched.start()
      await clock.advance(500)
      expect(events.map((e) => e.type)).to.deep.equal([
        'node:suspect',
        'node:failed',
        'node:recovered'
      ])
      expect(watcher.health('dp-1')).to.equal('alive')
    })
  })

  describe('when heartbeats are authenticated', () => {
    it('should ignore forged heartbeats from a node that died', async () => {
      const { clock, net, watched, watcher, events } = await pair({ key })
      await clock.advance(500)
      await watched.stop()
      // something else on dp-1's address keeps sending well-formed heartbeats without the key
      const forger = await net.attach('dp-1').openUdp({ address: '10.9.0.1', port: 7500 })
      for (let i = 0; i < 20; i++) {
        forger.send(encodeHeartbeat({ node: 'dp-1', incarnation: 2 ** 50, sequence: i }), {
          address: '10.9.0.2',
          port: 7500
        })
        await clock.advance(50)
      }
      expect(events.some((e) => e.type === 'node:failed')).to.equal(true)
      expect(watcher.counters().rejected).to.equal(20)
    })
  })

  describe('constructor', () => {
    it('should reject bad timing naming the option', () => {
      const net = new VirtualNetwork({ clock: new VirtualClock() })
      const make = (init: object) => () =>
        new HeartbeatFailureDetector(
          { network: net.attach('x'), clock: new VirtualClock() },
          { node: 'x', local: { address: '10.0.0.1', port: 1 }, ...init }
        )
      expect(make({ intervalMs: 0 }))
        .to.throw()
        .with.property('argument', 'init.intervalMs')
      expect(make({ multiplier: 1 }))
        .to.throw()
        .with.property('argument', 'init.multiplier')
    })
  })
})

describe('decodeHeartbeat', () => {
  it('should never throw and round-trip what encodeHeartbeat makes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        decodeHeartbeat(bytes)
        decodeHeartbeat(bytes, key)
      }),
      { numRuns: 3000 }
    )
    const hb = { node: 'dp-1', incarnation: 1_700_000_000_000, sequence: 42 }
    expect(decodeHeartbeat(encodeHeartbeat(hb))).to.deep.equal(hb)
    expect(decodeHeartbeat(encodeHeartbeat(hb, key), key)).to.deep.equal(hb)
  })
})
