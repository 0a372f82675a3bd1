import { Subject, type Observable, type Subscription } from 'rxjs'
import {
  IpProtocol,
  type AppHandler,
  type ClusterEnvelope,
  type ClusterLink,
  type ClusterMessage,
  type Dvipa,
  type NodeId,
  type OwnerNotice,
  type PacketDelivery,
  type TargetEvent,
  type TargetStack
} from '@vipsec/interface'
import { buildReply, parseIpPacket, readFlow } from '@vipsec/wire'

/** What a {@link DefaultTargetStack} needs. */
export interface DefaultTargetStackComponents {
  /** The cluster link to the distribution processors. */
  link: ClusterLink
  /**
   * Where packets go that no registered application takes (any protocol, any port): for
   * example the host's kernel through a TUN device (`@vipsec/target-tun`), so that unmodified
   * applications serve. What it emits is sent to the DVIPA's owner. Started and stopped with
   * the stack. Default: none (such packets are counted as `noHandler`).
   */
  delivery?: PacketDelivery
}

/** Options of a {@link DefaultTargetStack}. */
export interface DefaultTargetStackInit {
  /** This target's node id (the link's local node). */
  node: NodeId
  /**
   * The DVIPA of each service address, for the replies of a delivery. Default: learnt from the
   * packets delivered (a service address belongs to the DVIPA whose packets went to it last),
   * and when only one DVIPA is known, every reply is its.
   */
  services?: Record<string, Dvipa>
}

/** Counters of a {@link DefaultTargetStack}. */
export interface TargetCounters {
  /** Packets handed to an application. */
  requests: number
  /** Reply packets sent towards the owner. */
  replies: number
  /** Packets and notices ignored because their epoch was older than the one known. */
  staleIgnored: number
  /** Packets for a protocol and port without an application. */
  noHandler: number
  /** Packets that could not be parsed. */
  malformed: number
  /** Applications that threw (the packet is dropped, the target goes on). */
  appErrors: number
  /** Packets handed to the delivery (the host's kernel). */
  delivered: number
  /** Packets from the delivery sent towards the owner. */
  fromHost: number
  /** Packets from the delivery whose source is no service address of a DVIPA with a known owner. */
  unroutable: number
}

/** Delivers a target's replies for a DVIPA owned by the same node, without the link. */
export type LocalOwner = (message: Extract<ClusterMessage, { type: 'packet:outbound' }>) => void

/**
 * The target side of a cluster: it receives the cleartext packets of distributed connections
 * over the cluster link, hands UDP payloads to the applications registered for their port and
 * every other packet to its delivery (the host's kernel, when there is one), and sends each
 * reply, as a complete IP packet, to whichever node owns the DVIPA now: the one with the
 * highest epoch it has heard of, from a packet or an ownership notice. Anything with an older
 * epoch is ignored and counted.
 */
export class DefaultTargetStack implements TargetStack {
  /** This target's node id. */
  readonly id: NodeId
  private readonly link: ClusterLink
  private readonly delivery: PacketDelivery | undefined
  /** The DVIPA of each service address packets were delivered to, for the host's replies. */
  private readonly services = new Map<string, Dvipa>()
  private deliverySubscription: Subscription | undefined
  private readonly apps = new Map<string, AppHandler>()
  private readonly owners = new Map<Dvipa, OwnerNotice>()
  private events = new Subject<TargetEvent>()
  private subscription: Subscription | undefined
  private localOwner: LocalOwner | undefined
  private readonly counts: TargetCounters = {
    requests: 0,
    replies: 0,
    staleIgnored: 0,
    noHandler: 0,
    malformed: 0,
    appErrors: 0,
    delivered: 0,
    fromHost: 0,
    unroutable: 0
  }

  /**
   * @param components - the cluster link
   * @param init - the node id
   */
  constructor(components: DefaultTargetStackComponents, init: DefaultTargetStackInit) {
    this.link = components.link
    this.delivery = components.delivery
    this.id = init.node
    for (const [address, dvipa] of Object.entries(init.services ?? {}))
      this.services.set(address, dvipa)
  }

  /** Ownership events; completes on `stop()`. */
  get events$(): Observable<TargetEvent> {
    return this.events.asObservable()
  }

  /**
   * Starts the delivery, if any, then listens on the link (the link itself is started by its
   * owner). Idempotent.
   */
  async start(): Promise<void> {
    if (this.subscription !== undefined) return
    if (this.events.isStopped) this.events = new Subject()
    if (this.delivery !== undefined) {
      await this.delivery.start()
      this.deliverySubscription = this.delivery.packets$.subscribe((p) => this.fromDelivery(p))
    }
    this.subscription = this.link.messages$.subscribe((envelope) => void this.receive(envelope))
  }

  /** Stops listening and stops the delivery; completes `events$`. Idempotent. */
  async stop(): Promise<void> {
    if (this.subscription === undefined) return
    this.subscription.unsubscribe()
    this.subscription = undefined
    this.deliverySubscription?.unsubscribe()
    this.deliverySubscription = undefined
    await this.delivery?.stop()
    this.events.complete()
  }

  /** Whether the stack is listening. */
  isStarted(): boolean {
    return this.subscription !== undefined
  }

  /**
   * Registers an application.
   *
   * @param protocol - IP protocol number (17 for UDP)
   * @param port - destination port on the service address
   * @param handler - the application
   */
  register(protocol: number, port: number, handler: AppHandler): void {
    this.apps.set(`${protocol}/${port}`, handler)
  }

