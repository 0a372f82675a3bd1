/**
 * The identities, inner networks and policies shared by the strongSwan system tests and the IKE
 * bench: vipsec protects 172.16.1.0/24, charon the single inner host 172.16.2.1 (on its `lo`,
 * so that the inner selectors never equal the outer IKE addresses, which charon refuses).
 */
import type {
  ChildLifetime,
  ChildProposal,
  IkeProposal,
  KeyExchangeGroup,
  Phase1Policy,
  Phase2Policy,
  TrafficSelector
} from '@vipsec/interface'

/** vipsec's identity in the interop tests. */
export const V_ID = { type: 'fqdn' as const, value: 'vipsec.example' }
/** charon's identity in the interop tests. */
export const C_ID = { type: 'fqdn' as const, value: 'charon.example' }
/** vipsec's inner network. */
export const V_NET: TrafficSelector = {
  startAddress: '172.16.1.0',
  endAddress: '172.16.1.255',
  protocol: 0,
  startPort: 0,
  endPort: 65535
}
/** charon's inner host (an address on its `lo`). */
export const C_HOST: TrafficSelector = {
  startAddress: '172.16.2.1',
  endAddress: '172.16.2.1',
  protocol: 0,
  startPort: 0,
  endPort: 65535
}
/** The address of charon's inner host. */
export const C_INNER = '172.16.2.1'
/** The address vipsec sends from, inside its inner network. */
export const V_INNER = '172.16.1.1'

/** The IKE proposal most tests use: AES-GCM-256, PRF HMAC-SHA2-256, Curve25519. */
export const GCM_IKE_PROPOSAL: IkeProposal = {
  encryption: [{ algorithm: 'aes-gcm-16', keyBits: 256 }],
  integrity: ['none'],
  prf: ['hmac-sha2-256'],
  keyExchange: ['curve25519']
}

/** A PSK IKE policy with one proposal (GCM_IKE_PROPOSAL), no rekeys, no liveness checks. */
export const GCM_PHASE1: Phase1Policy = {
  proposals: [GCM_IKE_PROPOSAL],
  authMethod: 'psk',
  lifetime: { rekeySeconds: 0, reauthSeconds: 0 },
  liveness: { intervalMs: 0, timeoutMs: 0 }
}

/** A Child SA lifetime without limits (rekeys are started by the tests). */
export const NO_CHILD_LIFETIME: ChildLifetime = {
  softSeconds: 0,
  hardSeconds: 0,
  softBytes: 0,
  hardBytes: 0,
  softPackets: 0,
  hardPackets: 0
}

/** An ESP proposal of AES-GCM-256, with the PFS group `pfs` (or none). */
export function gcmChildProposal(pfs: KeyExchangeGroup = 'none'): ChildProposal {
  return {
    protocol: 'esp',
    encryption: [{ algorithm: 'aes-gcm-16', keyBits: 256 }],
    integrity: ['none'],
    keyExchange: [pfs],
    extendedSequenceNumbers: [false]
  }
}

/** A Child SA policy of the given proposals (default: AES-GCM-256), PFS group `pfs`. */
export function phase2(
  pfs: KeyExchangeGroup = 'none',
  proposals: ChildProposal[] = [gcmChildProposal(pfs)]
): Phase2Policy {
  return { proposals, pfsGroup: pfs, lifetime: NO_CHILD_LIFETIME }
}

/** The Child SA policy most tests use: AES-GCM-256 without PFS. */
export const GCM_PHASE2: Phase2Policy = phase2('none')
