/**
 * IKE_AUTH (RFC 7296 section 1.2): identities, authentication, INITIAL_CONTACT (2.4) and the
 * first Child SA — initiator and responder.
 *
 * @module
 */
import { IkeProtocolError, type Identity, type IkeErrorKind } from '@vipsec/interface'
import { NotifyType, PayloadType, ExchangeType } from '../constants.js'
import { buildAuth, verifyAuth } from '../auth.js'
import { certificateRequest } from '../signature.js'
import { chooseIke, ikeChoiceProposal } from '../proposals.js'
import type { IkeContext } from '../context.js'
import { identityFields, type ChildSa, type IdentityFields, type IkeSa } from '../ike-sa.js'
import { findNotify, findPayload, notify, type IdPayload, type Payload } from '../message.js'
import { decodeIdentity, encodeIdentity, sameIdentity } from '../selectors.js'
import { peersByRemote } from '../identity-index.js'
import {
  acceptChild,
  answerChild,
  childRequest,
  errorNotify,
  establishChild,
  offerChild,
  type ChildRequest
} from './child.js'
import { deleteIkeSa } from './informational.js'
import { recordKeys } from '../warm.js'

/** How long after refusing the first Child SA the responder deletes the IKE SA, in ms. */
const CHILDLESS_DELETE_DELAY_MS = 100

/** The outcome of IKE_AUTH as initiator. */
export interface AuthResult {
  /** The first Child SA, when the responder accepted it. */
  child?: ChildSa
  /** Why the Child SA was refused (the IKE SA is up nonetheless). */
  childError?: IkeProtocolError
}

/**
 * Runs IKE_AUTH as initiator. On success the IKE SA is established (and `ike:established`
 * emitted); the first Child SA is installed if the responder accepted it.
 *
 * @throws IkeProtocolError AUTHENTICATION_FAILED (or another error notify, or TIMEOUT) when the
 *   IKE SA could not be set up
 */
export async function initiateIkeAuth(
  ctx: IkeContext,
  sa: IkeSa,
  request: ChildRequest,
  initialContact: boolean,
  onEstablished: (sa: IkeSa, initialContact: boolean) => void
): Promise<AuthResult> {
  const idi = encodeIdentity(sa.localIdentity!, PayloadType.IDi)
  const idr = encodeIdentity(sa.remoteIdentity!, PayloadType.IDr)
  const offer = offerChild(ctx, request, 'none')
  const { payloads } = await sa.tasks.request(ExchangeType.IKE_AUTH, () => {
    const out: Payload[] = [idi]
    if (initialContact) out.push(notify(NotifyType.INITIAL_CONTACT))
    if (ctx.init.warm.enabled) {
      sa.midSync.announced = true
      out.push(notify(NotifyType.IKEV2_MESSAGE_ID_SYNC_SUPPORTED))
    }
    if (sa.policy.authMethod !== 'psk') out.push(...certificateRequest(ctx))
    out.push(idr, ...buildAuth(ctx, sa, idi), ...offer.payloads)
    return out
  })
  const authFailed = findNotify(payloads, NotifyType.AUTHENTICATION_FAILED)
  if (authFailed !== undefined) {
    throw new IkeProtocolError('AUTHENTICATION_FAILED', 'peer refused our authentication')
  }
  try {
    verifyResponder(ctx, sa, payloads)
  } catch (err) {
    // RFC 7296 section 2.21.2: an initiator that refuses the responder tells it in a separate
    // INFORMATIONAL exchange (sent once: the SA is deleted right after)
    if ((err as IkeProtocolError).kind === 'AUTHENTICATION_FAILED') {
      sa.tasks.sendOnce(ExchangeType.INFORMATIONAL, [notify(NotifyType.AUTHENTICATION_FAILED)])
    }
    throw err
  }
  sa.midSync.peer = findNotify(payloads, NotifyType.IKEV2_MESSAGE_ID_SYNC_SUPPORTED) !== undefined
  onEstablished(sa, findNotify(payloads, NotifyType.INITIAL_CONTACT) !== undefined)
  try {
    const child = acceptChild(ctx, sa, offer, payloads, sa.ni, sa.nr, 'none')
    // warm mode: the new keys are recorded before they carry traffic
    if (ctx.stateSink !== undefined) await recordKeys(ctx, sa, { fresh: [child] })
    establishChild(ctx, sa, child)
    return { child }
  } catch (err) {
    const e =
      err instanceof IkeProtocolError
        ? err
        : new IkeProtocolError('TEMPORARY_FAILURE', (err as Error).message, { cause: err })
    return { childError: e }
  }
}

