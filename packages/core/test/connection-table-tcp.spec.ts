import { expect } from 'chai'
import type { FiveTuple } from '@vipsec/interface'
import {
  buildIpPacket,
  buildUdp,
  clampMss,
  parseIp,
  parseIpPacket,
  quotedFlow,
  readFlow,
  transportChecksum,
  verifyTransportChecksum
} from '@vipsec/wire'
import { ConnectionTable } from '../src/index.js'

const CLIENT = '172.16.2.1'
const SERVICE = '10.77.0.10'
const FIN = 0x01
const SYN = 0x02
const RST = 0x04
const ACK = 0x10

/** A TCP segment in an IP packet, with an MSS option when `mss` is given. */
function tcp(
  from: string,
  to: string,
  sport: number,
  dport: number,
  flags: number,
  options: { mss?: number; data?: number; dontFragment?: boolean } = {}
): Uint8Array {
  const opts =
    options.mss === undefined ? [] : [1, 1, 2, 4, options.mss >> 8, options.mss & 0xff, 1, 1]
  const segment = new Uint8Array(20 + opts.length + (options.data ?? 0))
  const view = new DataView(segment.buffer)
  view.setUint16(0, sport)
  view.setUint16(2, dport)
  view.setUint32(4, 1000)
  segment[12] = ((20 + opts.length) / 4) << 4
  segment[13] = flags
  view.setUint16(14, 65535)
  segment.set(opts, 20)
  view.setUint16(16, transportChecksum(parseIp(from), parseIp(to), 6, segment))
  return buildIpPacket({
    source: from,
    destination: to,
    protocol: 6,
    payload: segment,
    dontFragment: options.dontFragment ?? true
  })
}

const inbound = (flags: number, sport = 40000, options = {}) =>
  tcp(CLIENT, SERVICE, sport, 80, flags, options)
const outbound = (flags: number, dport = 40000, options = {}) =>
  tcp(SERVICE, CLIENT, 80, dport, flags, options)

/** The MSS option's value in a packet built by {@link tcp}. */
const mssOf = (packet: Uint8Array): number => {
  const o = parseIpPacket(packet)!.payloadOffset
  return (packet[o + 24]! << 8) | packet[o + 25]!
}

function setup(options = {}) {
  const table = new ConnectionTable(
    '10.88.0.50',
    [{ node: 't1' }, { node: 't2' }],
    'round-robin',
    options
  )
  const route = (packet: Uint8Array, at = 0) =>
    table.route(readFlow(packet)!, 0, null, 'dp-1', at, packet)
  return { table, route }
}

