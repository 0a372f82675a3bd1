import { expect } from 'chai'
import fc from 'fast-check'
import { VirtualClock } from '@vipsec/clock'
import type { FailureDetectorEvent } from '@vipsec/interface'
import { VirtualNetwork } from '@vipsec/network-virtual'
import { SeededRandomSource } from '@vipsec/random'
import { FrameGuard, generateClusterKey, type ClusterKey } from '@vipsec/cluster-link-udp'
import type { Endpoint } from '@vipsec/interface'
import { HeartbeatFailureDetector, heartbeatGuard } from '../src/index.js'

const key = generateClusterKey(21)
const next = generateClusterKey(22)
const WATCHER: Endpoint = { address: '10.9.0.2', port: 7500 }
const OWNER: Endpoint = { address: '10.9.0.1', port: 7500 }

async function pair(
  init: { lossRate?: number; keys?: ClusterKey[]; insecure?: boolean; intervalMs?: number } = {}
) {
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
    ...(init.insecure === true ? { insecure: true } : { keys: init.keys ?? [key] })
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
  const wire: Uint8Array[] = []
  const transmit = net.transmit.bind(net)
  net.transmit = (fromNode, from, to, data) => {
    if (from.address === OWNER.address) wire.push(new Uint8Array(data))
    transmit(fromNode, from, to, data)
  }
  /** Sends bytes to the watcher as if from the owner's heartbeat endpoint (spoofed). */
  const inject = (data: Uint8Array): void => net.transmit('attacker', OWNER, WATCHER, data)
  return { clock, net, watcher, watched, events, wire, inject }
}

/** Heartbeats claiming to be dp-1's, sealed under `keys`. */
function forger(keys: ClusterKey[], incarnation: number): () => Uint8Array {
  const guard = heartbeatGuard(keys)
  guard.startSending('dp-1', incarnation)
  return () => guard.seal(new Uint8Array(0))
}

