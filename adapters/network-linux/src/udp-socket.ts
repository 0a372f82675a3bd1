import { createSocket, type Socket } from 'node:dgram'
import { isIPv6 } from 'node:net'
import { Subject, type Observable } from 'rxjs'
import {
  InvalidParametersError,
  type Datagram,
  type Endpoint,
  type UdpEndpoint
} from '@vipsec/interface'

/** What a {@link DgramUdpEndpoint} reports to the adapter that opened it. */
export interface UdpCounters {
  /** A datagram was handed to the kernel. */
  sent(bytes: number): void
  /** A send failed (counted, never thrown). */
  sendFailed(err: unknown): void
  /** A datagram was dropped because the socket's send queue was full (overload). */
  sendQueueFull(): void
  /** The kernel refused a segmented (`UDP_SEGMENT`) send; its datagrams went one by one. */
  segmentationRefused(): void
  /** A datagram arrived longer than the buffer for it, and was dropped. */
  receiveTruncated(): void
  /** A datagram arrived. */
  received(bytes: number): void
  /** The socket reported an error outside a send. */
  socketFailed(err: unknown): void
  /** The socket closed. */
  closed(endpoint: UdpEndpoint): void
}

/**
 * Datagrams a socket may hold in user space, waiting for the kernel's send buffer, before it
 * drops new ones: the queue (and the memory) stays bounded when a receiver cannot keep up.
 */
export const MAX_SEND_QUEUE = 1024

/** A UDP socket of the Linux adapter, over `node:dgram`. */
export class DgramUdpEndpoint implements UdpEndpoint {
  /** The local address and the port it is bound to (the real one when 0 was asked). */
  readonly local: Endpoint
  private readonly subject = new Subject<Datagram>()
  private closing: Promise<void> | undefined

  private constructor(
    private readonly socket: Socket,
    local: Endpoint,
    private readonly counters: UdpCounters
  ) {
    this.local = local
    socket.on('message', (msg, rinfo) => {
      counters.received(msg.length)
      this.subject.next({
        data: new Uint8Array(msg.buffer, msg.byteOffset, msg.length),
        from: { address: rinfo.address, port: rinfo.port }
      })
    })
    socket.on('error', (err) => counters.socketFailed(err))
  }

  /**
   * Binds a socket to `local` (udp6 for an IPv6 address, udp4 otherwise), exclusively.
   *
   * @param local - address and port; port 0 picks a free one
   * @param counters - where sends, receptions and errors are counted
   * @throws InvalidParametersError naming `local.port` (in use, or privileged) or `local.address`
   * (not an address of this host)
   */
  static async bind(local: Endpoint, counters: UdpCounters): Promise<DgramUdpEndpoint> {
    const v6 = isIPv6(local.address)
    const socket = createSocket({ type: v6 ? 'udp6' : 'udp4', reuseAddr: false, ipv6Only: v6 })
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject)
        socket.bind({ address: local.address, port: local.port, exclusive: true }, () => {
          socket.off('error', reject)
          resolve()
        })
      })
    } catch (err) {
      socket.close()
      throw bindError(local, err)
    }
    const port = socket.address().port
    return new DgramUdpEndpoint(socket, { address: local.address, port }, counters)
  }

  /** Datagrams received; completes when closed. */
  get datagrams$(): Observable<Datagram> {
    return this.subject.asObservable()
  }

  /**
   * Sends a datagram; does nothing once closed. Errors are counted, not thrown; with
   * {@link MAX_SEND_QUEUE} datagrams already waiting in user space it is dropped and counted.
   *
   * @param data - the payload
   * @param to - the destination
   */
  send(data: Uint8Array, to: Endpoint): void {
    if (this.closing !== undefined) return
    if (this.socket.getSendQueueCount() >= MAX_SEND_QUEUE) return this.counters.sendQueueFull()
    try {
      this.socket.send(data, to.port, to.address, (err) => {
        if (err == null) this.counters.sent(data.length)
        else this.counters.sendFailed(err)
      })
    } catch (err) {
      // bad port or address family: node throws before the kernel sees it
      this.counters.sendFailed(err)
    }
  }

  /** Closes the socket and completes `datagrams$`. Idempotent. */
  close(): Promise<void> {
    this.closing ??= closeSocket(this.socket).then(() => {
      this.subject.complete()
      this.counters.closed(this)
    })
    return this.closing
  }
}

/**
 * Closes a `node:dgram` socket; resolves once it is closed, or at once if node had closed it.
 *
 * @param socket - the socket
 */
export function closeSocket(socket: Socket): Promise<void> {
  return new Promise<void>((resolve) => {
    try {
      socket.close(() => resolve())
    } catch {
      resolve() // already closed by node
    }
  })
}

/**
 * The error of a failed bind, naming the argument at fault.
 *
 * @param local - what was to be bound
 * @param err - the error from the kernel or node
 */
export function bindError(local: Endpoint, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException).code
  const where = `${local.address}:${local.port}`
  switch (code) {
    case 'EADDRINUSE':
      return new InvalidParametersError('local.port', `${where} is in use`)
    case 'EACCES':
      return new InvalidParametersError('local.port', `${where}: permission denied`)
    case 'EADDRNOTAVAIL':
      return new InvalidParametersError(
        'local.address',
        `${local.address} is not an address of this host`
      )
    default:
      return new InvalidParametersError(
        'local',
        `cannot bind ${where}: ${(err as Error).message ?? String(err)}`
      )
  }
}
