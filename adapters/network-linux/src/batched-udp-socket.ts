import { createSocket, type Socket } from 'node:dgram'
import { Subject, type Observable } from 'rxjs'
import {
  InvalidParametersError,
  type Datagram,
  type Endpoint,
  type UdpEndpoint
} from '@vipsec/interface'
import { formatIp, tryParseIp } from '@vipsec/wire'
import { Errno, MmsgRing, MSG_TRUNC, writeSockaddr, type MmsgSyscalls } from './mmsg.js'
import { bindError, MAX_SEND_QUEUE, type UdpCounters } from './udp-socket.js'

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
}

/** A received datagram always fits: the largest UDP payload is 65527 bytes. */
const RECEIVE_SLOT = 65536
/** `recvmmsg` calls per readiness before the event loop gets its turn back. */
const MAX_RECEIVE_ROUNDS = 8
/** Source addresses kept as text, so that a busy peer's address is formatted once. */
const MAX_CACHED_NAMES = 4096

/**
 * A UDP socket of the Linux adapter that moves several datagrams per system call.
 *
 * The descriptor is made and bound through koffi (non-blocking), then handed to a `node:dgram`
 * socket, which owns it: libuv watches it, and each time it reports a datagram the endpoint
 * drains what else is queued with `recvmmsg` (up to `batch` per call, a few calls per turn),
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
    sendSlotBytes: number
  ) {
    this.local = local
    this.addressLength = tryParseIp(local.address)!.length
    this.rx = new MmsgRing(sys, batch, RECEIVE_SLOT)
    this.tx = new MmsgRing(sys, batch, sendSlotBytes)
    this.targets = new Array<Endpoint | undefined>(batch)
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
      sendSlotBytes
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
    if (this.queued === this.tx.count) this.flush()
    else if (!this.flushScheduled) {
      this.flushScheduled = true
      queueMicrotask(this.flushTask)
    }
  }

  /** Closes the socket (after sending what is queued) and completes `datagrams$`. Idempotent. */
  close(): Promise<void> {
    if (this.closing === undefined) this.flush()
    this.closing ??= new Promise<void>((resolve) => {
      try {
        this.socket.close(() => resolve())
      } catch {
        resolve() // already closed by node
      }
    }).then(() => {
      this.rx.close()
      this.tx.close()
      this.subject.complete()
      this.counters.closed(this)
    })
    return this.closing
  }

  /** Hands the queued datagrams to the kernel. */
  private flush(): void {
    const count = this.queued
    if (count === 0 || this.closing !== undefined) return
    let i = 0
    while (i < count) {
      const r = this.sys.sendmmsg(this.fd, this.tx.entry(i), count - i)
      if (r > 0) {
        for (let k = i; k < i + r; k++) this.counters.sent(this.tx.length(k))
        i += r
        continue
      }
      if (r === -Errno.EINTR) continue
      if (r === 0 || r === -Errno.EAGAIN || r === -Errno.ENOBUFS) {
        // the kernel's buffer is full: node:dgram keeps the rest, in order, until it drains
        for (let k = i; k < count; k++) {
          const from = this.tx.dataOffsetOf(k)
          const length = this.tx.sendLength(k)
          this.sendAlone(Buffer.from(this.tx.bytes.subarray(from, from + length)), this.targets[k]!)
        }
        break
      }
      // the kernel refused this one (unreachable, too long...): the rest go on
      this.counters.sendFailed(errnoError(-r))
      i++
    }
    this.targets.fill(undefined, 0, count)
    this.queued = 0
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

  /** Reads what else is queued, a batch per call, for a few calls. */
  private drain(): void {
    const rx = this.rx
    for (let round = 0; round < MAX_RECEIVE_ROUNDS && this.closing === undefined; round++) {
      const n = this.sys.recvmmsg(this.fd, rx.address, rx.count)
      if (n < 0) {
        if (n !== -Errno.EAGAIN && n !== -Errno.EINTR) this.counters.socketFailed(errnoError(-n))
        return
      }
      for (let i = 0; i < n; i++) {
        if (this.closing === undefined) this.deliver(i)
        rx.armReceive(i)
      }
      if (n < rx.count) return
    }
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
