/**
 * CREATE_CHILD_SA (RFC 7296 section 1.3): a new Child SA, a Child SA rekey with or without PFS
 * (with the collision rule of 2.8.1), and an IKE SA rekey (2.18) — initiator and responder.
 *
 * @module
 */
import { IkeProtocolError, type KeyExchangeGroup } from '@vipsec/interface'
import { ExchangeType, NotifyType, PayloadType, ProtocolId } from '../constants.js'
import { deriveIkeKeys, GROUP_NUMBER, groupByNumber, type KeyExchange } from '../crypto.js'
import { freshKeyExchange } from '../key-pool.js'
import type { IkeContext } from '../context.js'
import { childRecord, IkeSa, type ChildSa } from '../ike-sa.js'
import {
  findNotify,
  findPayload,
  notify,
  readU16,
  readU32,
  u16Bytes,
  u32Bytes,
  type KePayload,
  type NoncePayload,
  type Payload,
  type SaPayload
} from '../message.js'
import { acceptIkeAnswer, chooseIke, ikeChoiceProposal, ikeProposals } from '../proposals.js'
import {
  acceptChild,
  answerChild,
  errorNotify,
  establishChild,
  installChild,
  offerChild,
  type ChildRequest
} from './child.js'
import { deleteChildSa, deleteIkeSa } from './informational.js'
import { recordKeys } from '../warm.js'
import {
  childPeerRekeyed,
  IDLE,
  oursIsRedundant,
  type ChildRekey,
  type IkeRekey
} from '../collision.js'

async function childExchange(
  ctx: IkeContext,
  sa: IkeSa,
  request: ChildRequest,
  rekeySpi: number | undefined
): Promise<ChildSa> {
  let pfs: KeyExchangeGroup = request.policy.pfsGroup
  for (let attempt = 0; attempt < 2; attempt++) {
    const ke: KeyExchange | undefined = pfs === 'none' ? undefined : freshKeyExchange(ctx, pfs)
    const ni = ctx.random.randomBytes(ctx.init.nonceLength)
    const offer = offerChild(ctx, request, pfs)
    const { payloads } = await sa.tasks.request(ExchangeType.CREATE_CHILD_SA, () => {
      const out: Payload[] = []
      if (rekeySpi !== undefined) {
        out.push(notify(NotifyType.REKEY_SA, new Uint8Array(0), ProtocolId.ESP, u32Bytes(rekeySpi)))
      }
      out.push(...withNonceAndKe(offer.payloads, ni, ke))
      return out
    })
    const invalidKe = findNotify(payloads, NotifyType.INVALID_KE_PAYLOAD)
    if (invalidKe !== undefined && attempt === 0 && invalidKe.data.length >= 2) {
      const wanted = groupByNumber(readU16(invalidKe.data, 0))
      const allowed = request.policy.proposals.some(
        (p) => wanted !== undefined && p.keyExchange.includes(wanted)
      )
      if (wanted !== undefined && wanted !== pfs && allowed) {
        pfs = wanted
        continue
      }
    }
    const err = errorNotify(payloads)
    if (err !== undefined) throw err
    const nonce = findPayload<NoncePayload>(payloads, PayloadType.NONCE)
    if (nonce === undefined)
      throw new IkeProtocolError('INVALID_SYNTAX', 'CREATE_CHILD_SA response lacks Nr')
    let shared: Uint8Array | undefined
    if (ke !== undefined) {
      const keP = findPayload<KePayload>(payloads, PayloadType.KE)
      if (keP === undefined || keP.group !== GROUP_NUMBER[ke.group]) {
        throw new IkeProtocolError('INVALID_SYNTAX', 'CREATE_CHILD_SA response lacks a matching KE')
      }
      shared = ke.computeSharedSecret(keP.data)
    }
    return acceptChild(ctx, sa, offer, payloads, ni, nonce.data, pfs, shared)
  }
  throw new IkeProtocolError('INVALID_KE_PAYLOAD', 'peer refused the PFS group twice')
}

/**
 * Creates an additional Child SA under an established IKE SA.
 *
 * @throws IkeProtocolError
 */
