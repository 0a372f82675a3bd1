/**
 * Warm takeover: the state of an IKE SA for the coupling store (`exportState`), the state sink
 * awaited at each key change, adoption of a dead owner's IKE SA by an heir, and the RFC 6311
 * message ID sync in both roles.
 *
 * @module
 */
import {
  CorruptRecordError,
  IkeProtocolError,
  InvalidConfigError,
  type AdoptionOutcome,
  type AdoptionRequest,
  type IkeSaRecords,
  type IkeSaState,
  type Phase2Record
} from '@vipsec/interface'
import { writeU32 } from '@vipsec/wire'
import { NotifyType, PayloadType } from './constants.js'
import type { IkeContext } from './context.js'
import { childRecord, IkeSa, type ChildSa } from './ike-sa.js'
import { notify, readU32, type NotifyPayload, type Payload } from './message.js'
import { toWireSelector } from './selectors.js'
import type { MidSyncAnswer } from './task-manager.js'
import { installChild, uninstallChild, type ChildRequest } from './tasks/child.js'
import { IDLE } from './collision.js'
import { decodeWarmState, encodeWarmState, type WarmState } from './warm-state.js'

/** Options of {@link warmStateOf}. */
export interface WarmStateOptions {
  /** Child SAs made by the exchange under way, not yet in the IKE SA. */
  fresh?: ChildSa[]
  /** Child SAs that are still in another IKE SA (the old one of an IKE rekey being answered). */
  moving?: Iterable<ChildSa>
  /**
   * The message ID expected in the peer's next request, when the response of the exchange
   * under way (as responder) has not moved the window yet.
   */
  expected?: number
}

/**
 * The state of an IKE SA with its Child SAs (records, secret, whether the peer announced RFC
 * 6311).
 *
 * @throws InvalidConfigError when warm mode is off (the Child SA keys are not kept)
 */
export function warmStateOf(
  ctx: IkeContext,
  sa: IkeSa,
  options: WarmStateOptions = {}
): IkeSaState {
  if (!ctx.init.warm.enabled) {
    throw new InvalidConfigError('warm.enabled', 'the state of an IKE SA is kept in warm mode only')
  }
  const children: ChildSa[] = []
  for (const c of options.moving ?? []) if (c.silent !== true) children.push(c)
  for (const c of sa.children.values()) if (c.silent !== true) children.push(c)
  for (const c of options.fresh ?? []) if (!children.includes(c)) children.push(c)
  const phase1 = sa.record()
  const phase2: Phase2Record[] = children.map((c) => childRecord(sa, c))
  const keys = sa.keys!
  const chosen = sa.chosen!
  const now = ctx.clock.monotonic()
  const state: WarmState = {
    phase1,
    chosen: {
      encryption: chosen.encryption,
      integrity: chosen.integrity,
      prf: chosen.prf,
      group: chosen.group,
      number: chosen.number
    },
    keys: { skD: keys.skD, skAi: keys.skAi, skAr: keys.skAr, skEi: keys.skEi, skEr: keys.skEr },
    messageIds: {
      next: sa.tasks.nextRequestId,
      expected: options.expected ?? sa.tasks.expectedRequestId
    },
    natT: sa.natT,
    fragmentation: { ...sa.fragmentation },
    midSync: { ...sa.midSync },
    recordedAt: ctx.clock.now(),
    children: children.map((c, i) => ({
      record: phase2[i]!,
      chosen: {
        encryption: c.chosen.encryption,
        integrity: c.chosen.integrity,
        group: c.chosen.group,
        esn: c.chosen.esn,
        number: c.chosen.number
      },
      initiator: c.initiator,
      keys: c.keys,
      nonces: [c.nonces[0] ?? new Uint8Array(0), c.nonces[1] ?? new Uint8Array(0)]
    }))
  }
  if (sa.reauthAt !== undefined) {
    state.reauthAt = Math.max(0, Math.round(ctx.clock.now() + (sa.reauthAt - now)))
  }
  return {
    records: { phase1, phase2 },
    secret: encodeWarmState(state),
    midSync: sa.midSync.peer
  }
}

/**
 * Awaits the state sink with the IKE SA's new state (a key change), and gives the new Child SAs
 * the outbound sequence limits it answers. A sink that rejects, or answers something that is
 * not a limit, is counted (`warm.sinkFailures`); the exchange goes on without limits.
 */
