import { createSocket, type Socket } from 'node:dgram'
import { Subject, type Observable } from 'rxjs'
import {
  InvalidParametersError,
  type Datagram,
  type Endpoint,
  type UdpEndpoint
} from '@vipsec/interface'
import { formatIp, tryParseIp } from '@vipsec/wire'
import { Errno } from './libc.js'
import {
  GSO_MAX_SEGMENTS,
  GsoHeaders,
  MmsgRing,
  MSG_TRUNC,
  writeSockaddr,
  type MmsgSyscalls
} from './mmsg.js'
import { bindError, closeSocket, MAX_SEND_QUEUE, type UdpCounters } from './udp-socket.js'

/** Options of a {@link BatchedUdpEndpoint}. */
export interface BatchedUdpInit {
  /** The system calls (the real ones from {@link realMmsgSyscalls}, or a test's). */
  sys: MmsgSyscalls
  /** Datagrams per `recvmmsg`/`sendmmsg` call. Default 32. */
  batch?: number
  /**
   * The longest datagram that is sent in a batch; longer ones go out on their own through
   * `node:dgram`, in order. Default 16384.
   */
  sendSlotBytes?: number
  /**
   * The kernel receive buffer asked for, in bytes (0: the system's default). A larger one rides
   * out the event loop's pauses (garbage collection, a busy turn) without drops. Default 0.
   */
  receiveBuffer?: number
  /**
   * UDP segmentation offload: a run of datagrams of one length to one destination leaves as one
   * message with `UDP_SEGMENT`, so that the stack (and a veth pair, a bridge, the receiver's IP
   * input) runs once per run instead of once per datagram. It turns itself off where the kernel
   * or the device refuses it. Default true.
   */
  segmentation?: boolean
}

/** A received datagram always fits: the largest UDP payload is 65527 bytes. */
const RECEIVE_SLOT = 65536
/** Datagrams `recvmmsg` takes per turn of the event loop, beyond those libuv reads itself. */
const RECEIVE_BUDGET = 64
/** The most payload one segmented send carries (an IP datagram's limit, with room for headers). */
const MAX_GSO_BYTES = 65000
/** Source addresses kept as text, so that a busy peer's address is formatted once. */
const MAX_CACHED_NAMES = 4096

/**
 * A UDP socket of the Linux adapter that moves several datagrams per system call.
 *
 * The descriptor is made and bound through koffi (non-blocking), then handed to a `node:dgram`
 * socket, which owns it: libuv watches it, and each time it reports a datagram the endpoint
 * drains what else is queued with `recvmmsg` (up to `batch` per call, 64 per turn of the loop),
 * so that a burst costs one system call per batch instead of one per datagram. Sends are
 * copied into preallocated slots and leave with one `sendmmsg` at the end of the current
 * callback (or as soon as `batch` are waiting): the frames a burst of received packets produced
 * go to the kernel together. Nothing is allocated per datagram on the send path; each received
 * datagram is one copy out of the receive slots (consumers may keep it).
 *
 * When the kernel's send buffer is full (`EAGAIN`, `ENOBUFS`), the rest of the batch and what
 * follows go through `node:dgram`, which queues them (at most {@link MAX_SEND_QUEUE}) until the
 * socket is writable: order is kept. A datagram the kernel refuses is counted as a send error,
 * and the batch goes on after it.
 */
export class BatchedUdpEndpoint implements UdpEndpoint {
  /** The local address and the port it is bound to (the real one when 0 was asked). */
  readonly local: Endpoint
  private readonly subject = new Subject<Datagram>()
  private closing: Promise<void> | undefined
  private readonly rx: MmsgRing
  private readonly tx: MmsgRing
  private readonly targets: (Endpoint | undefined)[]
  private readonly lengths: Int32Array
  private readonly nameLengths: Int32Array
  private readonly runStarts: Int32Array
  private gso: GsoHeaders | undefined
  /**
   * The shortest segment length the kernel refused to segment with `EINVAL` (longer than the
   * path MTU allows): runs of this length or longer go one datagram per message from then on,
   * instead of a refused call and a retry per batch.
   */
  private gsoRefusedAt = Infinity
  private budget = RECEIVE_BUDGET
  private budgetResets = false
  private readonly resetBudget = (): void => {
    this.budget = RECEIVE_BUDGET
    this.budgetResets = false
  }
  private queued = 0
  private flushScheduled = false
  private readonly flushTask = (): void => {
    this.flushScheduled = false
    this.flush()
  }
  private readonly addresses = new Map<string, Uint8Array>()
  private readonly names = new Map<number, string>()
  private readonly addressLength: number

