import { Subject, type Observable, type Subscription } from 'rxjs'
import {
  AbortError,
  IkeProtocolError,
  NotStartedError,
  throwIfAborted,
  type AbortOptions,
  type Clock,
  type Datagram,
  type Endpoint,
  type EspEngine,
  type IkeConnectRequest,
  type IkeCounters,
  type IkeDropReason,
  type IkeEvent,
  type IkeSaRecords,
  type AdoptionOutcome,
  type AdoptionRequest,
  type IkeSaState,
  type IkeService,
  type IkeServiceFactory,
  type IkeSockets,
  type IkeStateSink,
  type Phase1Record,
  type Phase2Record,
  type RandomSource,
  type RenegotiationOutcome
} from '@vipsec/interface'
import {
  resolveInit,
  type IkeV2ServiceComponents,
  type IkeV2ServiceInit,
  type ResolvedInit
} from './config.js'
import { ExchangeType, HeaderFlag, NON_ESP_MARKER, NotifyType } from './constants.js'
import { bytesEqual, publicBytesEqual, sha256 } from './crypto.js'
import { emptyFragmentCounters, type IkeFragmentCounters } from './fragments.js'
import { HalfOpenTable, scanInitialRequest } from './half-open.js'
import { childRecord, identityFields, IkeSa } from './ike-sa.js'
import { KeepUp } from './keep-up.js'
import { KeyExchangePool } from './key-pool.js'
import { Lifetimes } from './lifetimes.js'
import { concat, encodeMessage, notify, parseMessage, type IkeMessage } from './message.js'
import { renegotiate, renegotiateOne, toKind } from './renegotiate.js'
import { SaTable, spiKey } from './sa-table.js'
import { peersByRemote } from './identity-index.js'
import { sameIdentity, toWireSelector } from './selectors.js'
import {
  emptyWarmCounters,
  type TaskResult,
  type VerifiedRequest,
  type WarmCounters
} from './task-manager.js'
import { AdoptedRekeys, adoptAll, answerMidSync, warmStateOf } from './warm.js'
import { validateConnectRequest, validateInit } from './validate.js'
import { childRequest, removeChild, type ChildRequest } from './tasks/child.js'
import {
  rekeyChildSa as rekeyChildTask,
  rekeyIkeSa as rekeyIkeTask,
  respondCreateChildSa
} from './tasks/create-child-sa.js'
import { initiateIkeAuth, respondIkeAuth } from './tasks/ike-auth.js'
import { initiateIkeSaInit, respondIkeSaInit } from './tasks/ike-sa-init.js'
import {
  checkLiveness as livenessTask,
  deleteChildSa as deleteChildTask,
  deleteIkeSa as deleteIkeTask,
  respondInformational
} from './tasks/informational.js'

/** The counters of an {@link IkeV2Service}: the contract's, and those of IKE fragments. */
export interface IkeV2Counters extends IkeCounters {
  /** IKE fragments (RFC 7383) sent, received, reassembled and dropped by reason. */
  fragments: IkeFragmentCounters
  /** Warm mode: message ID syncs (RFC 6311), adoptions, state sink failures. */
  warm: WarmCounters
}

function emptyCounters(): IkeV2Counters {
  return {
    fragments: emptyFragmentCounters(),
    warm: emptyWarmCounters(),
    received: 0,
    sent: 0,
    retransmitted: 0,
    responsesReplayed: 0,
    cookiesSent: 0,
    notifiesSuppressed: 0,
    dropped: {
      malformed: 0,
      'unknown-sa': 0,
      'invalid-message-id': 0,
      'icv-failure': 0,
      unprotected: 0,
      'half-open-limit': 0,
      unexpected: 0
    }
  }
}

/**
 * An IKEv2 service (RFC 7296) on node:crypto: IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA and
 * INFORMATIONAL as initiator and responder, over the two UDP endpoints it is given (500 and
 * 4500). Negotiated Child SAs are installed in the ESP engine. Datagrams on port 4500 that are
 * not IKE (ESP-in-UDP) are passed on through {@link IkeV2Service.espDatagrams$}.
 *
 * The sockets belong to the caller: `stop()` unsubscribes from them but does not close them.
 */
