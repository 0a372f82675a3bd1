import { intOption, libc, type Libc } from './libc.js'

/**
 * The system calls a batched UDP socket needs: `recvmmsg(2)` and `sendmmsg(2)` on memory it
 * owns, plus `socket`/`bind`/`getsockname` to make the descriptor. Return values are the
 * kernel's: a count, or `-errno` on failure. The real ones go through koffi into libc; tests
 * put fakes in their place.
 */
export interface MmsgSyscalls {
  /** Memory that does not move: its address (for the kernel) and a view of it (for JS). */
  alloc(bytes: number): NativeMemory
  /** `recvmmsg(fd, vec, vlen, MSG_DONTWAIT, NULL)`. */
  recvmmsg(fd: number, vec: bigint, vlen: number): number
  /** `sendmmsg(fd, vec, vlen, MSG_DONTWAIT)`. */
  sendmmsg(fd: number, vec: bigint, vlen: number): number
  /**
   * A non-blocking, close-on-exec datagram socket of `family` (4 or 6), bound to `sockaddr`,
   * with a kernel receive buffer of at least `receiveBuffer` bytes when that is not 0
   * (`SO_RCVBUFFORCE` where the process may, `SO_RCVBUF` up to `net.core.rmem_max` otherwise).
   */
  bindSocket(family: 4 | 6, sockaddr: Uint8Array, receiveBuffer: number): number
  /** The port a socket is bound to. */
  localPort(fd: number): number
  /** Closes a descriptor no `node:dgram` socket took over. */
  close(fd: number): void
}

// <sys/socket.h>, <netinet/in.h>, <errno.h> on Linux (x86-64 and arm64 alike).
const AF_INET = 2
const AF_INET6 = 10
const SOCK_DGRAM = 2
const SOCK_NONBLOCK = 0o4000
const SOCK_CLOEXEC = 0o2000000
const MSG_DONTWAIT = 0x40
const IPPROTO_IPV6 = 41
const IPV6_V6ONLY = 26
const SOL_SOCKET = 1
const SO_RCVBUF = 8
const SO_RCVBUFFORCE = 33
/** Memory outside the JavaScript heap, for the kernel to read and write in place. */
export interface NativeMemory {
  /** Its address, as the system calls take it. */
  address: bigint
  /** A view of the same bytes. */
  buffer: ArrayBuffer
  /** Gives it back; neither field may be used afterwards. */
  free(): void
}

let real: MmsgSyscalls | null | undefined

/**
 * The real system calls through koffi, bound on first use; undefined when koffi or libc cannot
 * be loaded (the caller then stays with `node:dgram` alone).
 */
export function realMmsgSyscalls(): MmsgSyscalls | undefined {
  if (real === undefined) {
    const c = libc()
    real = c === undefined ? null : mmsgSyscalls(c)
  }
  return real ?? undefined
}

/** The system calls of batched UDP sockets on the libc binding `c`. */
export function mmsgSyscalls(c: Libc): MmsgSyscalls {
  const { koffi } = c
  const fail = (r: number): number => (r < 0 ? -koffi.errno() : r)
  return {
    alloc(bytes) {
      const address = koffi.alloc('uint8_t', bytes) as unknown
      return {
        address: koffi.address(address),
        buffer: koffi.view(address, bytes),
        free: () => koffi.free(address)
      }
    },
    recvmmsg: (fd, vec, vlen) => fail(c.recvmmsg(fd, vec, vlen, MSG_DONTWAIT, null) as number),
    sendmmsg: (fd, vec, vlen) => fail(c.sendmmsg(fd, vec, vlen, MSG_DONTWAIT) as number),
    bindSocket(family, sockaddr, receiveBuffer) {
      const domain = family === 6 ? AF_INET6 : AF_INET
      const fd = c.socket(domain, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) as number
      if (fd < 0) return -koffi.errno()
      if (family === 6) c.setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, intOption(1), 4)
      if (
        receiveBuffer > 0 &&
        (c.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, intOption(receiveBuffer), 4) as number) < 0
      )
        c.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, intOption(receiveBuffer), 4)
      if ((c.bind(fd, sockaddr, sockaddr.length) as number) < 0) {
        const errno = koffi.errno()
        c.close(fd)
        return -errno
      }
      return fd
    },
    localPort(fd) {
      const addr = Buffer.alloc(28)
      const len = Buffer.alloc(4)
      len.writeUInt32LE(28)
      if ((c.getsockname(fd, addr, len) as number) < 0) return -koffi.errno()
      return addr.readUInt16BE(2)
    },
    close: (fd) => void c.close(fd)
  }
}

