import { Subject, type Observable, type Subscription } from 'rxjs'
import {
  AbortError,
  IkeProtocolError,
  NotFoundError,
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
  type IkeErrorKind,
  type IkeEvent,
  type IkeSaRecords,
  type IkeService,
  type IkeServiceFactory,
  type IkeSockets,
  type Phase1Record,
  type Phase2Record,
  type RandomSource,
  type RenegotiationOutcome,
  type TimerHandle
} from '@vipsec/interface'
import {
  resolveInit,
  type IkeV2ServiceComponents,
  type IkeV2ServiceInit,
  type ResolvedInit
} from './config.js'
import { ExchangeType, HeaderFlag, NON_ESP_MARKER, NotifyType } from './constants.js'
import { bytesEqual, decryptMessage } from './crypto.js'
import { childRecord, IkeSa, type ChildSa } from './ike-sa.js'
import { validateConnectRequest, validateInit } from './validate.js'
import {
  concat,
  encodeMessage,
  notify,
  parseMessage,
  type IkeMessage,
  type Payload
} from './message.js'
import { sameIdentity, toWireSelector } from './selectors.js'
import { childRequest, removeChild, type ChildRequest } from './tasks/child.js'
import {
  createChildSa,
  rekeyChildSa as rekeyChildTask,
  rekeyIkeSa as rekeyIkeTask,
  respondCreateChildSa
} from './tasks/create-child-sa.js'
import { initiateIkeAuth, respondIkeAuth } from './tasks/ike-auth.js'
import {
  initiateIkeSaInit,
  respondIkeSaInit,
  settleHalfOpen,
  type ResponderInitState
} from './tasks/ike-sa-init.js'
import {
  checkLiveness as livenessTask,
  deleteChildSa as deleteChildTask,
  deleteIkeSa as deleteIkeTask,
  respondInformational
} from './tasks/informational.js'

function emptyCounters(): IkeCounters {
  return {
    received: 0,
    sent: 0,
    retransmitted: 0,
    responsesReplayed: 0,
    cookiesSent: 0,
    dropped: {
      malformed: 0,
      'unknown-sa': 0,
      'invalid-message-id': 0,
      'icv-failure': 0,
      'half-open-limit': 0,
      unexpected: 0
    }
  }
}

