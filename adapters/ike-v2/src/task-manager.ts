/**
 * The task manager of one IKE SA: it owns both halves of the message-ID window (RFC 7296
 * section 2.2) — the requests we initiate (queued, one outstanding, retransmitted with backoff,
 * matched to their responses) and the requests we answer (the next expected ID, the cached
 * response replayed for an exact retransmission). Every message reaches the SA only through it,
 * and only after its integrity is verified (sections 2.21 and 3.10.1): a message that fails the
 * check is dropped and counted, never answered, and moves no window.
 *
 * @module
 */
import {
  IkeProtocolError,
  type Clock,
  type IkeCounters,
  type IkeDropReason,
  type TimerHandle
} from '@vipsec/interface'
import { ExchangeType, NotifyType, PayloadType } from './constants.js'
import { bytesEqual, openSk, sha256, type SkKeys } from './crypto.js'
import { Reassembly, type FragmentDropReason, type IkeFragmentCounters } from './fragments.js'
import {
  parsePayloads,
  type IkeMessage,
  type NotifyPayload,
  type Payload,
  type SkfPayload
} from './message.js'
import type { ResolvedInit } from './config.js'

/** Counters of warm mode (RFC 6311 message ID sync, adoption, the state sink). */
export interface WarmCounters {
  /** IKEV2_MESSAGE_ID_SYNC requests sent by an heir (first transmissions). */
  syncsSent: number
  /** IKE SAs adopted and synchronised. */
  synced: number
  /** Adoptions that failed (any reason; nothing of them stays installed). */
  adoptionsFailed: number
  /** Secrets that could not be decoded (`INVALID_STATE`). */
  invalidStates: number
  /**
   * Message-ID-0 INFORMATIONAL responses dropped: no sync of ours outstanding, not
   * authenticated under the SA's keys, or not echoing our nonce.
   */
  syncResponsesDropped: number
  /** A peer's IKEV2_MESSAGE_ID_SYNC answered. */
  syncRequestsAnswered: number
  /**
   * A peer's message-ID-0 INFORMATIONAL that could be a sync dropped: RFC 6311 not announced by
   * both sides, not authenticated, not only sync notifies, or a value below what we expect.
   */
  syncRequestsDropped: number
  /** State sink calls that rejected (the exchange went on without sequence limits). */
  sinkFailures: number
  /** Retransmissions of a request dropped while its answer waited for the state sink. */
  requestsWhileSinking: number
  /** Adopted IKE SAs rekeyed after their adoption (`warm.rekeyAfterAdoptMs`). */
  rekeysAfterAdopt: number
  /** Post-adoption IKE rekeys that failed: the IKE SA went on with the adopted keys. */
  rekeysAfterAdoptFailed: number
  /**
   * Post-adoption IKE rekeys not started: the IKE SA was gone, or rekeyed (by the peer) or
   * being rekeyed meanwhile.
   */
  rekeysAfterAdoptSkipped: number
}

/** Fresh warm-mode counters. */
export function emptyWarmCounters(): WarmCounters {
  return {
    syncsSent: 0,
    synced: 0,
    adoptionsFailed: 0,
    invalidStates: 0,
    syncResponsesDropped: 0,
    syncRequestsAnswered: 0,
    syncRequestsDropped: 0,
    sinkFailures: 0,
    requestsWhileSinking: 0,
    rekeysAfterAdopt: 0,
    rekeysAfterAdoptFailed: 0,
    rekeysAfterAdoptSkipped: 0
  }
}

/** What the task manager needs of the service. */
export interface TaskManagerHost {
  /** Time for the retransmission timers. */
  readonly clock: Clock
  /** Retransmission timing. */
  readonly retransmit: ResolvedInit['retransmit']
  /** Counters (retransmitted, responsesReplayed, fragments). */
  readonly stats: IkeCounters & { fragments: IkeFragmentCounters; warm: WarmCounters }
  /** Options, for the fragment reassembly limits. */
  readonly init: Pick<ResolvedInit, 'fragmentation'>
  /** Counts a dropped datagram. */
  drop(reason: IkeDropReason): void
}