export async function createChildSa(
  ctx: IkeContext,
  sa: IkeSa,
  request: ChildRequest
): Promise<ChildSa> {
  const child = await childExchange(ctx, sa, request, undefined)
  if (ctx.stateSink !== undefined) await recordKeys(ctx, sa, { fresh: [child] })
  establishChild(ctx, sa, child)
  return child
}

/**
 * Rekeys a Child SA (with PFS when its policy has a PFS group), then deletes the old one. On a
 * collision with the peer's rekey of the same Child SA, the SA made with the lowest nonce is
 * deleted by the side that made it (RFC 7296 section 2.8.1).
 *
 * @returns the Child SA that replaces `old`
 */
export async function rekeyChildSa(ctx: IkeContext, sa: IkeSa, old: ChildSa): Promise<ChildSa> {
  if (old.rekey.state !== 'idle') {
    throw new IkeProtocolError('TEMPORARY_FAILURE', 'rekey already under way')
  }
  old.rekey = { state: 'initiated' }
  const request: ChildRequest = {
    policy: old.policy,
    mode: old.mode,
    local: old.local,
    remote: old.remote
  }
  let child: ChildSa
  try {
    child = await childExchange(ctx, sa, request, old.inboundSpi)
  } catch (err) {
    const now = old.rekey as ChildRekey // moved by the peer's requests meanwhile
    // the peer rekeyed it meanwhile and already deleted it: its replacement is the answer
    if (
      now.state === 'collided' &&
      (err as IkeProtocolError).kind === 'CHILD_SA_NOT_FOUND' &&
      sa.children.has(now.theirs.id)
    ) {
      old.rekey = { state: 'replaced', by: now.theirs, mine: false }
      return now.theirs
    }
    old.rekey = now.state === 'collided' ? { state: 'replaced', by: now.theirs, mine: false } : IDLE
    throw err
  }
  if (ctx.stateSink !== undefined) await recordKeys(ctx, sa, { fresh: [child] })
  installChild(ctx, sa, child)
  sa.children.set(child.id, child)
  const collision = old.rekey as ChildRekey
  switch (collision.state) {
    case 'deleted-by-peer':
      // rekey against delete: the peer answered our rekey and deleted the old Child SA before
      // its answer reached us; the new one replaces it (as strongSwan's child_rekey does)
      old.rekey = { state: 'replaced', by: child, mine: true }
      ctx.emit({ type: 'sa:rekeyed', previousId: old.id, phase2: childRecord(sa, child) })
      return child
    case 'collided':
      if (sa.children.has(collision.theirs.id)) {
        // simultaneous rekeys: the redundant SA is the one whose exchange had the lowest nonce
        if (oursIsRedundant(child.nonces, collision.theirs.nonces)) {
          old.rekey = { state: 'replaced', by: collision.theirs, mine: false }
          child.silent = true
          await deleteChildSa(ctx, sa, child).catch(() => undefined)
          return collision.theirs
        }
      }
      break
    default:
      break
  }
  old.rekey = { state: 'replaced', by: child, mine: true }
  ctx.emit({ type: 'sa:rekeyed', previousId: old.id, phase2: childRecord(sa, child) })
  if (sa.children.has(old.id)) await deleteChildSa(ctx, sa, old).catch(() => undefined)
  return child
}

/**
 * Rekeys an IKE SA: the new SA takes over the Child SAs; the old one is deleted.
 *
 * @returns the new IKE SA
 */
