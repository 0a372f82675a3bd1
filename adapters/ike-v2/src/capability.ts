/**
 * What this IKE engine can do of an IKE SA proposal, read from its own transform tables and
 * checks, so that a node can refuse at start a proposal it could never negotiate.
 *
 * @module
 */
import type { IkeProposal } from '@vipsec/interface'
import { GROUP_NUMBER, integrityKeyLength, prfLength } from './crypto.js'
import { ikeProposals } from './proposals.js'
import { ikeEncryptionAllowed } from './validate.js'

/** Whether a lookup of the engine's tables succeeds (they throw for what they do not know). */
function known(lookup: () => unknown): boolean {
  try {
    lookup()
    return true
  } catch {
    return false
  }
}

/** Whether the engine has a transform ID for an encryption transform and lets IKE use it. */
function encryptionUsable(e: IkeProposal['encryption'][number]): boolean {
  const [wire] = ikeProposals([{ encryption: [e], integrity: [], prf: [], keyExchange: [] }])
  if (wire?.transforms[0]?.id === undefined) return false
  // the engine's own rule of what an IKE SA (not a Child SA) may be encrypted with
  return ikeEncryptionAllowed(e.algorithm)
}

/**
 * What of an IKE SA proposal this engine cannot do: each encryption transform as
 * `algorithm/keyBits`, each PRF, integrity algorithm and key-exchange group by name; empty when
 * it can do all of it. Read from the engine's own tables (transform IDs, PRF and integrity key
 * lengths, group numbers) and its check of what IKE may be encrypted with. The distribution
 * processor calls it at start (through `IkeServiceFactory.unsupportedIn`) for every configured
 * IKE proposal, before anything is claimed or bound.
 *
 * @param proposal - the proposal
 */
export function unsupportedInIkeProposal(proposal: IkeProposal): string[] {
  const out: string[] = []
  for (const e of proposal.encryption)
    if (!encryptionUsable(e)) out.push(`${String(e.algorithm)}/${String(e.keyBits)}`)
  for (const f of proposal.prf) if (!known(() => prfLength(f))) out.push(String(f))
  for (const i of proposal.integrity) if (!known(() => integrityKeyLength(i))) out.push(String(i))
  for (const g of proposal.keyExchange)
    if (g !== 'none' && GROUP_NUMBER[g] === undefined) out.push(String(g))
  return out
}