/** What the task manager needs of its IKE SA: keys, and the ways to build and send messages. */
export interface TaskManagerSa {
  /** Whether SK keys exist (false before IKE_SA_INIT completes). */
  hasKeys(): boolean
  /** The keys the peer sends with. */
  inKeys(): SkKeys
  /**
   * Builds an encrypted message of the SA: one message, or its fragments (RFC 7383) when it is
   * too large and fragmentation was negotiated.
   */
  protect(exchange: number, messageId: number, response: boolean, payloads: Payload[]): Uint8Array[]
  /** Builds an unencrypted message of the SA (IKE_SA_INIT only). */
  plain(exchange: number, messageId: number, response: boolean, payloads: Payload[]): Uint8Array
  /** Sends a message to the peer. */
  send(packet: Uint8Array): void
  /** Notes that an authenticated message came from the peer (liveness). */
  touch(): void
  /** Whether we announced IKEV2_FRAGMENTATION_SUPPORTED to the peer (its fragments are taken). */
  acceptsFragments(): boolean
  /**
   * Whether a peer's IKEV2_MESSAGE_ID_SYNC may be answered (RFC 6311: both sides announced it
   * and the SA is established). Absent: never.
   */
  acceptsMidSync?(): boolean
}

/**
 * The answer to a peer's message ID sync (RFC 6311 section 5.1): the response payloads, and the
 * message IDs this side goes on with; `undefined` drops the request.
 */
export type MidSyncAnswer = { payloads: Payload[]; next: number; expected: number } | undefined

/** A request of the peer whose integrity was verified, as the responder tasks see it. */
export type VerifiedRequest =
  | {
      /** The inner payloads parsed. */
      readonly kind: 'payloads'
      /** The exchange type. */
      readonly exchange: number
      /** The decrypted payloads. */
      readonly payloads: Payload[]
    }
  | {
      /** Authenticated, but the inner payloads are malformed (answered with INVALID_SYNTAX). */
      readonly kind: 'syntax-error'
      /** The exchange type. */
      readonly exchange: number
      /** The parse error (kind INVALID_SYNTAX or UNSUPPORTED_CRITICAL_PAYLOAD). */
      readonly error: IkeProtocolError & { payloadType?: number }
    }

/**
 * What a responder task answers: the response payloads and what to do once it is sent; or a
 * promise of it (warm mode: the state sink is awaited before the response goes out).
 */
export type TaskResult = TaskAnswer | Promise<TaskAnswer | undefined> | undefined

/** What a responder task answers: the response payloads and what to do once it is sent. */
export interface TaskAnswer {
  /** The payloads of the (encrypted) response. */
  payloads: Payload[]
  /** Run after the response is sent. */
  after?: () => void
}

/** The last response we sent, kept for the peer's retransmission of its request. */
export interface CachedResponse {
  /** The request's message ID. */
  readonly messageId: number
  /**
   * SHA-256 of the request as received, or of its first fragment (RFC 7383 section 2.6.1):
   * only an identical retransmission is answered.
   */
  readonly requestHash: Uint8Array
  /** The response as sent: one message, or all its fragments. */
  readonly packets: Uint8Array[]
}

/** A completed exchange we initiated. */
export interface Exchanged {
  /** The response as parsed. */
  message: IkeMessage
  /** Its payloads (decrypted and verified when encrypted). */
  payloads: Payload[]
  /** Our request as sent (IKE_SA_INIT's is signed in AUTH); its first fragment if fragmented. */
  request: Uint8Array
}

/**
 * How an unprotected response (IKE_SA_INIT) is taken: `accept` completes the request at once;
 * `hold` keeps it while a better one may still come — anyone on the path can forge it.
 */
export type Screen = (payloads: Payload[]) => 'accept' | 'hold'

interface Pending {
  readonly screen?: Screen
  /** For an encrypted response: whether it is the one awaited (else dropped, and waited on). */
  readonly check?: (payloads: Payload[]) => boolean
  /** An unprotected response held back, and the timer that settles for it. */
  held?: { message: IkeMessage; payloads: Payload[]; timer: TimerHandle }
  readonly messageId: number
  readonly exchange: number
  readonly packets: Uint8Array[]
  readonly encrypted: boolean
  readonly resolve: (m: Exchanged) => void
  readonly reject: (err: Error) => void
  timer?: TimerHandle
  tries: number
}