export class IkeV2Service implements IkeService {
  /** @internal */
  readonly clock: Clock
  /** @internal */
  readonly random: RandomSource
  /** The ephemeral key-exchange values made ahead of time that this service draws on, if any. */
  readonly keyExchanges: KeyExchangePool | undefined
  /** @internal */
  readonly engine: EspEngine
  /** @internal */
  readonly init: ResolvedInit
  /** @internal */
  readonly retransmit: ResolvedInit['retransmit']
  /** @internal */
  readonly stats: IkeV2Counters = emptyCounters()
  /** @internal */
  readonly localAddress: string
  /** @internal */
  stateSink?: IkeStateSink
  /** SA events; completes on `stop()`. */
  readonly events$: Observable<IkeEvent>
  /** ESP-in-UDP datagrams received on port 4500 (RFC 3948); completes on `stop()`. */
  readonly espDatagrams$: Observable<Datagram>

  private readonly components: IkeV2ServiceComponents
  private events = new Subject<IkeEvent>()
  private esp = new Subject<Datagram>()
  private readonly table: SaTable
  private readonly halfOpen: HalfOpenTable
  private readonly lifetimes: Lifetimes
  private readonly adoptedRekeys: AdoptedRekeys
  private readonly keepUp: KeepUp
  private subscriptions: Subscription[] = []
  private started = false

  /**
   * @param components - clock, random source, ESP engine and the UDP endpoints
   * @param init - options; see {@link IkeV2ServiceInit} for the defaults
   */
  constructor(components: IkeV2ServiceComponents, init: IkeV2ServiceInit = {}) {
    validateInit(init)
    this.components = components
    this.clock = components.clock
    this.random = components.random
    this.keyExchanges = components.keyExchanges
    this.engine = components.espEngine
    this.init = resolveInit(init)
    this.retransmit = this.init.retransmit
    this.localAddress = components.udp500.local.address
    this.events$ = this.events.asObservable()
    this.espDatagrams$ = this.esp.asObservable()
    this.table = new SaTable(this.clock, this.random)
    this.halfOpen = new HalfOpenTable(
      this.clock,
      this.random,
      this.init.unprotectedNotifiesPerSecond
    )
    this.lifetimes = new Lifetimes(this, {
      isStarted: () => this.started,
      keepalive: (sa) => this.components.udp4500.send(Uint8Array.of(0xff), sa.remote),
      rekeyIke: (sa) => this.rekeyIke(sa),
      reauthenticate: (sa) => this.reauthenticate(sa)
    })
    this.adoptedRekeys = new AdoptedRekeys(this, (sa) => this.rekeyIke(sa))
    this.keepUp = new KeepUp(
      {
        clock: this.clock,
        connect: (request) => this.connect(request),
        sas: () => this.sas()
      },
      // a factory's services share the options: each starts the connections of its own address
      this.init.connections.filter((c) => c.request?.local?.address === this.localAddress)
    )
  }

  /** Subscribes to the UDP endpoints and the ESP engine's expiry events. */
  async start(): Promise<void> {
    if (this.started) return
    if (this.events.closed) {
      this.events = new Subject<IkeEvent>()
      this.esp = new Subject<Datagram>()
      ;(this as { events$: Observable<IkeEvent> }).events$ = this.events.asObservable()
      ;(this as { espDatagrams$: Observable<Datagram> }).espDatagrams$ = this.esp.asObservable()
    }
    this.subscriptions.push(
      this.components.udp500.datagrams$.subscribe((d) => this.onDatagram(d, false)),
      this.components.udp4500.datagrams$.subscribe((d) => this.onDatagram(d, true)),
      this.engine.events$.subscribe((e) => {
        if (e.type === 'sa:soft-expired' && e.direction === 'outbound')
          this.lifetimes.softExpired(e.spi)
        if (e.type === 'sa:removed' && e.reason !== 'deleted')
          this.lifetimes.hardExpired(e.spi, e.direction)
      })
    )
    this.started = true
    this.keepUp.start()
  }

