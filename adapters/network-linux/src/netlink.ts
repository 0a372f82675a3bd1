import { Errno, ifindex, libc } from './libc.js'

/**
 * The rtnetlink (`NETLINK_ROUTE`) requests the adapter sends in place of `ip addr add`,
 * `ip addr del` and `ip link set up`: the same messages, from this process, without starting a
 * program for each (a few milliseconds apiece, on the path of every takeover). Return values
 * are the kernel's acknowledgement: 0, or `-errno`. The real one goes through koffi into libc;
 * tests put fakes in its place.
 */
export interface NetlinkRoute {
  /** The index of the device called `name`, or `-errno` (`ENODEV` when there is none). */
  ifindex(name: string): number
  /** `RTM_NEWADDR`: `address` (4 or 16 bytes) with `prefix` on device `index`. */
  addAddress(index: number, address: Uint8Array, prefix: number, nodad: boolean): number
  /** `RTM_DELADDR`: the same address taken off. */
  deleteAddress(index: number, address: Uint8Array, prefix: number): number
  /** `RTM_NEWLINK` setting `IFF_UP` on device `index`. */
  setUp(index: number): number
  /** Closes the socket. */
  close(): void
}

// <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_addr.h>, <net/if.h>
const AF_NETLINK = 16
const SOCK_RAW = 3
const SOCK_CLOEXEC = 0o2000000
const NETLINK_ROUTE = 0
const SOL_SOCKET = 1
const SO_RCVTIMEO = 20
const NLMSG_ERROR = 2
const NLM_F_REQUEST = 0x1
const NLM_F_ACK = 0x4
const NLM_F_EXCL = 0x200
const NLM_F_CREATE = 0x400
const RTM_NEWLINK = 16
const RTM_NEWADDR = 20
const RTM_DELADDR = 21
const IFA_ADDRESS = 1
const IFA_LOCAL = 2
const IFA_F_NODAD = 0x02
const IFF_UP = 0x1
const AF_INET = 2
const AF_INET6 = 10
const NLMSG_HDRLEN = 16

/** `errno` values the adapter looks at in an acknowledgement. */
export const NetlinkErrno = {
  /** No such device. */
  ENODEV: Errno.ENODEV,
  /** The address is already on the device. */
  EEXIST: Errno.EEXIST,
  /** The address is not on the device. */
  EADDRNOTAVAIL: Errno.EADDRNOTAVAIL,
  /** No acknowledgement came (the receive timed out). */
  EAGAIN: Errno.EAGAIN,
  /** The socket was closed. */
  EBADF: Errno.EBADF
} as const

const align = (n: number): number => (n + 3) & ~3

/**
 * One `RTM_NEWADDR` or `RTM_DELADDR` request, as `ip addr` sends it: an `ifaddrmsg` and the
 * address as both `IFA_LOCAL` and `IFA_ADDRESS`.
 */
export function addressRequest(
  type: 'add' | 'delete',
  seq: number,
  index: number,
  address: Uint8Array,
  prefix: number,
  nodad = false
): Uint8Array {
  const attr = 4 + address.length
  const length = NLMSG_HDRLEN + 8 + 2 * align(attr)
  const bytes = new Uint8Array(length)
  const view = new DataView(bytes.buffer)
  const flags =
    type === 'add'
      ? NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
      : NLM_F_REQUEST | NLM_F_ACK
  header(view, length, type === 'add' ? RTM_NEWADDR : RTM_DELADDR, flags, seq)
  view.setUint8(16, address.length === 4 ? AF_INET : AF_INET6)
  view.setUint8(17, prefix)
  view.setUint8(18, nodad ? IFA_F_NODAD : 0)
  view.setUint8(19, 0) // RT_SCOPE_UNIVERSE
  view.setUint32(20, index, true)
  let at = 24
  for (const kind of [IFA_LOCAL, IFA_ADDRESS]) {
    view.setUint16(at, attr, true)
    view.setUint16(at + 2, kind, true)
    bytes.set(address, at + 4)
    at += align(attr)
  }
  return bytes
}

/** One `RTM_NEWLINK` request that sets `IFF_UP` on device `index`, as `ip link set up` sends it. */
export function linkUpRequest(seq: number, index: number): Uint8Array {
  const length = NLMSG_HDRLEN + 16
  const bytes = new Uint8Array(length)
  const view = new DataView(bytes.buffer)
  header(view, length, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq)
  // ifinfomsg: family, pad, type, index, flags, change
  view.setInt32(20, index, true)
  view.setUint32(24, IFF_UP, true)
  view.setUint32(28, IFF_UP, true)
  return bytes
}

function header(view: DataView, length: number, type: number, flags: number, seq: number): void {
  view.setUint32(0, length, true)
  view.setUint16(4, type, true)
  view.setUint16(6, flags, true)
  view.setUint32(8, seq, true)
  view.setUint32(12, 0, true)
}

/**
 * The outcome the kernel acknowledged for request `seq` among the messages in `bytes`: 0, or
 * `-errno`; undefined when they hold no acknowledgement of it (another request's, or a
 * truncated message, which is skipped).
 */
export function ackOf(bytes: Uint8Array, seq: number): number | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let at = 0
  while (at + NLMSG_HDRLEN <= bytes.length) {
    const length = view.getUint32(at, true)
    if (length < NLMSG_HDRLEN || at + length > bytes.length) return undefined
    const type = view.getUint16(at + 4, true)
    if (type === NLMSG_ERROR && length >= NLMSG_HDRLEN + 4 && view.getUint32(at + 8, true) === seq)
      return view.getInt32(at + NLMSG_HDRLEN, true)
    at += align(length)
  }
  return undefined
}

/**
 * A route socket of this process's network namespace, through koffi; undefined when koffi,
 * libc or the socket cannot be had (the adapter then runs `ip`). Each call makes a socket of
 * its own, for its owner to close.
 */
export function openNetlinkRoute(): NetlinkRoute | undefined {
  const c = libc()
  if (c === undefined) return undefined
  const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE) as number
  if (fd < 0) return undefined
  // the kernel acknowledges before `send` returns; the timeout only bounds one that never would
  const timeout = Buffer.alloc(16)
  timeout.writeBigInt64LE(1n, 0)
  c.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, timeout, 16)
  const reply = Buffer.alloc(8192)
  let seq = Math.floor(Math.random() * 0x7fffffff)
  let open = true
  const request = (bytes: (seq: number) => Uint8Array): number => {
    if (!open) return -NetlinkErrno.EBADF
    seq = (seq + 1) >>> 0
    const message = bytes(seq)
    if ((c.send(fd, message, message.length, 0) as number) < 0) return -c.koffi.errno()
    // a bounded number of reads: what else is queued (nothing, on a socket of its own) is skipped
    for (let reads = 0; reads < 16; reads++) {
      const n = Number(c.recv(fd, reply, reply.length, 0))
      if (n < 0) return -c.koffi.errno()
      const ack = ackOf(reply.subarray(0, n), seq)
      if (ack !== undefined) return ack
    }
    return -NetlinkErrno.EAGAIN
  }
  return {
    ifindex: (name) => ifindex(c, name),
    addAddress: (index, address, prefix, nodad) =>
      request((s) => addressRequest('add', s, index, address, prefix, nodad)),
    deleteAddress: (index, address, prefix) =>
      request((s) => addressRequest('delete', s, index, address, prefix)),
    setUp: (index) => request((s) => linkUpRequest(s, index)),
    close() {
      if (!open) return
      open = false
      c.close(fd)
    }
  }
}