/** One IKE SA's message-ID window, both roles. */
export class TaskManager {
  /** The message ID of our next request. */
  private nextId = 0
  /** The message ID we expect in the peer's next request. */
  private expectedId = 0
  private pending?: Pending
  private cached?: CachedResponse
  /** The message ID of a request whose answer waits for the state sink. */
  private answering?: number
  private queue: Promise<unknown> = Promise.resolve()
  private closed?: Error
  /**
   * The peer's fragmented request and fragmented response being reassembled: made when the
   * first fragment comes (most IKE SAs never see one, and an SA lives long).
   */
  private requestFragments?: Reassembly
  private responseFragments?: Reassembly

  /**
   * @param host - the service: clock, retransmission timing, counters
   * @param sa - the SA: keys and the ways to build and send its messages
   */
  constructor(
    private readonly host: TaskManagerHost,
    private readonly sa: TaskManagerSa
  ) {}

  /** The reassembly of the peer's fragmented requests, or of its fragmented responses. */
  private reassembly(requests: boolean): Reassembly {
    const held = requests ? this.requestFragments : this.responseFragments
    if (held !== undefined) return held
    const host = this.host
    const made = new Reassembly({
      clock: host.clock,
      get limits() {
        return host.init.fragmentation
      },
      dropFragment: (reason: FragmentDropReason, count = 1) => {
        host.stats.fragments.dropped[reason] += count
      }
    })
    if (requests) this.requestFragments = made
    else this.responseFragments = made
    return made
  }

  /** The message ID of our next request (for tests and records). */
  get nextRequestId(): number {
    return this.nextId
  }

  /** The message ID expected in the peer's next request. */
  get expectedRequestId(): number {
    return this.expectedId
  }

  /**
   * Sets both counters (an adopted SA's recorded values, or those a message ID sync agreed).
   *
   * @param next - the message ID of our next request
   * @param expected - the message ID expected in the peer's next request
   */
  setMessageIds(next: number, expected: number): void {
    this.nextId = next
    this.expectedId = expected
  }

  /** Whether a request with message ID 0 outside the window is outstanding (a sync). */
  get syncPending(): boolean {
    return this.pending?.messageId === 0 && this.pending.check !== undefined
  }

  /**
   * Sends an RFC 6311 message ID sync: an INFORMATIONAL request with message ID 0, outside the
   * window (our next request ID does not move), retransmitted as any request. Only an
   * authenticated response with message ID 0 for which `check` holds completes it; others are
   * dropped and counted (`warm.syncResponsesDropped`).
   */
  requestSync(payloads: Payload[], check: (payloads: Payload[]) => boolean): Promise<Exchanged> {
    const p = this.queue.then(
      () => this.startSync(payloads, check),
      () => this.startSync(payloads, check)
    )
    this.queue = p.then(settled, settled)
    return p
  }

  private startSync(
    payloads: Payload[],
    check: (payloads: Payload[]) => boolean
  ): Promise<Exchanged> {
    if (this.closed !== undefined) return Promise.reject(this.closed)
    const exchange = ExchangeType.INFORMATIONAL
    const packets = this.sa.protect(exchange, 0, false, payloads)
    return new Promise((resolve, reject) => {
      this.responseFragments?.reset('stale')
      this.pending = {
        messageId: 0,
        exchange,
        packets,
        encrypted: true,
        check,
        resolve,
        reject,
        tries: 0
      }
      this.host.stats.warm.syncsSent++
      this.sendAll(packets)
      this.armRetransmit()
    })
  }

  /** The last response sent, if any (kept after the SA is deleted, for replays). */
  get lastResponse(): CachedResponse | undefined {
    return this.cached
  }