  /**
   * The owner replies for a DVIPA go to.
   *
   * @param dvipa - the DVIPA
   */
  ownerOf(dvipa: Dvipa): OwnerNotice | undefined {
    const known = this.owners.get(dvipa)
    return known === undefined ? undefined : { ...known }
  }

  /** The stack's counters (a copy). */
  counters(): TargetCounters {
    return { ...this.counts }
  }

  /**
   * Lets a distribution processor on the same node take replies for the DVIPAs it owns directly
   * (its non-distributed connections), instead of over the link.
   *
   * @param owner - receives the replies
   */
  attachLocalOwner(owner: LocalOwner | undefined): void {
    this.localOwner = owner
  }

  /**
   * Handles one message, from the link or from a distribution processor on the same node.
   *
   * @param envelope - the message and its sender
   */
  async receive(envelope: ClusterEnvelope): Promise<void> {
    const { from, message } = envelope
    if (message.type === 'ownership:notice') {
      // epoch 0 is no owner's: a distribution processor's ownership query, not for targets
      if (message.epoch <= 0) return
      this.learnOwner(message.dvipa, message.owner, message.epoch)
      return
    }
    if (message.type !== 'packet:inbound') return
    if (!this.learnOwner(message.dvipa, from, message.epoch)) return
    const info = parseIpPacket(message.packet)
    if (info === undefined) return void this.counts.malformed++
    let handler: AppHandler | undefined
    let segment: Uint8Array | undefined
    if (!info.laterFragment && info.protocol === IpProtocol.UDP) {
      segment = message.packet.subarray(info.payloadOffset, info.totalLength)
      if (segment.length < 8) return void this.counts.malformed++
      handler = this.apps.get(`${IpProtocol.UDP}/${(segment[2]! << 8) | segment[3]!}`)
    }
    if (handler === undefined || segment === undefined) {
      if (this.delivery === undefined) {
        if (info.laterFragment || info.protocol !== IpProtocol.UDP) this.counts.malformed++
        else this.counts.noHandler++
        return
      }
      this.services.set(message.flow.destinationAddress, message.dvipa)
      this.counts.delivered++
      this.delivery.deliver(message.packet)
      return
    }
    this.counts.requests++
    let replies: Uint8Array[]
    try {
      replies = await handler({ flow: message.flow, payload: segment.subarray(8) })
    } catch {
      this.counts.appErrors++
      return
    }
    for (const payload of replies) {
      const packet = buildReply(message.packet, payload)
      if (packet === undefined) continue
      this.sendReply(message.dvipa, { ...message, type: 'packet:outbound', packet })
    }
  }

  /** A packet from the host: sent to the owner of the DVIPA its source address serves. */
  private fromDelivery(packet: Uint8Array): void {
    const flow = readFlow(packet)
    if (flow === undefined) return void this.counts.malformed++
    let dvipa = this.services.get(flow.sourceAddress)
    if (dvipa === undefined && this.owners.size === 1) dvipa = this.owners.keys().next().value
    if (dvipa === undefined || !this.owners.has(dvipa)) return void this.counts.unroutable++
    this.counts.fromHost++
    this.sendReply(dvipa, {
      type: 'packet:outbound',
      dvipa,
      epoch: 0,
      // as seen inbound from the peer, like the flows of the connection table
      flow: {
        protocol: flow.protocol,
        sourceAddress: flow.destinationAddress,
        sourcePort: flow.destinationPort,
        destinationAddress: flow.sourceAddress,
        destinationPort: flow.sourcePort
      },
      packet
    })
  }

  private sendReply(
    dvipa: Dvipa,
    reply: Extract<ClusterMessage, { type: 'packet:outbound' }>
  ): void {
    // Replies go to the owner known now, which may have changed while the application ran.
    const owner = this.owners.get(dvipa)
    if (owner === undefined) return
    const message = { ...reply, epoch: owner.epoch }
    this.counts.replies++
    if (owner.owner === this.id && this.localOwner !== undefined) {
      this.localOwner(message)
      return
    }
    // the link counts what it cannot send; a lost reply is like a lost datagram
    if (this.link.post !== undefined) this.link.post(owner.owner, message)
    else this.link.send(owner.owner, message).catch(ignore)
  }

  /** Accepts `owner` at `epoch` unless an older epoch; returns whether the message is current. */
  private learnOwner(dvipa: Dvipa, owner: NodeId, epoch: number): boolean {
    const known = this.owners.get(dvipa)
    if (known !== undefined && epoch < known.epoch) {
      this.counts.staleIgnored++
      this.events.next({ type: 'notice:stale-ignored', dvipa, from: owner, epoch })
      return false
    }
    if (known === undefined || epoch > known.epoch || known.owner !== owner) {
      if (known !== undefined && epoch === known.epoch && known.owner !== owner) {
        // two owners claiming one epoch cannot happen with a fenced store; keep the first
        this.counts.staleIgnored++
        return false
      }
      this.owners.set(dvipa, { owner, epoch })
      this.events.next({ type: 'owner:changed', dvipa, owner, epoch })
    }
    return true
  }
}

/**
 * Creates a {@link DefaultTargetStack}.
 *
 * @param components - the cluster link
 * @param init - the node id
 */
export function defaultTargetStack(
  components: DefaultTargetStackComponents,
  init: DefaultTargetStackInit
): DefaultTargetStack {
  return new DefaultTargetStack(components, init)
}

function ignore(): void {
  // a reply the link could not send is lost like a datagram
}