  /** Destroys every SA locally (no messages), unsubscribes, completes the streams. */
  async stop(): Promise<void> {
    if (!this.started) return
    this.started = false
    this.keepUp.stop()
    for (const sa of this.table.all()) this.destroy(sa, 'local')
    this.table.clearTombstones()
    for (const s of this.subscriptions) s.unsubscribe()
    this.subscriptions = []
    this.events.complete()
    this.esp.complete()
  }

  /** Whether started. */
  isStarted(): boolean {
    return this.started
  }

  /** @internal */
  send(sa: IkeSa, packet: Uint8Array): void {
    this.sendTo(packet, sa.remote, sa.natT)
  }

  /** @internal */
  sendTo(packet: Uint8Array, to: Endpoint, natT: boolean): void {
    if (!this.started) return
    this.stats.sent++
    if (natT) this.components.udp4500.send(concat(NON_ESP_MARKER, packet), to)
    else this.components.udp500.send(packet, to)
  }

  /** @internal */
  drop(reason: IkeDropReason): void {
    this.stats.dropped[reason]++
  }

  /** @internal */
  emit(event: IkeEvent): void {
    if (!this.events.closed) this.events.next(event)
    this.keepUp.onEvent(event)
  }

  /** How many times each connection of `connections` has been initiated, by name. */
  connectionAttempts(): Record<string, number> {
    return this.keepUp.attempts()
  }

  /** @internal */
  register(sa: IkeSa): void {
    this.table.register(sa)
  }

  /** @internal */
  unregister(sa: IkeSa): void {
    this.table.unregister(sa)
  }

  /** @internal */
  sas(): IkeSa[] {
    return this.table.all()
  }

  /** @internal */
  newIkeSpi(): Uint8Array {
    return this.table.newIkeSpi()
  }

  /** @internal */
  newEspSpi(): number {
    return this.table.newEspSpi()
  }

  /** @internal */
  releaseEspSpi(spi: number): void {
    this.table.releaseEspSpi(spi)
  }

  /** @internal */
  armTimers(sa: IkeSa): void {
    this.lifetimes.arm(sa)
  }

  /** @internal */
  destroy(
    sa: IkeSa,
    reason: 'local' | 'remote' | 'dead-peer' | 'initial-contact' | 'expired'
  ): void {
    if (sa.state === 'deleted') return
    const announced = sa.state === 'established' || sa.state === 'deleting'
    this.halfOpen.settle(sa)
    this.unregister(sa)
    // kept as long as the peer may still retransmit; only when a request protected by the SA's
    // keys was answered (a half-open SA that expires leaves nothing)
    const r = this.retransmit
    let span = 0
    for (let i = 0; i <= r.tries; i++) span += r.timeoutMs * Math.pow(r.backoff, i)
    this.table.bury(sa, (sa.tasks.lastResponse?.messageId ?? 0) > 0, span)
    for (const child of [...sa.children.values()]) removeChild(this, sa, child, 'parent-deleted')
    sa.close(new IkeProtocolError('TEMPORARY_FAILURE', `IKE SA deleted (${reason})`))
    if (announced) this.emit({ type: 'ike:deleted', ikeSaId: sa.record().ikeSaId, reason })
  }

  private onDatagram(d: Datagram, natT: boolean): void {
    try {
      let data = d.data
      if (natT) {
        if (data.length === 1 && data[0] === 0xff) return // NAT keep-alive
        if (data.length < 4 || data[0] !== 0 || data[1] !== 0 || data[2] !== 0 || data[3] !== 0) {
          if (!this.esp.closed) this.esp.next(d)
          return
        }
        data = data.subarray(4)
      }
      this.stats.received++
      if (this.answerWithCookie(data, d.from, natT)) return
      // a forged datagram that does not parse costs an error object, but no stack trace: nothing
      // reads the stack of a dropped datagram, and capturing it was most of a flood's garbage
      let message: IkeMessage | undefined
      let failure: unknown
      const stackTraceLimit = Error.stackTraceLimit
      Error.stackTraceLimit = 0
      try {
        message = parseMessage(data)
      } catch (err) {
        failure = err
      } finally {
        Error.stackTraceLimit = stackTraceLimit
      }
      if (message === undefined) {
        this.drop('malformed')
        this.answerUnparsableInit(
          data,
          d.from,
          natT,
          failure as IkeProtocolError & { payloadType?: number }
        )
        return
      }
      this.dispatch(message, d.from, natT)
    } catch {
      // never let a datagram break the service
      this.drop('malformed')
    }
  }