  /**
   * Sends a request and resolves with the response's (verified, decrypted) payloads. Requests
   * are queued: one is outstanding at a time (window size 1). The request is retransmitted with
   * backoff; after the last try it rejects with `IkeProtocolError` TIMEOUT.
   *
   * @param exchange - the exchange type
   * @param build - builds the payloads (called when the request's turn comes)
   * @param encrypted - false only for IKE_SA_INIT
   * @param screen - for an unprotected exchange: which responses to hold back; a held response
   *   completes the request only if no accepted one arrives within half a retransmission timeout
   *   (RFC 7296 section 2.21.1: an unprotected error may be forged)
   */
  request(
    exchange: number,
    build: () => Payload[],
    encrypted = true,
    screen?: Screen
  ): Promise<Exchanged> {
    const p = this.queue.then(
      () => this.start(exchange, build, encrypted, screen),
      () => this.start(exchange, build, encrypted, screen)
    )
    // the queue waits for the request to settle but keeps nothing of its outcome (an SA lives
    // long, its last response need not)
    this.queue = p.then(settled, settled)
    return p
  }

  /** Sends a queued request when its turn comes (see {@link TaskManager.request}). */
  private start(
    exchange: number,
    build: () => Payload[],
    encrypted: boolean,
    screen: Screen | undefined
  ): Promise<Exchanged> {
    if (this.closed !== undefined) return Promise.reject(this.closed)
    const messageId = this.nextId++
    const payloads = build()
    const packets = encrypted
      ? this.sa.protect(exchange, messageId, false, payloads)
      : [this.sa.plain(exchange, messageId, false, payloads)]
    return new Promise((resolve, reject) => {
      this.responseFragments?.reset('stale')
      this.pending = {
        messageId,
        exchange,
        packets,
        encrypted,
        screen,
        resolve,
        reject,
        tries: 0
      }
      this.sendAll(packets)
      this.armRetransmit()
    })
  }

  /**
   * Sends one encrypted request that expects no answer (an INFORMATIONAL telling the peer its
   * authentication failed, sent just before the SA is deleted). It uses a message ID.
   */
  sendOnce(exchange: number, payloads: Payload[]): void {
    this.sendAll(this.sa.protect(exchange, this.nextId++, false, payloads))
  }

  /** Sends a message, or all its fragments, in order. */
  private sendAll(packets: Uint8Array[]): void {
    if (packets.length > 1) this.host.stats.fragments.sent += packets.length
    for (const p of packets) this.sa.send(p)
  }

  /** The first request of IKE_SA_INIT is sent again (COOKIE, INVALID_KE_PAYLOAD): ID 0 again. */
  restartInit(): void {
    if (this.pending === undefined) this.nextId = 0
  }

  private armRetransmit(): void {
    const pending = this.pending
    if (pending === undefined) return
    const r = this.host.retransmit
    const delay = r.timeoutMs * Math.pow(r.backoff, pending.tries)
    pending.timer = this.host.clock.setTimeout(() => {
      if (this.pending !== pending) return
      if (pending.tries >= r.tries) {
        if (pending.held !== undefined) return // settled by the held response's timer
        this.pending = undefined
        pending.reject(
          new IkeProtocolError('TIMEOUT', `no response to message ${pending.messageId}`)
        )
        return
      }
      pending.tries++
      this.host.stats.retransmitted++
      // every fragment again: the peer keeps the ones it has (RFC 7383 section 2.6)
      this.sendAll(pending.packets)
      this.armRetransmit()
    }, delay)
  }

