/**
 * One IKE SA: its state, keys, Child SAs and the task manager that runs its exchanges — one
 * request of ours outstanding at a time (message-ID window 1), retransmitted with exponential
 * backoff from the injected clock, and the last response kept to be replayed when the peer
 * retransmits its request.
 *
 * @module
 */
import {
  IkeProtocolError,
  type ChildLifetime,
  type Endpoint,
  type Identity,
  type Phase1Policy,
  type Phase1Record,
  type Phase2Policy,
  type Phase2Record,
  type TimerHandle,
  type TrafficSelector
} from '@vipsec/interface'
import { HeaderFlag } from './constants.js'
import {
  decryptMessage,
  encryptMessage,
  type ChildKeys,
  type IkeKeys,
  type SkKeys
} from './crypto.js'
import {
  encodeMessage,
  type IkeHeader,
  type IkeMessage,
  type Payload,
  type WireTrafficSelector
} from './message.js'
import type { ChosenChild, ChosenIke } from './proposals.js'
import type { IkeContext } from './context.js'
import type { ChildRequest } from './tasks/child.js'
import { fromWireSelector } from './selectors.js'

/** A Child SA of an IKE SA. */
export interface ChildSa {
  /** The phase 2 record id. */
  id: string
  /** Our inbound SPI. */
  inboundSpi: number
  /** The peer's inbound SPI (our outbound). */
  outboundSpi: number
  /** The chosen transforms. */
  chosen: ChosenChild
  /** The policy it was made from. */
  policy: Phase2Policy
  /** The mode. */
  mode: 'tunnel' | 'transport'
  /** Our selectors. */
  local: WireTrafficSelector[]
  /** The peer's selectors. */
  remote: WireTrafficSelector[]
  /** Whether ESP is carried in UDP. */
  encapsulated: boolean
  /** The keys, and whether we were the initiator of the exchange that made them. */
  keys: ChildKeys
  /** Whether we initiated the exchange that created it. */
  initiator: boolean
  /** The nonces of that exchange (for rekey collisions). */
  nonces: Uint8Array[]
  /** When it was established (wall ms). */
  establishedAt: number
  /** The ids of the ESP engine filters installed for it. */
  filters: string[]
  /** Set while a rekey of this Child SA is under way or done. */
  rekeyed?: boolean
  /** The Child SA the peer made when its rekey of this one collided with ours. */
  peerRekey?: ChildSa
  /** Set while our CREATE_CHILD_SA rekeying this Child SA is in flight. */
  rekeyInFlight?: boolean
  /** The Child SA our own rekey of this one made. */
  replacedBy?: ChildSa
  /** A redundant Child SA of a rekey collision: never announced, so its deletion is not either. */
  silent?: boolean
  /** The selectors in text form, computed once for the records. */
  selectors?: { local: TrafficSelector[]; remote: TrafficSelector[] }
}

/** Where an IKE SA stands. */
export type IkeSaState = 'init' | 'auth' | 'established' | 'rekeyed' | 'deleting' | 'deleted'

/** A pending request of ours. */
interface Pending {
  messageId: number
  packet: Uint8Array
  resolve: (m: { message: IkeMessage; payloads: Payload[] }) => void
  reject: (err: Error) => void
  timer?: TimerHandle
  tries: number
  encrypted: boolean
}

/** The options of an IKE SA's peer and policy, fixed when it is created. */
export interface IkeSaParams {
  /** Whether this side is the original initiator. */
  initiator: boolean
  /** Our SPI. */
  localSpi: Uint8Array
  /** The local endpoint (port 500; 4500 once switched). */
  local: Endpoint
  /** The peer's endpoint. */
  remote: Endpoint
  /** The phase 1 policy. */
  policy: Phase1Policy
  /** Our identity (undefined on a responder until IKE_AUTH). */
  localIdentity?: Identity
  /** The peer's expected identity. */
  remoteIdentity?: Identity
}