export async function recordKeys(
  ctx: IkeContext,
  sa: IkeSa,
  options: WarmStateOptions = {}
): Promise<void> {
  const sink = ctx.stateSink
  if (sink === undefined) return
  let answer: Awaited<ReturnType<typeof sink>>
  try {
    answer = await sink(warmStateOf(ctx, sa, options))
  } catch {
    ctx.stats.warm.sinkFailures++
    return
  }
  const limits = answer?.sequenceLimits
  if (limits === undefined || limits === null) return
  for (const c of options.fresh ?? []) {
    const limit = (limits as Record<string, unknown>)[c.id]
    if (limit === undefined) continue
    if (typeof limit !== 'bigint' || limit < 0n || limit >= 1n << 64n) {
      ctx.stats.warm.sinkFailures++
      continue
    }
    c.sequences = { ...c.sequences, limit }
  }
}

/** What adoption needs of the service beyond the task context. */
export interface AdoptionHost {
  /** The task context. */
  ctx: IkeContext
  /** Whether an IKE SA of this local SPI (its table key) exists. */
  hasIke(key: string): boolean
  /** Claims an ESP SPI for an adopted Child SA; false when it is in use. */
  claimEspSpi(spi: number): boolean
  /** The Child SAs local policy accepts from the peer of an adopted responder SA. */
  childConfigs(sa: IkeSa): ChildRequest[]
  /** Where each synchronised IKE SA goes to be rekeyed later. */
  rekeys: AdoptedRekeys
}

/**
 * The IKE rekey that follows each adoption (`warm.rekeyAfterAdoptMs`): after a random delay
 * within the window, which starts once no adoption is under way (so that the rekeys of a
 * takeover's first adopted IKE SAs do not slow the adoption of the rest), at most
 * `warm.adoptConcurrency` at once, never awaited by `adopt`. The
 * new IKE SA goes through the state sink like any IKE rekey. One that fails is counted and the
 * IKE SA goes on with the adopted keys.
 */
export class AdoptedRekeys {
  private running = 0
  private readonly queue: IkeSa[] = []
  private head = 0
  /** Adoptions under way (`adopt` calls, which may overlap). */
  private adopting = 0
  /** IKE SAs adopted while others still were: their windows start when none is under way. */
  private held: IkeSa[] = []
  private releasing = false

  /**
   * @param ctx - the service as the tasks see it
   * @param rekey - rekeys an IKE SA (and deletes the old one), as `rekeyIkeSa` does
   */
  constructor(
    private readonly ctx: IkeContext,
    private readonly rekey: (sa: IkeSa) => Promise<unknown>
  ) {}

  /**
   * An adoption starts: until every adoption under way ended, the rekeys wait, so that they do
   * not take the CPU from the adoptions (a takeover adopts thousands of IKE SAs in a row).
   */
  begin(): void {
    this.adopting++
  }

  /**
   * An adoption ended. When none is under way (still so once the current callbacks have run: a
   * caller adopting one IKE SA per call starts the next right after), the held windows start.
   */
  end(): void {
    if (--this.adopting > 0 || this.held.length === 0 || this.releasing) return
    this.releasing = true
    this.ctx.clock.setTimeout(() => {
      this.releasing = false
      if (this.adopting > 0) return
      const held = this.held
      this.held = []
      for (const sa of held) this.arm(sa)
    }, 0)
  }

  /** Schedules the rekey of an IKE SA just adopted; nothing when the window is 0. */
  schedule(sa: IkeSa): void {
    const window = this.ctx.init.warm.rekeyAfterAdoptMs
    if (!(window > 0)) return
    if (this.adopting > 0) this.held.push(sa)
    else this.arm(sa)
  }

  /** Starts the random delay of one IKE SA's rekey. */
  private arm(sa: IkeSa): void {
    // deleted while held: nothing to rekey
    if (sa.state !== 'established') return void this.ctx.stats.warm.rekeysAfterAdoptSkipped++
    const window = this.ctx.init.warm.rekeyAfterAdoptMs
    // on the SA's timers: they are cleared when it is deleted
    const handle = this.ctx.clock.setTimeout(
      () => {
        const i = sa.timers.indexOf(handle)
        if (i >= 0) sa.timers.splice(i, 1)
        this.queue.push(sa)
        this.pump()
      },
      this.ctx.random.randomInt(window + 1)
    )
    sa.timers.push(handle)
  }

