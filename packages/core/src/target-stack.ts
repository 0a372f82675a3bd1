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
  type TargetEvent,
  type TargetStack
} from '@vipsec/interface'
import { buildReply, parseIpPacket } from '@vipsec/esp-software'

/** What a {@link DefaultTargetStack} needs. */
export interface DefaultTargetStackComponents {
  /** The cluster link to the distribution processors. */
  link: ClusterLink
}

/** Options of a {@link DefaultTargetStack}. */
export interface DefaultTargetStackInit {
  /** This target's node id (the link's local node). */
  node: NodeId
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
}

/** Delivers a target's replies for a DVIPA owned by the same node, without the link. */
export type LocalOwner = (message: Extract<ClusterMessage, { type: 'packet:outbound' }>) => void

/**
 * The target side of a cluster: it receives the cleartext packets of distributed connections
 * over the cluster link, hands UDP payloads to the applications registered for their port, and
 * sends each reply, as a complete IP packet, to whichever node owns the DVIPA now: the one with
 * the highest epoch it has heard of, from a packet or an ownership notice. Anything with an
 * older epoch is ignored and counted.
 */
export class DefaultTargetStack implements TargetStack {
  /** This target's node id. */
  readonly id: NodeId
  private readonly link: ClusterLink
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
    appErrors: 0
  }

  /**
   * @param components - the cluster link
   * @param init - the node id
   */
  constructor(components: DefaultTargetStackComponents, init: DefaultTargetStackInit) {
    this.link = components.link
    this.id = init.node
  }

  /** Ownership events; completes on `stop()`. */
  get events$(): Observable<TargetEvent> {
    return this.events.asObservable()
  }

  /** Starts listening on the link (the link itself is started by its owner). Idempotent. */
  async start(): Promise<void> {
    if (this.subscription !== undefined) return
    if (this.events.isStopped) this.events = new Subject()
    this.subscription = this.link.messages$.subscribe((envelope) => void this.receive(envelope))
  }

  /** Stops listening; completes `events$`. Idempotent. */
  async stop(): Promise<void> {
    if (this.subscription === undefined) return
    this.subscription.unsubscribe()
    this.subscription = undefined
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
      this.learnOwner(message.dvipa, message.owner, message.epoch)
      return
    }
    if (message.type !== 'packet:inbound') return
    if (!this.learnOwner(message.dvipa, from, message.epoch)) return
    const info = parseIpPacket(message.packet)
    if (info === undefined || info.laterFragment || info.protocol !== IpProtocol.UDP) {
      this.counts.malformed++
      return
    }
    const segment = message.packet.subarray(info.payloadOffset, info.totalLength)
    if (segment.length < 8) return void this.counts.malformed++
    const port = (segment[2]! << 8) | segment[3]!
    const handler = this.apps.get(`${IpProtocol.UDP}/${port}`)
    if (handler === undefined) return void this.counts.noHandler++
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
    this.link.send(owner.owner, message).catch(() => {
      // the link counts what it cannot send; a lost reply is like a lost datagram
    })
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
