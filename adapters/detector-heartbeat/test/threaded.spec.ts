import { expect } from 'chai'
import { failureDetectorSuite } from '@vipsec/compliance/failure-detector'
import { generateClusterKey } from '@vipsec/cluster-link-udp'
import { ThreadedHeartbeatFailureDetector } from '../src/index.js'
import { freePort } from './helpers/free-port.js'

describe('ThreadedHeartbeatFailureDetector', function () {
  this.timeout(60_000)
  failureDetectorSuite({
    setup: async () => {
      const [mine, theirs] = [await freePort(), await freePort()]
      // 300 ms detection; half of it (150 ms) is the margin the suite's timing checks need on a loaded machine
      const timing = { intervalMs: 60, multiplier: 5, keys: [generateClusterKey()] }
      const detector = new ThreadedHeartbeatFailureDetector({
        node: 'dp-2',
        local: { address: '127.0.0.1', port: mine },
        ...timing
      })
      // the watched node: another threaded detector that announces to dp-2
      const peer = new ThreadedHeartbeatFailureDetector({
        node: 'dp-1',
        local: { address: '127.0.0.1', port: theirs },
        ...timing,
        announceTo: [{ address: '127.0.0.1', port: mine }]
      })
      return {
        detector,
        target: { node: 'dp-1', endpoint: { address: '127.0.0.1', port: theirs } },
        peer: { start: async () => peer.start(), stop: async () => peer.stop() },
        detectionTimeMs: detector.detectionTimeMs
      }
    },
    // real time: the worker runs on the system clock
    advance: async (_h, ms) => new Promise((resolve) => setTimeout(resolve, ms))
  })

  describe('.health', () => {
    it('should learn that a watched node is alive from its first heartbeat, not from a poll', async () => {
      const [pa, pb] = [await freePort(), await freePort()]
      // a long interval: a report that waited for a timer of the worker would come seconds late
      const timing = { intervalMs: 2000, multiplier: 3, keys: [generateClusterKey()] }
      const a = new ThreadedHeartbeatFailureDetector({
        node: 'a',
        local: { address: '127.0.0.1', port: pa },
        ...timing
      })
      const b = new ThreadedHeartbeatFailureDetector({
        node: 'b',
        local: { address: '127.0.0.1', port: pb },
        ...timing
      })
      a.watch({ node: 'b', endpoint: { address: '127.0.0.1', port: pb } })
      b.watch({ node: 'a', endpoint: { address: '127.0.0.1', port: pa } })
      await a.start()
      try {
        expect(a.health('b')).to.equal('unknown')
        // b's first heartbeat leaves as it starts; a's worker reports it as it arrives
        await b.start()
        const started = Date.now()
        while (a.health('b') !== 'alive' && Date.now() - started < 1500) {
          await new Promise((resolve) => setTimeout(resolve, 10))
        }
        expect(a.health('b')).to.equal('alive')
        expect(Date.now() - started, 'ms until reported').to.be.below(1500)
      } finally {
        await a.stop()
        await b.stop()
      }
    })
  })

  describe('.counters and .setKeys', () => {
    it('should report counters while running, and rotate keys in the worker without a failure', async () => {
      const [pa, pb] = [await freePort(), await freePort()]
      const [k1, k2] = [generateClusterKey(1), generateClusterKey(2)]
      const make = (node: string, port: number) =>
        new ThreadedHeartbeatFailureDetector({
          node,
          local: { address: '127.0.0.1', port },
          intervalMs: 50,
          multiplier: 6,
          keys: [k1]
        })
      const a = make('a', pa)
      const b = make('b', pb)
      a.watch({ node: 'b', endpoint: { address: '127.0.0.1', port: pb } })
      b.watch({ node: 'a', endpoint: { address: '127.0.0.1', port: pa } })
      const failures: string[] = []
      a.events$.subscribe((e) => void (e.type === 'node:failed' && failures.push(e.node)))
      await a.start()
      await b.start()
      try {
        // b's worker may start later than a's: what a says before it heard b is start-up
        await new Promise((resolve) => setTimeout(resolve, 1000))
        failures.length = 0
        expect(a.counters().received, 'counted while running').to.be.greaterThan(3)
        a.setKeys([k1, k2])
        b.setKeys([k2, k1])
        await new Promise((resolve) => setTimeout(resolve, 300))
        a.setKeys([k2])
        const before = a.counters().received
        await new Promise((resolve) => setTimeout(resolve, 500))
        expect(a.counters().received).to.be.greaterThan(before + 3)
        expect(a.counters().dropped['unknown-key']).to.equal(0)
        expect(failures).to.deep.equal([])
        expect(a.health('b')).to.equal('alive')
        expect(() => a.setKeys([]))
          .to.throw()
          .with.property('name', 'InvalidParametersError')
      } finally {
        await a.stop()
        await b.stop()
      }
    })
  })

  describe('.start', () => {
    describe('when the port is taken', () => {
      it('should reject with InvalidParametersError naming local.port', async () => {
        const port = await freePort()
        const a = new ThreadedHeartbeatFailureDetector({
          node: 'a',
          local: { address: '127.0.0.1', port },
          insecure: true
        })
        const b = new ThreadedHeartbeatFailureDetector({
          node: 'b',
          local: { address: '127.0.0.1', port },
          insecure: true
        })
        await a.start()
        const err = await b.start().then(
          () => undefined,
          (e: Error & { argument?: string }) => e
        )
        await a.stop()
        expect(err?.name).to.equal('InvalidParametersError')
        expect(err?.argument).to.equal('local.port')
        expect(b.isStarted()).to.equal(false)
      })
    })
  })
})
