import { Errno, ifindex, intOption, libc } from './libc.js'

/**
 * A packet socket for gratuitous ARP (and a raw ICMPv6 socket for its IPv6 sibling, the
 * unsolicited neighbour advertisement) from this process (`AF_PACKET`, `SOCK_DGRAM`, `ETH_P_ARP`:
 * the kernel writes the Ethernet header), in place of starting iputils `arping` for every
 * packet: the first announcement of a takeover goes out at once, not after a program started.
 * Return values are the kernel's: a count, or `-errno`. The real one goes through koffi into
 * libc; tests put fakes in its place.
 */
export interface ArpSocket {
  /** The index of the device called `name`, or `-errno` (`ENODEV` when there is none). */
  ifindex(name: string): number
  /** The hardware (MAC) address of device `name`, 6 bytes, or `-errno`. */
  hardwareAddress(name: string): Uint8Array | number
  /** Sends `packet` (an ARP packet, 28 bytes) to the Ethernet broadcast address out of `index`. */
  broadcast(index: number, packet: Uint8Array): number
  /**
   * Sends `packet` (an ICMPv6 neighbour advertisement; the kernel fills in its checksum) to
   * all-nodes (`ff02::1`) out of `index` with hop limit 255, or `-errno`. Optional: without it,
   * IPv6 addresses are not announced.
   */
  advertise?(index: number, packet: Uint8Array): number
  /** Closes the socket. */
  close(): void
}

// <linux/if_ether.h>, <linux/if_packet.h>, <linux/sockios.h>
const AF_PACKET = 17
const SOCK_DGRAM = 2
const SOCK_CLOEXEC = 0o2000000
const ETH_P_ARP = 0x0806
const ETH_P_IP = 0x0800
const ARPHRD_ETHER = 1
const SIOCGIFHWADDR = 0x8927
const BROADCAST = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
// <netinet/in.h>
const AF_INET6 = 10
const SOCK_RAW = 3
const IPPROTO_ICMPV6 = 58
const IPPROTO_IPV6 = 41
const IPV6_MULTICAST_IF = 17
const IPV6_MULTICAST_HOPS = 18
/** ff02::1, all nodes on the link. */
const ALL_NODES = new Uint8Array([0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])

/**
 * A gratuitous ARP packet for `address` (4 bytes) at `mac` (6 bytes), as `arping` sends it:
 * `request` (`arping -U`) is an ARP request whose sender and target address are both `address`,
 * the target hardware address broadcast; `reply` (`arping -A`) is an ARP reply with the sender's
 * own hardware address as target.
 */
export function gratuitousArp(
  mode: 'request' | 'reply',
  mac: Uint8Array,
  address: Uint8Array
): Uint8Array {
  const packet = new Uint8Array(28)
  const view = new DataView(packet.buffer)
  view.setUint16(0, ARPHRD_ETHER)
  view.setUint16(2, ETH_P_IP)
  packet[4] = 6
  packet[5] = 4
  view.setUint16(6, mode === 'request' ? 1 : 2)
  packet.set(mac, 8)
  packet.set(address, 14)
  packet.set(mode === 'request' ? BROADCAST : mac, 18)
  packet.set(address, 24)
  return packet
}

/**
 * An unsolicited neighbour advertisement for `address` (16 bytes) at `mac` (RFC 4861 7.2.6):
 * override set, solicited and router clear, the target link-layer address option; the
 * checksum is left 0 for the kernel.
 */
export function neighbourAdvertisement(mac: Uint8Array, address: Uint8Array): Uint8Array {
  const packet = new Uint8Array(32)
  packet[0] = 136 // neighbour advertisement
  packet[4] = 0x20 // override
  packet.set(address, 8)
  packet[24] = 2 // target link-layer address, 8 bytes
  packet[25] = 1
  packet.set(mac, 26)
  return packet
}

/**
 * A packet socket of this process's network namespace, through koffi; undefined when koffi,
 * libc or the socket cannot be had (without `CAP_NET_RAW`, say: the adapter then runs
 * `arping`). Each call makes a socket of its own, for its owner to close.
 */
export function openArpSocket(): ArpSocket | undefined {
  const c = libc()
  if (c === undefined) return undefined
  // the protocol in network byte order
  const fd = c.socket(
    AF_PACKET,
    SOCK_DGRAM | SOCK_CLOEXEC,
    ((ETH_P_ARP & 0xff) << 8) | (ETH_P_ARP >> 8)
  ) as number
  if (fd < 0) return undefined
  let open = true
  /** The ICMPv6 socket of neighbour advertisements, made on first use (-1: it cannot be had). */
  let icmp6: number | undefined
  return {
    ifindex: (name) => ifindex(c, name),
    hardwareAddress(name) {
      // struct ifreq: the name, then a sockaddr whose data is the address
      const ifreq = Buffer.alloc(40)
      ifreq.write(name, 0, 15, 'latin1')
      if ((c.ioctl(fd, SIOCGIFHWADDR, ifreq) as number) < 0) return -c.koffi.errno()
      return new Uint8Array(ifreq.subarray(18, 24))
    },
    broadcast(index, packet) {
      if (!open) return -Errno.EBADF
      // struct sockaddr_ll: family, protocol (network order), index, hardware type, packet
      // type, address length, address
      const to = Buffer.alloc(20)
      to.writeUInt16LE(AF_PACKET, 0)
      to.writeUInt16BE(ETH_P_ARP, 2)
      to.writeInt32LE(index, 4)
      to.writeUInt8(6, 11)
      to.set(BROADCAST, 12)
      const sent = Number(c.sendto(fd, packet, packet.length, 0, to, to.length))
      return sent < 0 ? -c.koffi.errno() : sent
    },
    advertise(index, packet) {
      if (!open) return -Errno.EBADF
      if (icmp6 === undefined) {
        icmp6 = c.socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6) as number
        // RFC 4861: a neighbour discovery message that did not come with hop limit 255 is dropped
        if (icmp6 >= 0) c.setsockopt(icmp6, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, intOption(255), 4)
      }
      if (icmp6 < 0) return -Errno.EAFNOSUPPORT // no IPv6 here
      // struct sockaddr_in6 to ff02::1, scoped to the device
      const to = Buffer.alloc(28)
      to.writeUInt16LE(AF_INET6, 0)
      to.set(ALL_NODES, 8)
      to.writeUInt32LE(index, 24)
      c.setsockopt(icmp6, IPPROTO_IPV6, IPV6_MULTICAST_IF, intOption(index), 4)
      const sent = Number(c.sendto(icmp6, packet, packet.length, 0, to, to.length))
      return sent < 0 ? -c.koffi.errno() : sent
    },
    close() {
      if (!open) return
      open = false
      c.close(fd)
      if (icmp6 !== undefined && icmp6 >= 0) c.close(icmp6)
    }
  }
}