  /**
   * Takes a response of the peer (R flag set). It completes the outstanding request only when
   * its message ID and exchange type match and, for encrypted exchanges, its integrity holds;
   * otherwise it is dropped and counted, and the request keeps being retransmitted.
   *
   * @returns whether it completed the outstanding request
   */
  processResponse(message: IkeMessage): boolean {
    const pending = this.pending
    if (pending === undefined || pending.messageId !== message.header.messageId) {
      if (
        message.header.messageId === 0 &&
        message.header.exchange === ExchangeType.INFORMATIONAL
      ) {
        this.host.stats.warm.syncResponsesDropped++
      }
      this.host.drop('invalid-message-id')
      return false
    }
    if (message.header.exchange !== pending.exchange) {
      this.host.drop('unexpected')
      return false
    }
    let payloads: Payload[]
    let syntax: IkeProtocolError | undefined
    if (pending.encrypted) {
      const opened = this.open(message, false)
      if (opened === undefined) {
        if (pending.check !== undefined) this.host.stats.warm.syncResponsesDropped++
        return false
      }
      try {
        if (opened.body === undefined) throw new IkeProtocolError('INVALID_SYNTAX', 'padding')
        payloads = parsePayloads(opened.innerType, opened.body)
      } catch (err) {
        // authenticated but malformed: the exchange fails (nothing to answer to a response)
        payloads = []
        syntax =
          err instanceof IkeProtocolError
            ? err
            : new IkeProtocolError('INVALID_SYNTAX', 'malformed response')
      }
    } else {
      payloads = message.payloads
      if (pending.screen?.(payloads) === 'hold') {
        if (pending.held === undefined) {
          const timer = this.host.clock.setTimeout(() => {
            const held = pending.held
            if (this.pending === pending && held !== undefined) this.settle(pending, held)
          }, this.host.retransmit.timeoutMs / 2)
          pending.held = { message, payloads, timer }
        }
        return false
      }
    }
    if (pending.check !== undefined && (syntax !== undefined || !pending.check(payloads))) {
      // authenticated, but not the answer to our sync (no nonce echo): it changes nothing
      this.host.stats.warm.syncResponsesDropped++
      this.host.drop('unexpected')
      return false
    }
    this.sa.touch()
    if (syntax !== undefined) {
      this.clear(pending)
      pending.reject(syntax)
    } else this.settle(pending, { message, payloads })
    return true
  }

  private clear(pending: Pending): void {
    if (pending.timer !== undefined) this.host.clock.clearTimeout(pending.timer)
    if (pending.held !== undefined) this.host.clock.clearTimeout(pending.held.timer)
    this.pending = undefined
  }

  private settle(pending: Pending, r: { message: IkeMessage; payloads: Payload[] }): void {
    this.clear(pending)
    pending.resolve({ message: r.message, payloads: r.payloads, request: pending.packets[0] })
  }

  /**
   * Notes the IKE_SA_INIT response we sent as responder: the peer's IKE_SA_INIT request is
   * message 0, its next request is expected with ID 1.
   *
   * @param request - the peer's IKE_SA_INIT request as received
   * @param response - our response as sent
   */
  answeredInit(request: Uint8Array, response: Uint8Array): void {
    // no hash of the request: a retransmitted IKE_SA_INIT goes to the half-open table, which
    // compares it with the request kept on the SA; this entry only holds message 0's place
    void request
    this.cached = { messageId: 0, requestHash: NO_HASH, packets: [response] }
    this.expectedId = 1
  }