function toKind(err: unknown): { kind: IkeErrorKind; message: string } {
  if (err instanceof IkeProtocolError || (err as Error)?.name === 'IkeProtocolError') {
    return { kind: (err as IkeProtocolError).kind, message: (err as Error).message }
  }
  return { kind: 'TEMPORARY_FAILURE', message: (err as Error)?.message ?? String(err) }
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
  /** @internal */
  readonly engine: EspEngine
  /** @internal */
  readonly init: ResolvedInit
  /** @internal */
  readonly retransmit: ResolvedInit['retransmit']
  /** @internal */
  readonly stats: IkeCounters = emptyCounters()
  /** @internal */
  readonly localAddress: string
  /** SA events; completes on `stop()`. */
  readonly events$: Observable<IkeEvent>
  /** ESP-in-UDP datagrams received on port 4500 (RFC 3948); completes on `stop()`. */
  readonly espDatagrams$: Observable<Datagram>

  private readonly components: IkeV2ServiceComponents
  private events = new Subject<IkeEvent>()
  private esp = new Subject<Datagram>()
  private readonly table = new Map<string, IkeSa>()
  /** Deleted SAs' last responses, replayed when the peer retransmits the request (RFC 7296 2.1). */
  private readonly tombstones = new Map<
    string,
    { spiI: Uint8Array; messageId: number; packet: Uint8Array; natT: boolean; timer: TimerHandle }
  >()
  private readonly espSpis = new Set<number>()
  private readonly initState: ResponderInitState
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
    this.engine = components.espEngine
    this.init = resolveInit(init)
    this.retransmit = this.init.retransmit
    this.localAddress = components.udp500.local.address
    this.events$ = this.events.asObservable()
    this.espDatagrams$ = this.esp.asObservable()
    this.initState = { halfOpen: new Map(), cookieSecret: this.random.randomBytes(32) }
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
        if (e.type === 'sa:soft-expired' && e.direction === 'outbound') this.onSoftExpired(e.spi)
        if (e.type === 'sa:removed' && e.reason !== 'deleted')
          this.onHardExpired(e.spi, e.direction)
      })
    )
    this.started = true
  }

  /** Destroys every SA locally (no messages), unsubscribes, completes the streams. */
  async stop(): Promise<void> {
    if (!this.started) return
    this.started = false
    for (const sa of [...this.table.values()]) this.destroy(sa, 'local')
    for (const t of this.tombstones.values()) this.clock.clearTimeout(t.timer)
    this.tombstones.clear()
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
  }

  /** @internal */
  register(sa: IkeSa): void {
    this.table.set(sa.key, sa)
  }

  /** @internal */
  unregister(sa: IkeSa): void {
    if (this.table.get(sa.key) === sa) this.table.delete(sa.key)
  }

  /** @internal */
  sas(): IkeSa[] {
    return [...this.table.values()]
  }

  /** @internal */
  newIkeSpi(): Uint8Array {
    for (;;) {
      const spi = this.random.randomBytes(8)
      if (spi.every((b) => b === 0)) continue
      if (!this.table.has(Buffer.from(spi).toString('hex'))) return spi
    }
  }

  /** @internal */
  newEspSpi(): number {
    for (;;) {
      const spi = 256 + this.random.randomInt(0xffffffff - 256)
      if (!this.espSpis.has(spi)) {
        this.espSpis.add(spi)
        return spi
      }
    }
  }

  /** @internal */
  releaseEspSpi(spi: number): void {
    this.espSpis.delete(spi)
  }

  /** @internal */
  destroy(
    sa: IkeSa,
    reason: 'local' | 'remote' | 'dead-peer' | 'initial-contact' | 'expired'
  ): void {
    if (sa.state === 'deleted') return
    const announced = sa.state === 'established' || sa.state === 'deleting'
    settleHalfOpen(this.initState, sa)
    this.unregister(sa)
    if (sa.lastResponse !== undefined && sa.keys !== undefined) {
      const key = sa.key
      // kept as long as the peer may still retransmit
      const r = this.retransmit
      let span = 0
      for (let i = 0; i <= r.tries; i++) span += r.timeoutMs * Math.pow(r.backoff, i)
      const previous = this.tombstones.get(key)
      if (previous !== undefined) this.clock.clearTimeout(previous.timer)
      this.tombstones.set(key, {
        spiI: sa.spiI,
        messageId: sa.lastResponse.messageId,
        packet: sa.lastResponse.packets,
        natT: sa.natT,
        timer: this.clock.setTimeout(() => this.tombstones.delete(key), span)
      })
    }
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
      let message: IkeMessage
      try {
        message = parseMessage(data)
      } catch (err) {
        this.drop('malformed')
        this.answerUnparsableInit(
          data,
          d.from,
          natT,
          err as IkeProtocolError & { payloadType?: number }
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
    this.sendTo(response, from, natT)
  }

  private dispatch(message: IkeMessage, from: Endpoint, natT: boolean): void {
    const h = message.header
    const isResponse = (h.flags & HeaderFlag.RESPONSE) !== 0
    if (h.exchange === ExchangeType.IKE_SA_INIT && !isResponse) {
      const local = natT ? this.components.udp4500.local : this.components.udp500.local
      respondIkeSaInit(this, this.initState, message, from, local, natT)
      return
    }
    const fromInitiator = (h.flags & HeaderFlag.INITIATOR) !== 0
    const ourSpi = fromInitiator ? h.spiR : h.spiI
    const key = Buffer.from(ourSpi).toString('hex')
    const sa = this.table.get(key)
    if (sa === undefined || sa.initiator === fromInitiator) {
      const t = this.tombstones.get(key)
      if (
        t !== undefined &&
        !isResponse &&
        h.messageId === t.messageId &&
        bytesEqual(t.spiI, h.spiI)
      ) {
        this.stats.responsesReplayed++
        this.sendTo(t.packet, from, t.natT)
        return
      }
      this.drop('unknown-sa')
      return
    }
    if (!sa.initiator && !bytesEqual(sa.spiI, h.spiI)) {
      this.drop('unknown-sa')
      return
    }
    if (sa.initiator && sa.state !== 'init' && !bytesEqual(sa.spiR, h.spiR)) {
      this.drop('unknown-sa')
      return
    }
    if (isResponse) {
      sa.handleResponse(message)
      return
    }
    this.handleRequest(sa, message, from, natT)
  }

  private handleRequest(sa: IkeSa, message: IkeMessage, from: Endpoint, natT: boolean): void {
    const h = message.header
    if (sa.keys === undefined || sa.state === 'init') {
      this.drop('unexpected')
      return
    }
    const mid = h.messageId
    if (
      sa.lastResponse !== undefined &&
      mid === sa.lastResponse.messageId &&
      mid === sa.expectedRequestId - 1
    ) {
      this.stats.responsesReplayed++
      this.send(sa, sa.lastResponse.packets)
      return
    }
    if (mid !== sa.expectedRequestId) {
      this.drop('invalid-message-id')
      return
    }
    let payloads: Payload[]
    try {
      payloads = decryptMessage(message, sa.inKeys())
    } catch (err) {
      const icv = /ICV|too short|CBC length|padding/.test((err as Error).message)
      this.drop(icv ? 'icv-failure' : 'malformed')
      if (!icv) this.answer(sa, h.exchange, mid, { payloads: [notify(NotifyType.INVALID_SYNTAX)] })
      return
    }
    sa.lastReceived = this.clock.monotonic()
    if (natT && !sa.natT) {
      sa.natT = true
      sa.local = { address: sa.local.address, port: 4500 }
    }
    sa.remote = { ...from }
    let answer: { payloads: Payload[]; after?: () => void }
    switch (h.exchange) {
      case ExchangeType.IKE_AUTH:
        if (sa.initiator || sa.state !== 'auth' || mid !== 1) {
          this.drop('unexpected')
          return
        }
        answer = respondIkeAuth(
          this,
          sa,
          payloads,
          (s, ic) => this.onEstablished(s, ic),
          (s, kind, msg) => {
            this.emit({ type: 'ike:failed', peer: s.remote, reason: kind, message: msg })
            this.destroy(s, 'local')
          }
        )
        break
      case ExchangeType.CREATE_CHILD_SA:
        if (sa.state !== 'established') {
          answer = { payloads: [notify(NotifyType.TEMPORARY_FAILURE)] }
          break
        }
        answer = respondCreateChildSa(this, sa, payloads, sa.childConfigs)
        break
      case ExchangeType.INFORMATIONAL:
        answer = respondInformational(this, sa, payloads)
        break
      default:
        this.drop('unexpected')
        return
    }
    this.answer(sa, h.exchange, mid, answer)
  }

  private answer(
    sa: IkeSa,
    exchange: number,
    mid: number,
    answer: { payloads: Payload[]; after?: () => void }
  ): void {
    const packet = sa.encrypt(exchange, mid, true, answer.payloads)
    sa.lastResponse = { messageId: mid, packets: packet }
    sa.expectedRequestId = mid + 1
    this.send(sa, packet)
    answer.after?.()
  }

  private onEstablished(sa: IkeSa, initialContact: boolean): void {
    settleHalfOpen(this.initState, sa)
    sa.state = 'established'
    sa.establishedAt = this.clock.now()
    if (!sa.initiator) {
      const peer = this.init.peers.find(
        (p) =>
          sameIdentity(p.localIdentity, sa.localIdentity!) &&
          (p.remoteIdentity === undefined || sameIdentity(p.remoteIdentity, sa.remoteIdentity!))
      )
      sa.childConfigs = peer?.children.map(childRequest) ?? []
    }
    if (initialContact) {
      for (const other of this.sas()) {
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

  /** @internal */
  armTimers(sa: IkeSa): void {
    if (sa.nat.localBehindNat && this.init.keepaliveIntervalMs > 0) {
      const tick = (): void => {
        if (sa.state === 'deleted') return
        if (this.started) this.components.udp4500.send(Uint8Array.of(0xff), sa.remote)
        sa.timers.push(this.clock.setTimeout(tick, this.init.keepaliveIntervalMs))
      }
      sa.timers.push(this.clock.setTimeout(tick, this.init.keepaliveIntervalMs))
    }
    const interval = sa.policy.liveness?.intervalMs ?? 0
    if (interval > 0) {
      const tick = (): void => {
        if (sa.state !== 'established') return
        if (this.clock.monotonic() - sa.lastReceived >= interval) {
          livenessTask(this, sa).catch(() => undefined)
        }
        sa.timers.push(this.clock.setTimeout(tick, interval))
      }
      sa.timers.push(this.clock.setTimeout(tick, interval))
    }
    const rekey = (sa.policy.lifetime?.rekeySeconds ?? 0) * 1000
    if (rekey > 0) {
      sa.timers.push(
        // up to 10% early, at random, so that two peers with the same lifetime rarely collide
        this.clock.setTimeout(
          () => {
            if (sa.state === 'established') this.rekeyIke(sa).catch(() => undefined)
          },
          rekey - this.random.randomInt(Math.floor(rekey / 10) + 1)
        )
      )
    }
    // re-authentication (RFC 7296 section 2.8.3), by the original initiator: a new IKE SA with
    // new Child SAs, then the old one is deleted; the deadline survives IKE SA rekeys
    const reauth = (sa.policy.lifetime?.reauthSeconds ?? 0) * 1000
    if (reauth > 0 && sa.initiator) {
      sa.reauthAt ??=
        this.clock.monotonic() + reauth - this.random.randomInt(Math.floor(reauth / 10) + 1)
      sa.timers.push(
        this.clock.setTimeout(
          () => {
            if (sa.state === 'established') this.reauthenticate(sa).catch(() => undefined)
          },
          Math.max(0, sa.reauthAt - this.clock.monotonic())
        )
      )
    }
  }

  private async reauthenticate(sa: IkeSa): Promise<void> {
    const previous: IkeSaRecords = {
      phase1: sa.record(),
      phase2: [...sa.children.values()]
        .filter((c) => c.silent !== true)
        .map((c) => childRecord(sa, c))
    }
    const outcome = await this.renegotiateOne(previous, {}, false)
    if (outcome.status === 'renegotiated' && sa.state === 'established') {
      await deleteIkeTask(this, sa).catch(() => undefined)
    }
  }

  private onSoftExpired(spi: number): void {
    for (const sa of this.table.values()) {
      for (const child of sa.children.values()) {
        if (child.outboundSpi === spi && child.rekeyed !== true && sa.state === 'established') {
          // both peers reach the soft limit together: a random delay makes rekey collisions rare
          const jitter = this.random.randomInt(2000)
          sa.timers.push(
            this.clock.setTimeout(() => {
              if (sa.state === 'established' && sa.children.get(child.id) === child) {
                rekeyChildTask(this, sa, child).catch(() => undefined)
              }
            }, jitter)
          )
          return
        }
      }
    }
  }

  private onHardExpired(spi: number, direction: 'inbound' | 'outbound'): void {
    for (const sa of this.table.values()) {
      for (const child of sa.children.values()) {
        const mine = direction === 'inbound' ? child.inboundSpi : child.outboundSpi
        if (mine === spi) {
          deleteChildTask(this, sa, child, 'expired').catch(() => undefined)
          return
        }
      }
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
    const childReq: ChildRequest = {
      policy: request.child.policy,
      mode: request.child.mode,
      local: request.child.local.map(toWireSelector),
      remote: request.child.remote.map(toWireSelector)
    }
    sa.childConfigs = [childReq]
    this.register(sa)
    const run = async (): Promise<IkeSaRecords> => {
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
    try {
      return await this.withSignal(run(), options.signal, () => this.destroy(sa, 'local'))
    } catch (err) {
      if (sa.state !== 'deleted' && sa.state !== 'established') this.destroy(sa, 'local')
      const { kind, message } = toKind(err)
      if ((err as Error)?.name !== 'AbortError') {
        this.emit({ type: 'ike:failed', peer: request.peer, reason: kind, message })
      }
      throw err
    }
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
    // INITIAL_CONTACT makes the peer drop every other IKE SA of the same identities, so only the
    // first IKE SA of each (identities, peer) group carries it, and the rest of the group waits
    // for it; groups run in parallel
    const groups = new Map<string, Promise<unknown>>()
    return Promise.all(
      records.map((r) => {
        const p1 = r.phase1
        const key = JSON.stringify([p1.localIdentity, p1.remoteIdentity, p1.peer.address])
        const before = groups.get(key)
        const run =
          before === undefined
            ? this.renegotiateOne(r, options, true)
            : before.then(() => this.renegotiateOne(r, options, false))
        groups.set(key, run)
        return run
      })
    )
  }

  private async renegotiateOne(
    previous: IkeSaRecords,
    options: AbortOptions,
    initialContact: boolean
  ): Promise<RenegotiationOutcome> {
    const p1 = previous.phase1
    const [first, ...rest] = previous.phase2
    if (first === undefined) {
      return {
        status: 'failed',
        previous,
        reason: 'INVALID_SELECTORS',
        message: 'no phase 2 record to renegotiate'
      }
    }
    try {
      const peer = p1.nat.remoteBehindNat ? { ...p1.peer } : { address: p1.peer.address, port: 500 }
      const current = await this.connect(
        {
          local: { address: p1.local.address, port: 500 },
          peer,
          localIdentity: p1.localIdentity,
          remoteIdentity: p1.remoteIdentity,
          phase1: p1.policy,
          child: {
            policy: first.policy,
            mode: first.mode,
            local: first.selectors.local,
            remote: first.selectors.remote
          },
          initialContact,
          forceEncapsulation: p1.nat.encapsulated || first.encapsulation === 'udp'
        },
        options
      )
      const sa = this.findIke(current.phase1.id)
      const failedChildren: NonNullable<
        Extract<RenegotiationOutcome, { status: 'renegotiated' }>['failedChildren']
      > = []
      for (const p2 of rest) {
        try {
          throwIfAborted(options.signal)
          const child = await createChildSa(this, sa, {
            policy: p2.policy,
            mode: p2.mode,
            local: p2.selectors.local.map(toWireSelector),
            remote: p2.selectors.remote.map(toWireSelector)
          })
          current.phase2.push(childRecord(sa, child))
        } catch (err) {
          const { kind, message } = toKind(err)
          failedChildren.push({ previous: p2, reason: kind, message })
        }
      }
      return {
        status: 'renegotiated',
        previous,
        current: { ...current, phase1: sa.record() },
        failedChildren
      }
    } catch (err) {
      const { kind, message } = toKind(err)
      return { status: 'failed', previous, reason: kind, message }
    }
  }

  private findIke(phase1Id: string): IkeSa {
    for (const sa of this.table.values())
      if (sa.id === phase1Id && sa.state === 'established') return sa
    throw new NotFoundError(`no IKE SA ${phase1Id}`)
  }

  private findChild(phase2Id: string): { sa: IkeSa; child: ChildSa } {
    for (const sa of this.table.values()) {
      const child = sa.children.get(phase2Id)
      if (child !== undefined && sa.state === 'established') return { sa, child }
    }
    throw new NotFoundError(`no Child SA ${phase2Id}`)
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

  /** The records of every established IKE SA and its Child SAs. */
  list(): IkeSaRecords[] {
    return [...this.table.values()]
      .filter((sa) => sa.state === 'established')
      .map((sa) => ({
        phase1: sa.record(),
        phase2: [...sa.children.values()]
          .filter((c) => c.silent !== true)
          .map((c) => childRecord(sa, c))
      }))
  }

  /** Current counters (a copy). */
  counters(): IkeCounters {
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
  return (sockets: IkeSockets) => new IkeV2Service({ ...components, ...sockets }, init)
}
