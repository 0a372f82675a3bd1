/** An in-memory datagram network for in-process IKE tests, with loss, duplication and NAT. */
import { Subject } from 'rxjs'
import type { Datagram, Endpoint, UdpEndpoint } from '@vipsec/interface'

export interface Packet {
  data: Uint8Array
  from: Endpoint
  to: Endpoint
}

export type Verdict = 'deliver' | 'drop' | 'duplicate'

export class MemoryNetwork {
  private readonly sockets = new Map<string, MemoryUdpEndpoint>()
  /** Decides the fate of each packet; default: deliver. */
  filter: (p: Packet) => Verdict = () => 'deliver'
  /** Every packet sent, in order (while `logging`). */
  readonly log: Packet[] = []
  /** Whether packets are kept in `log`; the benchmark turns it off. */
  logging = true
  /** Source NAT: private address -> public address (ports are remapped by adding 10000). */
  readonly nat = new Map<string, string>()
  private readonly reverse = new Map<string, Endpoint>()

  bind(address: string, port: number): MemoryUdpEndpoint {
    const s = new MemoryUdpEndpoint(this, { address, port })
    this.sockets.set(`${address}:${port}`, s)
    return s
  }

  send(data: Uint8Array, from: Endpoint, to: Endpoint): void {
    let src = from
    const pub = this.nat.get(from.address)
    if (pub !== undefined) {
      src = { address: pub, port: from.port + 10000 }
      this.reverse.set(`${src.address}:${src.port}`, from)
    }
    let dst = to
    const back = this.reverse.get(`${to.address}:${to.port}`)
    if (back !== undefined) dst = back
    const p = { data: data.slice(), from: src, to: dst }
    if (this.logging) this.log.push(p)
    const verdict = this.filter(p)
    if (verdict === 'drop') return
    const times = verdict === 'duplicate' ? 2 : 1
    for (let i = 0; i < times; i++) {
      setImmediate(() =>
        this.sockets.get(`${dst.address}:${dst.port}`)?.deliver({ data: p.data, from: src })
      )
    }
  }
}

export class MemoryUdpEndpoint implements UdpEndpoint {
  private readonly subject = new Subject<Datagram>()
  readonly datagrams$ = this.subject.asObservable()
  constructor(
    private readonly net: MemoryNetwork,
    readonly local: Endpoint
  ) {}
  send(data: Uint8Array, to: Endpoint): void {
    this.net.send(data, this.local, to)
  }
  deliver(d: Datagram): void {
    this.subject.next(d)
  }
  async close(): Promise<void> {
    this.subject.complete()
  }
}