  /**
   * The stateless COOKIE of a flood (RFC 7296 section 2.6), before any parsing: when a COOKIE
   * is due for this source (past `cookieThreshold` half-open SAs in total, or
   * `halfOpenLimitPerPeer` from its address) and `data` is a well-formed initial IKE_SA_INIT
   * request without one, the COOKIE response is made in place from the raw bytes and sent.
   * Nothing is kept and nothing allocated beyond the response. A request that carries a COOKIE,
   * or might be the retransmission of one that made a half-open SA, or has another shape, goes
   * the full way ({@link respondIkeSaInit}), which answers it the same.
   *
   * @returns whether the request was answered here
   */
  private answerWithCookie(data: Uint8Array, from: Endpoint, natT: boolean): boolean {
    const table = this.halfOpen
    if (
      table.size < this.init.cookieThreshold &&
      table.countFor(from.address) < this.init.halfOpenLimitPerPeer
    ) {
      return false
    }
    const nonce = scanInitialRequest(data)
    if (nonce < 0 || table.mayHold(data, 0) || !this.started) return false
    this.stats.cookiesSent++
    this.stats.sent++
    const response = table.cookieResponse(data, nonce >> 9, nonce & 511, from, natT ? 4 : 0)
    if (natT) this.components.udp4500.send(response, from)
    else this.components.udp500.send(response, from)
    return true
  }

  /**
   * Answers an IKE_SA_INIT request that could not be parsed because of its version or an unknown
   * critical payload with the notify RFC 7296 (sections 1.5, 2.5) asks for; anything else is
   * only dropped.
   */
  private answerUnparsableInit(
    data: Uint8Array,
    from: Endpoint,
    natT: boolean,
    err: IkeProtocolError & { payloadType?: number }
  ): void {
    if (data.length < 28 || data[18] !== ExchangeType.IKE_SA_INIT) return
    if ((data[19] & HeaderFlag.RESPONSE) !== 0 || (data[19] & HeaderFlag.INITIATOR) === 0) return
    if (data[20] !== 0 || data[21] !== 0 || data[22] !== 0 || data[23] !== 0) return
    // an initial request has no SPIr yet: with one, it is aimed at a live SA and gets nothing
    if (data.subarray(8, 16).some((b) => b !== 0)) return
    let payload
    if (err.kind === 'INVALID_MAJOR_VERSION') payload = notify(NotifyType.INVALID_MAJOR_VERSION)
    else if (err.kind === 'UNSUPPORTED_CRITICAL_PAYLOAD' && err.payloadType !== undefined) {
      payload = notify(NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD, Uint8Array.of(err.payloadType))
    } else return
    const response = encodeMessage(
      {
        spiI: data.slice(0, 8),
        spiR: new Uint8Array(8),
        version: 0x20,
        exchange: ExchangeType.IKE_SA_INIT,
        flags: HeaderFlag.RESPONSE,
        messageId: 0
      },
      [payload]
    )
    if (this.halfOpen.takeNotify()) this.sendTo(response, from, natT)
    else this.stats.notifiesSuppressed++
  }