export async function rekeyIkeSa(
  ctx: IkeContext,
  sa: IkeSa,
  deleteOld: (old: IkeSa) => Promise<void>
): Promise<IkeSa> {
  if (sa.rekey.state !== 'idle') {
    throw new IkeProtocolError('TEMPORARY_FAILURE', 'IKE rekey under way')
  }
  sa.rekey = { state: 'initiated' }
  let next: IkeSa
  let nonces: Uint8Array[]
  try {
    const group = sa.chosen!.group
    const ke = freshKeyExchange(ctx, group)
    const ni = ctx.random.randomBytes(ctx.init.nonceLength)
    const spi = ctx.newIkeSpi()
    const { payloads } = await sa.tasks.request(ExchangeType.CREATE_CHILD_SA, () => [
      { type: PayloadType.SA, proposals: ikeProposals(sa.policy.proposals, spi) } as SaPayload,
      { type: PayloadType.NONCE, data: ni } as NoncePayload,
      { type: PayloadType.KE, group: GROUP_NUMBER[group], data: ke.publicValue } as KePayload
    ])
    const err = errorNotify(payloads)
    if (err !== undefined) throw err
    const saP = findPayload<SaPayload>(payloads, PayloadType.SA)
    const nonce = findPayload<NoncePayload>(payloads, PayloadType.NONCE)
    const keP = findPayload<KePayload>(payloads, PayloadType.KE)
    if (
      saP === undefined ||
      nonce === undefined ||
      keP === undefined ||
      saP.proposals.length !== 1
    ) {
      throw new IkeProtocolError('INVALID_SYNTAX', 'IKE rekey response lacks SA, Nr or KEr')
    }
    const chosen = acceptIkeAnswer(saP.proposals, sa.policy.proposals)
    if (chosen === undefined || chosen.group !== group || keP.group !== GROUP_NUMBER[group]) {
      throw new IkeProtocolError('NO_PROPOSAL_CHOSEN', 'IKE rekey answer was not offered')
    }
    if (chosen.spi.length !== 8)
      throw new IkeProtocolError('INVALID_SYNTAX', 'IKE rekey SPI length')
    nonces = [ni, nonce.data]
    next = successor(
      ctx,
      sa,
      true,
      spi,
      chosen.spi,
      chosen,
      ni,
      nonce.data,
      ke.computeSharedSecret(keP.data)
    )
    if (ctx.stateSink !== undefined) await recordKeys(ctx, next)
  } catch (err) {
    // the peer rekeyed this IKE SA meanwhile (our request was late): its SA is the answer, and
    // the peer deletes the old one
    const now = sa.rekey as IkeRekey // moved by the peer's requests meanwhile
    if (now.state === 'collided' && now.theirs.state === 'established') {
      sa.rekey = { state: 'replaced', by: now.theirs }
      return now.theirs
    }
    if (now.state === 'initiated') sa.rekey = IDLE
    throw err
  }
  const collision = sa.rekey as IkeRekey
  if (collision.state === 'collided' && collision.theirs.state === 'established') {
    const theirs = collision.theirs
    // both sides rekeyed at once: the SA made with the lowest nonce is redundant and is deleted
    // by the side that made it; the other side deletes the old SA (RFC 7296 section 2.8.2)
    if (oursIsRedundant(nonces, collision.nonces)) {
      for (const [id, c] of next.children) theirs.children.set(id, c)
      next.children.clear()
      sa.rekey = { state: 'replaced', by: theirs }
      await deleteIkeSa(ctx, next).catch(() => undefined)
      return theirs
    }
    for (const [id, c] of theirs.children) next.children.set(id, c)
    theirs.children.clear()
  }
  sa.rekey = { state: 'replaced', by: next }
  await deleteOld(sa)
  return next
}

function successor(
  ctx: IkeContext,
  old: IkeSa,
  initiator: boolean,
  localSpi: Uint8Array,
  peerSpi: Uint8Array,
  chosen: NonNullable<IkeSa['chosen']>,
  ni: Uint8Array,
  nr: Uint8Array,
  shared: Uint8Array
): IkeSa {
  const next = makeSuccessor(ctx, old, initiator, localSpi, peerSpi, chosen, ni, nr, shared)
  commitSuccessor(ctx, old, next)
  return next
}

/** The IKE SA that replaces `old` in a rekey, keyed, not yet in the table nor holding Child SAs. */
function makeSuccessor(
  ctx: IkeContext,
  old: IkeSa,
  initiator: boolean,
  localSpi: Uint8Array,
  peerSpi: Uint8Array,
  chosen: NonNullable<IkeSa['chosen']>,
  ni: Uint8Array,
  nr: Uint8Array,
  shared: Uint8Array
): IkeSa {
  const next = new IkeSa(ctx, {
    initiator,
    localSpi,
    local: old.local,
    remote: old.remote,
    policy: old.policy,
    localIdentity: old.localIdentity,
    remoteIdentity: old.remoteIdentity
  })
  if (initiator) next.spiR = peerSpi.slice()
  else next.spiI = peerSpi.slice()
  next.chosen = { ...chosen, spi: new Uint8Array(0) }
  next.ni = ni
  next.nr = nr
  next.keys = deriveIkeKeys({
    prf: chosen.prf,
    encryption: chosen.encryption,
    integrity: chosen.integrity,
    ni,
    nr,
    spiI: next.spiI,
    spiR: next.spiR,
    sharedSecret: shared,
    rekey: { skD: old.keys!.skD, prf: old.chosen!.prf }
  })
  next.nat = { ...old.nat }
  next.fragmentation = { ...old.fragmentation }
  next.midSync = { ...old.midSync }
  next.childConfigs = old.childConfigs
  if (initiator === old.initiator) next.reauthAt = old.reauthAt
  next.natT = old.natT
  next.state = 'established'
  next.establishedAt = ctx.clock.now()
  next.lastReceived = ctx.clock.monotonic()
  return next
}

