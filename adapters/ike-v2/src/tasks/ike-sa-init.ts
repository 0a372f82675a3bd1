/**
 * IKE_SA_INIT (RFC 7296 section 1.2): proposals, key exchange, nonces, NAT detection (2.23),
 * COOKIE (2.6) and INVALID_KE_PAYLOAD (1.3) retries — initiator and responder.
 *
 * @module
 */
import {
  IkeProtocolError,
  type Endpoint,
  type IkeProposal,
  type KeyExchangeGroup,
  type Phase1Policy
} from '@vipsec/interface'
import { ExchangeType, HeaderFlag, NotifyType, PayloadType } from '../constants.js'
import { deriveIkeKeys, GROUP_NUMBER, groupByNumber, natHash, publicBytesEqual } from '../crypto.js'
import { freshKeyExchange } from '../key-pool.js'
import type { IkeContext } from '../context.js'
import { IkeSa } from '../ike-sa.js'
import {
  encodeMessage,
  findNotify,
  findPayload,
  notify,
  readU16,
  u16Bytes,
  type IkeMessage,
  type KePayload,
  type NoncePayload,
  type NotifyPayload,
  type Payload,
  type SaPayload
} from '../message.js'
import {
  acceptIkeAnswer,
  chooseIke,
  ikeChoiceProposal,
  ikeProposals,
  offeredGroups
} from '../proposals.js'
import { editsOf } from '../config-lists.js'
import { readIpBytes } from '../selectors.js'
import type { HalfOpenTable } from '../half-open.js'
import { errorNotify } from './child.js'
import { certificateRequest, SIGNATURE_HASHES, signatureHashes } from '../signature.js'

/** At most this many IKE_SA_INIT retries (COOKIE, INVALID_KE_PAYLOAD) before giving up. */
const MAX_INIT_RETRIES = 4

/** SPIr of an IKE_SA_INIT request: eight zero bytes (shared: only ever read). */
const ZERO_SPI = new Uint8Array(8)

/** The empty SPI of an IKE_SA_INIT proposal (shared: nothing writes into an empty array). */
const NO_SPI = new Uint8Array(0)

/** Appends the two NAT detection notifies (RFC 7296 section 2.23) to `out`. */
function pushNatNotifies(
  out: Payload[],
  spiI: Uint8Array,
  spiR: Uint8Array,
  source: Endpoint,
  destination: Endpoint,
  fakeSource: Uint8Array | undefined
): void {
  out.push(
    notify(
      NotifyType.NAT_DETECTION_SOURCE_IP,
      fakeSource ?? natHash(spiI, spiR, readIpBytes(source.address), source.port)
    ),
    notify(
      NotifyType.NAT_DETECTION_DESTINATION_IP,
      natHash(spiI, spiR, readIpBytes(destination.address), destination.port)
    )
  )
}

function natState(
  payloads: Payload[],
  spiI: Uint8Array,
  spiR: Uint8Array,
  peer: Endpoint,
  local: Endpoint
): { supported: boolean; localBehindNat: boolean; remoteBehindNat: boolean } {
  const sources = payloads.filter(
    (p) =>
      p.type === PayloadType.NOTIFY &&
      (p as NotifyPayload).notifyType === NotifyType.NAT_DETECTION_SOURCE_IP
  ) as NotifyPayload[]
  const dest = findNotify(payloads, NotifyType.NAT_DETECTION_DESTINATION_IP)
  if (sources.length === 0 || dest === undefined) {
    return { supported: false, localBehindNat: false, remoteBehindNat: false }
  }
  const peerHash = natHash(spiI, spiR, readIpBytes(peer.address), peer.port)
  const localHash = natHash(spiI, spiR, readIpBytes(local.address), local.port)
  return {
    supported: true,
    remoteBehindNat: !sources.some((s) => publicBytesEqual(s.data, peerHash)),
    localBehindNat: !publicBytesEqual(dest.data, localHash)
  }
}

/**
 * Runs IKE_SA_INIT as initiator, with COOKIE and INVALID_KE_PAYLOAD retries, and derives the
 * IKE SA's keys. Switches to port 4500 when a NAT is found or encapsulation is forced.
 *
 * @throws IkeProtocolError with the peer's error notify, TIMEOUT, or NO_PROPOSAL_CHOSEN /
 *   INVALID_SYNTAX when the answer is unacceptable
 */