  /**
   * Demultiplexes a parsed message: an IKE_SA_INIT request goes to the responder's half-open
   * table; anything else to the task manager of the SA named by our SPI, after the checks on
   * the header that need no keys (SPIs, the initiator flag against the SA's role).
   */
  private dispatch(message: IkeMessage, from: Endpoint, natT: boolean): void {
    const h = message.header
    const isResponse = (h.flags & HeaderFlag.RESPONSE) !== 0
    if (h.exchange === ExchangeType.IKE_SA_INIT && !isResponse) {
      const local = natT ? this.components.udp4500.local : this.components.udp500.local
      respondIkeSaInit(this, this.halfOpen, message, from, local, natT)
      return
    }
    const fromInitiator = (h.flags & HeaderFlag.INITIATOR) !== 0
    const ourSpi = fromInitiator ? h.spiR : h.spiI
    const key = spiKey(ourSpi)
    const sa = this.table.get(key)
    if (sa === undefined || sa.initiator === fromInitiator) {
      const t = this.table.tombstone(key)
      if (
        t !== undefined &&
        !isResponse &&
        h.messageId === t.response.messageId &&
        publicBytesEqual(t.spiI, h.spiI) &&
        bytesEqual(sha256(message.raw), t.response.requestHash)
      ) {
        this.stats.responsesReplayed++
        for (const p of t.response.packets) this.sendTo(p, from, t.natT)
        return
      }
      this.drop('unknown-sa')
      return
    }
    if (!sa.initiator && !publicBytesEqual(sa.spiI, h.spiI)) {
      this.drop('unknown-sa')
      return
    }
    if (sa.initiator && sa.state !== 'init' && !publicBytesEqual(sa.spiR, h.spiR)) {
      this.drop('unknown-sa')
      return
    }
    if (isResponse) {
      sa.tasks.processResponse(message)
      return
    }
    sa.tasks.processRequest(
      message,
      (request) => this.respond(sa, request, from, natT),
      (payloads) => answerMidSync(sa, payloads)
    )
  }

  /**
   * The responder tasks, called by the task manager with a request whose integrity it verified.
   * `undefined` refuses a request the SA's state does not allow (only IKE_AUTH before the SA is
   * established, and only as responder): nothing is sent and the window stays.
   */
  private respond(sa: IkeSa, request: VerifiedRequest, from: Endpoint, natT: boolean): TaskResult {
    const halfOpen = sa.state === 'init' || sa.state === 'auth'
    if (halfOpen && (sa.initiator || request.exchange !== ExchangeType.IKE_AUTH)) return undefined
    if (!halfOpen && request.exchange === ExchangeType.IKE_AUTH) return undefined
    if (
      request.exchange !== ExchangeType.IKE_AUTH &&
      request.exchange !== ExchangeType.CREATE_CHILD_SA &&
      request.exchange !== ExchangeType.INFORMATIONAL
    ) {
      return undefined
    }
    // authenticated: the peer may have moved (NAT-T, RFC 7296 section 2.23)
    if (natT && !sa.natT) {
      sa.natT = true
      sa.local = { address: sa.local.address, port: 4500 }
    }
    sa.remote = { ...from }
    if (request.kind === 'syntax-error') {
      const e = request.error
      const payload =
        e.kind === 'UNSUPPORTED_CRITICAL_PAYLOAD' && e.payloadType !== undefined
          ? notify(NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD, Uint8Array.of(e.payloadType))
          : notify(NotifyType.INVALID_SYNTAX)
      this.drop('malformed')
      // a half-open SA whose IKE_AUTH is malformed is given up
      return { payloads: [payload], after: halfOpen ? () => this.destroy(sa, 'local') : undefined }
    }
    const payloads = request.payloads
    switch (request.exchange) {
      case ExchangeType.IKE_AUTH:
        return respondIkeAuth(
          this,
          sa,
          payloads,
          (s, ic) => this.onEstablished(s, ic),
          (s, kind, msg, ids) => {
            this.emit({ type: 'ike:failed', peer: s.remote, reason: kind, message: msg, ...ids })
            this.destroy(s, 'local')
          }
        )
      case ExchangeType.CREATE_CHILD_SA:
        if (sa.state !== 'established') return { payloads: [notify(NotifyType.TEMPORARY_FAILURE)] }
        return respondCreateChildSa(this, sa, payloads, sa.childConfigs)
      default:
        return respondInformational(this, sa, payloads)
    }
  }

  private onEstablished(sa: IkeSa, initialContact: boolean): void {
    this.halfOpen.settle(sa)
    sa.settled()
    sa.state = 'established'
    sa.establishedAt = this.clock.now()
    if (!sa.initiator) sa.childConfigs = this.responderChildConfigs(sa)
    this.table.noteIdentity(sa)
    if (initialContact) {
      for (const other of this.table.withRemoteIdentity(sa.remoteIdentity!)) {
        if (
          other !== sa &&
          (other.state === 'established' || other.state === 'rekeyed') &&
          sameIdentity(other.localIdentity!, sa.localIdentity!) &&
          sameIdentity(other.remoteIdentity!, sa.remoteIdentity!)
        ) {
          this.destroy(other, 'initial-contact')
        }
      }
    }
    this.emit({ type: 'ike:established', phase1: sa.record() })
    this.armTimers(sa)
  }