function verifyResponder(ctx: IkeContext, sa: IkeSa, payloads: Payload[]): void {
  const idP = findPayload<IdPayload>(payloads, PayloadType.IDr)
  if (idP === undefined) {
    throw (
      errorNotify(payloads) ?? new IkeProtocolError('INVALID_SYNTAX', 'IKE_AUTH response lacks IDr')
    )
  }
  const id = decodeIdentity(idP)
  if (!sameIdentity(id, sa.remoteIdentity!)) {
    throw new IkeProtocolError('AUTHENTICATION_FAILED', `peer is ${id.type}:${id.value}`)
  }
  const verified = verifyAuth(ctx, sa, payloads, idP)
  if (verified !== true) {
    throw new IkeProtocolError('AUTHENTICATION_FAILED', `peer AUTH: ${verified}`)
  }
}

/**
 * The responder's refusal of IKE_AUTH: the error notify, and after it is sent the failure,
 * which names the identities the peer claimed (IDi) and asked for (IDr), as far as known.
 */
function refusal(
  sa: IkeSa,
  onFailed: (sa: IkeSa, kind: IkeErrorKind, message: string, ids: IdentityFields) => void,
  kind: IkeErrorKind,
  idi: Identity | undefined,
  idr: Identity | undefined,
  message: string
): AuthAnswer {
  return {
    payloads: [
      notify(NotifyType[kind as 'AUTHENTICATION_FAILED'] ?? NotifyType.AUTHENTICATION_FAILED)
    ],
    after: () =>
      onFailed(sa, kind, message, {
        ...identityFields(sa),
        ...(idr === undefined ? {} : { localId: idr.value }),
        ...(idi === undefined ? {} : { remoteId: idi.value })
      })
  }
}

/** The responder's answer to IKE_AUTH. */
export interface AuthAnswer {
  /** The response payloads. */
  payloads: Payload[]
  /** Run after the response is sent. */
  after: () => void
}

/**
 * Answers IKE_AUTH: finds the peer config by the identities, verifies AUTH, answers the first
 * Child SA.
 *
 * @param onEstablished - called once the peer is authenticated (INITIAL_CONTACT handling, events)
 * @param onFailed - called when the IKE SA is refused (it is destroyed after the response)
 */