/** `next` replaces `old`: it takes its Child SAs, joins the table, is announced and armed. */
function commitSuccessor(ctx: IkeContext, old: IkeSa, next: IkeSa): void {
  for (const [id, c] of old.children) next.children.set(id, c)
  old.children.clear()
  // the new SA's initiator is the rekey's initiator
  if (!next.initiator) {
    // the peer's rekey: while ours is in flight this is a collision, resolved when ours
    // completes (our own rekey moves the case itself)
    old.rekey =
      old.rekey.state === 'initiated'
        ? { state: 'collided', theirs: next, nonces: [next.ni, next.nr] }
        : { state: 'replaced', by: next }
  }
  old.state = 'rekeyed'
  ctx.register(next)
  ctx.emit({ type: 'ike:rekeyed', previous: old.record().ikeSaId, phase1: next.record() })
  ctx.armTimers(next)
}

/** The responder's answer to CREATE_CHILD_SA. */
export interface CreateChildAnswer {
  /** The response payloads. */
  payloads: Payload[]
  /** Run after the response is sent. */
  after?: () => void
}

/**
 * Answers CREATE_CHILD_SA: an IKE SA rekey (SA with protocol IKE), a Child SA rekey (REKEY_SA
 * notify) or a new Child SA.
 *
 * @param configs - the Child SAs local policy accepts for new Child SAs
 */