  /** The Child SAs local policy accepts from the peer of a responder's IKE SA. */
  private responderChildConfigs(sa: IkeSa): ChildRequest[] {
    const peer = peersByRemote.find(this.init.peers, sa.remoteIdentity!, (p) =>
      sameIdentity(p.localIdentity, sa.localIdentity!)
    )
    return peer?.children.map(childRequest) ?? []
  }

  private async reauthenticate(sa: IkeSa): Promise<void> {
    const previous: IkeSaRecords = {
      phase1: sa.record(),
      phase2: [...sa.children.values()]
        .filter((c) => c.silent !== true)
        .map((c) => childRecord(sa, c))
    }
    const outcome = await renegotiateOne(this.renegotiation(), previous, {}, false)
    if (outcome.status === 'renegotiated' && sa.state === 'established') {
      await deleteIkeTask(this, sa).catch(() => undefined)
    }
  }

  private requireStarted(): void {
    if (!this.started) throw new NotStartedError('IkeV2Service is not started')
  }

  private async withSignal<T>(
    p: Promise<T>,
    signal: AbortSignal | undefined,
    onAbort: () => void
  ): Promise<T> {
    if (signal === undefined) return p
    return new Promise<T>((resolve, reject) => {
      const abort = (): void => {
        onAbort()
        reject(new AbortError(undefined, { cause: signal.reason }))
      }
      signal.addEventListener('abort', abort, { once: true })
      p.then(
        (v) => {
          signal.removeEventListener('abort', abort)
          resolve(v)
        },
        (e) => {
          signal.removeEventListener('abort', abort)
          reject(e)
        }
      )
    })
  }

  /**
   * Establishes an IKE SA and its first Child SA as initiator (IKE_SA_INIT, IKE_AUTH).
   *
   * @param request - the peer, identities, policies and selectors
   * @param options - an abort signal (aborting destroys the half-made SA)
   * @throws IkeProtocolError when the peer refuses or does not answer; when only the Child SA is
   *   refused, the IKE SA is deleted and the Child SA's error is thrown
   */
  async connect(request: IkeConnectRequest, options: AbortOptions = {}): Promise<IkeSaRecords> {
    throwIfAborted(options.signal)
    this.requireStarted()
    validateConnectRequest(request)
    const natT = request.peer.port !== 500
    const sa = new IkeSa(this, {
      initiator: true,
      localSpi: this.newIkeSpi(),
      local: { address: request.local.address, port: natT ? 4500 : 500 },
      remote: { ...request.peer },
      policy: request.phase1,
      localIdentity: request.localIdentity,
      remoteIdentity: request.remoteIdentity
    })
    sa.natT = natT
    // the peer config of these identities, if any, says whether we fragment towards this peer
    const peer = peersByRemote.find(
      this.init.peers,
      request.remoteIdentity,
      (p) => p.remoteIdentity !== undefined && sameIdentity(p.localIdentity, request.localIdentity)
    )
    const fragmentation = peer?.fragmentation ?? this.init.fragmentation.enabled
    sa.fragmentation = { announced: fragmentation, peer: false, send: fragmentation }
    const childReq: ChildRequest = {
      policy: request.child.policy,
      mode: request.child.mode,
      local: request.child.local.map(toWireSelector),
      remote: request.child.remote.map(toWireSelector)
    }
    sa.childConfigs = [childReq]
    this.register(sa)
    try {
      return await this.withSignal(this.establish(sa, childReq, request), options.signal, () =>
        this.destroy(sa, 'local')
      )
    } catch (err) {
      if (sa.state !== 'deleted' && sa.state !== 'established') this.destroy(sa, 'local')
      const { kind, message } = toKind(err)
      if ((err as Error)?.name !== 'AbortError') {
        this.emit({
          type: 'ike:failed',
          peer: request.peer,
          reason: kind,
          message,
          ...identityFields(sa)
        })
      }
      throw err
    }
  }