  /**
   * Takes a request of the peer (R flag clear; never IKE_SA_INIT). In order:
   * an identical retransmission of the last request gets the cached response again; a
   * message ID other than the expected one is dropped; a message whose SK payload is missing,
   * truncated or fails its ICV is dropped; an authenticated one goes to `handle`, whose answer
   * is encrypted, cached and sent, and only then the window moves. `handle` may return
   * `undefined` to refuse the request (wrong exchange for the SA's state): nothing is sent and
   * the window stays.
   *
   * @param message - the parsed request
   * @param handle - the responder task for it
   */
  processRequest(
    message: IkeMessage,
    handle: (request: VerifiedRequest) => TaskResult,
    midSync?: (payloads: Payload[]) => MidSyncAnswer
  ): void {
    const h = message.header
    if (!this.sa.hasKeys() || this.closed !== undefined) {
      this.host.drop('unexpected')
      return
    }
    const mid = h.messageId
    if (
      mid === 0 &&
      mid !== this.expectedId &&
      h.exchange === ExchangeType.INFORMATIONAL &&
      !this.isReplayOfCached(message)
    ) {
      this.processSync(message, midSync)
      return
    }
    if (this.answering !== undefined && mid === this.answering) {
      // its answer waits for the state sink: the retransmission is answered by it
      this.host.stats.warm.requestsWhileSinking++
      return
    }
    if (mid !== this.expectedId) {
      const c = this.cached
      if (c !== undefined && mid === c.messageId && mid === this.expectedId - 1) {
        const fragment = skf(message)
        if (fragment !== undefined) this.host.stats.fragments.received++
        // of a fragmented request only the first fragment asks for the response again
        // (RFC 7383 section 2.6.1); the others are ignored
        if (fragment !== undefined && fragment.fragmentNumber !== 1) {
          this.host.stats.fragments.dropped.retransmission++
          return
        }
        if (bytesEqual(sha256(message.raw), c.requestHash)) {
          this.host.stats.responsesReplayed++
          this.sendAll(c.packets)
          return
        }
      }
      this.host.drop('invalid-message-id')
      return
    }
    if (h.exchange === ExchangeType.IKE_SA_INIT) {
      this.host.drop('unexpected')
      return
    }
    const opened = this.open(message, true)
    if (opened === undefined) return
    let verified: VerifiedRequest
    try {
      if (opened.body === undefined) throw new IkeProtocolError('INVALID_SYNTAX', 'padding')
      verified = {
        kind: 'payloads',
        exchange: h.exchange,
        payloads: parsePayloads(opened.innerType, opened.body)
      }
    } catch (err) {
      verified = {
        kind: 'syntax-error',
        exchange: h.exchange,
        error:
          err instanceof IkeProtocolError
            ? err
            : new IkeProtocolError('INVALID_SYNTAX', 'malformed request')
      }
    }
    if (
      mid === 0 &&
      h.exchange === ExchangeType.INFORMATIONAL &&
      verified.kind === 'payloads' &&
      onlySync(verified.payloads)
    ) {
      // a sync with the ID we expect (the peer never sent us a request): still a sync, which
      // moves the window only as it says
      if (midSync === undefined || this.sa.acceptsMidSync?.() !== true) {
        this.host.stats.warm.syncRequestsDropped++
        this.host.drop('unexpected')
        return
      }
      this.answerSync(verified.payloads, midSync)
      return
    }
    this.sa.touch()
    const answer = handle(verified)
    if (answer instanceof Promise) {
      this.answering = mid
      const requestHash = opened.hash ?? sha256(message.raw)
      answer.then(
        (a) => {
          this.answering = undefined
          if (this.closed !== undefined) return
          if (a === undefined) {
            this.host.drop('unexpected')
            return
          }
          this.answer(h.exchange, mid, requestHash, a)
        },
        () => {
          this.answering = undefined
          this.host.drop('unexpected')
        }
      )
      return
    }
    if (answer === undefined) {
      this.host.drop('unexpected')
      return
    }
    this.answer(h.exchange, mid, opened.hash ?? sha256(message.raw), answer)
  }

  /** Whether `message` is the peer's request 0 that our cached response answered. */
  private isReplayOfCached(message: IkeMessage): boolean {
    const c = this.cached
    return (
      c !== undefined &&
      c.messageId === 0 &&
      this.expectedId === 1 &&
      c.requestHash.length > 0 &&
      bytesEqual(sha256(message.raw), c.requestHash)
    )
  }

  /** Encrypts, caches and sends a response, moves the window, then runs its `after`. */
  private answer(exchange: number, mid: number, requestHash: Uint8Array, answer: TaskAnswer): void {
    const packets = this.sa.protect(exchange, mid, true, answer.payloads)
    this.cached = { messageId: mid, requestHash, packets }
    this.expectedId = mid + 1
    this.sendAll(packets)
    answer.after?.()
  }

  /**
   * A peer's request with message ID 0 outside the window: an RFC 6311 sync, answered only when
   * both sides announced support, its integrity holds and it holds nothing but sync notifies;
   * anything else is dropped and counted. The answer has message ID 0 and is not cached, and
   * the window becomes what the answer says.
   */
  private processSync(
    message: IkeMessage,
    midSync: ((payloads: Payload[]) => MidSyncAnswer) | undefined
  ): void {
    const warm = this.host.stats.warm
    if (
      midSync === undefined ||
      this.sa.acceptsMidSync?.() !== true ||
      skf(message) !== undefined
    ) {
      warm.syncRequestsDropped++
      this.host.drop('invalid-message-id')
      return
    }
    const opened = openSk(message, this.sa.inKeys())
    if (!opened.ok) {
      warm.syncRequestsDropped++
      this.host.drop(opened.reason)
      return
    }
    let payloads: Payload[]
    try {
      if (opened.sk.body === undefined) throw new IkeProtocolError('INVALID_SYNTAX', 'padding')
      payloads = parsePayloads(opened.sk.innerType, opened.sk.body)
    } catch {
      warm.syncRequestsDropped++
      this.host.drop('malformed')
      return
    }
    this.answerSync(payloads, midSync)
  }

