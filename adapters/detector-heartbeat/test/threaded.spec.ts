import { createSocket } from 'node:dgram'
import { expect } from 'chai'
import { failureDetectorSuite } from '@vipsec/compliance/failure-detector'
import { generateClusterKey } from '@vipsec/cluster-link-udp'
import { ThreadedHeartbeatFailureDetector } from '../src/index.js'

/** A free UDP port on 127.0.0.1. */
async function freePort(): Promise<number> {
  const socket = createSocket('udp4')
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()))
  const { port } = socket.address()
  await new Promise<void>((resolve) => socket.close(() => resolve()))
  return port
}

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
