import { expect } from 'chai'
import { VirtualClock } from '@vipsec/clock'
import type { ClusterEnvelope, ClusterMessage, Endpoint } from '@vipsec/interface'
import { VirtualNetwork } from '@vipsec/network-virtual'
import { buildIpPacket, buildUdp, readFlow } from '@vipsec/wire'
import {
  decodeMessage,
  encodeMessage,
  FrameGuard,
  generateClusterKey,
  LINK_MAGIC,
  parseFrameHeader,
  UdpClusterLink,
  type ClusterKey,
  type UdpClusterLinkInit
} from '../src/index.js'

const key = generateClusterKey(11)
const next = generateClusterKey(12)
const DP: Endpoint = { address: '10.9.0.1', port: 7400 }
const TARGET: Endpoint = { address: '10.9.0.11', port: 7400 }
const notice = (epoch: number): ClusterMessage => ({
  type: 'ownership:notice',
  dvipa: '10.0.0.100',
  owner: 'dp-1',
  epoch
})

/** A DP and a target on a virtual network, and every datagram sent on it once both started, for replays. */
async function pair(dpInit: Partial<UdpClusterLinkInit> = {}, targetInit = dpInit) {
  const clock = new VirtualClock()
  const net = new VirtualNetwork({ clock })
  const wire: { from: Endpoint; to: Endpoint; data: Uint8Array }[] = []
  const transmit = net.transmit.bind(net)
  net.transmit = (fromNode, from, to, data) => {
    wire.push({ from, to, data: new Uint8Array(data) })
    transmit(fromNode, from, to, data)
  }
  const [na, nb] = [net.attach('dp-1'), net.attach('target-1')]
  for (const n of [na, nb]) await n.start()
  await na.acquireAddress(DP.address)
  await nb.acquireAddress(TARGET.address)
  const withKeys = (init: Partial<UdpClusterLinkInit>) =>
    init.insecure === true ? init : { keys: [key], ...init }
  const dp = new UdpClusterLink(
    { network: na, clock },
    { node: 'dp-1', local: DP, peers: { 'target-1': TARGET }, ...withKeys(dpInit) }
  )
  const target = new UdpClusterLink(
    { network: nb, clock },
    { node: 'target-1', local: TARGET, peers: { 'dp-1': DP }, ...withKeys(targetInit) }
  )
  await dp.start()
  await target.start()
  // the links announce what they read; the wire records what follows
  await clock.advance(5)
  wire.length = 0
  const got: ClusterEnvelope[] = []
  target.messages$.subscribe((e) => got.push(e))
  /** Sends bytes to the target as if from `from` (an attacker on the cluster LAN spoofs freely). */
  const inject = (data: Uint8Array, from: Endpoint = DP): void =>
    net.transmit('attacker', from, TARGET, data)
  return { clock, net, wire, dp, target, got, inject, settle: async () => clock.advance(5) }
}

/** Frames sealed by someone who has a key (or not), claiming to be dp-1. */
function forger(keys: ClusterKey[], incarnation: number): (m: ClusterMessage) => Uint8Array {
  const guard = new FrameGuard({ magic: LINK_MAGIC, purpose: 'cluster link', keys, windowSize: 64 })
  guard.startSending('dp-1', incarnation)
  return (m) => guard.seal(encodeMessage(m))
}

/** A packet message whose flow is its packet's (one the compact form can carry). */
function packetMessage(
  type: 'packet:inbound' | 'packet:outbound',
  n = 0
): Extract<ClusterMessage, { packet: Uint8Array }> {
  const [source, destination] =
    type === 'packet:inbound' ? ['172.16.2.1', '10.77.0.10'] : ['10.77.0.10', '172.16.2.1']
  const [sp, dp] = type === 'packet:inbound' ? [41000, 7] : [7, 41000]
  const udp = buildUdp({
    source,
    destination,
    sourcePort: sp,
    destinationPort: dp,
    payload: new Uint8Array(100).fill(n)
  })
  const packet = buildIpPacket({ source, destination, protocol: 17, payload: udp })
  const seen = readFlow(packet)!
  const flow =
    type === 'packet:inbound'
      ? seen
      : {
          protocol: seen.protocol,
          sourceAddress: seen.destinationAddress,
          sourcePort: seen.destinationPort,
          destinationAddress: seen.sourceAddress,
          destinationPort: seen.sourcePort
        }
  return { type, dvipa: '10.0.0.100', epoch: 2, flow, packet }
}