/*
 * struct mmsghdr on LP64 Linux, 64 bytes: msg_hdr { msg_name @0, msg_namelen @8, msg_iov @16,
 * msg_iovlen @24, msg_control @32, msg_controllen @40, msg_flags @48 }, msg_len @56.
 * struct iovec, 16 bytes: iov_base @0, iov_len @8.
 */
const MMSGHDR = 64
const IOVEC = 16
/** Room for a `sockaddr_in6` (28 bytes), rounded up. */
const SOCKADDR = 32
/** `msg_flags`: the datagram was longer than the buffer. */
export const MSG_TRUNC = 0x20

/**
 * `count` datagram slots of `slotBytes` each in memory that does not move, laid out for
 * `recvmmsg`/`sendmmsg`: the `mmsghdr` array first (its address is the one the calls take),
 * then one `iovec` and one socket address per slot, then the slots' bytes. Everything is set up
 * once; a batch only writes lengths, addresses and bytes.
 */
export class MmsgRing {
  /** The address of the first `mmsghdr`. */
  readonly address: bigint
  /** The whole region, for reading and writing from JS. */
  readonly bytes: Uint8Array
  private readonly view: DataView
  private readonly dataOffset: number
  private readonly free: () => void

  /**
   * @param sys - where the memory comes from
   * @param count - slots (datagrams per call)
   * @param slotBytes - the longest datagram a slot holds
   */
  constructor(
    sys: Pick<MmsgSyscalls, 'alloc'>,
    readonly count: number,
    readonly slotBytes: number
  ) {
    this.dataOffset = count * (MMSGHDR + IOVEC + SOCKADDR)
    const memory = sys.alloc(this.dataOffset + count * slotBytes)
    this.address = memory.address
    this.bytes = new Uint8Array(memory.buffer)
    this.view = new DataView(memory.buffer)
    this.free = memory.free
    this.bytes.fill(0, 0, this.dataOffset)
    for (let i = 0; i < count; i++) {
      const hdr = i * MMSGHDR
      const iov = count * MMSGHDR + i * IOVEC
      this.view.setBigUint64(hdr, this.address + BigInt(this.nameOffset(i)), true)
      this.view.setUint32(hdr + 8, SOCKADDR, true)
      this.view.setBigUint64(hdr + 16, this.address + BigInt(iov), true)
      this.view.setBigUint64(hdr + 24, 1n, true)
      this.view.setBigUint64(iov, this.address + BigInt(this.dataOffsetOf(i)), true)
      this.view.setBigUint64(iov + 8, BigInt(slotBytes), true)
    }
  }

  /** The address of the `mmsghdr` of slot `i` (a call that starts there). */
  entry(i: number): bigint {
    return this.address + BigInt(i * MMSGHDR)
  }

  /** Where slot `i`'s `iovec` starts in {@link bytes}. */
  iovecOffset(i: number): number {
    return this.count * MMSGHDR + i * IOVEC
  }

  /** Where slot `i`'s socket address starts in {@link bytes}. */
  nameOffset(i: number): number {
    return this.count * (MMSGHDR + IOVEC) + i * SOCKADDR
  }

  /** Where slot `i`'s bytes start in {@link bytes}. */
  dataOffsetOf(i: number): number {
    return this.dataOffset + i * this.slotBytes
  }

  /** Readies slot `i` to receive: the whole slot, room for any socket address. */
  armReceive(i: number): void {
    this.view.setUint32(i * MMSGHDR + 8, SOCKADDR, true)
    this.view.setBigUint64(this.count * MMSGHDR + i * IOVEC + 8, BigInt(this.slotBytes), true)
    this.view.setInt32(i * MMSGHDR + 48, 0, true)
  }

  /** Readies slot `i` to send `length` bytes (already in the slot) to a `nameLength` address. */
  armSend(i: number, length: number, nameLength: number): void {
    this.view.setUint32(i * MMSGHDR + 8, nameLength, true)
    this.view.setBigUint64(this.count * MMSGHDR + i * IOVEC + 8, BigInt(length), true)
  }

  /** The length slot `i` was readied to send. */
  sendLength(i: number): number {
    return Number(this.view.getBigUint64(this.count * MMSGHDR + i * IOVEC + 8, true))
  }

  /** The byte count the kernel wrote into slot `i`'s `msg_len`. */
  length(i: number): number {
    return this.view.getUint32(i * MMSGHDR + 56, true)
  }

  /** The `msg_flags` the kernel wrote for slot `i`. */
  flags(i: number): number {
    return this.view.getInt32(i * MMSGHDR + 48, true)
  }

