/**
 * The vipsec network adapter for Linux (the `NetworkAdapter` contract). Acquiring the DVIPA adds
 * it to the interface, as `ip addr add A/32 dev IF` would (idempotent; the same rtnetlink request,
 * sent from this process, or `ip` itself where koffi cannot load) and announces the address with
 * a gratuitous ARP (the packets iputils `arping -U` sends, from a packet socket of this process;
 * `arping` itself, Debian package `iputils-arping`, where that cannot be had); releasing it
 * removes it, as `ip addr del` would. UDP
 * endpoints (IKE on 500, ESP-in-UDP on 4500, the cluster link) are `node:dgram` sockets bound
 * to an address and port. It needs `CAP_NET_ADMIN` (root) for the address and `CAP_NET_RAW` for
 * the ARP; a failed ARP is counted and reported on `announcements$`, never fatal.
 *
 * For IPv6, by default the address is added with `nodad` and announced with unsolicited
 * neighbour advertisements (override set, to all nodes, as many and as far apart as the
 * gratuitous ARP) from a raw ICMPv6 socket of this process; where that socket cannot be had,
 * nothing announces it and neighbours find the new owner by unreachability detection (seconds).
 * With `ipv6Dad: true` and the interface's sysctl
 * `net.ipv6.conf.IF.ndisc_notify = 1`, the kernel runs duplicate address detection (about a
 * second, which `acquireAddress` waits for) and then advertises the address itself.
 *
 * @example Taking the DVIPA over and listening for IKE on it
 * ```ts
 * import { linuxNetworkAdapter } from '@vipsec/network-linux'
 *
 * const network = linuxNetworkAdapter({}, { interface: 'eth0' })
 * await network.start()
 * await network.acquireAddress('10.0.0.100') // ip addr add 10.0.0.100/32 dev eth0 + arping -U
 * const ike = await network.openUdp({ address: '10.0.0.100', port: 500 })
 * ike.datagrams$.subscribe(({ data, from }) => console.log(data.length, 'bytes from', from))
 * // ... on hand-over:
 * await network.releaseAddress('10.0.0.100')
 * await network.stop() // closes the sockets
 * ```
 *
 * @packageDocumentation
 */
export {
  LinuxNetworkAdapter,
  linuxNetworkAdapter,
  type AnnouncementEvent,
  type GratuitousArpInit,
  type LinuxNetworkAdapterComponents,
  type LinuxNetworkAdapterInit,
  type LinuxNetworkStats
} from './linux-network-adapter.js'
export {
  TapDeviceHolder,
  type DeviceHolder,
  type HeldDevice,
  type TapDeviceHolderInit
} from './device-holder.js'
export { ExecFileCommandRunner, type CommandResult, type CommandRunner } from './command-runner.js'
export { DgramUdpEndpoint, MAX_SEND_QUEUE, type UdpCounters } from './udp-socket.js'
export { BatchedUdpEndpoint, type BatchedUdpInit } from './batched-udp-socket.js'
export {
  MmsgRing,
  MSG_TRUNC,
  realMmsgSyscalls,
  writeSockaddr,
  type MmsgSyscalls,
  type NativeMemory
} from './mmsg.js'
export {
  ackOf,
  addressRequest,
  linkUpRequest,
  NetlinkErrno,
  openNetlinkRoute,
  type NetlinkRoute
} from './netlink.js'
export { Errno } from './libc.js'
export { gratuitousArp, neighbourAdvertisement, openArpSocket, type ArpSocket } from './arp.js'
