import { expect } from 'chai'
import type { ClusterEnvelope, ClusterLink, ClusterMessage } from '@vipsec/interface'

/** Two cluster links that know each other. */
export interface ClusterLinkPair {
  /** One node's link, not yet started. */
  a: ClusterLink
  /** The other node's link, not yet started. */
  b: ClusterLink
}

/** Options of {@link clusterLinkSuite}. */
export interface ClusterLinkSuiteOptions {
  /** Returns two fresh links, each with the other as a peer. */
  setup(): ClusterLinkPair | Promise<ClusterLinkPair>
  /**
   * Releases what `setup` made.
   *
   * @param pair - what `setup` returned
   */
  teardown?(pair: ClusterLinkPair): void | Promise<void>
  /**
   * Lets messages in flight arrive.
   *
   * @param pair - what `setup` returned
   */
  settle(pair: ClusterLinkPair): Promise<void>
}

const messages: ClusterMessage[] = [
  {
    type: 'packet:inbound',
    dvipa: '10.0.0.100',
    epoch: 3,
    flow: {
      protocol: 17,
      sourceAddress: '172.16.2.1',
      sourcePort: 40001,
      destinationAddress: '10.77.0.10',
      destinationPort: 7
    },
    packet: Uint8Array.from({ length: 1400 }, (_, i) => i & 0xff)
  },
  {
    type: 'packet:outbound',
    dvipa: '10.0.0.100',
    epoch: 2 ** 40,
    flow: {
      protocol: 6,
      sourceAddress: 'fd00::1',
      sourcePort: 443,
      destinationAddress: 'fd00::2',
      destinationPort: 50000
    },
    packet: new Uint8Array(0)
  },
  { type: 'ownership:notice', dvipa: '10.0.0.100', owner: 'dp-2', epoch: 7 },
  { type: 'heartbeat', sequence: 12345 }
]

/**
 * Declares the mocha tests every {@link ClusterLink} must pass: each message type arrives
 * intact with its sender, unknown destinations are an error, and the lifecycle is idempotent
 * with `messages$` completing on stop.
 *
 * @param options - how to make a pair of links and let messages arrive
 */
export function clusterLinkSuite(options: ClusterLinkSuiteOptions): void {
  describe('ClusterLink compliance', function () {
    this.timeout(30_000)
    let pair: ClusterLinkPair

    beforeEach(async () => {
      pair = await options.setup()
      await pair.a.start()
      await pair.b.start()
    })

    afterEach(async () => {
      await pair.a.stop()
      await pair.b.stop()
      await options.teardown?.(pair)
    })

    describe('.send', () => {
      it('should deliver every message type intact, with the sender’s id', async () => {
        const got: ClusterEnvelope[] = []
        pair.b.messages$.subscribe((e) => got.push(e))
        for (const message of messages) await pair.a.send(pair.b.localNode, message)
        await options.settle(pair)
        expect(got).to.have.length(messages.length)
        for (const [i, envelope] of got.entries()) {
          expect(envelope.from).to.equal(pair.a.localNode)
          expect(envelope.message).to.deep.equal(messages[i])
        }
      })

      it('should reject a destination that is not a peer with NotFoundError', async () => {
        const err = await pair.a.send('nobody', messages[3]!).then(
          () => undefined,
          (e: Error) => e
        )
        expect(err?.name).to.equal('NotFoundError')
      })

      it('should reject with AbortError when the signal is already aborted', async () => {
        const controller = new AbortController()
        controller.abort()
        const err = await pair.a
          .send(pair.b.localNode, messages[3]!, { signal: controller.signal })
          .then(
            () => undefined,
            (e: Error) => e
          )
        expect(err?.name).to.equal('AbortError')
      })
    })

    describe('lifecycle', () => {
      it('should be idempotent and complete messages$ on stop', async () => {
        await pair.a.start()
        let completed = false
        pair.a.messages$.subscribe({ complete: () => (completed = true) })
        await pair.a.stop()
        await pair.a.stop()
        expect(completed).to.equal(true)
        expect(pair.a.isStarted()).to.equal(false)
        await pair.a.start()
      })
    })
  })
}
