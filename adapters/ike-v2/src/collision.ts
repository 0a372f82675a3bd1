/**
 * Rekey collisions (RFC 7296 sections 2.8.1 and 2.8.2) as values with cases: where a rekey of
 * one Child SA or IKE SA stands, and the rule that decides which of two colliding new SAs is
 * redundant. The tasks move an SA from case to case; nothing else reads or writes them.
 *
 * @module
 */
import type { ChildSa, IkeSa } from './ike-sa.js'

/**
 * Where the rekey of one Child SA stands.
 *
 * - `idle`: not being rekeyed; a soft expiry may start a rekey.
 * - `initiated`: our CREATE_CHILD_SA with REKEY_SA for it is in flight.
 * - `collided`: while ours was in flight the peer rekeyed it too and made `theirs`; when ours
 *   completes, the nonces decide which of the two new SAs is redundant.
 * - `deleted-by-peer`: while ours was in flight the peer deleted it (rekey against delete).
 *   If our rekey then succeeds, the peer had answered it before deleting the old SA and the
 *   new one replaces it; if the peer answers CHILD_SA_NOT_FOUND, it deleted the SA before our
 *   request arrived and no replacement is made.
 * - `replaced`: a rekey completed and `by` took its place; `mine` says whether our exchange
 *   made `by` (a late request of the peer to rekey it then collides with `by`).
 */
export type ChildRekey =
  | { readonly state: 'idle' }
  | { readonly state: 'initiated' }
  | { readonly state: 'collided'; readonly theirs: ChildSa }
  | { readonly state: 'deleted-by-peer' }
  | { readonly state: 'replaced'; readonly by: ChildSa; readonly mine: boolean }

/**
 * Where the rekey of one IKE SA stands.
 *
 * - `idle`: not being rekeyed.
 * - `initiated`: our CREATE_CHILD_SA rekeying it is in flight.
 * - `collided`: while ours was in flight the peer's rekey made `theirs` with `nonces`.
 * - `replaced`: rekeyed; `by` carries its Child SAs and this one waits for its Delete.
 */
export type IkeRekey =
  | { readonly state: 'idle' }
  | { readonly state: 'initiated' }
  | { readonly state: 'collided'; readonly theirs: IkeSa; readonly nonces: Uint8Array[] }
  | { readonly state: 'replaced'; readonly by: IkeSa }

/** The case every SA starts in. */
export const IDLE = Object.freeze({ state: 'idle' as const })

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i]
  return a.length - b.length
}

function lowest(nonces: Uint8Array[]): Uint8Array {
  return nonces.reduce((a, b) => (compareBytes(a, b) <= 0 ? a : b))
}

/**
 * The collision rule of RFC 7296 sections 2.8.1 and 2.8.2: of two SAs made by simultaneous
 * rekeys, the one whose exchange carried the lowest nonce is redundant.
 *
 * @param ours - the nonces (Ni, Nr) of the exchange we initiated
 * @param theirs - the nonces of the exchange the peer initiated
 * @returns true when the SA our exchange made is the redundant one
 */
export function oursIsRedundant(ours: Uint8Array[], theirs: Uint8Array[]): boolean {
  return compareBytes(lowest(ours), lowest(theirs)) < 0
}

/**
 * What a Child SA's rekey becomes when the peer's rekey of it has installed `theirs`
 * (strongSwan's `collide()`: only a completed passive rekey counts as a collision).
 *
 * @param current - the case before
 * @param theirs - the Child SA the peer's rekey made
 */
export function childPeerRekeyed(current: ChildRekey, theirs: ChildSa): ChildRekey {
  if (current.state === 'initiated') return { state: 'collided', theirs }
  return { state: 'replaced', by: theirs, mine: false }
}