describe('ConnectionTable with TCP', () => {
  describe('.route', () => {
    it('should make a connection on a SYN and clamp its MSS with a correct checksum', () => {
      const { table, route } = setup()
      const syn = inbound(SYN, 40000, { mss: 1360 })
      const routed = route(syn)!
      expect(routed.created).to.equal(true)
      expect(mssOf(syn)).to.equal(1320)
      expect(verifyTransportChecksum(syn)).to.equal(true)
      expect(table.tcpState(readFlow(syn)!)).to.equal('open')
    })

    it('should leave a smaller MSS, and every MSS when clamping is off', () => {
      const small = inbound(SYN, 40000, { mss: 1200 })
      setup().route(small)
      expect(mssOf(small)).to.equal(1200)
      const big = inbound(SYN, 40001, { mss: 1460 })
      setup({ mss: 0 }).route(big)
      expect(mssOf(big)).to.equal(1460)
    })

    it('should close on a FIN each way and remove the connection once the linger time passed', () => {
      const { table, route } = setup({ closedLingerMs: 1000 })
      route(inbound(SYN), 0)
      const flow = readFlow(inbound(SYN))!
      route(inbound(FIN | ACK), 10)
      expect(table.tcpState(flow)).to.equal('closing')
      expect(table.outbound(outbound(FIN | ACK), 20)).to.equal(undefined)
      expect(table.tcpState(flow)).to.equal('closed')
      // idle time far away: only the linger of the closed connection matters
      expect(table.expireIdle(-1e9, 500)).to.deep.equal([])
      expect(table.expireIdle(-1e9, 1020).map((c) => c.flow)).to.deep.equal([flow])
      expect(table.size).to.equal(0)
    })

    it('should close on a RST from either side', () => {
      const { table, route } = setup()
      route(inbound(SYN, 1))
      route(inbound(SYN, 2))
      route(inbound(RST, 1))
      table.outbound(outbound(RST | ACK, 2))
      expect(table.tcpState(readFlow(inbound(SYN, 1))!)).to.equal('closed')
      expect(table.tcpState(readFlow(inbound(SYN, 2))!)).to.equal('closed')
    })

    it('should keep an open connection on its target across segments and not expire it without `now`', () => {
      const { table, route } = setup()
      const first = route(inbound(SYN))!.connection.target
      for (let i = 0; i < 5; i++) expect(route(inbound(ACK), i)!.connection.target).to.equal(first)
      route(inbound(RST), 6)
      expect(table.expireIdle(-1e9)).to.deep.equal([])
    })

    it('should give a new SYN on the 5-tuple of a closed connection a new connection', () => {
      const { route } = setup()
      const a = route(inbound(SYN))!
      route(inbound(RST))
      const b = route(inbound(SYN))!
      expect(b.created).to.equal(true)
      expect(b.connection.target).to.not.equal(a.connection.target)
    })

    describe('when the packet is an ICMP error', () => {
      /** Destination unreachable from the client's side, quoting what the service sent. */
      const unreachable = (dport: number) => {
        const quoted = outbound(ACK, dport).subarray(0, 28)
        const icmp = new Uint8Array(8 + quoted.length)
        icmp[0] = 3
        icmp[1] = 1
        icmp.set(quoted, 8)
        return buildIpPacket({ source: CLIENT, destination: SERVICE, protocol: 1, payload: icmp })
      }

      it('should route it to the connection of the packet it quotes, making none', () => {
        const { table, route } = setup()
        route(inbound(SYN, 40000))
        const second = route(inbound(SYN, 40001))!.connection
        const routed = route(unreachable(40001))!
        expect(routed).to.deep.equal({ connection: second, created: false })
        expect(table.size).to.equal(2)
      })

      it('should drop one about no known connection', () => {
        const { table, route } = setup()
        expect(route(unreachable(40009))).to.equal(undefined)
        expect(table.size).to.equal(0)
      })

      it('should read the quoted flow of an ICMPv6 error too', () => {
        const quoted = buildIpPacket({
          source: 'fd00::10',
          destination: 'fd00::1',
          protocol: 17,
          payload: buildUdp({
            source: 'fd00::10',
            destination: 'fd00::1',
            sourcePort: 53,
            destinationPort: 5000,
            payload: new Uint8Array(4)
          })
        })
        const icmp = new Uint8Array(8 + quoted.length)
        icmp[0] = 1
        icmp.set(quoted, 8)
        const error = buildIpPacket({
          source: 'fd00::1',
          destination: 'fd00::10',
          protocol: 58,
          payload: icmp
        })
        const flow: FiveTuple = {
          protocol: 17,
          sourceAddress: 'fd00::1',
          sourcePort: 5000,
          destinationAddress: 'fd00::10',
          destinationPort: 53
        }
        expect(quotedFlow(error, parseIpPacket(error)!)).to.deep.equal(flow)
      })
    })
  })

  describe('.outbound', () => {
    it('should clamp the MSS of a target’s SYN-ACK', () => {
      const { table, route } = setup()
      route(inbound(SYN))
      const synAck = outbound(SYN | ACK, 40000, { mss: 1460 })
      expect(table.outbound(synAck)).to.equal(undefined)
      expect(mssOf(synAck)).to.equal(1320)
      expect(verifyTransportChecksum(synAck)).to.equal(true)
    })

    it('should answer a packet too big for the tunnel with DF set by ICMP fragmentation needed', () => {
      const { table, route } = setup({ maxOutboundPacket: 1400 })
      route(inbound(SYN))
      const big = outbound(ACK, 40000, { data: 1460 })
      const error = table.outbound(big)!
      const info = parseIpPacket(error)!
      expect(readFlow(error)).to.include({
        protocol: 1,
        sourceAddress: '10.88.0.50',
        destinationAddress: SERVICE
      })
      const icmp = error.subarray(info.payloadOffset, info.totalLength)
      expect([icmp[0], icmp[1], (icmp[6]! << 8) | icmp[7]!]).to.deep.equal([3, 4, 1400])
      expect(verifyTransportChecksum(error)).to.equal(true)
      // it quotes the start of the packet, so the target's kernel finds its socket
      expect(icmp.subarray(8, 48)).to.deep.equal(big.subarray(0, 40))
      expect(error.length).to.be.at.most(576)
    })

    it('should answer an IPv6 packet too big with ICMPv6 packet too big, with a correct checksum', () => {
      const table = new ConnectionTable('fd00::50', [{ node: 't1' }])
      const big = buildIpPacket({
        source: 'fd00::10',
        destination: 'fd00::1',
        protocol: 17,
        payload: buildUdp({
          source: 'fd00::10',
          destination: 'fd00::1',
          sourcePort: 1,
          destinationPort: 2,
          payload: new Uint8Array(1500)
        })
      })
      const error = table.outbound(big)!
      const info = parseIpPacket(error)!
      expect(info.protocol).to.equal(58)
      expect(error[info.payloadOffset]).to.equal(2)
      expect(verifyTransportChecksum(error)).to.equal(true)
      expect(error.length).to.be.at.most(1280)
    })

    it('should let a big packet without DF through (it may be fragmented)', () => {
      const { table } = setup()
      expect(table.outbound(outbound(ACK, 40000, { data: 1460, dontFragment: false }))).to.equal(
        undefined
      )
    })
  })
})

describe('clampMss', () => {
  it('should stop at a malformed option list without changing the packet', () => {
    const syn = inbound(SYN, 40000, { mss: 1460 })
    const o = parseIpPacket(syn)!.payloadOffset
    syn[o + 23] = 40 // the MSS option's length now runs past the header
    const copy = Uint8Array.from(syn)
    expect(clampMss(syn, parseIpPacket(syn)!, 1000)).to.equal(false)
    expect(syn).to.deep.equal(copy)
  })
})
