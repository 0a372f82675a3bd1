import { expect } from 'chai'
import { Subject } from 'rxjs'
import type {
  ClusterEnvelope,
  ClusterLink,
  ClusterMessage,
  PacketDelivery,
  TargetEvent
} from '@vipsec/interface'
import { buildIpPacket, buildTcp, buildUdp, parseIpPacket, TcpFlags } from '@vipsec/wire'
import { DefaultTargetStack, requestResponse, udpEcho } from '../src/index.js'

/** A link double that records what is sent and lets the test deliver messages. */
class FakeLink implements ClusterLink {
  readonly localNode = 'target-1'
  readonly incoming = new Subject<ClusterEnvelope>()
  readonly messages$ = this.incoming.asObservable()
  readonly sent: { to: string; message: ClusterMessage }[] = []
  async send(to: string, message: ClusterMessage): Promise<void> {
    this.sent.push({ to, message })
  }
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  isStarted(): boolean {
    return true
  }
}

/** A host double: records what is delivered, lets the test send replies from the host. */
class FakeDelivery implements PacketDelivery {
  readonly delivered: Uint8Array[] = []
  readonly host = new Subject<Uint8Array>()
  readonly packets$ = this.host.asObservable()
  started = false
  async start(): Promise<void> {
    this.started = true
  }
  async stop(): Promise<void> {
    this.started = false
  }
  isStarted(): boolean {
    return this.started
  }
  deliver(packet: Uint8Array): void {
    this.delivered.push(packet)
  }
}

const flow = {
  protocol: 17,
  sourceAddress: '172.16.2.1',
  sourcePort: 40001,
  destinationAddress: '10.77.0.10',
  destinationPort: 7
}

function request(text: string, port = 7): Uint8Array {
  const payload = new TextEncoder().encode(text)
  return buildIpPacket({
    source: flow.sourceAddress,
    destination: flow.destinationAddress,
    protocol: 17,
    payload: buildUdp({
      source: flow.sourceAddress,
      destination: flow.destinationAddress,
      sourcePort: 40001,
      destinationPort: port,
      payload
    })
  })
}

const inbound = (from: string, epoch: number, packet: Uint8Array): ClusterEnvelope => ({
  from,
  message: { type: 'packet:inbound', dvipa: '10.0.0.100', epoch, flow, packet }
})