export function respondIkeAuth(
  ctx: IkeContext,
  sa: IkeSa,
  payloads: Payload[],
  onEstablished: (sa: IkeSa, initialContact: boolean) => void,
  onFailed: (sa: IkeSa, kind: IkeErrorKind, message: string, ids: IdentityFields) => void
): AuthAnswer | Promise<AuthAnswer> {
  let idi: Identity | undefined
  let idr: Identity | undefined
  const idiP = findPayload<IdPayload>(payloads, PayloadType.IDi)
  if (idiP === undefined || findPayload(payloads, PayloadType.AUTH) === undefined) {
    return refusal(sa, onFailed, 'INVALID_SYNTAX', idi, idr, 'IKE_AUTH request lacks IDi or AUTH')
  }
  try {
    idi = decodeIdentity(idiP)
    const idrP = findPayload<IdPayload>(payloads, PayloadType.IDr)
    idr = idrP === undefined ? undefined : decodeIdentity(idrP)
  } catch {
    return refusal(sa, onFailed, 'AUTHENTICATION_FAILED', idi, idr, 'undecodable identity')
  }
  const claimed = idr
  const peer = peersByRemote.find(
    ctx.init.peers,
    idi,
    (p) =>
      (claimed === undefined || sameIdentity(p.localIdentity, claimed)) &&
      p.phase1.proposals.length > 0
  )
  if (peer === undefined) {
    return refusal(
      sa,
      onFailed,
      'AUTHENTICATION_FAILED',
      idi,
      idr,
      `no peer config for ${idi.type}:${idi.value}`
    )
  }
  // IKE_SA_INIT chose among every peer's proposals: the one chosen must be this peer's too
  // (checked with a single peer as well: the list may have been edited since)
  if (chooseIke([ikeChoiceProposal(sa.chosen!)], peer.phase1.proposals) === undefined) {
    return refusal(
      sa,
      onFailed,
      'AUTHENTICATION_FAILED',
      idi,
      idr,
      `the IKE proposal chosen is not in the policy of ${idi.value}`
    )
  }
  sa.localIdentity = peer.localIdentity
  sa.remoteIdentity = idi
  sa.fragmentation.send = peer.fragmentation ?? ctx.init.fragmentation.enabled
  sa.policy = { ...peer.phase1, proposals: sa.policy.proposals }
  const verified = verifyAuth(ctx, sa, payloads, idiP)
  if (verified !== true) {
    return refusal(
      sa,
      onFailed,
      'AUTHENTICATION_FAILED',
      idi,
      idr,
      `AUTH of ${idi.type}:${idi.value}: ${verified}`
    )
  }
  const idrOut = encodeIdentity(peer.localIdentity, PayloadType.IDr)
  let auth: Payload[]
  try {
    auth = buildAuth(ctx, sa, idrOut)
  } catch (err) {
    return refusal(sa, onFailed, 'AUTHENTICATION_FAILED', idi, idr, (err as Error).message)
  }
  const initialContact = findNotify(payloads, NotifyType.INITIAL_CONTACT) !== undefined
  const answer = answerChild(
    ctx,
    sa,
    peer.children.map(childRequest),
    payloads,
    sa.ni,
    sa.nr,
    'none'
  )
  const out: Payload[] = [idrOut, ...auth]
  if (ctx.init.warm.enabled) out.push(notify(NotifyType.IKEV2_MESSAGE_ID_SYNC_SUPPORTED))
  sa.midSync.announced = ctx.init.warm.enabled
  sa.midSync.peer = findNotify(payloads, NotifyType.IKEV2_MESSAGE_ID_SYNC_SUPPORTED) !== undefined
  const result: AuthAnswer = {
    payloads: [...out, ...answer.payloads],
    after: () => {
      onEstablished(sa, initialContact)
      if (answer.child !== undefined) {
        try {
          establishChild(ctx, sa, answer.child)
        } catch (err) {
          ctx.emit({
            type: 'ike:failed',
            peer: sa.remote,
            reason: 'TEMPORARY_FAILURE',
            message: `installing Child SA: ${(err as Error).message}`,
            ...identityFields(sa)
          })
        }
      } else if (answer.error !== undefined) {
        ctx.emit({
          type: 'ike:failed',
          peer: sa.remote,
          reason: answer.error,
          message: 'first Child SA refused',
          ...identityFields(sa)
        })
        // an IKE SA without the Child SA it was made for is not kept (RFC 7296 section 2.21.3
        // lets either end delete it; strongSwan's close_ike_on_child_failure): deleted a moment
        // after the IKE_AUTH response, so that the initiator has it first
        ctx.clock.setTimeout(() => {
          if (sa.state === 'established' && sa.children.size === 0) {
            deleteIkeSa(ctx, sa).catch(() => undefined)
          }
        }, CHILDLESS_DELETE_DELAY_MS)
      }
    }
  }
  if (ctx.stateSink === undefined || answer.child === undefined) return result
  // warm mode: the new IKE SA and its first Child SA are recorded before the response
  sa.establishedAt = ctx.clock.now()
  return recordKeys(ctx, sa, {
    fresh: [answer.child],
    expected: sa.tasks.expectedRequestId + 1
  }).then(() => result)
}