  private constructor(
    private readonly socket: Socket,
    private readonly fd: number,
    private readonly sys: MmsgSyscalls,
    local: Endpoint,
    private readonly counters: UdpCounters,
    batch: number,
    sendSlotBytes: number,
    segmentation: boolean
  ) {
    this.local = local
    this.addressLength = tryParseIp(local.address)!.length
    this.rx = new MmsgRing(sys, batch, RECEIVE_SLOT)
    this.tx = new MmsgRing(sys, batch, sendSlotBytes)
    this.targets = new Array<Endpoint | undefined>(batch)
    this.lengths = new Int32Array(batch)
    this.nameLengths = new Int32Array(batch)
    this.runStarts = new Int32Array(batch + 1)
    this.gso = segmentation ? new GsoHeaders(sys, this.tx) : undefined
    socket.on('message', (msg, rinfo) => {
      counters.received(msg.length)
      this.subject.next({
        data: new Uint8Array(msg.buffer, msg.byteOffset, msg.length),
        from: { address: rinfo.address, port: rinfo.port }
      })
      this.drain()
    })
    socket.on('error', (err) => counters.socketFailed(err))
  }

  /**
   * Binds a socket to `local` (IPv6-only for an IPv6 address), exclusively.
   *
   * @param local - address and port; port 0 picks a free one
   * @param counters - where sends, receptions and errors are counted
   * @param init - the system calls and the batch size
   * @throws InvalidParametersError naming `local.port` (in use, or privileged) or `local.address`
   * (not an address of this host)
   */
  static async bind(
    local: Endpoint,
    counters: UdpCounters,
    init: BatchedUdpInit
  ): Promise<BatchedUdpEndpoint> {
    const batch = init.batch ?? 32
    const sendSlotBytes = init.sendSlotBytes ?? 16384
    if (!Number.isInteger(batch) || batch < 1 || batch > 1024)
      throw new InvalidParametersError('batch', 'must be an integer from 1 to 1024')
    if (!Number.isInteger(sendSlotBytes) || sendSlotBytes < 1 || sendSlotBytes > 65536)
      throw new InvalidParametersError('sendSlotBytes', 'must be an integer from 1 to 65536')
    const address = tryParseIp(local.address)
    if (address === undefined)
      throw new InvalidParametersError('local.address', `${local.address} is not an IP address`)
    const sockaddr = new Uint8Array(28)
    const length = writeSockaddr(sockaddr, 0, address, local.port)
    const fd = init.sys.bindSocket(
      address.length === 4 ? 4 : 6,
      sockaddr.subarray(0, length),
      init.receiveBuffer ?? 0
    )
    if (fd < 0) throw bindError(local, errnoError(-fd))
    const port = local.port === 0 ? init.sys.localPort(fd) : local.port
    const socket = createSocket({ type: address.length === 4 ? 'udp4' : 'udp6' })
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject)
        socket.bind({ fd }, () => {
          socket.off('error', reject)
          resolve()
        })
      })
    } catch (err) {
      init.sys.close(fd)
      throw bindError(local, err)
    }
    return new BatchedUdpEndpoint(
      socket,
      fd,
      init.sys,
      { address: local.address, port },
      counters,
      batch,
      sendSlotBytes,
      init.segmentation ?? true
    )
  }

  /** Datagrams received; completes when closed. */
  get datagrams$(): Observable<Datagram> {
    return this.subject.asObservable()
  }

  /**
   * Queues a datagram for the next `sendmmsg`; does nothing once closed. Errors are counted,
   * not thrown; with {@link MAX_SEND_QUEUE} datagrams already waiting in user space it is
   * dropped and counted.
   *
   * @param data - the payload
   * @param to - the destination
   */
  send(data: Uint8Array, to: Endpoint): void {
    if (this.closing !== undefined) return
    const waiting = this.socket.getSendQueueCount()
    if (waiting >= MAX_SEND_QUEUE) return this.counters.sendQueueFull()
    if (waiting > 0 || data.length > this.tx.slotBytes) {
      // behind what node:dgram still holds, or too long for a slot: in order, through it
      this.flush()
      return this.sendAlone(data, to)
    }
    const address = this.destination(to.address)
    if (address === undefined || !Number.isInteger(to.port) || to.port < 1 || to.port > 65535) {
      return this.counters.sendFailed(
        new InvalidParametersError('to', `${to.address}:${to.port} is not a UDP destination`)
      )
    }
    const i = this.queued++
    const nameLength = writeSockaddr(this.tx.bytes, this.tx.nameOffset(i), address, to.port)
    this.tx.bytes.set(data, this.tx.dataOffsetOf(i))
    this.tx.armSend(i, data.length, nameLength)
    this.targets[i] = to
    this.lengths[i] = data.length
    this.nameLengths[i] = nameLength
    if (this.queued === this.tx.count) this.flush()
    else if (!this.flushScheduled) {
      this.flushScheduled = true
      queueMicrotask(this.flushTask)
    }
  }

  /** Closes the socket (after sending what is queued) and completes `datagrams$`. Idempotent. */
  close(): Promise<void> {
    if (this.closing === undefined) this.flush()
    this.closing ??= closeSocket(this.socket).then(() => {
      this.rx.close()
      this.tx.close()
      this.gso?.close()
      this.subject.complete()
      this.counters.closed(this)
    })
    return this.closing
  }

  /** Hands the queued datagrams to the kernel. */
  private flush(): void {
    const count = this.queued
    if (count === 0 || this.closing !== undefined) return
    if (this.gso !== undefined && count > 1) this.sendSegmented(this.gso, count)
    else this.sendSlots(0, count, count)
    this.targets.fill(undefined, 0, count)
    this.queued = 0
  }

  /**
   * Sends slots `from` to `to` (exclusive) one datagram per message; `count` are queued.
   *
   * @returns false when the kernel's buffer filled: the rest, to `count`, went to node:dgram
   */
  private sendSlots(from: number, to: number, count: number): boolean {
    let i = from
    while (i < to) {
      const r = this.sys.sendmmsg(this.fd, this.tx.entry(i), to - i)
      if (r > 0) {
        for (let k = i; k < i + r; k++) this.counters.sent(this.lengths[k]!)
        i += r
        continue
      }
      if (r === -Errno.EINTR) continue
      if (r === 0 || r === -Errno.EAGAIN || r === -Errno.ENOBUFS) {
        this.handOver(i, count)
        return false
      }
      // the kernel refused this one (unreachable, too long...): the rest go on
      this.counters.sendFailed(errnoError(-r))
      i++
    }
    return true
  }

  /**
   * Sends the queue as runs of same-destination, same-length datagrams, each run one message
   * with `UDP_SEGMENT`; a run the kernel refuses goes again one datagram per message, and a
   * kernel or device without segmentation offload turns it off for this socket.
   */
  private sendSegmented(gso: GsoHeaders, count: number): void {
    const starts = this.runStarts
    let messages = 0
    for (let first = 0; first < count; messages++) {
      const segment = this.lengths[first]!
      let last = first
      let total = segment
      while (
        last + 1 < count &&
        last - first + 1 < GSO_MAX_SEGMENTS &&
        segment < this.gsoRefusedAt &&
        this.lengths[last] === segment &&
        this.lengths[last + 1]! <= segment &&
        total + this.lengths[last + 1]! <= MAX_GSO_BYTES &&
        sameEndpoint(this.targets[first]!, this.targets[last + 1]!)
      ) {
        last++
        total += this.lengths[last]!
      }
      gso.set(messages, first, last, this.nameLengths[first]!, segment)
      starts[messages] = first
      first = last + 1
    }
    starts[messages] = count
    let m = 0
    while (m < messages) {
      const r = this.sys.sendmmsg(this.fd, gso.entry(m), messages - m)
      if (r > 0) {
        for (let k = starts[m]!; k < starts[m + r]!; k++) this.counters.sent(this.lengths[k]!)
        m += r
        continue
      }
      if (r === -Errno.EINTR) continue
      if (r === 0 || r === -Errno.EAGAIN || r === -Errno.ENOBUFS) {
        return this.handOver(starts[m]!, count)
      }
      if (starts[m + 1]! - starts[m]! === 1) {
        this.counters.sendFailed(errnoError(-r))
        m++
        continue
      }
      this.counters.segmentationRefused()
      if (r === -Errno.EINVAL) {
        this.gsoRefusedAt = Math.min(this.gsoRefusedAt, this.lengths[starts[m]!]!)
      }
      if (r === -Errno.EIO || r === -Errno.EOPNOTSUPP || r === -Errno.ENOPROTOOPT) {
        this.gso = undefined
        gso.close()
        this.sendSlots(starts[m]!, count, count)
        return
      }
      if (!this.sendSlots(starts[m]!, starts[m + 1]!, count)) return
      m++
    }
  }

  /** The kernel's buffer is full: node:dgram keeps slots `from` to `count`, in order. */
  private handOver(from: number, count: number): void {
    for (let k = from; k < count; k++) {
      const start = this.tx.dataOffsetOf(k)
      const data = Buffer.from(this.tx.bytes.subarray(start, start + this.lengths[k]!))
      this.sendAlone(data, this.targets[k]!)
    }
  }

  /** One datagram through `node:dgram` (behind its queue). */
  private sendAlone(data: Uint8Array, to: Endpoint): void {
    if (this.socket.getSendQueueCount() >= MAX_SEND_QUEUE) return this.counters.sendQueueFull()
    try {
      this.socket.send(data, to.port, to.address, (err) => {
        if (err == null) this.counters.sent(data.length)
        else this.counters.sendFailed(err)
      })
    } catch (err) {
      this.counters.sendFailed(err)
    }
  }

  /**
   * Reads what else is queued, a batch per call, within the budget: libuv goes on reading on
   * its own after this callback (up to 32 datagrams), so the budget is what keeps a long queue
   * from holding the event loop (its timers, the store's renewals) for many milliseconds. A
   * drain that finds the queue empty gives the budget back at once (what it read had arrived,
   * it was not a backlog), so a turn of the loop costs no `setImmediate`; a drain that used the
   * whole budget leaves the rest of the queue to libuv's own reads until the turn ends, when
   * the budget comes back. A backlog therefore costs at most the budget plus libuv's 32 per
   * turn, as before; what arrives while a turn runs is read in it.
   */
  private drain(): void {
    const rx = this.rx
    while (this.budget > 0 && this.closing === undefined) {
      const want = Math.min(rx.count, this.budget)
      const n = this.sys.recvmmsg(this.fd, rx.address, want)
      if (n < 0) {
        if (n !== -Errno.EAGAIN && n !== -Errno.EINTR) this.counters.socketFailed(errnoError(-n))
        else if (n === -Errno.EAGAIN) this.refill()
        return
      }
      this.budget -= Math.max(1, n)
      for (let i = 0; i < n; i++) {
        if (this.closing === undefined) this.deliver(i)
        rx.armReceive(i)
      }
      if (n < want) return this.refill()
    }
    if (this.budget <= 0 && !this.budgetResets) {
      this.budgetResets = true
      setImmediate(this.resetBudget)
    }
  }

  /** The queue was found empty: the budget is whole again, unless this turn already used it. */
  private refill(): void {
    if (!this.budgetResets) this.budget = RECEIVE_BUDGET
  }

  private deliver(i: number): void {
    const rx = this.rx
    const length = rx.length(i)
    if ((rx.flags(i) & MSG_TRUNC) !== 0) return this.counters.receiveTruncated()
    const from = this.source(rx.nameOffset(i))
    if (from === undefined) return this.counters.socketFailed(new Error('unknown address family'))
    const start = rx.dataOffsetOf(i)
    const data = Buffer.allocUnsafe(length)
    data.set(rx.bytes.subarray(start, start + length))
    this.counters.received(length)
    this.subject.next({ data: new Uint8Array(data.buffer, data.byteOffset, length), from })
  }

  /** The sender of a received datagram, from its socket address. */
  private source(offset: number): Endpoint | undefined {
    const b = this.rx.bytes
    const family = b[offset]! | (b[offset + 1]! << 8)
    const port = (b[offset + 2]! << 8) | b[offset + 3]!
    if (family === 2) {
      const n =
        b[offset + 4]! * 0x1000000 +
        ((b[offset + 5]! << 16) | (b[offset + 6]! << 8) | b[offset + 7]!)
      let address = this.names.get(n)
      if (address === undefined) {
        address = formatIp(b, offset + 4, 4)
        if (this.names.size >= MAX_CACHED_NAMES) this.names.clear()
        this.names.set(n, address)
      }
      return { address, port }
    }
    if (family === 10) return { address: formatIp(b, offset + 8, 16), port }
    return undefined
  }

  /** The bytes of a destination address of this socket's family, parsed once. */
  private destination(text: string): Uint8Array | undefined {
    let address = this.addresses.get(text)
    if (address === undefined) {
      address = tryParseIp(text)
      if (address === undefined) return undefined
      if (this.addresses.size >= MAX_CACHED_NAMES) this.addresses.clear()
      this.addresses.set(text, address)
    }
    return address.length === this.addressLength ? address : undefined
  }
}

function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a === b || (a.port === b.port && a.address === b.address)
}

/** An error with the `code` node would give the errno. */
function errnoError(errno: number): NodeJS.ErrnoException {
  const names: Record<number, string> = {
    [Errno.EACCES]: 'EACCES',
    [Errno.EADDRINUSE]: 'EADDRINUSE',
    [Errno.EADDRNOTAVAIL]: 'EADDRNOTAVAIL'
  }
  const err: NodeJS.ErrnoException = new Error(`system call failed with errno ${errno}`)
  err.errno = errno
  err.code = names[errno] ?? `E${errno}`
  return err
}
