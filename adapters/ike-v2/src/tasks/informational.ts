/**
 * INFORMATIONAL (RFC 7296 section 1.4): deleting Child SAs and IKE SAs, and liveness checks
 * (2.4) — initiator and responder.
 *
 * @module
 */
import { ExchangeType, NotifyType, PayloadType, ProtocolId } from '../constants.js'
import type { IkeContext } from '../context.js'
import type { ChildSa, IkeSa } from '../ike-sa.js'
import { findNotify, readU32, u32Bytes, type DeletePayload, type Payload } from '../message.js'
import { removeChild } from './child.js'

/**
 * Deletes a Child SA: sends a Delete with our inbound SPI and removes the SA when answered (or,
 * if the peer does not answer, when the request times out).
 */
export async function deleteChildSa(
  ctx: IkeContext,
  sa: IkeSa,
  child: ChildSa,
  reason: 'local' | 'expired' = 'local'
): Promise<void> {
  try {
    await sa.tasks.request(ExchangeType.INFORMATIONAL, () => [
      {
        type: PayloadType.DELETE,
        protocol: ProtocolId.ESP,
        spis: [u32Bytes(child.inboundSpi)]
      } as DeletePayload
    ])
  } finally {
    removeChild(ctx, sa, child, reason)
  }
}

/** Deletes an IKE SA with its Child SAs: sends a Delete and destroys the SA when answered. */
export async function deleteIkeSa(ctx: IkeContext, sa: IkeSa): Promise<void> {
  // a rekeyed SA was replaced, not lost: its end is not announced
  if (sa.state === 'established') sa.state = 'deleting'
  try {
    await sa.tasks.request(ExchangeType.INFORMATIONAL, () => [
      { type: PayloadType.DELETE, protocol: ProtocolId.IKE, spis: [] } as DeletePayload
    ])
  } finally {
    ctx.destroy(sa, 'local')
  }
}

/**
 * Checks the peer with an empty INFORMATIONAL request; destroys the SA as `dead-peer` when it
 * does not answer.
 *
 * @throws IkeProtocolError TIMEOUT
 */
export async function checkLiveness(ctx: IkeContext, sa: IkeSa): Promise<void> {
  try {
    await sa.tasks.request(ExchangeType.INFORMATIONAL, () => [])
  } catch (err) {
    if (sa.state !== 'deleted') ctx.destroy(sa, 'dead-peer')
    throw err
  }
}

/** The responder's answer to INFORMATIONAL. */
export interface InformationalAnswer {
  /** The response payloads. */
  payloads: Payload[]
  /** Run after the response is sent. */
  after?: () => void
}

/** Answers INFORMATIONAL: deletes, liveness checks and notifies. */
export function respondInformational(
  ctx: IkeContext,
  sa: IkeSa,
  payloads: Payload[]
): InformationalAnswer {
  const deletes = payloads.filter((p) => p.type === PayloadType.DELETE) as DeletePayload[]
  const authFailed = findNotify(payloads, NotifyType.AUTHENTICATION_FAILED) !== undefined
  if (authFailed || deletes.some((d) => d.protocol === ProtocolId.IKE)) {
    return { payloads: [], after: () => ctx.destroy(sa, 'remote') }
  }
  const ours: Uint8Array[] = []
  const gone: ChildSa[] = []
  for (const d of deletes) {
    if (d.protocol !== ProtocolId.ESP) continue
    for (const spi of d.spis) {
      if (spi.length !== 4) continue
      const v = readU32(spi, 0)
      const child = [...sa.children.values()].find((c) => c.outboundSpi === v)
      if (child === undefined) continue
      ours.push(u32Bytes(child.inboundSpi))
      gone.push(child)
    }
  }
  if (ours.length === 0) return { payloads: [] }
  return {
    payloads: [{ type: PayloadType.DELETE, protocol: ProtocolId.ESP, spis: ours } as DeletePayload],
    after: () => {
      for (const c of gone) {
        // rekey against delete: our rekey of it in flight learns that the peer wants it gone
        if (c.rekey.state === 'initiated') c.rekey = { state: 'deleted-by-peer' }
        removeChild(ctx, sa, c, 'remote')
      }
    }
  }
}