  /** Rekeys queued IKE SAs while fewer than `adoptConcurrency` are under way. */
  private pump(): void {
    const warm = this.ctx.stats.warm
    while (this.running < this.ctx.init.warm.adoptConcurrency && this.head < this.queue.length) {
      const sa = this.queue[this.head++]!
      if (this.head === this.queue.length) {
        this.queue.length = 0
        this.head = 0
      }
      if (sa.state !== 'established' || sa.rekey.state !== 'idle') {
        warm.rekeysAfterAdoptSkipped++
        continue
      }
      this.running++
      this.rekey(sa)
        .then(
          () => void warm.rekeysAfterAdopt++,
          () => void warm.rekeysAfterAdoptFailed++
        )
        .finally(() => {
          this.running--
          this.pump()
        })
    }
  }
}

/** Why an adoption failed, carried to its outcome. */
class AdoptionFailure extends Error {
  constructor(
    readonly reason: Extract<AdoptionOutcome, { status: 'failed' }>['reason'],
    message: string
  ) {
    super(message)
  }
}

const EMPTY_RECORDS: IkeSaRecords = {
  phase1: undefined as unknown as IkeSaRecords['phase1'],
  phase2: []
}

/** How many IKE SAs are installed between two turns of the event loop (see {@link adoptAll}). */
export const INSTALL_BATCH = 64

/** An IKE SA built and installed, its message IDs not yet synchronised. */
interface Installed {
  sa: IkeSa
  state: WarmState
  previous: IkeSaRecords
  failedChildren: Phase2Record[]
}

/** Lets the event loop run (I/O included): packets on the SAs installed so far get through. */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/**
 * Adopts IKE SAs in two passes. First every request is built and its Child SAs installed in the
 * ESP engine, `INSTALL_BATCH` at a time with a turn of the event loop between batches: from its
 * install on a Child SA carries traffic (its outbound numbers are the caller's reservation), and
 * no install waits for a round trip. Then the message IDs are synchronised with each peer (RFC
 * 6311), at most `warm.adoptConcurrency` at once; that only matters for the next IKE exchange.
 * An IKE SA whose sync fails is removed again (Child SAs, filters, IKE SA) and its outcome says
 * `installed`. When `signal` aborts, the syncs under way fail with `TIMEOUT` and those not
 * started fail too, each removed. Each request gets its outcome, in order. Never rejects.
 */
export async function adoptAll(
  host: AdoptionHost,
  requests: AdoptionRequest[],
  signal?: AbortSignal
): Promise<AdoptionOutcome[]> {
  const out: AdoptionOutcome[] = new Array(requests.length)
  const installed: { i: number; adoption: Installed }[] = []
  host.rekeys.begin()
  try {
    for (let i = 0; i < requests.length; i++) {
      if (i > 0 && i % INSTALL_BATCH === 0) await turn()
      const request = requests[i]!
      if (signal?.aborted === true) {
        out[i] = aborted(host.ctx, recordsOf(request), false)
        continue
      }
      const made = installOne(host, request)
      if ('status' in made) out[i] = made
      else installed.push({ i, adoption: made })
    }
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < installed.length) {
        const { i, adoption } = installed[next++]!
        out[i] = await syncOne(host, adoption, signal)
      }
    }
    const n = Math.min(host.ctx.init.warm.adoptConcurrency, installed.length)
    await Promise.all(Array.from({ length: n }, worker))
  } finally {
    host.rekeys.end()
  }
  return out
}

/**
 * Builds the IKE SA of a request and installs its Child SAs; a failed outcome (nothing left
 * installed) when the request cannot be adopted.
 */
function installOne(
  host: AdoptionHost,
  request: AdoptionRequest
): Installed | Extract<AdoptionOutcome, { status: 'failed' }> {
  const ctx = host.ctx
  const previous = recordsOf(request)
  let sa: IkeSa | undefined
  try {
    const state = decode(ctx, request)
    if (!ctx.init.warm.enabled) throw new AdoptionFailure('UNSUPPORTED', 'warm mode is off here')
    if (request.state.midSync !== true || !state.midSync.peer) {
      throw new AdoptionFailure('UNSUPPORTED', 'the peer did not announce RFC 6311')
    }
    if (!state.midSync.announced) {
      throw new AdoptionFailure('UNSUPPORTED', 'the owner did not announce RFC 6311')
    }
    sa = build(host, state).sa
    const failedChildren = install(host, sa, state, request)
    return { sa, state, previous, failedChildren }
  } catch (err) {
    if (sa !== undefined) discard(ctx, sa, err as Error)
    return failure(ctx, previous, err, false)
  }
}