describe('DefaultTargetStack', () => {
  let link: FakeLink
  let stack: DefaultTargetStack
  let events: TargetEvent[]

  beforeEach(async () => {
    link = new FakeLink()
    stack = new DefaultTargetStack({ link }, { node: 'target-1' })
    stack.register(17, 7, requestResponse('target-1'))
    stack.register(17, 9, udpEcho())
    events = []
    stack.events$.subscribe((e) => events.push(e))
    await stack.start()
  })

  describe('.receive', () => {
    it('should answer a request with a correct reply packet to the owner', async () => {
      await stack.receive(inbound('dp-1', 1, request('hello')))
      expect(link.sent).to.have.length(1)
      const { to, message } = link.sent[0]!
      expect(to).to.equal('dp-1')
      expect(message).to.include({ type: 'packet:outbound', dvipa: '10.0.0.100', epoch: 1 })
      const reply = (message as { packet: Uint8Array }).packet
      const info = parseIpPacket(reply)!
      expect(info.protocol).to.equal(17)
      expect(new TextDecoder().decode(reply.subarray(info.payloadOffset + 8))).to.equal(
        'target-1 1 hello'
      )
    })

    it('should send replies to a newer owner announced by a notice', async () => {
      await stack.receive(inbound('dp-1', 1, request('a')))
      await stack.receive({
        from: 'dp-2',
        message: { type: 'ownership:notice', dvipa: '10.0.0.100', owner: 'dp-2', epoch: 2 }
      })
      expect(stack.ownerOf('10.0.0.100')).to.deep.equal({ owner: 'dp-2', epoch: 2 })
      await stack.receive(inbound('dp-2', 2, request('b', 9)))
      expect(link.sent.map((s) => s.to)).to.deep.equal(['dp-1', 'dp-2'])
      expect(events.map((e) => e.type)).to.deep.equal(['owner:changed', 'owner:changed'])
    })

    describe('when a packet or notice carries an older epoch', () => {
      it('should ignore it and count it', async () => {
        await stack.receive({
          from: 'dp-2',
          message: { type: 'ownership:notice', dvipa: '10.0.0.100', owner: 'dp-2', epoch: 2 }
        })
        await stack.receive(inbound('dp-1', 1, request('late')))
        await stack.receive({
          from: 'dp-1',
          message: { type: 'ownership:notice', dvipa: '10.0.0.100', owner: 'dp-1', epoch: 1 }
        })
        expect(link.sent).to.deep.equal([])
        expect(stack.counters().staleIgnored).to.equal(2)
        expect(stack.ownerOf('10.0.0.100')).to.deep.equal({ owner: 'dp-2', epoch: 2 })
        expect(events.filter((e) => e.type === 'notice:stale-ignored')).to.have.length(2)
      })
    })

    describe('when the input is bad', () => {
      it('should count malformed packets, packets without an application and failing applications', async () => {
        stack.register(17, 13, () => {
          throw new Error('boom')
        })
        await stack.receive(inbound('dp-1', 1, new Uint8Array([0x45, 0, 0])))
        await stack.receive(inbound('dp-1', 1, request('x', 99)))
        await stack.receive(inbound('dp-1', 1, request('x', 13)))
        expect(stack.counters()).to.include({
          malformed: 1,
          noHandler: 1,
          appErrors: 1,
          replies: 0
        })
      })
    })
  })

  describe('.stop', () => {
    it('should complete events$ and be idempotent', async () => {
      let completed = false
      stack.events$.subscribe({ complete: () => (completed = true) })
      await stack.stop()
      await stack.stop()
      expect(completed).to.equal(true)
    })
  })

  describe('with a delivery (the host’s kernel)', () => {
    let host: FakeDelivery
    let kernel: DefaultTargetStack

    beforeEach(async () => {
      host = new FakeDelivery()
      kernel = new DefaultTargetStack({ link, delivery: host }, { node: 'target-1' })
      kernel.register(17, 7, requestResponse('target-1'))
      await kernel.start()
    })

    const segment = (source: string, destination: string, sport: number, dport: number) =>
      buildIpPacket({
        source,
        destination,
        protocol: 6,
        payload: buildTcp({
          source,
          destination,
          sourcePort: sport,
          destinationPort: dport,
          sequence: 1,
          acknowledgement: 0,
          flags: TcpFlags.SYN
        })
      })

    it('should start and stop the delivery with the stack', async () => {
      expect(host.started).to.equal(true)
      await kernel.stop()
      expect(host.started).to.equal(false)
    })

    it('should hand packets no application takes to the host, TCP included, and keep the apps', async () => {
      const syn = segment(flow.sourceAddress, flow.destinationAddress, 40001, 80)
      await kernel.receive(inbound('dp-1', 1, syn))
      await kernel.receive(inbound('dp-1', 1, request('x', 99)))
      await kernel.receive(inbound('dp-1', 1, request('app')))
      expect(host.delivered).to.deep.equal([syn, request('x', 99)])
      expect(kernel.counters()).to.include({ delivered: 2, requests: 1, noHandler: 0 })
    })

    it('should send the host’s replies to the owner known now, with the flow as seen inbound', async () => {
      await kernel.receive(
        inbound('dp-1', 1, segment(flow.sourceAddress, flow.destinationAddress, 40001, 80))
      )
      await kernel.receive({
        from: 'dp-2',
        message: { type: 'ownership:notice', dvipa: '10.0.0.100', owner: 'dp-2', epoch: 2 }
      })
      const synAck = segment(flow.destinationAddress, flow.sourceAddress, 80, 40001)
      host.host.next(synAck)
      expect(link.sent).to.have.length(1)
      expect(link.sent[0]!.to).to.equal('dp-2')
      expect(link.sent[0]!.message).to.deep.equal({
        type: 'packet:outbound',
        dvipa: '10.0.0.100',
        epoch: 2,
        flow: { ...flow, protocol: 6, destinationPort: 80 },
        packet: synAck
      })
      expect(kernel.counters()).to.include({ fromHost: 1, replies: 1 })
    })

    it('should hand the host’s replies to a distribution processor on the same node that owns the DVIPA (a DP that is a target)', async () => {
      const local: ClusterMessage[] = []
      const dp = new DefaultTargetStack({ link, delivery: host }, { node: 'dp-1' })
      dp.attachLocalOwner((m) => local.push(m))
      await dp.start()
      await dp.receive(inbound('dp-1', 3, request('x', 99)))
      expect(host.delivered.at(-1)).to.deep.equal(request('x', 99))
      host.host.next(segment(flow.destinationAddress, flow.sourceAddress, 80, 40001))
      expect(link.sent).to.deep.equal([])
      expect(local).to.have.length(1)
      expect(local[0]).to.include({ type: 'packet:outbound', dvipa: '10.0.0.100', epoch: 3 })
      await dp.stop()
    })

    it('should count host packets from an address of no known DVIPA, and garbage, without sending', async () => {
      // no DVIPA known yet: nowhere to send
      host.host.next(segment('10.77.0.10', '172.16.2.1', 80, 1))
      host.host.next(Uint8Array.of(0x45, 0, 0))
      expect(link.sent).to.deep.equal([])
      expect(kernel.counters()).to.include({ unroutable: 1, malformed: 1, fromHost: 0 })
    })
  })
})
