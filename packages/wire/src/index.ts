/**
 * Packet bytes for vipsec: the one place where IP packets, addresses and byte layouts are read
 * and written. It depends on no other vipsec package; the contracts (`@vipsec/interface`), the
 * core and the adapters all build on it.
 *
 * - **IPv4 and IPv6** ({@link parseIpPacket}, which skips IPv6 extension headers and tells later
 *   fragments; {@link buildIpPacket}); **UDP** ({@link buildUdp}), **TCP** ({@link buildTcp},
 *   {@link parseTcp}, {@link TcpFlags}, MSS clamping with an incremental checksum update by
 *   {@link clampMss}), **ICMP and ICMPv6** (echo: {@link buildIcmpEcho}; errors:
 *   {@link isIcmpError}, {@link quotedFlow}, "fragmentation needed" / "packet too big" by
 *   {@link tooBig}); the reply to a packet ({@link buildReply}).
 * - **Checksums** (RFC 1071): {@link internetChecksum}, {@link transportChecksum} under the
 *   pseudo-header, {@link verifyIpv4Checksum}, {@link verifyTransportChecksum}.
 * - **Flows**: the 5-tuple of a packet ({@link readFlow}, {@link FiveTuple}), the ports IKE
 *   traffic selectors use ({@link readPorts}), protocol numbers ({@link IpProtocol}).
 * - **Addresses and prefixes**: {@link parseIp}, {@link tryParseIp}, {@link formatIp} (RFC 5952),
 *   {@link parsePrefix}, {@link prefixContains}, {@link formatPrefix}.
 * - **RFC 3948 framing**: what arrives on UDP port 4500 ({@link classifyUdpPayload}), the
 *   non-ESP marker ({@link withNonEspMarker}), NAT keep-alives, the UDP header of ESP-in-UDP
 *   ({@link encapsulateUdp}).
 * - **Bytes**: big-endian reads and writes ({@link readU16}, {@link readU32}, {@link writeU16},
 *   {@link writeU32}) and {@link concat}.
 *
 * Parsers never throw: malformed input gives `undefined`. Builders throw
 * {@link InvalidParametersError} (re-exported by `@vipsec/interface` with the other named errors)
 * for an argument they cannot encode.
 *
 * @example Answering a UDP datagram
 * ```ts
 * import { buildIpPacket, buildReply, buildUdp, readFlow } from '@vipsec/wire'
 *
 * const request = buildIpPacket({
 *   source: '172.16.2.1',
 *   destination: '10.20.0.1',
 *   protocol: 17,
 *   payload: buildUdp({
 *     source: '172.16.2.1',
 *     destination: '10.20.0.1',
 *     sourcePort: 40000,
 *     destinationPort: 7,
 *     payload: new TextEncoder().encode('ping')
 *   })
 * })
 * readFlow(request) // { protocol: 17, sourceAddress: '172.16.2.1', sourcePort: 40000, ... }
 * const reply = buildReply(request, new TextEncoder().encode('pong')) // 10.20.0.1:7 -> 172.16.2.1:40000
 * ```
 *
 * @packageDocumentation
 */
export * from './bytes.js'
export * from './errors.js'
export * from './flow.js'
export * from './ip-address.js'
export * from './packet.js'
export * from './tcp-icmp.js'
export * from './udp-encapsulation.js'
