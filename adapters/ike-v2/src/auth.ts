/**
 * AUTH payloads (RFC 7296 section 2.15): building ours and verifying the peer's, with a
 * pre-shared key or, through `signature.ts`, a certificate.
 *
 * @module
 */
import { IkeProtocolError, type Identity } from '@vipsec/interface'
import { AuthMethodId, PayloadType } from './constants.js'
import { bytesEqual, pskAuth, signedOctets } from './crypto.js'
import type { IkeContext } from './context.js'
import type { IkeSa } from './ike-sa.js'
import {
  encodeBody,
  type AuthPayload,
  type CertPayload,
  type IdPayload,
  type Payload
} from './message.js'
import { psksByRemote } from './identity-index.js'
import { sameIdentity } from './selectors.js'
import { signAuth, verifySignatureAuth } from './signature.js'

function findPsk(ctx: IkeContext, local: Identity, remote: Identity): Uint8Array | undefined {
  const c = psksByRemote.find(
    ctx.init.psks,
    remote,
    (p) => p.local === undefined || sameIdentity(p.local, local)
  )
  if (c === undefined) return undefined
  if (typeof c.secret !== 'string') return c.secret
  // the bytes of a textual key, encoded once per credential
  let bytes = encodedSecrets.get(c)
  if (bytes === undefined || bytes.text !== c.secret) {
    bytes = { text: c.secret, bytes: new TextEncoder().encode(c.secret) }
    encodedSecrets.set(c, bytes)
  }
  return bytes.bytes
}

/** The UTF-8 bytes of textual pre-shared keys, by credential. */
const encodedSecrets = new WeakMap<object, { text: string; bytes: Uint8Array }>()

/**
 * Builds this side's AUTH payload (and CERT payload for signatures).
 *
 * @param ctx - the service
 * @param sa - the IKE SA (keys derived)
 * @param id - our ID payload
 * @throws IkeProtocolError AUTHENTICATION_FAILED when no local credential fits
 */
export function buildAuth(ctx: IkeContext, sa: IkeSa, id: IdPayload): Payload[] {
  const prfAlg = sa.chosen!.prf
  const skP = sa.initiator ? sa.keys!.skPi : sa.keys!.skPr
  const peerNonce = sa.initiator ? sa.nr : sa.ni
  const octets = signedOctets(prfAlg, sa.ourInit, peerNonce, skP, encodeBody(id))
  if (sa.policy.authMethod === 'psk') {
    const psk = findPsk(ctx, sa.localIdentity!, sa.remoteIdentity!)
    if (psk === undefined) {
      throw new IkeProtocolError('AUTHENTICATION_FAILED', 'no pre-shared key for this peer')
    }
    return [
      {
        type: PayloadType.AUTH,
        method: AuthMethodId.PSK,
        data: pskAuth(prfAlg, psk, octets)
      } as AuthPayload
    ]
  }
  return signAuth(ctx, sa, octets)
}

/**
 * Verifies the peer's AUTH payload.
 *
 * @param payloads - the peer's IKE_AUTH payloads
 * @param id - the peer's ID payload
 * @returns true when it verifies, otherwise why not
 */
export function verifyAuth(
  ctx: IkeContext,
  sa: IkeSa,
  payloads: Payload[],
  id: IdPayload
): true | string {
  const auth = payloads.find((p) => p.type === PayloadType.AUTH) as AuthPayload | undefined
  if (auth === undefined) return 'no AUTH payload'
  const prfAlg = sa.chosen!.prf
  const skP = sa.initiator ? sa.keys!.skPr : sa.keys!.skPi
  const ourNonce = sa.initiator ? sa.ni : sa.nr
  const octets = signedOctets(prfAlg, sa.peerInit, ourNonce, skP, encodeBody(id))
  // the peer must use the kind of authentication our policy for it names
  if ((auth.method === AuthMethodId.PSK) !== (sa.policy.authMethod === 'psk')) {
    return `AUTH method ${auth.method} where policy says ${sa.policy.authMethod}`
  }
  if (auth.method === AuthMethodId.PSK) {
    const psk = findPsk(ctx, sa.localIdentity!, sa.remoteIdentity!)
    if (psk === undefined) return 'no pre-shared key for this peer'
    return (
      bytesEqual(auth.data, pskAuth(prfAlg, psk, octets)) || 'pre-shared key AUTH does not verify'
    )
  }
  const certs = payloads.filter((p) => p.type === PayloadType.CERT) as CertPayload[]
  return verifySignatureAuth(ctx, sa, auth, certs, octets)
}