/**
 * A target at TARGET that runs the link as it was before compact packet frames and link
 * announcements: it takes frame types 1 to 4 only (anything else is malformed to it), and sends
 * packets in the full form. `incarnation` is its start.
 */
async function oldTarget(net: VirtualNetwork, clock: VirtualClock, incarnation: number) {
  const node = net.attach(`old-target-${incarnation}`)
  await node.start()
  await node.acquireAddress(TARGET.address)
  const socket = await node.openUdp(TARGET)
  const guard = new FrameGuard({
    magic: LINK_MAGIC,
    purpose: 'cluster link',
    keys: [key],
    windowSize: 1024
  })
  guard.startSending('target-1', incarnation)
  /** The type byte of every frame it opened, and the messages it understood. */
  const types: number[] = []
  const messages: ClusterMessage[] = []
  let malformed = 0
  socket.datagrams$.subscribe(({ data }) => {
    const header = parseFrameHeader(data, LINK_MAGIC)
    if (header === 'malformed') return
    const result = guard.open(data, header, (payload) => {
      types.push(payload[0]!)
      return payload[0]! >= 1 && payload[0]! <= 4 ? decodeMessage(payload) : 'malformed'
    })
    if (result === 'malformed') malformed++
    else if (typeof result !== 'string') messages.push(result)
  })
  return {
    types,
    messages,
    malformed: () => malformed,
    send: (m: ClusterMessage) => socket.send(guard.seal(encodeMessage(m, false)), DP),
    /** A frame in the compact form, as a link of this version would send once told it may. */
    sendCompact: (m: ClusterMessage) => socket.send(guard.seal(encodeMessage(m)), DP),
    settle: () => clock.advance(5),
    stop: async () => {
      await socket.close()
      await node.stop()
    }
  }
}

/** A DP link alone on a virtual network, its peer target-1 at TARGET not started. */
async function lonelyDp() {
  const clock = new VirtualClock()
  const net = new VirtualNetwork({ clock })
  const na = net.attach('dp-1')
  await na.start()
  await na.acquireAddress(DP.address)
  const dp = new UdpClusterLink(
    { network: na, clock },
    { node: 'dp-1', local: DP, peers: { 'target-1': TARGET }, keys: [key] }
  )
  await dp.start()
  const got: ClusterEnvelope[] = []
  dp.messages$.subscribe((e) => got.push(e))
  return { clock, net, dp, got }
}