/** One IKE SA. */
export class IkeSa {
  /** Whether we are the original initiator. */
  readonly initiator: boolean
  /** SPIi. */
  spiI: Uint8Array
  /** SPIr (zero until known). */
  spiR: Uint8Array
  /** State. */
  state: IkeSaState = 'init'
  /** The local endpoint messages go out of. */
  local: Endpoint
  /** The peer's endpoint. */
  remote: Endpoint
  /** The phase 1 policy. */
  policy: Phase1Policy
  /** Our identity. */
  localIdentity?: Identity
  /** The peer's identity. */
  remoteIdentity?: Identity
  /** The chosen IKE transforms. */
  chosen?: ChosenIke
  /** The keys. */
  keys?: IkeKeys
  /** Ni and Nr of IKE_SA_INIT (or of the rekey). */
  ni: Uint8Array = new Uint8Array(0)
  /** Nr. */
  nr: Uint8Array = new Uint8Array(0)
  /** Our IKE_SA_INIT message as sent, and the peer's as received (for AUTH). */
  ourInit: Uint8Array = new Uint8Array(0)
  /** The peer's IKE_SA_INIT message. */
  peerInit: Uint8Array = new Uint8Array(0)
  /** NAT state. */
  nat = { localBehindNat: false, remoteBehindNat: false, encapsulated: false }
  /** Whether IKE is carried on port 4500 with the non-ESP marker. */
  natT = false
  /** Child SAs by record id. */
  readonly children = new Map<string, ChildSa>()
  /** The Child SAs local policy accepts when the peer asks for one with CREATE_CHILD_SA. */
  childConfigs: ChildRequest[] = []
  /** When established (wall ms). */
  establishedAt = 0
  /** Monotonic ms at which this SA's authentication is renewed (kept across IKE rekeys). */
  reauthAt?: number
  /** Monotonic ms of the last message received from the peer. */
  lastReceived = 0
  /** The next message id we use for a request. */
  nextRequestId = 0
  /** The message id we expect in the peer's next request. */
  expectedRequestId = 0
  /** The last response we sent, for replay. */
  lastResponse?: { messageId: number; packets: Uint8Array }
  /** The request of ours awaiting its response. */
  private pending?: Pending
  private queue: Promise<unknown> = Promise.resolve()
  private ivCounter = 0n
  /** Timers owned by this SA (keep-alive, liveness, half-open expiry). */
  readonly timers: TimerHandle[] = []
  /** Set when a CREATE_CHILD_SA rekeyed this IKE SA: the SA that replaced it. */
  successor?: IkeSa
  /** Set while our own rekey of this IKE SA is in flight (for collisions, RFC 7296 2.8.2). */
  rekeying?: boolean
  /** The SA the peer's rekey of this one made while ours was in flight, with its nonces. */
  peerSuccessor?: { sa: IkeSa; nonces: Uint8Array[] }

  /**
   * @param ctx - the service context
   * @param params - role, SPI, endpoints, policy
   */
  constructor(
    private readonly ctx: IkeContext,
    params: IkeSaParams
  ) {
    this.initiator = params.initiator
    this.spiI = params.initiator ? params.localSpi : new Uint8Array(8)
    this.spiR = params.initiator ? new Uint8Array(8) : params.localSpi
    this.local = params.local
    this.remote = params.remote
    this.policy = params.policy
    this.localIdentity = params.localIdentity
    this.remoteIdentity = params.remoteIdentity
  }

  /** Our SPI. */
  get localSpi(): Uint8Array {
    return this.initiator ? this.spiI : this.spiR
  }

  /** Our SPI in hex (the key of the SA table). */
  get key(): string {
    return Buffer.from(this.localSpi).toString('hex')
  }

  /** The phase 1 record id. */
  get id(): string {
    return `ike-${Buffer.from(this.spiI).toString('hex')}-${Buffer.from(this.spiR).toString('hex')}`
  }

  /** The SK keys we send with. */
  outKeys(): SkKeys {
    const k = this.keys!
    const c = this.chosen!
    return {
      encryption: c.encryption,
      integrity: c.integrity,
      encryptionKey: this.initiator ? k.skEi : k.skEr,
      integrityKey: this.initiator ? k.skAi : k.skAr
    }
  }

  /** The SK keys the peer sends with. */
  inKeys(): SkKeys {
    const k = this.keys!
    const c = this.chosen!
    return {
      encryption: c.encryption,
      integrity: c.integrity,
      encryptionKey: this.initiator ? k.skEr : k.skEi,
      integrityKey: this.initiator ? k.skAr : k.skAi
    }
  }

  private nextIv(): Uint8Array {
    if (this.chosen!.encryption.algorithm === 'aes-gcm-16') {
      // RFC 5282: the IV must never repeat under a key; a counter guarantees it
      this.ivCounter += 1n
      const iv = new Uint8Array(8)
      new DataView(iv.buffer).setBigUint64(0, this.ivCounter)
      return iv
    }
    return this.ctx.random.randomBytes(16)
  }

  /** The header of a message of this SA (IKEv2, the initiator and response flags set as due). */
  private header(
    exchange: number,
    messageId: number,
    response: boolean
  ): Omit<IkeHeader, 'nextPayload' | 'length'> {
    return {
      spiI: this.spiI,
      spiR: this.spiR,
      version: 0x20,
      exchange,
      flags: (this.initiator ? HeaderFlag.INITIATOR : 0) | (response ? HeaderFlag.RESPONSE : 0),
      messageId
    }
  }

  /** Builds an encrypted message of this SA. */
  encrypt(exchange: number, messageId: number, response: boolean, payloads: Payload[]): Uint8Array {
    return encryptMessage(
      this.header(exchange, messageId, response),
      payloads,
      this.outKeys(),
      this.nextIv()
    )
  }

  /** Builds an unencrypted message of this SA. */
  plain(exchange: number, messageId: number, response: boolean, payloads: Payload[]): Uint8Array {
    return encodeMessage(this.header(exchange, messageId, response), payloads)
  }