  /** IKE_SA_INIT then IKE_AUTH of {@link IkeV2Service.connect}, on its registered SA. */
  private async establish(
    sa: IkeSa,
    childReq: ChildRequest,
    request: IkeConnectRequest
  ): Promise<IkeSaRecords> {
    await initiateIkeSaInit(this, sa, request.forceEncapsulation === true)
    const result = await initiateIkeAuth(
      this,
      sa,
      childReq,
      request.initialContact === true,
      (s, ic) => this.onEstablished(s, ic)
    )
    if (result.child === undefined) {
      await deleteIkeTask(this, sa).catch(() => undefined)
      throw result.childError ?? new IkeProtocolError('TEMPORARY_FAILURE', 'no Child SA')
    }
    return { phase1: sa.record(), phase2: [childRecord(sa, result.child)] }
  }

  /**
   * Renegotiates IKE SAs and their Child SAs from coupling-store records, as initiator with
   * INITIAL_CONTACT, all peers in parallel. The first Child SA of each is made in IKE_AUTH, the
   * others with CREATE_CHILD_SA. Never rejects for one peer: each gets an outcome.
   *
   * @param records - the old IKE SAs with their Child SAs
   * @param options - an abort signal
   */
  async renegotiate(
    records: IkeSaRecords[],
    options: AbortOptions = {}
  ): Promise<RenegotiationOutcome[]> {
    throwIfAborted(options.signal)
    this.requireStarted()
    return renegotiate(this.renegotiation(), records, options)
  }

  private renegotiation(): Parameters<typeof renegotiate>[0] {
    return {
      ctx: this,
      connect: (request, options) => this.connect(request, options),
      findIke: (id) => this.findIke(id)
    }
  }

  private findIke(phase1Id: string): IkeSa {
    return this.table.findIke(phase1Id)
  }

  private findChild(phase2Id: string): ReturnType<SaTable['findChild']> {
    return this.table.findChild(phase2Id)
  }

  /**
   * Rekeys a Child SA with CREATE_CHILD_SA (with PFS when its policy names a group) and deletes
   * the old one.
   *
   * @throws NotFoundError | IkeProtocolError
   */
  async rekeyChildSa(phase2Id: string, options: AbortOptions = {}): Promise<Phase2Record> {
    throwIfAborted(options.signal)
    this.requireStarted()
    const { sa, child } = this.findChild(phase2Id)
    const next = await this.withSignal(
      rekeyChildTask(this, sa, child),
      options.signal,
      () => undefined
    )
    return childRecord(sa, next)
  }

  private async rekeyIke(sa: IkeSa): Promise<IkeSa> {
    return rekeyIkeTask(this, sa, async (old) => {
      old.state = 'rekeyed'
      // the old SA goes in the background: it is destroyed when the peer answers or gives up
      deleteIkeTask(this, old).catch(() => undefined)
    })
  }

  /**
   * Rekeys an IKE SA with CREATE_CHILD_SA; its Child SAs move to the new IKE SA.
   *
   * @throws NotFoundError | IkeProtocolError
   */
  async rekeyIkeSa(phase1Id: string, options: AbortOptions = {}): Promise<Phase1Record> {
    throwIfAborted(options.signal)
    this.requireStarted()
    const sa = this.findIke(phase1Id)
    const next = await this.withSignal(this.rekeyIke(sa), options.signal, () => undefined)
    return next.record()
  }

  /**
   * Deletes a Child SA with an INFORMATIONAL Delete and removes it from the ESP engine.
   *
   * @throws NotFoundError
   */
  async deleteChildSa(phase2Id: string, options: AbortOptions = {}): Promise<void> {
    throwIfAborted(options.signal)
    this.requireStarted()
    const { sa, child } = this.findChild(phase2Id)
    await this.withSignal(
      deleteChildTask(this, sa, child).catch(() => undefined),
      options.signal,
      () => undefined
    )
  }