/** Synchronises the message IDs of an installed IKE SA; removes it when that fails. */
async function syncOne(
  host: AdoptionHost,
  adoption: Installed,
  signal?: AbortSignal
): Promise<AdoptionOutcome> {
  const ctx = host.ctx
  const { sa, state, previous, failedChildren } = adoption
  const abort = (): void =>
    sa.tasks.close(new IkeProtocolError('TIMEOUT', 'the adoption was aborted before the sync'))
  try {
    if (signal?.aborted === true) abort()
    else signal?.addEventListener('abort', abort, { once: true })
    await synchronise(ctx, sa, state)
    ctx.armTimers(sa)
    host.rekeys.schedule(sa)
    ctx.stats.warm.synced++
    return {
      status: 'synced',
      records: {
        phase1: sa.record(),
        phase2: [...sa.children.values()].map((c) => childRecord(sa, c))
      },
      messageIds: { initiating: sa.tasks.nextRequestId, responding: sa.tasks.expectedRequestId },
      failedChildren
    }
  } catch (err) {
    discard(ctx, sa, err as Error)
    return failure(ctx, previous, err, true)
  } finally {
    signal?.removeEventListener('abort', abort)
  }
}

/** The failed outcome of an error (counted). */
function failure(
  ctx: IkeContext,
  previous: IkeSaRecords,
  err: unknown,
  installed: boolean
): Extract<AdoptionOutcome, { status: 'failed' }> {
  ctx.stats.warm.adoptionsFailed++
  const flag = installed ? { installed } : {}
  if (err instanceof AdoptionFailure) {
    return { status: 'failed', previous, reason: err.reason, message: err.message, ...flag }
  }
  if (err instanceof IkeProtocolError) {
    return { status: 'failed', previous, reason: err.kind, message: err.message, ...flag }
  }
  return {
    status: 'failed',
    previous,
    reason: 'TEMPORARY_FAILURE',
    message: (err as Error)?.message ?? String(err),
    ...flag
  }
}

/** The outcome of a request the abort came before. */
function aborted(
  ctx: IkeContext,
  previous: IkeSaRecords,
  installed: boolean
): Extract<AdoptionOutcome, { status: 'failed' }> {
  return failure(
    ctx,
    previous,
    new IkeProtocolError('TIMEOUT', 'the adoption was aborted'),
    installed
  )
}

/** The records of a request, as far as they can be read (for a failed outcome). */
function recordsOf(request: AdoptionRequest): IkeSaRecords {
  const r = (request as { state?: { records?: IkeSaRecords } } | undefined)?.state?.records
  return r !== undefined && typeof r === 'object' ? r : EMPTY_RECORDS
}

function decode(ctx: IkeContext, request: AdoptionRequest): WarmState {
  try {
    if (typeof request !== 'object' || request === null || typeof request.state !== 'object') {
      throw new CorruptRecordError('state', 'expected an IkeSaState')
    }
    if (typeof request.sequences !== 'object' || request.sequences === null) {
      throw new CorruptRecordError('sequences', 'expected an object')
    }
    const state = decodeWarmState(request.state.secret, request.state.records)
    const records = request.state.records
    if (records?.phase1?.id !== state.phase1.id) {
      throw new CorruptRecordError('records.phase1.id', 'does not match the secret')
    }
    return state
  } catch (err) {
    ctx.stats.warm.invalidStates++
    throw new AdoptionFailure('INVALID_STATE', (err as Error).message)
  }
}

/**
 * What an heir adds to the recorded ID of the owner's next request: `midSyncMargin`, and one
 * per liveness interval since the state was recorded (the checks the owner may have sent
 * before it died, which change no keys and so reach no record).
 */
export function syncMargin(ctx: IkeContext, state: WarmState): number {
  const interval = state.phase1.policy.liveness?.intervalMs ?? 0
  const elapsed = Math.max(0, ctx.clock.now() - state.recordedAt)
  const checks = interval > 0 ? Math.min(0x1000_0000, Math.ceil(elapsed / interval)) : 0
  return ctx.init.warm.midSyncMargin + checks
}