  /**
   * Answers an authenticated sync (see {@link TaskManager.processSync}), or drops and counts it
   * when it holds anything but sync notifies or the answer refuses it.
   */
  private answerSync(payloads: Payload[], midSync: (payloads: Payload[]) => MidSyncAnswer): void {
    const warm = this.host.stats.warm
    const answer = onlySync(payloads) ? midSync(payloads) : undefined
    if (answer === undefined) {
      warm.syncRequestsDropped++
      this.host.drop('unexpected')
      return
    }
    this.sa.touch()
    warm.syncRequestsAnswered++
    // a request still in flight keeps its ID; the window goes on where the sync says
    this.nextId = answer.next
    this.expectedId = answer.expected
    this.cached = undefined
    this.sendAll(this.sa.protect(ExchangeType.INFORMATIONAL, 0, true, answer.payloads))
  }

  /**
   * Verifies a message's SK payload, or its SKF payload: a fragment is stored only once its own
   * ICV verified, and the message is given back only when its last fragment came. `undefined`:
   * dropped and counted, or a fragment stored (nothing to process yet).
   *
   * @param requests - whether it is a request of the peer (else a response to ours)
   */
  private open(
    message: IkeMessage,
    requests: boolean
  ): { innerType: number; body: Uint8Array | undefined; hash?: Uint8Array } | undefined {
    const fragment = skf(message)
    if (fragment !== undefined) {
      this.host.stats.fragments.received++
      if (!this.sa.acceptsFragments()) {
        this.host.stats.fragments.dropped['not-negotiated']++
        this.host.drop('unexpected')
        return undefined
      }
    }
    const opened = openSk(message, this.sa.inKeys())
    if (!opened.ok) {
      if (fragment !== undefined) this.host.stats.fragments.dropped[opened.reason]++
      this.host.drop(opened.reason)
      return undefined
    }
    if (fragment === undefined) {
      // the hash of a request is taken by the caller, when it caches the response
      return { innerType: opened.sk.innerType, body: opened.sk.body }
    }
    // authenticated from here on
    this.sa.touch()
    if (opened.sk.body === undefined) {
      this.host.stats.fragments.dropped.malformed++
      return undefined
    }
    const whole = this.reassembly(requests).add({
      messageId: message.header.messageId,
      exchange: message.header.exchange,
      number: fragment.fragmentNumber,
      total: fragment.totalFragments,
      innerType: opened.sk.innerType,
      content: opened.sk.body,
      raw: message.raw
    })
    if (whole === undefined) return undefined
    this.host.stats.fragments.reassembled++
    return { innerType: whole.innerType, body: whole.body, hash: whole.firstHash }
  }

  /** Fails the outstanding and queued requests; later requests fail at once. */
  close(reason: Error): void {
    this.closed = reason
    this.requestFragments?.reset('stale')
    this.responseFragments?.reset('stale')
    const pending = this.pending
    this.pending = undefined
    if (pending !== undefined) {
      this.clear(pending)
      pending.reject(reason)
    }
  }
}

/** The request hash of an entry that no request is compared with (see `answeredInit`). */
const NO_HASH = new Uint8Array(0)

/** Whether a message holds RFC 6311 sync notifies and nothing else. */
function onlySync(payloads: Payload[]): boolean {
  return (
    payloads.length > 0 &&
    payloads.every(
      (p) =>
        p.type === PayloadType.NOTIFY &&
        ((p as NotifyPayload).notifyType === NotifyType.IKEV2_MESSAGE_ID_SYNC ||
          (p as NotifyPayload).notifyType === NotifyType.IPSEC_REPLAY_COUNTER_SYNC)
    )
  )
}

/** Ignores how a queued request ended. */
function settled(): void {}

/** The SKF payload of a message, if it is a fragment. */
function skf(message: IkeMessage): SkfPayload | undefined {
  const last = message.payloads.at(-1)
  return last?.type === PayloadType.SKF ? (last as SkfPayload) : undefined
}