const wrongKey = { id: key.id, secret: new Uint8Array(32).fill(5) }

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

  describe('.healthChanges$', () => {
    it('should report every change of health, the first heartbeat included, once each', async () => {
      const { clock, watched, watcher } = await pair()
      const changes: string[] = []
      watcher.healthChanges$.subscribe(({ node, health }) => changes.push(`${node}:${health}`))
      // pair() started both: dp-1's first heartbeat has not been judged by anything yet
      await clock.advance(500)
      await watched.stop()
      await clock.advance(1000)
      await watched.start()
      await clock.advance(500)
      expect(changes).to.deep.equal(['dp-1:alive', 'dp-1:suspect', 'dp-1:failed', 'dp-1:alive'])
      expect(watcher.health('dp-1')).to.equal('alive')
    })
  })

  describe('when heartbeats are forged', () => {
    it('should not keep a killed owner alive with heartbeats made without the key', async () => {
      const { clock, watched, watcher, events, inject } = await pair()
      await clock.advance(500)
      await watched.stop()
      const forge = forger([wrongKey], 2 ** 52)
      for (let i = 0; i < 20; i++) {
        inject(forge())
        await clock.advance(50)
      }
      expect(events.some((e) => e.type === 'node:failed')).to.equal(true)
      expect(watcher.counters().dropped).to.include({ unauthenticated: 20 })
    })

    it('should not be silenced by one forged heartbeat with a huge incarnation', async () => {
      const { clock, watcher, events, inject } = await pair()
      await clock.advance(300)
      inject(forger([wrongKey], Number.MAX_SAFE_INTEGER)())
      await clock.advance(2000)
      expect(events.map((e) => e.type)).to.deep.equal([])
      expect(watcher.health('dp-1')).to.equal('alive')
      expect(watcher.counters().dropped).to.include({ unauthenticated: 1 })
    })

    it('should drop heartbeats under a key id it does not hold, and unauthenticated ones', async () => {
      const { clock, watcher, inject } = await pair()
      inject(forger([next], 2 ** 52)())
      inject(forger([], 2 ** 52)())
      await clock.advance(10)
      expect(watcher.counters().dropped).to.include({ 'unknown-key': 2 })
    })
  })

  describe('when a datagram is too long or not a heartbeat', () => {
    it('should drop it as oversized or malformed, and spend no key on it', async () => {
      const { clock, watcher, inject } = await pair()
      const real = forger([key], 2 ** 52)()
      inject(new Uint8Array([...real, ...new Uint8Array(300)]))
      inject(real.subarray(0, 20))
      inject(
        new Uint8Array([
          ...real.subarray(0, real.length - 16),
          1,
          ...real.subarray(real.length - 16)
        ])
      )
      await clock.advance(10)
      expect(watcher.counters().dropped).to.include({
        oversized: 1,
        malformed: 1,
        unauthenticated: 1
      })
      expect(watcher.health('dp-1')).to.equal('alive')
    })
  })

  describe('when captured heartbeats are replayed', () => {
    it('should not keep the killed owner alive, and count them', async () => {
      const { clock, watched, watcher, events, wire, inject } = await pair()
      await clock.advance(1000)
      const captured = [...wire]
      await watched.stop()
      for (const [i, frame] of captured.entries()) {
        inject(frame)
        if (i % 4 === 0) await clock.advance(50)
      }
      await clock.advance(500)
      expect(events.filter((e) => e.type === 'node:failed')).to.have.length(1)
      expect(events.some((e) => e.type === 'node:recovered')).to.equal(false)
      const dropped = watcher.counters().dropped
      expect(dropped.replayed + dropped['too-old']).to.equal(captured.length)
    })
  })

  describe('when the owner restarts and its old heartbeats are replayed', () => {
    it('should accept the new incarnation and refuse the old one', async () => {
      const { clock, watched, watcher, wire, inject } = await pair()
      await clock.advance(300)
      const old = [...wire]
      await watched.stop()
      await clock.advance(50)
      await watched.start()
      await clock.advance(300)
      for (const frame of old) inject(frame)
      await clock.advance(10)
      expect(watcher.health('dp-1')).to.equal('alive')
      expect(watcher.counters().dropped).to.include({ 'stale-incarnation': old.length })
    })
  })

  describe('when keys rotate', () => {
    it('should accept heartbeats under either key while both are held', async () => {
      const { clock, watched, watcher, events } = await pair()
      watcher.setKeys([key, next])
      watched.setKeys([next, key])
      await clock.advance(500)
      watcher.setKeys([next])
      await clock.advance(500)
      expect(events).to.deep.equal([])
      expect(watcher.counters().dropped['unknown-key']).to.equal(0)
      expect(watcher.counters().received).to.be.within(9, 11)
    })
  })

  describe('in insecure mode', () => {
    it('should work without keys', async () => {
      const { clock, watcher } = await pair({ insecure: true })
      await clock.advance(500)
      expect(watcher.insecure).to.equal(true)
      expect(watcher.health('dp-1')).to.equal('alive')
    })
  })

  describe('constructor', () => {
    it('should reject bad timing naming the option', () => {
      const net = new VirtualNetwork({ clock: new VirtualClock() })
      const make = (init: object) => () =>
        new HeartbeatFailureDetector(
          { network: net.attach('x'), clock: new VirtualClock() },
          { node: 'x', local: { address: '10.0.0.1', port: 1 }, keys: [key], ...init }
        )
      expect(make({ intervalMs: 0 }))
        .to.throw()
        .with.property('argument', 'init.intervalMs')
      expect(make({ multiplier: 1 }))
        .to.throw()
        .with.property('argument', 'init.multiplier')
    })

    it('should refuse to be made without a key unless insecure is set', () => {
      const network = new VirtualNetwork({ clock: new VirtualClock() }).attach('x')
      const make = (init: object) => () =>
        new HeartbeatFailureDetector(
          { network, clock: new VirtualClock() },
          { node: 'x', local: { address: '10.0.0.1', port: 1 }, ...init }
        )
      expect(make({})).to.throw().with.property('argument', 'init.keys')
      expect(make({ insecure: true })).to.not.throw()
      expect(make({ keys: [key], insecure: true }))
        .to.throw()
        .with.property('argument', 'init.insecure')
    })
  })
})

describe('heartbeatGuard', () => {
  it('should never throw on any bytes, and never take a link frame for a heartbeat', async () => {
    const { clock, watcher, inject } = await pair()
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        inject(bytes)
      }),
      { numRuns: 2000 }
    )
    await clock.advance(10)
    const link = new FrameGuard({
      magic: [0x56, 0x48],
      purpose: 'cluster link',
      keys: [key],
      windowSize: 64
    })
    link.startSending('dp-1', 2 ** 52)
    inject(link.seal(new Uint8Array(0)))
    await clock.advance(10)
    const dropped = watcher.counters().dropped
    expect(dropped.unauthenticated).to.equal(1)
    expect(Object.values(dropped).reduce((a, b) => a + b, 0)).to.be.greaterThan(1000)
    expect(watcher.health('dp-1')).to.equal('alive')
  })
})