  /**
   * Sends a request and resolves with the response's (decrypted) payloads. Requests are queued:
   * one is outstanding at a time. The request is retransmitted with backoff; after the last try
   * it rejects with `IkeProtocolError` TIMEOUT.
   *
   * @param exchange - the exchange type
   * @param build - builds the payloads (called when the request's turn comes)
   * @param encrypted - false only for IKE_SA_INIT
   */
  request(
    exchange: number,
    build: () => Payload[],
    encrypted = true
  ): Promise<{ message: IkeMessage; payloads: Payload[] }> {
    const run = (): Promise<{ message: IkeMessage; payloads: Payload[] }> => {
      if (this.state === 'deleted') {
        return Promise.reject(new IkeProtocolError('TEMPORARY_FAILURE', 'IKE SA was deleted'))
      }
      const messageId = this.nextRequestId++
      const payloads = build()
      const packet = encrypted
        ? this.encrypt(exchange, messageId, false, payloads)
        : this.plain(exchange, messageId, false, payloads)
      if (exchange === 34 && messageId === 0) this.ourInit = packet
      return new Promise((resolve, reject) => {
        this.pending = { messageId, packet, resolve, reject, tries: 0, encrypted }
        this.ctx.send(this, packet)
        this.armRetransmit()
      })
    }
    const p = this.queue.then(run, run)
    this.queue = p.catch(() => undefined)
    return p
  }

  private armRetransmit(): void {
    const pending = this.pending
    if (pending === undefined) return
    const r = this.ctx.retransmit
    const delay = r.timeoutMs * Math.pow(r.backoff, pending.tries)
    pending.timer = this.ctx.clock.setTimeout(() => {
      if (this.pending !== pending) return
      if (pending.tries >= r.tries) {
        this.pending = undefined
        pending.reject(
          new IkeProtocolError('TIMEOUT', `no response to message ${pending.messageId}`)
        )
        return
      }
      pending.tries++
      this.ctx.stats.retransmitted++
      this.ctx.send(this, pending.packet)
      this.armRetransmit()
    }, delay)
  }

  /** Resets the message ids for a retried IKE_SA_INIT (COOKIE, INVALID_KE_PAYLOAD). */
  resetForInitRetry(): void {
    this.nextRequestId = 0
  }

  /**
   * Handles a response of the peer: resolves the pending request when the message id matches.
   *
   * @returns false when it was not expected (dropped)
   */
  handleResponse(message: IkeMessage): boolean {
    const pending = this.pending
    if (pending === undefined || pending.messageId !== message.header.messageId) {
      this.ctx.drop('invalid-message-id')
      return false
    }
    let payloads: Payload[]
    if (pending.encrypted) {
      try {
        payloads = decryptMessage(message, this.inKeys())
      } catch {
        this.ctx.drop('icv-failure')
        return false
      }
    } else {
      payloads = message.payloads
    }
    this.lastReceived = this.ctx.clock.monotonic()
    if (pending.timer !== undefined) this.ctx.clock.clearTimeout(pending.timer)
    this.pending = undefined
    pending.resolve({ message, payloads })
    return true
  }

  /** Fails the outstanding request and cancels every timer. */
  close(reason: Error): void {
    this.state = 'deleted'
    const pending = this.pending
    this.pending = undefined
    if (pending !== undefined) {
      if (pending.timer !== undefined) this.ctx.clock.clearTimeout(pending.timer)
      pending.reject(reason)
    }
    for (const t of this.timers) this.ctx.clock.clearTimeout(t)
    this.timers.length = 0
  }

  /** The phase 1 record of this SA. */
  record(): Phase1Record {
    return {
      v: 1,
      kind: 'phase1',
      id: this.id,
      dvipa: this.local.address,
      ikeSaId: {
        initiatorSpi: Buffer.from(this.spiI).toString('hex'),
        responderSpi: Buffer.from(this.spiR).toString('hex')
      },
      role: this.initiator ? 'initiator' : 'responder',
      localIdentity: this.localIdentity!,
      remoteIdentity: this.remoteIdentity!,
      local: { ...this.local },
      peer: { ...this.remote },
      nat: { ...this.nat },
      policy: this.policy,
      establishedAt: this.establishedAt
    }
  }
}

/** The default Child SA lifetime when a policy has none. */
export const NO_LIFETIME: ChildLifetime = {
  softSeconds: 0,
  hardSeconds: 0,
  softBytes: 0,
  hardBytes: 0,
  softPackets: 0,
  hardPackets: 0
}

/** Formats an SPI as 8 hex digits. */
export function spiHex(spi: number): string {
  return spi.toString(16).padStart(8, '0')
}

/** The phase 2 record of a Child SA. */
export function childRecord(sa: IkeSa, child: ChildSa): Phase2Record {
  return {
    v: 1,
    kind: 'phase2',
    id: child.id,
    dvipa: sa.local.address,
    protocol: 'esp',
    inboundSpi: spiHex(child.inboundSpi),
    outboundSpi: spiHex(child.outboundSpi),
    mode: child.mode,
    policy: child.policy,
    selectors: {
      local: (child.selectors ??= {
        local: child.local.map(fromWireSelector),
        remote: child.remote.map(fromWireSelector)
      }).local.map((t) => ({ ...t })),
      remote: child.selectors.remote.map((t) => ({ ...t }))
    },
    encapsulation: child.encapsulated ? 'udp' : 'none',
    establishedAt: child.establishedAt
  }
}
