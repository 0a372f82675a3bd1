import { expect } from 'chai'
import {
  IpProtocol,
  TcpFlags,
  buildIcmpEcho,
  buildIpPacket,
  buildReply,
  buildTcp,
  buildUdp,
  internetChecksum,
  parseIpPacket,
  parseTcp,
  readFlow,
  FlowReader,
  verifyIpv4Checksum,
  verifyTransportChecksum,
  formatIp,
  parsePrefix,
  prefixContains,
  tryParseIp
} from '../src/index.js'

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'))

// the inner packets of the McGrew vectors 2 and 3: real IPv4 headers with real checksums
const DNS_PACKET = hex(
  '4500003e698f000080114dccc0a80102c0a801010a980035002a2343b2d001000001000000000000037369700963796265726369747902646b0000010001'
)
const TCP_SYN = hex(
  '4500003069a6400080062690c0a801029389155e0a9e008b2dc57ee0000000007002400020bf0000020405b401010402'
)

describe('packet codecs', () => {
  describe('parseIpPacket', () => {
    describe('when given an IPv4 packet', () => {
      it('should find protocol, addresses and the upper-layer header', () => {
        const info = parseIpPacket(DNS_PACKET)
        expect(info).to.deep.equal({
          version: 4,
          protocol: 17,
          sourceOffset: 12,
          destinationOffset: 16,
          addressLength: 4,
          payloadOffset: 20,
          totalLength: 62,
          laterFragment: false
        })
      })
    })

    describe('when given an IPv6 packet with extension headers', () => {
      it('should skip hop-by-hop and destination options to the upper layer', () => {
        const udp = buildUdp({
          source: '2001:db8::1',
          destination: '2001:db8::2',
          sourcePort: 1,
          destinationPort: 2,
          payload: new Uint8Array(3)
        })
        const ext = new Uint8Array(16)
        ext[0] = 60 // hop-by-hop -> destination options
        ext[8] = 17 // destination options -> UDP
        const packet = buildIpPacket({
          source: '2001:db8::1',
          destination: '2001:db8::2',
          protocol: 0,
          payload: new Uint8Array([...ext, ...udp])
        })
        const info = parseIpPacket(packet)
        expect(info).to.include({ version: 6, protocol: 17, payloadOffset: 56, addressLength: 16 })
        expect(verifyTransportChecksum(packet)).to.equal(true)
      })
    })

    describe('when the input is truncated or not IP', () => {
      it('should return undefined', () => {
        for (const bad of [
          new Uint8Array(0),
          DNS_PACKET.subarray(0, 19),
          DNS_PACKET.subarray(0, 40),
          hex('4f00'),
          new Uint8Array(40).fill(0x70),
          hex('4100001400000000401100000a0000010a000002')
        ]) {
          expect(parseIpPacket(bad)).to.equal(undefined)
        }
      })
    })
  })

  describe('checksums', () => {
    describe('when given published packets', () => {
      it('should verify their IPv4 header and UDP/TCP checksums', () => {
        expect(verifyIpv4Checksum(DNS_PACKET)).to.equal(true)
        expect(verifyTransportChecksum(DNS_PACKET)).to.equal(true)
        expect(verifyIpv4Checksum(TCP_SYN)).to.equal(true)
        expect(verifyTransportChecksum(TCP_SYN)).to.equal(true)
      })

      it('should fail when a byte changes', () => {
        const changed = DNS_PACKET.slice()
        changed[30] ^= 1
        expect(verifyTransportChecksum(changed)).to.equal(false)
        changed[8] ^= 1
        expect(verifyIpv4Checksum(changed)).to.equal(false)
      })
    })

    describe('internetChecksum', () => {
      it('should compute the RFC 1071 example sum', () => {
        // RFC 1071 section 3: 0001 f203 f4f5 f6f7 sums to ddf2, checksum 220d
        expect(internetChecksum(hex('0001f203f4f5f6f7'))).to.equal(0x220d)
      })
    })
  })

  describe('buildIpPacket', () => {
    describe('when rebuilding a published packet from its fields', () => {
      it('should reproduce it byte for byte', () => {
        const built = buildIpPacket({
          source: '192.168.1.2',
          destination: '192.168.1.1',
          protocol: IpProtocol.UDP,
          ttl: 128,
          identification: 0x698f,
          payload: DNS_PACKET.subarray(20)
        })
        expect(built).to.deep.equal(DNS_PACKET)
        const udp = buildUdp({
          source: '192.168.1.2',
          destination: '192.168.1.1',
          sourcePort: 0x0a98,
          destinationPort: 53,
          payload: DNS_PACKET.subarray(28)
        })
        expect(udp).to.deep.equal(DNS_PACKET.subarray(20))
      })
    })

    describe('when the addresses are of different families', () => {
      it('should throw InvalidParametersError naming fields.destination', () => {
        expect(() =>
          buildIpPacket({
            source: '10.0.0.1',
            destination: '::1',
            protocol: 17,
            payload: new Uint8Array(0)
          })
        )
          .to.throw()
          .with.property('argument', 'fields.destination')
      })
    })
  })

  describe('readFlow', () => {
    it('should extract the 5-tuple of UDP, TCP and ICMP packets', () => {
      expect(readFlow(DNS_PACKET)).to.deep.equal({
        protocol: 17,
        sourceAddress: '192.168.1.2',
        sourcePort: 2712,
        destinationAddress: '192.168.1.1',
        destinationPort: 53
      })
      expect(readFlow(TCP_SYN)).to.deep.include({
        protocol: 6,
        sourcePort: 2718,
        destinationPort: 139
      })
      const ping = buildIpPacket({
        source: '10.0.0.1',
        destination: '10.0.0.2',
        protocol: 1,
        payload: buildIcmpEcho({
          kind: 'request',
          source: '10.0.0.1',
          destination: '10.0.0.2',
          identifier: 1,
          sequence: 2
        })
      })
      expect(readFlow(ping)).to.deep.include({ protocol: 1, sourcePort: 0, destinationPort: 0 })
    })
  })

  describe('FlowReader', () => {
    const udp = (source: string, destination: string, sourcePort = 4000, destinationPort = 53) =>
      buildIpPacket({
        source,
        destination,
        protocol: IpProtocol.UDP,
        payload: buildUdp({
          source,
          destination,
          sourcePort,
          destinationPort,
          payload: new Uint8Array(4)
        })
      })

    it('should read what readFlow reads, frozen, for each kind of packet', () => {
      const reader = new FlowReader()
      const ping = buildIpPacket({
        source: '10.0.0.1',
        destination: '10.0.0.2',
        protocol: 1,
        payload: buildIcmpEcho({
          kind: 'request',
          source: '10.0.0.1',
          destination: '10.0.0.2',
          identifier: 7,
          sequence: 1
        })
      })
      for (const packet of [
        DNS_PACKET,
        TCP_SYN,
        ping,
        udp('2001:db8::1', '2001:db8::2'),
        DNS_PACKET
      ]) {
        const flow = reader.read(packet)
        expect(flow).to.deep.equal(readFlow(packet))
        expect(Object.isFrozen(flow)).to.equal(true)
      }
    })

    it('should give the same object to packets of one flow, and a new one when any field differs', () => {
      const reader = new FlowReader()
      const first = reader.read(udp('10.0.0.1', '10.0.0.2'))
      expect(reader.read(udp('10.0.0.1', '10.0.0.2'))).to.equal(first)
      const others = [
        udp('10.0.0.3', '10.0.0.2'),
        udp('10.0.0.1', '10.0.0.4'),
        udp('10.0.0.1', '10.0.0.2', 4001),
        udp('10.0.0.1', '10.0.0.2', 4000, 54),
        TCP_SYN,
        udp('::a00:1', '::a00:2')
      ]
      for (const packet of others) {
        const base = reader.read(udp('10.0.0.1', '10.0.0.2'))
        expect(base).to.deep.equal(first)
        const flow = reader.read(packet)
        expect(flow).to.not.equal(base)
        expect(flow).to.deep.equal(readFlow(packet))
      }
    })

    it('should refuse a malformed packet of the last flow', () => {
      const reader = new FlowReader()
      const packet = udp('10.0.0.1', '10.0.0.2')
      expect(reader.read(packet)).to.not.equal(undefined)
      expect(reader.read(packet.subarray(0, 22))).to.equal(undefined)
      const lying = packet.slice()
      lying[3] = 200 // a total length longer than the packet
      expect(reader.read(lying)).to.equal(undefined)
    })
  })

  describe('buildReply', () => {
    describe('when answering a UDP datagram', () => {
      it('should swap addresses and ports with correct checksums', () => {
        const reply = buildReply(DNS_PACKET, new Uint8Array([1, 2, 3])) as Uint8Array
        expect(readFlow(reply)).to.deep.equal({
          protocol: 17,
          sourceAddress: '192.168.1.1',
          sourcePort: 53,
          destinationAddress: '192.168.1.2',
          destinationPort: 2712
        })
        expect(verifyIpv4Checksum(reply)).to.equal(true)
        expect(verifyTransportChecksum(reply)).to.equal(true)
      })
    })

    describe('when answering a TCP SYN', () => {
      it('should acknowledge sequence + 1 from the other side', () => {
        const reply = buildReply(TCP_SYN) as Uint8Array
        const tcp = parseTcp(reply.subarray(20))
        expect(tcp).to.include({
          sourcePort: 139,
          destinationPort: 2718,
          acknowledgement: 0x2dc57ee1
        })
        expect(tcp?.flags).to.equal(TcpFlags.ACK)
        expect(verifyTransportChecksum(reply)).to.equal(true)
      })
    })

    describe('when answering an ICMPv6 echo request', () => {
      it('should build the echo reply with the same data', () => {
        const data = new Uint8Array([5, 6, 7])
        const request = buildIpPacket({
          source: '2001:db8::1',
          destination: '2001:db8::2',
          protocol: IpProtocol.ICMPV6,
          payload: buildIcmpEcho({
            kind: 'request',
            source: '2001:db8::1',
            destination: '2001:db8::2',
            identifier: 7,
            sequence: 9,
            payload: data
          })
        })
        expect(verifyTransportChecksum(request)).to.equal(true)
        const reply = buildReply(request) as Uint8Array
        expect(reply[40]).to.equal(129)
        expect(reply.subarray(48)).to.deep.equal(data)
        expect(verifyTransportChecksum(reply)).to.equal(true)
        expect(readFlow(reply)).to.deep.include({
          sourceAddress: '2001:db8::2',
          destinationAddress: '2001:db8::1'
        })
      })
    })

    describe('when the packet is not answerable', () => {
      it('should return undefined', () => {
        expect(buildReply(new Uint8Array(3))).to.equal(undefined)
        const tcp = buildTcp({
          source: '10.0.0.1',
          destination: '10.0.0.2',
          sourcePort: 1,
          destinationPort: 2,
          sequence: 0,
          acknowledgement: 0,
          flags: 0
        })
        const esp = buildIpPacket({
          source: '10.0.0.1',
          destination: '10.0.0.2',
          protocol: 50,
          payload: tcp
        })
        expect(buildReply(esp)).to.equal(undefined)
      })
    })
  })
})