describe('UdpClusterLink', () => {
  describe('during a rolling upgrade', () => {
    it('should send an older peer full packet frames only, which it reads, and ask it less and less often', async () => {
      const { clock, net, dp, got } = await lonelyDp()
      const old = await oldTarget(net, clock, 5000)
      old.send(packetMessage('packet:outbound'))
      old.send(notice(2))
      await old.settle()
      expect(got.map((e) => e.message)).to.deep.equal([packetMessage('packet:outbound'), notice(2)])
      // 100 packets over 10 s
      for (let i = 0; i < 100; i++) {
        dp.post('target-1', packetMessage('packet:inbound', i))
        await clock.advance(100)
      }
      const packets = old.types.filter((t) => t !== 7)
      expect(packets).to.have.length(100)
      expect(new Set(packets)).to.deep.equal(new Set([1]))
      expect(old.messages).to.deep.equal(
        Array.from({ length: 100 }, (_, i) => packetMessage('packet:inbound', i))
      )
      // unanswered announcements: after 1, 2, 4 and 8 s of sending
      expect(old.types.filter((t) => t === 7)).to.have.length(4)
      expect(old.malformed()).to.equal(4)
      expect(dp.sendsCompactTo('target-1')).to.equal(false)
      expect(dp.counters()).to.include({ sent: 100, compactSent: 0, announcementsReceived: 0 })
    })

    it('should send compact packet frames to a peer that announced it reads them, both ways', async () => {
      const { dp, target, got, settle, wire } = await pair()
      expect(dp.sendsCompactTo('target-1')).to.equal(true)
      expect(target.sendsCompactTo('dp-1')).to.equal(true)
      const inbound = packetMessage('packet:inbound')
      expect(dp.post('target-1', inbound)).to.equal(true)
      await settle()
      expect(got).to.deep.equal([{ from: 'dp-1', message: inbound }])
      // 25 bytes of header, the sender id, a compact payload, the tag
      const compactFrame = 25 + 'dp-1'.length + 1 + 1 + 4 + 8 + inbound.packet.length + 16
      expect(wire.map((w) => w.data.length)).to.deep.equal([compactFrame])
      const back: ClusterEnvelope[] = []
      dp.messages$.subscribe((e) => back.push(e))
      const outbound = packetMessage('packet:outbound')
      target.post('dp-1', outbound)
      await settle()
      expect(back).to.deep.equal([{ from: 'target-1', message: outbound }])
      expect(wire.at(-1)!.data.length).to.equal(compactFrame - 'dp-1'.length + 'target-1'.length)
      expect(dp.counters()).to.include({ compactSent: 1 })
      expect(target.counters()).to.include({ compactSent: 1 })
    })

    it('should send compact frames to a peer once it has sent one itself', async () => {
      const { clock, net, dp } = await lonelyDp()
      const peer = await oldTarget(net, clock, 5000)
      peer.send(packetMessage('packet:outbound'))
      await peer.settle()
      dp.post('target-1', packetMessage('packet:inbound', 1))
      peer.sendCompact(packetMessage('packet:outbound'))
      await peer.settle()
      dp.post('target-1', packetMessage('packet:inbound', 2))
      await peer.settle()
      expect(peer.types.filter((t) => t !== 7)).to.deep.equal([1, 5])
    })

    it('should not learn from an announcement or a compact frame that did not authenticate', async () => {
      const { clock, net, dp } = await lonelyDp()
      const old = await oldTarget(net, clock, 5000)
      const forged = new FrameGuard({
        magic: LINK_MAGIC,
        purpose: 'cluster link',
        keys: [{ id: key.id, secret: new Uint8Array(32).fill(3) }],
        windowSize: 64
      })
      forged.startSending('target-1', 9000)
      // an announcement that this target reads compact frames, and a compact frame
      const announcement = new Uint8Array([7, 0, 0, 0, 1, 1])
      net.transmit('attacker', TARGET, DP, forged.seal(announcement))
      net.transmit(
        'attacker',
        TARGET,
        DP,
        forged.seal(encodeMessage(packetMessage('packet:outbound')))
      )
      await old.settle()
      dp.post('target-1', packetMessage('packet:inbound'))
      await old.settle()
      expect(dp.counters().dropped).to.include({ unauthenticated: 2 })
      expect(dp.sendsCompactTo('target-1')).to.equal(false)
      expect(old.types.filter((t) => t !== 7)).to.deep.equal([1])
    })

    it('should go back to full frames when the peer restarts as an older version', async () => {
      const { clock, net, dp, target, settle } = await pair()
      expect(dp.sendsCompactTo('target-1')).to.equal(true)
      await target.stop()
      await clock.advance(1000)
      const old = await oldTarget(net, clock, Number.MAX_SAFE_INTEGER - 1)
      old.send(notice(3))
      await settle()
      dp.post('target-1', packetMessage('packet:inbound'))
      await settle()
      expect(dp.sendsCompactTo('target-1')).to.equal(false)
      expect(old.types.filter((t) => t !== 7)).to.deep.equal([1])
      expect(old.messages).to.deep.equal([packetMessage('packet:inbound')])
    })
  })

  describe('constructor', () => {
    it('should refuse to be made without a key unless insecure is set', () => {
      const network = new VirtualNetwork({ clock: new VirtualClock() }).attach('x')
      expect(() => new UdpClusterLink({ network }, { node: 'x', local: DP }))
        .to.throw()
        .with.property('argument', 'init.keys')
      expect(
        () => new UdpClusterLink({ network }, { node: 'x', local: DP, insecure: true })
      ).to.not.throw()
      expect(
        () => new UdpClusterLink({ network }, { node: 'x', local: DP, keys: [key], insecure: true })
      )
        .to.throw()
        .with.property('argument', 'init.insecure')
      expect(
        () =>
          new UdpClusterLink(
            { network },
            { node: 'x', local: DP, keys: [{ id: 1, secret: new Uint8Array(16) }] }
          )
      )
        .to.throw()
        .with.property('argument', 'init.keys[0].secret')
      expect(
        () =>
          new UdpClusterLink(
            { network },
            { node: 'x', local: DP, keys: [key, next, generateClusterKey(13)] }
          )
      )
        .to.throw()
        .with.property('argument', 'init.keys')
    })
  })

  describe('when a frame is forged', () => {
    it('should drop a notice with epoch 999 and a packet made without the key, as unauthenticated', async () => {
      const { got, inject, settle, target, dp } = await pair()
      const forge = forger([{ id: key.id, secret: new Uint8Array(32).fill(1) }], 2 ** 52)
      inject(forge(notice(999)))
      inject(
        forge({
          type: 'packet:inbound',
          dvipa: '10.0.0.100',
          epoch: 999,
          flow: {
            protocol: 17,
            sourceAddress: '1.2.3.4',
            sourcePort: 1,
            destinationAddress: '10.0.0.100',
            destinationPort: 7
          },
          packet: new Uint8Array(28)
        })
      )
      await settle()
      await dp.send('target-1', notice(1))
      await settle()
      expect(got.map((e) => e.message)).to.deep.equal([notice(1)])
      expect(target.counters().dropped).to.include({ unauthenticated: 2 })
    })

    it('should drop an unauthenticated frame (insecure sender) and one under a key it does not hold as unknown-key', async () => {
      const { got, inject, settle, target } = await pair()
      inject(forger([], 5)(notice(999)))
      inject(forger([next], 5)(notice(999)))
      await settle()
      expect(got).to.deep.equal([])
      expect(target.counters().dropped).to.include({ 'unknown-key': 2 })
    })

    it('should drop frames from a node that is not a peer or not from its endpoint as unknown-sender', async () => {
      const { got, inject, settle, target } = await pair()
      const guard = new FrameGuard({
        magic: LINK_MAGIC,
        purpose: 'cluster link',
        keys: [key],
        windowSize: 64
      })
      guard.startSending('dp-9', 1)
      inject(guard.seal(encodeMessage(notice(999))))
      inject(forger([key], 1)(notice(999)), { address: '10.9.0.66', port: 7400 })
      await settle()
      expect(got).to.deep.equal([])
      expect(target.counters().dropped).to.include({ 'unknown-sender': 2 })
    })
  })

  describe('when authenticated frames are replayed', () => {
    it('should deliver each once, and count the replays', async () => {
      const { dp, got, inject, settle, target, wire } = await pair()
      for (let i = 1; i <= 98; i++) await dp.send('target-1', notice(i))
      await settle()
      expect(got).to.have.length(98)
      const captured = wire.filter((w) => w.to.address === TARGET.address)
      for (const w of captured) inject(w.data)
      await settle()
      expect(got).to.have.length(98)
      expect(target.counters().dropped).to.include({ replayed: 98 })
      expect(target.counters().received).to.equal(98)
    })
  })

  describe('when frames arrive out of order', () => {
    it('should take late frames within the window once, and drop those past it as too-old', async () => {
      const { dp, inject, settle, target, wire, got } = await pair({ replayWindow: 64 })
      // the DP sends 200 frames; none reach the target, then they arrive last-first
      const blocked = wire.length
      for (let i = 0; i < 200; i++) await dp.send('target-1', notice(i))
      const frames = wire.slice(blocked).map((w) => w.data)
      await settle()
      const before = got.length
      for (const f of frames.reverse()) inject(f)
      await settle()
      // delivered already once in order; the reversed copies are all replays or too old
      expect(got.length).to.equal(before)
      expect(target.counters().dropped['too-old'] + target.counters().dropped.replayed).to.equal(
        200
      )
      expect(target.counters().dropped['too-old']).to.equal(200 - 64)
    })
  })

  describe('when the peer restarts', () => {
    it('should accept its new incarnation and refuse frames captured from the old one', async () => {
      const { clock, dp, got, inject, settle, target, wire } = await pair()
      await dp.send('target-1', notice(1))
      await settle()
      const old = wire.filter((w) => w.to.address === TARGET.address).map((w) => w.data)
      await dp.stop()
      await clock.advance(1000)
      await dp.start()
      await dp.send('target-1', notice(2))
      await settle()
      for (const f of old) inject(f)
      await settle()
      expect(got.map((e) => e.message)).to.deep.equal([notice(1), notice(2)])
      expect(target.counters().dropped).to.include({ 'stale-incarnation': 1 })
    })

    it('should not let a forged frame with a huge incarnation silence the peer', async () => {
      const { dp, got, inject, settle, target } = await pair()
      inject(
        forger([{ id: key.id, secret: new Uint8Array(32) }], Number.MAX_SAFE_INTEGER)(notice(999))
      )
      await settle()
      await dp.send('target-1', notice(3))
      await settle()
      expect(got.map((e) => e.message)).to.deep.equal([notice(3)])
      expect(target.counters().dropped).to.include({ unauthenticated: 1 })
    })
  })

  describe('when a frame is too long or malformed', () => {
    it('should drop it and count it, and not send one over the limit', async () => {
      const { dp, got, inject, settle, target } = await pair({ maxFrameBytes: 512 })
      inject(new Uint8Array(513))
      inject(new Uint8Array([0x56, 0x58, 2, 0, 1, 2, 3]))
      inject(new Uint8Array(40))
      await dp.send('target-1', {
        type: 'packet:outbound',
        dvipa: '10.0.0.100',
        epoch: 1,
        flow: {
          protocol: 17,
          sourceAddress: 'a',
          sourcePort: 1,
          destinationAddress: 'b',
          destinationPort: 2
        },
        packet: new Uint8Array(600)
      })
      await settle()
      expect(got).to.deep.equal([])
      expect(target.counters().dropped).to.include({ oversized: 1, malformed: 2 })
      expect(dp.counters()).to.include({ oversizedSends: 1, sent: 0 })
    })
  })

  describe('.post', () => {
    it('should send at once like send, and return false (counted) where send would throw', async () => {
      const { dp, got, settle } = await pair()
      const message: ClusterMessage = {
        type: 'packet:inbound',
        dvipa: '10.0.0.100',
        epoch: 2,
        flow: {
          protocol: 17,
          sourceAddress: '172.16.2.1',
          sourcePort: 4000,
          destinationAddress: '10.77.0.10',
          destinationPort: 7
        },
        packet: new Uint8Array([0x45, 1, 2, 3])
      }
      expect(dp.post('target-1', message)).to.equal(true)
      expect(dp.post('target-9', message)).to.equal(false)
      await settle()
      expect(got).to.deep.equal([{ from: 'dp-1', message }])
      await dp.stop()
      expect(dp.post('target-1', message)).to.equal(false)
      expect(dp.counters()).to.include({ sent: 1, unsentPosts: 2 })
    })
  })

  describe('when the link encrypts', () => {
    it('should carry packets that only the peer can read', async () => {
      const { dp, got, settle, wire } = await pair({ encrypt: true })
      const secret = new TextEncoder().encode('cleartext of the tunnel')
      await dp.send('target-1', {
        type: 'packet:inbound',
        dvipa: '10.0.0.100',
        epoch: 1,
        flow: {
          protocol: 17,
          sourceAddress: 'a',
          sourcePort: 1,
          destinationAddress: 'b',
          destinationPort: 2
        },
        packet: secret
      })
      await settle()
      expect(Buffer.from(wire.at(-1)!.data).includes(Buffer.from(secret))).to.equal(false)
      expect(got[0]?.message).to.deep.include({ packet: secret })
    })
  })

  describe('.setKeys', () => {
    it('should rotate without losing a frame: both keys accepted during the change', async () => {
      const { dp, got, settle, target } = await pair()
      target.setKeys([key, next])
      await dp.send('target-1', notice(1))
      dp.setKeys([next, key])
      await dp.send('target-1', notice(2))
      await settle()
      target.setKeys([next])
      dp.setKeys([next])
      await dp.send('target-1', notice(3))
      await settle()
      expect(got.map((e) => e.message)).to.deep.equal([notice(1), notice(2), notice(3)])
      expect(dp.keyIds).to.deep.equal([next.id])
    })
  })

  describe('in insecure mode', () => {
    it('should carry frames without keys, still once each', async () => {
      const { dp, got, inject, settle, wire, target } = await pair({ insecure: true })
      expect(target.insecure).to.equal(true)
      await dp.send('target-1', notice(1))
      await settle()
      inject(wire.at(-1)!.data)
      await settle()
      expect(got.map((e) => e.message)).to.deep.equal([notice(1)])
      expect(target.counters().dropped).to.include({ replayed: 1 })
    })
  })
})