export function respondCreateChildSa(
  ctx: IkeContext,
  sa: IkeSa,
  payloads: Payload[],
  configs: ChildRequest[]
): CreateChildAnswer | Promise<CreateChildAnswer> {
  const saP = findPayload<SaPayload>(payloads, PayloadType.SA)
  const nonce = findPayload<NoncePayload>(payloads, PayloadType.NONCE)
  const keP = findPayload<KePayload>(payloads, PayloadType.KE)
  if (saP === undefined || nonce === undefined) {
    return { payloads: [notify(NotifyType.INVALID_SYNTAX)] }
  }
  const nr = ctx.random.randomBytes(ctx.init.nonceLength)
  if (saP.proposals[0]?.protocol === ProtocolId.IKE) {
    if (sa.state !== 'established') {
      return { payloads: [notify(NotifyType.TEMPORARY_FAILURE)] }
    }
    const chosen = chooseIke(saP.proposals, sa.policy.proposals)
    if (chosen === undefined || chosen.spi.length !== 8) {
      return { payloads: [notify(NotifyType.NO_PROPOSAL_CHOSEN)] }
    }
    if (keP === undefined || keP.group !== GROUP_NUMBER[chosen.group]) {
      return {
        payloads: [notify(NotifyType.INVALID_KE_PAYLOAD, u16Bytes(GROUP_NUMBER[chosen.group]))]
      }
    }
    const ke = freshKeyExchange(ctx, chosen.group)
    let shared: Uint8Array
    try {
      shared = ke.computeSharedSecret(keP.data)
    } catch {
      return { payloads: [notify(NotifyType.INVALID_SYNTAX)] }
    }
    const spi = ctx.newIkeSpi()
    const answerPayloads: Payload[] = [
      { type: PayloadType.SA, proposals: [ikeChoiceProposal(chosen, spi)] } as SaPayload,
      { type: PayloadType.NONCE, data: nr } as NoncePayload,
      {
        type: PayloadType.KE,
        group: GROUP_NUMBER[chosen.group],
        data: ke.publicValue
      } as KePayload
    ]
    if (ctx.stateSink === undefined) {
      return {
        payloads: answerPayloads,
        after: () => {
          successor(ctx, sa, false, spi, chosen.spi, chosen, nonce.data, nr, shared)
        }
      }
    }
    // warm mode: the new IKE SA's state is recorded before the response that makes it
    const next = makeSuccessor(ctx, sa, false, spi, chosen.spi, chosen, nonce.data, nr, shared)
    return recordKeys(ctx, next, { moving: sa.children.values() }).then(() => ({
      payloads: answerPayloads,
      after: () => commitSuccessor(ctx, sa, next)
    }))
  }
  const rekey = findNotify(payloads, NotifyType.REKEY_SA)
  let old: ChildSa | undefined
  let candidates = configs
  if (rekey !== undefined) {
    const spi = rekey.spi.length === 4 ? readU32(rekey.spi, 0) : -1
    old = [...sa.children.values()].find((c) => c.outboundSpi === spi)
    if (old === undefined) {
      return {
        payloads: [
          notify(NotifyType.CHILD_SA_NOT_FOUND, new Uint8Array(0), ProtocolId.ESP, rekey.spi)
        ]
      }
    }
    candidates = [{ policy: old.policy, mode: old.mode, local: old.local, remote: old.remote }]
  }
  let pfsGroup: KeyExchangeGroup = 'none'
  let ke: KeyExchange | undefined
  let shared: Uint8Array | undefined
  if (keP !== undefined) {
    const g = groupByNumber(keP.group)
    const acceptable = candidates.some((c) =>
      c.policy.proposals.some((p) => g !== undefined && p.keyExchange.includes(g))
    )
    if (g === undefined || !acceptable) {
      const pref = candidates
        .flatMap((c) => [c.policy.pfsGroup, ...c.policy.proposals.flatMap((p) => p.keyExchange)])
        .find((x) => x !== 'none')
      return pref === undefined
        ? { payloads: [notify(NotifyType.NO_PROPOSAL_CHOSEN)] }
        : { payloads: [notify(NotifyType.INVALID_KE_PAYLOAD, u16Bytes(GROUP_NUMBER[pref]))] }
    }
    pfsGroup = g
    ke = freshKeyExchange(ctx, g)
    try {
      shared = ke.computeSharedSecret(keP.data)
    } catch {
      return { payloads: [notify(NotifyType.INVALID_SYNTAX)] }
    }
  }
  const answer = answerChild(ctx, sa, candidates, payloads, nonce.data, nr, pfsGroup, shared)
  if (answer.child === undefined) return { payloads: answer.payloads }
  const child = answer.child
  const out = withNonceAndKe(answer.payloads, nr, ke)
  const result: CreateChildAnswer = {
    payloads: out,
    after: () => {
      if (old === undefined) {
        establishChild(ctx, sa, child)
        return
      }
      installChild(ctx, sa, child)
      sa.children.set(child.id, child)
      const before = old.rekey
      if (before.state === 'replaced' && before.mine && sa.children.has(before.by.id)) {
        // a late collision (our rekey of the same Child SA finished first, the peer's request
        // was delayed): the same rule, the SA made with the lowest nonce goes, by its maker
        if (oursIsRedundant(before.by.nonces, child.nonces)) {
          deleteChildSa(ctx, sa, before.by).catch(() => undefined)
        }
      } else {
        old.rekey = childPeerRekeyed(before, child)
      }
      ctx.emit({ type: 'sa:rekeyed', previousId: old.id, phase2: childRecord(sa, child) })
    }
  }
  if (ctx.stateSink === undefined) return result
  // warm mode: the new keys are recorded before the response that completes the exchange
  return recordKeys(ctx, sa, { fresh: [child], expected: sa.tasks.expectedRequestId + 1 }).then(
    () => result
  )
}

/** `payloads` with the Nonce and, for PFS, the KE payload placed right after the SA payload. */
function withNonceAndKe(
  payloads: Payload[],
  nonce: Uint8Array,
  ke: KeyExchange | undefined
): Payload[] {
  const out: Payload[] = []
  for (const p of payloads) {
    out.push(p)
    if (p.type !== PayloadType.SA) continue
    out.push({ type: PayloadType.NONCE, data: nonce } as NoncePayload)
    if (ke !== undefined) {
      out.push({
        type: PayloadType.KE,
        group: GROUP_NUMBER[ke.group],
        data: ke.publicValue
      } as KePayload)
    }
  }
  return out
}