export async function initiateIkeSaInit(
  ctx: IkeContext,
  sa: IkeSa,
  forceEncapsulation: boolean
): Promise<void> {
  const groups = offeredGroups(sa.policy.proposals)
  let group: Exclude<KeyExchangeGroup, 'none'> | undefined = groups[0]
  if (group === undefined) throw new IkeProtocolError('NO_PROPOSAL_CHOSEN', 'no KE group in policy')
  let cookie: Uint8Array | undefined
  const cert = sa.policy.authMethod !== 'psk'
  const fake = forceEncapsulation ? ctx.random.randomBytes(20) : undefined
  // a retry after COOKIE must repeat every other payload unchanged (RFC 7296 section 2.6)
  sa.ni = ctx.random.randomBytes(ctx.init.nonceLength)
  let ke = freshKeyExchange(ctx, group)
  for (let attempt = 0; attempt <= MAX_INIT_RETRIES; attempt++) {
    if (ke.group !== group) ke = freshKeyExchange(ctx, group)
    sa.tasks.restartInit()
    const { message, payloads, request } = await sa.tasks.request(
      ExchangeType.IKE_SA_INIT,
      () => {
        const out: Payload[] = []
        if (cookie !== undefined) out.push(notify(NotifyType.COOKIE, cookie))
        out.push(
          { type: PayloadType.SA, proposals: ikeProposals(sa.policy.proposals) } as SaPayload,
          {
            type: PayloadType.KE,
            group: GROUP_NUMBER[ke.group],
            data: ke.publicValue
          } as KePayload,
          { type: PayloadType.NONCE, data: sa.ni } as NoncePayload
        )
        pushNatNotifies(out, sa.spiI, ZERO_SPI, sa.local, sa.remote, fake)
        if (sa.fragmentation.announced) out.push(notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
        if (cert) out.push(notify(NotifyType.SIGNATURE_HASH_ALGORITHMS, SIGNATURE_HASHES))
        return out
      },
      false,
      // an error notify in the response is unprotected and may be forged by anyone on the path:
      // the real answer, if it comes soon, wins (RFC 7296 section 2.21.1)
      (p) =>
        findPayload(p, PayloadType.SA) === undefined &&
        findNotify(p, NotifyType.COOKIE) === undefined &&
        findNotify(p, NotifyType.INVALID_KE_PAYLOAD) === undefined
          ? 'hold'
          : 'accept'
    )
    const c = findNotify(payloads, NotifyType.COOKIE)
    if (c !== undefined) {
      cookie = c.data
      continue
    }
    const invalidKe = findNotify(payloads, NotifyType.INVALID_KE_PAYLOAD)
    if (invalidKe !== undefined) {
      const wanted =
        invalidKe.data.length >= 2 ? groupByNumber(readU16(invalidKe.data, 0)) : undefined
      if (wanted === undefined || wanted === group || !groups.includes(wanted)) {
        throw new IkeProtocolError('INVALID_KE_PAYLOAD', 'peer wants a group we did not offer')
      }
      group = wanted
      continue
    }
    const err = errorNotify(payloads)
    if (err !== undefined) throw err
    const saP = findPayload<SaPayload>(payloads, PayloadType.SA)
    const keP = findPayload<KePayload>(payloads, PayloadType.KE)
    const nonce = findPayload<NoncePayload>(payloads, PayloadType.NONCE)
    if (saP === undefined || keP === undefined || nonce === undefined) {
      throw new IkeProtocolError('INVALID_SYNTAX', 'IKE_SA_INIT response lacks SA, KE or Nonce')
    }
    sa.peerSignatureHashes = signatureHashes(payloads)
    sa.fragmentation.peer =
      sa.fragmentation.announced &&
      findNotify(payloads, NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) !== undefined
    if (saP.proposals.length !== 1) {
      throw new IkeProtocolError('INVALID_SYNTAX', 'responder chose more than one proposal')
    }
    const chosen = acceptIkeAnswer(saP.proposals, sa.policy.proposals)
    if (chosen === undefined || chosen.group !== group || keP.group !== GROUP_NUMBER[group]) {
      throw new IkeProtocolError('NO_PROPOSAL_CHOSEN', 'responder chose what we did not offer')
    }
    const spiR = message.header.spiR
    if (spiR.every((b) => b === 0)) throw new IkeProtocolError('INVALID_SYNTAX', 'zero SPIr')
    sa.spiR = spiR.slice()
    // the SPI of an IKE_SA_INIT proposal is empty, but a view of the message: not kept
    sa.chosen = { ...chosen, spi: NO_SPI }
    // a copy: the SA keeps the nonce, not the whole response it came in
    sa.nr = nonce.data.slice()
    sa.ourInit = request
    sa.peerInit = message.raw
    sa.keys = deriveIkeKeys({
      prf: chosen.prf,
      encryption: chosen.encryption,
      integrity: chosen.integrity,
      ni: sa.ni,
      nr: sa.nr,
      spiI: sa.spiI,
      spiR: sa.spiR,
      sharedSecret: ke.computeSharedSecret(keP.data)
    })
    const nat = natState(payloads, sa.spiI, sa.spiR, sa.remote, sa.local)
    sa.nat = {
      localBehindNat: nat.localBehindNat,
      remoteBehindNat: nat.remoteBehindNat,
      encapsulated:
        nat.supported && (forceEncapsulation || nat.localBehindNat || nat.remoteBehindNat)
    }
    if (sa.nat.encapsulated && !sa.natT) {
      sa.natT = true
      sa.local = { address: sa.local.address, port: 4500 }
      sa.remote = { address: sa.remote.address, port: 4500 }
    }
    sa.state = 'auth'
    return
  }
  throw new IkeProtocolError('TEMPORARY_FAILURE', 'too many IKE_SA_INIT retries')
}

/**
 * Answers an IKE_SA_INIT request. In order: a retransmission gets the cached response; a
 * request without SA, KE or Nonce gets INVALID_SYNTAX; under load (more half-open SAs than
 * `cookieThreshold`), or when the source address holds `halfOpenLimitPerPeer` of them, a request
 * without a valid COOKIE gets one and nothing else — no key exchange, no state; beyond
 * `halfOpenLimit` half-open SAs the request is dropped; then proposal and KE group are checked
 * and a half-open SA is made. Error notifies come out of the table's budget.
 *
 * @param local - the endpoint the request arrived on
 * @param natT - whether it arrived on port 4500
 */
export function respondIkeSaInit(
  ctx: IkeContext,
  state: HalfOpenTable,
  message: IkeMessage,
  from: Endpoint,
  local: Endpoint,
  natT: boolean
): void {
  const h = message.header
  if (h.messageId !== 0 || (h.flags & HeaderFlag.INITIATOR) === 0 || h.spiR.some((b) => b !== 0)) {
    ctx.drop('unexpected')
    return
  }
  const existing = state.get(h.spiI, from)
  if (existing !== undefined) {
    const cached = existing.tasks.lastResponse
    if (cached !== undefined && publicBytesEqual(existing.peerInit, message.raw)) {
      ctx.stats.responsesReplayed++
      for (const p of cached.packets) ctx.send(existing, p)
    } else {
      ctx.drop('unexpected')
    }
    return
  }
  const payloads = message.payloads
  const saP = findPayload<SaPayload>(payloads, PayloadType.SA)
  const keP = findPayload<KePayload>(payloads, PayloadType.KE)
  const nonce = findPayload<NoncePayload>(payloads, PayloadType.NONCE)
  if (saP === undefined || keP === undefined || nonce === undefined) {
    ctx.drop('malformed')
    refuse(ctx, state, h.spiI, from, natT, notify(NotifyType.INVALID_SYNTAX))
    return
  }
  const underLoad = state.size >= ctx.init.cookieThreshold
  const busyAddress = state.countFor(from.address) >= ctx.init.halfOpenLimitPerPeer
  if (underLoad || busyAddress) {
    const got =
      payloads[0]?.type === PayloadType.NOTIFY ? (payloads[0] as NotifyPayload) : undefined
    if (
      got?.notifyType !== NotifyType.COOKIE ||
      !state.validCookie(got.data, nonce.data, from, h.spiI)
    ) {
      ctx.stats.cookiesSent++
      const cookie = state.cookieFor(nonce.data, from, h.spiI)
      ctx.sendTo(stateless(h.spiI, notify(NotifyType.COOKIE, cookie)), from, natT)
      return
    }
  }
  if (state.size >= ctx.init.halfOpenLimit) {
    ctx.drop('half-open-limit')
    return
  }
  const { policies, allProposals } = peerSummary(ctx.init.peers)
  const keGroup = groupByNumber(keP.group)
  // prefer a proposal that fits the initiator's KE group; otherwise ask for another group
  // (the proposals as they are when every KE transform in them is that group: the usual case)
  const fitting = saP.proposals.every((p) =>
    p.transforms.every((t) => t.type !== 4 || t.id === keP.group)
  )
    ? saP.proposals
    : saP.proposals.map((p) => ({
        ...p,
        transforms: p.transforms.filter((t) => t.type !== 4 || t.id === keP.group)
      }))
  let chosen = keGroup === undefined ? undefined : chooseIke(fitting, allProposals)
  if (chosen === undefined) {
    const other = chooseIke(saP.proposals, allProposals)
    if (other !== undefined) {
      refuse(
        ctx,
        state,
        h.spiI,
        from,
        natT,
        notify(NotifyType.INVALID_KE_PAYLOAD, u16Bytes(GROUP_NUMBER[other.group]))
      )
      return
    }
    refuse(ctx, state, h.spiI, from, natT, notify(NotifyType.NO_PROPOSAL_CHOSEN))
    ctx.emit({
      type: 'ike:failed',
      peer: from,
      reason: 'NO_PROPOSAL_CHOSEN',
      message: 'IKE_SA_INIT'
    })
    return
  }
  // the first peer's policy that allows the choice (with one peer: that peer's, whatever it is)
  const policy =
    (policies.length === 1
      ? undefined
      : policies.find((p) => chooseIke([ikeChoiceProposal(chosen!)], p.proposals) !== undefined)) ??
    policies[0]
  const sa = new IkeSa(ctx, {
    initiator: false,
    localSpi: ctx.newIkeSpi(),
    local,
    remote: from,
    policy
  })
  sa.spiI = h.spiI.slice()
  sa.natT = natT
  const ke = freshKeyExchange(ctx, chosen.group)
  let shared: Uint8Array
  try {
    shared = ke.computeSharedSecret(keP.data)
  } catch {
    ctx.drop('malformed')
    refuse(ctx, state, h.spiI, from, natT, notify(NotifyType.INVALID_SYNTAX))
    return
  }
  // the SPI of an IKE_SA_INIT proposal is empty, but a view of the message: not kept
  chosen = { ...chosen, spi: NO_SPI }
  sa.chosen = chosen
  // a copy: the SA keeps the nonce, not the whole request it came in
  sa.ni = nonce.data.slice()
  sa.nr = ctx.random.randomBytes(ctx.init.nonceLength)
  sa.peerInit = message.raw
  sa.keys = deriveIkeKeys({
    prf: chosen.prf,
    encryption: chosen.encryption,
    integrity: chosen.integrity,
    ni: sa.ni,
    nr: sa.nr,
    spiI: sa.spiI,
    spiR: sa.spiR,
    sharedSecret: shared
  })
  const nat = natState(payloads, sa.spiI, ZERO_SPI, from, local)
  sa.nat = {
    localBehindNat: nat.localBehindNat,
    remoteBehindNat: nat.remoteBehindNat,
    encapsulated: nat.supported && (natT || nat.localBehindNat || nat.remoteBehindNat)
  }
  sa.peerSignatureHashes = signatureHashes(payloads)
  const cert = sa.peerSignatureHashes !== undefined
  // RFC 7383 section 2.3: answered in kind when fragmentation is allowed for some peer here; the
  // peer's own setting decides what we send once IKE_AUTH names it
  const fragmentation =
    findNotify(payloads, NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) !== undefined &&
    (ctx.init.fragmentation.enabled || peerSummary(ctx.init.peers).fragmentation)
  sa.fragmentation = {
    announced: fragmentation,
    peer: fragmentation,
    send: ctx.init.fragmentation.enabled
  }
  const out: Payload[] = [
    { type: PayloadType.SA, proposals: [ikeChoiceProposal(chosen)] } as SaPayload,
    { type: PayloadType.KE, group: GROUP_NUMBER[chosen.group], data: ke.publicValue } as KePayload,
    { type: PayloadType.NONCE, data: sa.nr } as NoncePayload
  ]
  if (nat.supported) pushNatNotifies(out, sa.spiI, sa.spiR, local, from, undefined)
  if (fragmentation) out.push(notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
  if (cert) {
    out.push(...certificateRequest(ctx))
    out.push(notify(NotifyType.SIGNATURE_HASH_ALGORITHMS, SIGNATURE_HASHES))
  }
  const response = sa.plain(ExchangeType.IKE_SA_INIT, 0, true, out)
  sa.ourInit = response
  sa.tasks.answeredInit(message.raw, response)
  sa.state = 'auth'
  sa.lastReceived = ctx.clock.monotonic()
  state.add(h.spiI, from, sa)
  ctx.register(sa)
  expireHalfOpen(ctx, state, sa)
  ctx.send(sa, response)
}

/** An unencrypted IKE_SA_INIT response of one payload, outside any SA (an error, a COOKIE). */
function stateless(spiI: Uint8Array, payload: Payload): Uint8Array {
  return encodeMessage(
    {
      spiI,
      spiR: ZERO_SPI,
      version: 0x20,
      exchange: ExchangeType.IKE_SA_INIT,
      flags: HeaderFlag.RESPONSE,
      messageId: 0
    },
    [payload]
  )
}

/** Refuses an IKE_SA_INIT request with an error notify, out of the table's notify budget. */
function refuse(
  ctx: IkeContext,
  state: HalfOpenTable,
  spiI: Uint8Array,
  from: Endpoint,
  natT: boolean,
  payload: Payload
): void {
  if (state.takeNotify()) ctx.sendTo(stateless(spiI, payload), from, natT)
  else ctx.stats.notifiesSuppressed++
}

/** What IKE_SA_INIT needs of a service's peer list, by list. */
interface PeerSummary {
  /** The list's length and edit count when this was made. */
  length: number
  edits: number
  policies: Phase1Policy[]
  allProposals: IkeProposal[]
  /** Whether some peer allows fragmentation. */
  fragmentation: boolean
}

const summaries = new WeakMap<IkeContext['init']['peers'], PeerSummary>()

/**
 * The phase 1 policies of the peers a responder answers, made once per peer list and again
 * when the list changed length or was edited in place (its edit count, `configChanged`): a
 * constant-time check per IKE_SA_INIT, not a look at every peer. The proposals of every peer
 * come once each: a thousand peers with the same proposals give one.
 */
function peerSummary(peers: IkeContext['init']['peers']): PeerSummary {
  let got = summaries.get(peers)
  if (got === undefined || got.length !== peers.length || got.edits !== editsOf(peers)) {
    const policies = peers.map((p) => p.phase1)
    const seen = new Set<string>()
    const allProposals: IkeProposal[] = []
    for (const proposal of policies.flatMap((p) => p.proposals)) {
      const key = JSON.stringify(proposal)
      if (seen.has(key)) continue
      seen.add(key)
      allProposals.push(proposal)
    }
    got = {
      length: peers.length,
      edits: editsOf(peers),
      policies,
      allProposals,
      fragmentation: peers.some((p) => p.fragmentation === true)
    }
    summaries.set(peers, got)
  }
  return got
}

/**
 * Arms the timer that destroys a half-open SA its initiator did not authenticate in time (in a
 * function of its own: the timer holds these three, not the request's scope). The service clears
 * it when the SA settles.
 */
function expireHalfOpen(ctx: IkeContext, state: HalfOpenTable, sa: IkeSa): void {
  sa.halfOpenTimer = ctx.clock.setTimeout(() => {
    sa.halfOpenTimer = undefined
    if (state.settle(sa) && sa.state !== 'established') ctx.destroy(sa, 'expired')
  }, ctx.init.halfOpenTimeoutMs)
}