  /** Gives the memory back. The ring must not be used afterwards. */
  close(): void {
    this.free()
  }
}

/** `SOL_UDP` / `UDP_SEGMENT` (<linux/udp.h>): the control message of UDP segmentation offload. */
const SOL_UDP = 17
const UDP_SEGMENT = 103
/** `CMSG_SPACE(sizeof(uint16_t))` on LP64: a 16-byte `cmsghdr`, the value, padding to 8. */
const CMSG_GSO = 24
/** The most segments one UDP GSO send may carry (`UDP_MAX_SEGMENTS`). */
export const GSO_MAX_SEGMENTS = 64

/**
 * A second `mmsghdr` array over the slots of a send {@link MmsgRing}, for UDP segmentation
 * offload (`UDP_SEGMENT`, Linux 4.18): one message covers a run of slots for the same
 * destination, all of one length but the last, as one `iovec` list, and the kernel builds one
 * large datagram that crosses the stack once and is cut into the original datagrams only where
 * it must be (at the receiving socket, or a device that cannot carry it).
 */
export class GsoHeaders {
  /** The address of the first message. */
  readonly address: bigint
  private readonly view: DataView
  private readonly free: () => void

  /**
   * @param sys - where the memory comes from
   * @param ring - the send ring whose slots the messages cover
   */
  constructor(
    sys: Pick<MmsgSyscalls, 'alloc'>,
    private readonly ring: MmsgRing
  ) {
    const memory = sys.alloc(ring.count * (MMSGHDR + CMSG_GSO))
    this.address = memory.address
    this.view = new DataView(memory.buffer)
    this.free = memory.free
    new Uint8Array(memory.buffer).fill(0)
  }

  /** The address of message `m` (a call that starts there). */
  entry(m: number): bigint {
    return this.address + BigInt(m * MMSGHDR)
  }

  /**
   * Makes message `m` the slots `first` to `last` (inclusive) of the ring, sent to slot
   * `first`'s address with `segment`-byte segments (no control message for a single slot).
   *
   * @param m - the message
   * @param first - its first slot
   * @param last - its last slot
   * @param nameLength - the length of slot `first`'s socket address
   * @param segment - the length of every slot but the last
   */
  set(m: number, first: number, last: number, nameLength: number, segment: number): void {
    const hdr = m * MMSGHDR
    const ring = this.ring
    this.view.setBigUint64(hdr, ring.address + BigInt(ring.nameOffset(first)), true)
    this.view.setUint32(hdr + 8, nameLength, true)
    this.view.setBigUint64(hdr + 16, ring.address + BigInt(ring.iovecOffset(first)), true)
    this.view.setBigUint64(hdr + 24, BigInt(last - first + 1), true)
    if (last === first) {
      this.view.setBigUint64(hdr + 32, 0n, true)
      this.view.setBigUint64(hdr + 40, 0n, true)
      return
    }
    const cmsg = this.ring.count * MMSGHDR + m * CMSG_GSO
    this.view.setBigUint64(cmsg, 18n, true) // CMSG_LEN(2)
    this.view.setInt32(cmsg + 8, SOL_UDP, true)
    this.view.setInt32(cmsg + 12, UDP_SEGMENT, true)
    this.view.setUint16(cmsg + 16, segment, true)
    this.view.setBigUint64(hdr + 32, this.address + BigInt(cmsg), true)
    this.view.setBigUint64(hdr + 40, BigInt(CMSG_GSO), true)
  }

  /** The bytes the kernel sent for message `m`. */
  length(m: number): number {
    return this.view.getUint32(m * MMSGHDR + 56, true)
  }

  /** Gives the memory back. */
  close(): void {
    this.free()
  }
}

/**
 * Writes a `sockaddr_in` (16 bytes) or `sockaddr_in6` (28 bytes) for `address` and `port`.
 *
 * @param target - where to write
 * @param offset - where it starts
 * @param address - 4 or 16 address bytes
 * @param port - the port
 * @returns the length written
 */
export function writeSockaddr(
  target: Uint8Array,
  offset: number,
  address: Uint8Array,
  port: number
): number {
  const length = address.length === 4 ? 16 : 28
  target.fill(0, offset, offset + length)
  const family = address.length === 4 ? AF_INET : AF_INET6
  target[offset] = family & 0xff
  target[offset + 1] = family >> 8
  target[offset + 2] = port >> 8
  target[offset + 3] = port & 0xff
  target.set(address, offset + (address.length === 4 ? 4 : 8))
  return length
}