/** Makes the IKE SA of a state (registered, not yet synchronised). */
function build(host: AdoptionHost, state: WarmState): { sa: IkeSa } {
  const ctx = host.ctx
  const p1 = state.phase1
  if (p1.local.address !== ctx.localAddress) {
    throw new AdoptionFailure(
      'INVALID_STATE',
      `the state is for ${p1.local.address}, this service is on ${ctx.localAddress}`
    )
  }
  const initiator = p1.role === 'initiator'
  const spiI = fromHex(p1.ikeSaId.initiatorSpi)
  const spiR = fromHex(p1.ikeSaId.responderSpi)
  const sa = new IkeSa(ctx, {
    initiator,
    localSpi: initiator ? spiI : spiR,
    local: { ...p1.local },
    remote: { ...p1.peer },
    policy: p1.policy,
    localIdentity: p1.localIdentity,
    remoteIdentity: p1.remoteIdentity
  })
  if (host.hasIke(sa.key)) {
    throw new AdoptionFailure('INVALID_STATE', `IKE SA ${p1.id} is already here`)
  }
  sa.spiI = spiI
  sa.spiR = spiR
  sa.chosen = { ...state.chosen, spi: new Uint8Array(0) }
  const empty = new Uint8Array(0)
  sa.keys = { skeyseed: empty, skPi: empty, skPr: empty, ...state.keys }
  sa.nat = { ...p1.nat }
  sa.natT = state.natT
  sa.fragmentation = { ...state.fragmentation }
  sa.midSync = { ...state.midSync }
  sa.establishedAt = p1.establishedAt
  sa.lastReceived = ctx.clock.monotonic()
  if (state.reauthAt !== undefined) {
    sa.reauthAt = ctx.clock.monotonic() + Math.max(0, state.reauthAt - ctx.clock.now())
  }
  // the maker used IVs from 1 up with high bits 0: an heir cannot know how far it got
  sa.ivHigh = 1 + ctx.random.randomInt(0xffff_fffe)
  sa.tasks.setMessageIds(state.messageIds.next + syncMargin(ctx, state), state.messageIds.expected)
  sa.state = 'established'
  sa.childConfigs = initiator
    ? state.children.map((c) => ({
        policy: c.record.policy,
        mode: c.record.mode,
        local: c.record.selectors.local.map(toWireSelector),
        remote: c.record.selectors.remote.map(toWireSelector)
      }))
    : host.childConfigs(sa)
  ctx.register(sa)
  return { sa }
}

/** Installs the Child SAs that have sequence numbers; lists the others. */
function install(
  host: AdoptionHost,
  sa: IkeSa,
  state: WarmState,
  request: AdoptionRequest
): Phase2Record[] {
  const ctx = host.ctx
  const failed: Phase2Record[] = []
  for (const c of state.children) {
    const seq = Object.prototype.hasOwnProperty.call(request.sequences, c.record.id)
      ? request.sequences[c.record.id]
      : undefined
    if (seq === undefined) {
      failed.push(c.record)
      continue
    }
    if (
      typeof seq !== 'object' ||
      seq === null ||
      typeof seq.outbound !== 'bigint' ||
      typeof seq.inbound !== 'bigint' ||
      (seq.limit !== undefined && typeof seq.limit !== 'bigint')
    ) {
      ctx.stats.warm.invalidStates++
      throw new AdoptionFailure('INVALID_STATE', `sequences of ${c.record.id} are not bigints`)
    }
    const inboundSpi = parseInt(c.record.inboundSpi, 16)
    const outboundSpi = parseInt(c.record.outboundSpi, 16)
    if (!host.claimEspSpi(inboundSpi)) {
      throw new AdoptionFailure('INVALID_STATE', `ESP SPI ${c.record.inboundSpi} is in use here`)
    }
    const child: ChildSa = {
      id: c.record.id,
      inboundSpi,
      outboundSpi,
      chosen: { ...c.chosen, spi: new Uint8Array(0) },
      policy: c.record.policy,
      mode: c.record.mode,
      local: c.record.selectors.local.map(toWireSelector),
      remote: c.record.selectors.remote.map(toWireSelector),
      encapsulated: c.record.encapsulation === 'udp',
      keys: c.keys,
      initiator: c.initiator,
      nonces: [c.nonces[0], c.nonces[1]],
      establishedAt: c.record.establishedAt,
      filters: [],
      rekey: IDLE,
      sequences: {
        outbound: seq.outbound,
        inbound: seq.inbound,
        ...(seq.limit === undefined ? {} : { limit: seq.limit })
      }
    }
    try {
      installChild(ctx, sa, child)
    } catch (err) {
      ctx.releaseEspSpi(inboundSpi)
      throw new AdoptionFailure(
        'INVALID_STATE',
        `installing ${c.record.id}: ${(err as Error).message}`
      )
    }
    sa.children.set(child.id, child)
  }
  return failed
}

