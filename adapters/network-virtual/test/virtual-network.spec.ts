import { expect } from 'chai'
import { VirtualClock } from '@vipsec/clock'
import type { Datagram, UdpEndpoint } from '@vipsec/interface'
import { SeededRandomSource } from '@vipsec/random'
import { VirtualNetwork, type TrafficEvent } from '../src/index.js'

const bytes = (n: number): Uint8Array => new Uint8Array([n])

describe('VirtualNetwork', () => {
  let clock: VirtualClock
  let network: VirtualNetwork
  let sender: UdpEndpoint
  let receiver: UdpEndpoint
  let got: Datagram[]

  beforeEach(async () => {
    clock = new VirtualClock()
    network = new VirtualNetwork(
      { clock, random: new SeededRandomSource({ seed: 'net' }) },
      { latencyMs: 5 }
    )
    const a = network.attach('a')
    const b = network.attach('b')
    await a.start()
    await b.start()
    await a.acquireAddress('10.1.0.1')
    await b.acquireAddress('10.1.0.2')
    sender = await a.openUdp({ address: '10.1.0.1', port: 1000 })
    receiver = await b.openUdp({ address: '10.1.0.2', port: 2000 })
    got = []
    receiver.datagrams$.subscribe((d) => got.push(d))
  })

  describe('.transmit', () => {
    it('should deliver after the latency, not before', async () => {
      sender.send(bytes(1), receiver.local)
      await clock.advance(4.9)
      expect(got).to.have.length(0)
      await clock.advance(0.1)
      expect(got).to.have.length(1)
    })

    it('should deliver a copy, so that the sender may reuse its buffer', async () => {
      const buffer = bytes(7)
      sender.send(buffer, receiver.local)
      buffer[0] = 9
      await clock.advance(10)
      expect(got[0]!.data[0]).to.equal(7)
    })

    describe('when the network loses datagrams', () => {
      it('should drop about the configured fraction and count them', async () => {
        network.configure({ lossRate: 0.3 })
        for (let i = 0; i < 1000; i++) sender.send(bytes(i), receiver.local)
        await clock.advance(10)
        const { dropped, delivered } = network.stats()
        expect(delivered + dropped.loss).to.equal(1000)
        expect(dropped.loss).to.be.within(230, 370)
        expect(got).to.have.length(delivered)
      })
    })

    describe('when the network duplicates datagrams', () => {
      it('should deliver some twice', async () => {
        network.configure({ duplicateRate: 1 })
        sender.send(bytes(1), receiver.local)
        await clock.advance(10)
        expect(got).to.have.length(2)
      })
    })

    describe('when the nodes are partitioned', () => {
      it('should drop both ways until healed', async () => {
        network.partition(['a'], ['b'])
        sender.send(bytes(1), receiver.local)
        await clock.advance(10)
        expect(got).to.have.length(0)
        expect(network.stats().dropped.partition).to.equal(1)
        network.heal()
        sender.send(bytes(2), receiver.local)
        await clock.advance(10)
        expect(got).to.have.length(1)
      })
    })

    describe('when the receiving node crashed', () => {
      it('should count the datagram as node-down', async () => {
        await network.attach('b').stop()
        sender.send(bytes(1), receiver.local)
        await clock.advance(10)
        expect(network.stats().dropped['node-down']).to.equal(1)
      })
    })

    describe('when an address moves while a datagram is in flight', () => {
      it('should deliver it to the address’s new node', async () => {
        const c = network.attach('c')
        await c.start()
        await network.attach('b').acquireAddress('10.1.0.100')
        const onB = await network.attach('b').openUdp({ address: '0.0.0.0', port: 4500 })
        const onC = await c.openUdp({ address: '0.0.0.0', port: 4500 })
        const atB: Datagram[] = []
        const atC: Datagram[] = []
        onB.datagrams$.subscribe((d) => atB.push(d))
        onC.datagrams$.subscribe((d) => atC.push(d))
        sender.send(bytes(1), { address: '10.1.0.100', port: 4500 })
        await c.acquireAddress('10.1.0.100')
        await clock.advance(10)
        expect(atB).to.have.length(0)
        expect(atC).to.have.length(1)
      })
    })

    it('should report every outcome on traffic$', async () => {
      const events: TrafficEvent[] = []
      network.traffic$.subscribe((e) => events.push(e))
      sender.send(bytes(1), receiver.local)
      sender.send(bytes(2), { address: '10.9.9.9', port: 1 })
      sender.send(bytes(3), { address: '10.1.0.2', port: 9 })
      await clock.advance(10)
      expect(events.map((e) => e.outcome).sort()).to.deep.equal([
        'delivered',
        'no-route',
        'unbound'
      ])
    })
  })

  describe('.configure', () => {
    it('should reject rates outside 0 to 1 naming the option', () => {
      expect(() => network.configure({ lossRate: 1.5 }))
        .to.throw()
        .with.property('argument', 'lossRate')
      expect(() => network.configure({ latencyMs: -1 }))
        .to.throw()
        .with.property('argument', 'latencyMs')
    })
  })
})