describe('ip-address', () => {
  describe('tryParseIp', () => {
    it('should parse IPv4, IPv6 and IPv4-mapped forms and reject others', () => {
      expect(tryParseIp('192.0.2.1')).to.deep.equal(new Uint8Array([192, 0, 2, 1]))
      expect(formatIp(tryParseIp('2001:DB8:0:0:1::1') as Uint8Array)).to.equal('2001:db8::1:0:0:1')
      expect(formatIp(tryParseIp('::') as Uint8Array)).to.equal('::')
      expect(formatIp(tryParseIp('::ffff:192.0.2.1') as Uint8Array)).to.equal('::ffff:c000:201')
      for (const bad of [
        '',
        '1.2.3',
        '256.1.1.1',
        '1::2::3',
        '12345::',
        'x',
        '1:2:3:4:5:6:7:8:9'
      ]) {
        expect(tryParseIp(bad), bad).to.equal(undefined)
      }
    })
  })

  describe('parsePrefix', () => {
    it('should clear host bits and match addresses inside only', () => {
      const p = parsePrefix('10.1.2.3/15')
      expect(formatIp(p.bytes)).to.equal('10.0.0.0')
      expect(prefixContains(p, new Uint8Array([10, 1, 255, 255]), 0)).to.equal(true)
      expect(prefixContains(p, new Uint8Array([10, 2, 0, 0]), 0)).to.equal(false)
      expect(() => parsePrefix('10.0.0.0/x', 'sel'))
        .to.throw()
        .with.property('argument', 'sel')
    })
  })
})