/**
 * RFC 6311 section 5.1 as the cluster member: an INFORMATIONAL with message ID 0 holding one
 * IKEV2_MESSAGE_ID_SYNC (a 4-byte nonce, the ID of our next request with a margin, the ID we
 * expect of the peer's); only an authenticated answer with message ID 0 that echoes the nonce
 * is taken, and both counters go on from it.
 */
async function synchronise(ctx: IkeContext, sa: IkeSa, state: WarmState): Promise<void> {
  const nonce = ctx.random.randomBytes(4)
  const m1 = state.messageIds.next + syncMargin(ctx, state)
  const p1 = state.messageIds.expected
  const data = new Uint8Array(12)
  data.set(nonce, 0)
  writeU32(data, 4, m1)
  writeU32(data, 8, p1)
  let values: { send: number; recv: number } | undefined
  const check = (payloads: Payload[]): boolean => {
    const n = syncNotify(payloads)
    if (n === undefined || n.data.length !== 12) return false
    for (let i = 0; i < 4; i++) if (n.data[i] !== nonce[i]) return false
    values = { send: readU32(n.data, 4), recv: readU32(n.data, 8) }
    return true
  }
  await sa.tasks.requestSync([notify(NotifyType.IKEV2_MESSAGE_ID_SYNC, data)], check)
  const v = values!
  // the peer's EXPECTED_SEND is its next request (ours to expect), its EXPECTED_RECV our next
  sa.tasks.setMessageIds(Math.max(v.recv, m1), Math.max(v.send, p1))
}

/** The single IKEV2_MESSAGE_ID_SYNC notify of a message, if it has one. */
function syncNotify(payloads: Payload[]): NotifyPayload | undefined {
  let found: NotifyPayload | undefined
  for (const p of payloads) {
    if (p.type !== PayloadType.NOTIFY) return undefined
    const n = p as NotifyPayload
    if (n.notifyType === NotifyType.IKEV2_MESSAGE_ID_SYNC) {
      if (found !== undefined) return undefined
      found = n
    } else if (n.notifyType !== NotifyType.IPSEC_REPLAY_COUNTER_SYNC) return undefined
  }
  return found
}

/**
 * RFC 6311 section 5.1 as the peer: answers a cluster's IKEV2_MESSAGE_ID_SYNC (already
 * authenticated, and only when both sides announced support) with the echoed nonce, our next
 * request's ID (at least theirs, P1) and the ID we expect of theirs (at least M1). A sync whose
 * M1 is below what we expect is dropped.
 */
export function answerMidSync(sa: IkeSa, payloads: Payload[]): MidSyncAnswer {
  const n = syncNotify(payloads)
  if (n === undefined || n.data.length !== 12) return undefined
  const m1 = readU32(n.data, 4)
  const p1 = readU32(n.data, 8)
  if (m1 > 0x7fff_ffff || p1 > 0x7fff_ffff) return undefined
  const expected = sa.tasks.expectedRequestId
  if (m1 < expected) return undefined
  const m2 = Math.max(m1, expected)
  const p2 = Math.max(p1, sa.tasks.nextRequestId)
  const data = new Uint8Array(12)
  data.set(n.data.subarray(0, 4), 0)
  writeU32(data, 4, p2)
  writeU32(data, 8, m2)
  return { payloads: [notify(NotifyType.IKEV2_MESSAGE_ID_SYNC, data)], next: p2, expected: m2 }
}

/** The bytes of a hex string (already validated). */
function fromHex(hex: string): Uint8Array {
  return new Uint8Array(Buffer.from(hex, 'hex'))
}

/** Removes everything installed for an adopted SA that failed (no messages, no events). */
function discard(ctx: IkeContext, sa: IkeSa, reason: Error): void {
  for (const c of sa.children.values()) uninstallChild(ctx, c)
  sa.children.clear()
  ctx.unregister(sa)
  sa.close(reason)
}
