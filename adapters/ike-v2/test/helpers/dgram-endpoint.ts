/** A UdpEndpoint over a real node:dgram socket (for the system tests; a network adapter comes later). */
import { createSocket, type Socket } from 'node:dgram'
import { isIPv6 } from 'node:net'
import { Subject } from 'rxjs'
import type { Datagram, Endpoint, UdpEndpoint } from '@vipsec/interface'

export class DgramUdpEndpoint implements UdpEndpoint {
  private readonly subject = new Subject<Datagram>()
  readonly datagrams$ = this.subject.asObservable()
  /** Send errors, counted rather than thrown. */
  sendErrors = 0

  private constructor(
    private readonly socket: Socket,
    readonly local: Endpoint
  ) {
    socket.on('message', (msg, rinfo) => {
      // a view of node's buffer, as network-linux's sockets deliver it: a copy per datagram
      // would double the allocations of a flood
      this.subject.next({
        data: new Uint8Array(msg.buffer, msg.byteOffset, msg.length),
        from: { address: rinfo.address, port: rinfo.port }
      })
    })
    socket.on('error', () => {
      this.sendErrors++
    })
  }

  /** Binds a socket to `local`. */
  static async bind(local: Endpoint): Promise<DgramUdpEndpoint> {
    const socket = createSocket({ type: isIPv6(local.address) ? 'udp6' : 'udp4', reuseAddr: false })
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject)
      socket.bind(local.port, local.address, () => {
        socket.off('error', reject)
        resolve()
      })
    })
    return new DgramUdpEndpoint(socket, local)
  }

  send(data: Uint8Array, to: Endpoint): void {
    this.socket.send(data, to.port, to.address, (err) => {
      if (err != null) this.sendErrors++
    })
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.socket.close(() => resolve()))
    this.subject.complete()
  }
}
