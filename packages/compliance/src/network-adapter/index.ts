import { expect } from 'chai'
import { firstValueFrom, take, timeout, toArray } from 'rxjs'
import type { Datagram, NetworkAdapter, NetworkEvent, UdpEndpoint } from '@vipsec/interface'

/** Two network adapters that can reach each other, with the addresses they may use. */
export interface NetworkPair {
  /** The first node's adapter, not yet started. */
  a: NetworkAdapter
  /** The second node's adapter, not yet started. */
  b: NetworkAdapter
  /** An address only `a` uses. */
  addressA: string
  /** An address only `b` uses. */
  addressB: string
  /** An address both may acquire (the DVIPA). */
  movable: string
}

/** Options of {@link networkAdapterSuite}. */
export interface NetworkAdapterSuiteOptions {
  /** Returns two fresh adapters. */
  setup(): NetworkPair | Promise<NetworkPair>
  /**
   * Releases what `setup` made.
   *
   * @param pair - what `setup` returned
   */
  teardown?(pair: NetworkPair): void | Promise<void>
  /**
   * Lets datagrams in flight arrive: advance a virtual clock, or wait on a real network.
   *
   * @param pair - what `setup` returned
   */
  settle(pair: NetworkPair): Promise<void>
}

const text = (s: string): Uint8Array => new TextEncoder().encode(s)

/**
 * Declares the mocha tests every {@link NetworkAdapter} must pass: lifecycle, UDP between two
 * nodes with the right source, moving an address from one node to another, releasing it, port
 * conflicts and closing.
 *
 * @param options - how to make a pair of adapters and let datagrams arrive
 */
export function networkAdapterSuite(options: NetworkAdapterSuiteOptions): void {
  describe('NetworkAdapter compliance', function () {
    this.timeout(30_000)
    let pair: NetworkPair
    const opened: UdpEndpoint[] = []

    /**
     * Settles until `got` holds `n` datagrams, at most ten times: on a real network the first
     * datagram to an address just acquired can wait for neighbour discovery (a Linux kernel
     * joins an IPv6 address's solicited-node group in the background, and a solicitation that
     * comes first is answered only when it is sent again, a second later).
     */
    const arrived = async (got: Datagram[], n: number): Promise<void> => {
      for (let i = 0; i < 10 && got.length < n; i++) await options.settle(pair)
    }

    beforeEach(async () => {
      pair = await options.setup()
      await pair.a.start()
      await pair.b.start()
      await pair.a.acquireAddress(pair.addressA)
      await pair.b.acquireAddress(pair.addressB)
    })

    afterEach(async () => {
      for (const endpoint of opened.splice(0)) await endpoint.close()
      await pair.a.stop()
      await pair.b.stop()
      await options.teardown?.(pair)
    })

    async function open(adapter: NetworkAdapter, address: string, port = 0): Promise<UdpEndpoint> {
      const endpoint = await adapter.openUdp({ address, port })
      opened.push(endpoint)
      return endpoint
    }

    function collect(endpoint: UdpEndpoint): Datagram[] {
      const got: Datagram[] = []
      endpoint.datagrams$.subscribe((d) => got.push(d))
      return got
    }

    describe('lifecycle', () => {
      it('should treat start and stop as idempotent and complete events$ on stop', async () => {
        await pair.a.start()
        let completed = false
        pair.a.events$.subscribe({ complete: () => (completed = true) })
        await pair.a.stop()
        await pair.a.stop()
        expect(completed).to.equal(true)
        expect(pair.a.isStarted()).to.equal(false)
        await pair.a.start()
        expect(pair.a.isStarted()).to.equal(true)
      })

      it('should reject calls with AbortError when the signal is already aborted', async () => {
        const controller = new AbortController()
        controller.abort()
        const err = await pair.a
          .openUdp({ address: pair.addressA, port: 0 }, { signal: controller.signal })
          .then(
            () => undefined,
            (e: Error) => e
          )
        expect(err?.name).to.equal('AbortError')
      })
    })

    describe('.openUdp', () => {
      it('should carry a datagram to the other node with the sender as source', async () => {
        const from = await open(pair.a, pair.addressA)
        const to = await open(pair.b, pair.addressB)
        expect(from.local.port).to.be.greaterThan(0)
        const got = collect(to)
        from.send(text('hello'), to.local)
        await arrived(got, 1)
        expect(got).to.have.length(1)
        expect(new TextDecoder().decode(got[0]!.data)).to.equal('hello')
        expect(got[0]!.from).to.deep.equal({ address: pair.addressA, port: from.local.port })
      })

      it('should refuse a port already bound on the same address', async () => {
        const first = await open(pair.a, pair.addressA)
        const err = await pair.a.openUdp({ address: pair.addressA, port: first.local.port }).then(
          () => undefined,
          (e: Error) => e
        )
        expect(err?.name).to.equal('InvalidParametersError')
      })

      it('should complete datagrams$ on close and send nothing after', async () => {
        const from = await open(pair.a, pair.addressA)
        const to = await open(pair.b, pair.addressB)
        const got = collect(to)
        let completed = false
        from.datagrams$.subscribe({ complete: () => (completed = true) })
        await from.close()
        expect(completed).to.equal(true)
        from.send(text('late'), to.local)
        await options.settle(pair)
        expect(got).to.have.length(0)
      })
    })

    describe('.acquireAddress', () => {
      it('should move an address: datagrams to it reach the node that acquired it last', async () => {
        const events: NetworkEvent[] = []
        pair.b.events$.subscribe((e) => events.push(e))
        const client = await open(pair.b, pair.addressB)
        await pair.a.acquireAddress(pair.movable)
        const onA = await open(pair.a, pair.movable, 4500)
        const gotA = collect(onA)
        client.send(text('one'), { address: pair.movable, port: 4500 })
        await arrived(gotA, 1)
        expect(gotA).to.have.length(1)

        await pair.b.acquireAddress(pair.movable)
        const onB = await open(pair.b, pair.movable, 4500)
        const gotB = collect(onB)
        client.send(text('two'), { address: pair.movable, port: 4500 })
        await arrived(gotB, 1)
        expect(gotB.map((d) => new TextDecoder().decode(d.data))).to.deep.equal(['two'])
        expect(gotA).to.have.length(1)
        expect(events).to.deep.include({ type: 'address:acquired', address: pair.movable })
      })
    })

    describe('.releaseAddress', () => {
      it('should stop delivery to the node that released the address', async () => {
        const client = await open(pair.b, pair.addressB)
        await pair.a.acquireAddress(pair.movable)
        const onA = await open(pair.a, pair.movable, 4501)
        const got = collect(onA)
        const released = firstValueFrom(pair.a.events$.pipe(take(1), timeout(5000), toArray()))
        await pair.a.releaseAddress(pair.movable)
        expect(await released).to.deep.equal([{ type: 'address:released', address: pair.movable }])
        client.send(text('gone'), { address: pair.movable, port: 4501 })
        await options.settle(pair)
        expect(got).to.have.length(0)
      })
    })
  })
}