  /**
   * Deletes an IKE SA and its Child SAs with an INFORMATIONAL Delete. The SA is removed locally
   * even when the peer does not answer.
   *
   * @throws NotFoundError
   */
  async deleteIkeSa(phase1Id: string, options: AbortOptions = {}): Promise<void> {
    throwIfAborted(options.signal)
    this.requireStarted()
    const sa = this.findIke(phase1Id)
    await this.withSignal(
      deleteIkeTask(this, sa).catch(() => undefined),
      options.signal,
      () => undefined
    )
  }

  /**
   * Checks the peer of an IKE SA with an empty INFORMATIONAL request.
   *
   * @throws NotFoundError | IkeProtocolError (TIMEOUT: the SA was deleted as `dead-peer`)
   */
  async checkLiveness(phase1Id: string, options: AbortOptions = {}): Promise<void> {
    throwIfAborted(options.signal)
    this.requireStarted()
    const sa = this.findIke(phase1Id)
    await this.withSignal(livenessTask(this, sa), options.signal, () => undefined)
  }

  /**
   * Warm mode: the state of an established IKE SA and its Child SAs (records, and the secret
   * with its keys and message IDs, for the coupling store, sealed by the caller).
   *
   * @throws NotFoundError | InvalidConfigError (warm mode off)
   */
  exportState(phase1Id: string): IkeSaState {
    return warmStateOf(this, this.findIke(phase1Id))
  }

  /**
   * Warm takeover: installs every IKE SA and its Child SAs as they were, then synchronises the
   * message IDs with each peer (RFC 6311), at most `warm.adoptConcurrency` at once. Each request
   * gets an outcome, in order; one that fails leaves nothing installed. Aborting fails the syncs
   * under way and those not started (`TIMEOUT`).
   */
  async adopt(requests: AdoptionRequest[], options: AbortOptions = {}): Promise<AdoptionOutcome[]> {
    throwIfAborted(options.signal)
    this.requireStarted()
    return adoptAll(
      {
        ctx: this,
        hasIke: (key) => this.table.get(key) !== undefined,
        claimEspSpi: (spi) => this.table.claimEspSpi(spi),
        childConfigs: (sa) => this.responderChildConfigs(sa),
        rekeys: this.adoptedRekeys
      },
      Array.isArray(requests) ? requests : [],
      options.signal
    )
  }

  /**
   * Warm mode: `sink` is awaited with an IKE SA's new state at each key change, before the new
   * keys carry traffic; `undefined` turns it off.
   */
  setStateSink(sink: IkeStateSink | undefined): void {
    this.stateSink = sink
  }

  /** The records of every established IKE SA and its Child SAs. */
  list(): IkeSaRecords[] {
    return this.table
      .all()
      .filter((sa) => sa.state === 'established')
      .map((sa) => ({
        phase1: sa.record(),
        phase2: [...sa.children.values()]
          .filter((c) => c.silent !== true)
          .map((c) => childRecord(sa, c))
      }))
  }

  /** Current counters (a copy), with those of IKE fragments. */
  counters(): IkeV2Counters {
    return structuredClone(this.stats)
  }
}

/**
 * Creates an {@link IkeV2Service}.
 *
 * @param components - clock, random source, ESP engine and the UDP endpoints
 * @param init - options
 */
export function ikeV2Service(
  components: IkeV2ServiceComponents,
  init: IkeV2ServiceInit = {}
): IkeV2Service {
  return new IkeV2Service(components, init)
}

/**
 * An `IkeServiceFactory` for a distribution processor: every service it makes shares the clock,
 * random source, ESP engine and options given here and works on the sockets it is given (one
 * pair per DVIPA).
 *
 * @param components - clock, random source and ESP engine
 * @param init - options
 */
export function ikeV2ServiceFactory(
  components: Omit<IkeV2ServiceComponents, 'udp500' | 'udp4500'>,
  init: IkeV2ServiceInit = {}
): IkeServiceFactory {
  validateInit(init)
  const pool = init.keyExchangePool
  // one pool for every service made here: a standby fills it while idle, and the IKE service a
  // takeover opens draws on it
  const keyExchanges =
    components.keyExchanges ??
    (pool === undefined || pool.size === 0 ? undefined : new KeyExchangePool(components, pool))
  return (sockets: IkeSockets) =>
    new IkeV2Service({ ...components, ...sockets, ...(keyExchanges ? { keyExchanges } : {}) }, init)
}
