import { createSocket, type Socket } from 'node:dgram'
import { isIPv6 } from 'node:net'
import { Subject, type Observable } from 'rxjs'
import {
  InvalidParametersError,
  type Datagram,
  type Endpoint,
  type NetworkAdapter,
  type NetworkEvent,
  type UdpEndpoint
} from '@vipsec/interface'

/** A UDP socket over node:dgram. */
class DgramEndpoint implements UdpEndpoint {
  private readonly subject = new Subject<Datagram>()

  constructor(
    private readonly socket: Socket,
    readonly local: Endpoint
  ) {
    socket.on('message', (data, rinfo) =>
      this.subject.next({
        data: new Uint8Array(data),
        from: { address: rinfo.address, port: rinfo.port }
      })
    )
    // errors on a datagram socket are per send: the heartbeat that failed is simply lost
    socket.on('error', () => {})
  }

  get datagrams$(): Observable<Datagram> {
    return this.subject.asObservable()
  }

  send(data: Uint8Array, to: Endpoint): void {
    this.socket.send(data, to.port, to.address, () => {})
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.socket.close(() => resolve()))
    this.subject.complete()
  }
}

/**
 * The smallest network adapter a heartbeat detector needs in a worker thread: UDP sockets over
 * node:dgram, and no addresses to manage (heartbeats use the node's own address).
 */
export class DgramNetwork implements NetworkAdapter {
  private readonly events = new Subject<NetworkEvent>()
  private started = false

  /** Never emits: this adapter moves no addresses. */
  get events$(): Observable<NetworkEvent> {
    return this.events.asObservable()
  }

  /** Idempotent. */
  async start(): Promise<void> {
    this.started = true
  }

  /** Idempotent. */
  async stop(): Promise<void> {
    this.started = false
    this.events.complete()
  }

  /** Whether started. */
  isStarted(): boolean {
    return this.started
  }

  /** Not supported: heartbeats need no movable address. */
  async acquireAddress(): Promise<void> {
    throw new InvalidParametersError('address', 'the heartbeat worker manages no addresses')
  }

  /** Not supported. */
  async releaseAddress(): Promise<void> {
    throw new InvalidParametersError('address', 'the heartbeat worker manages no addresses')
  }

  /**
   * Binds a UDP socket.
   *
   * @param local - address and port
   * @throws InvalidParametersError naming `local.port` or `local.address` when binding fails
   */
  async openUdp(local: Endpoint): Promise<UdpEndpoint> {
    const socket = createSocket({ type: isIPv6(local.address) ? 'udp6' : 'udp4' })
    await new Promise<void>((resolve, reject) => {
      socket.once('error', (err: NodeJS.ErrnoException) => {
        reject(
          err.code === 'EADDRNOTAVAIL'
            ? new InvalidParametersError('local.address', err.message)
            : new InvalidParametersError('local.port', err.message)
        )
      })
      socket.bind({ port: local.port, address: local.address, exclusive: true }, () => resolve())
    })
    return new DgramEndpoint(socket, { address: local.address, port: socket.address().port })
  }
}
