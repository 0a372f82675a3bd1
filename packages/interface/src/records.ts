/**
 * The records a distribution processor keeps in the coupling store, under its DVIPA, so that a
 * backup can renegotiate every SA after a takeover. Records hold what is needed to
 * **renegotiate**, never keys or long-term credentials. Every record carries `v`, its format
 * version, and is validated when read (see `decodeRecord`).
 *
 * @module
 */
import type {
  Dvipa,
  Endpoint,
  FiveTuple,
  FilterSelector,
  NodeId,
  TrafficSelector
} from './addressing.js'

/** The current format version of every record kind. */
export const RECORD_VERSION = 1

/** The kinds of per-DVIPA records. */
export type RecordKind =
  'phase1' | 'phase2' | 'correlation' | 'filter' | 'connection' | 'warm' | 'sequence'

/** Every record kind, in the order a takeover consumes them. */
export const RECORD_KINDS: readonly RecordKind[] = [
  'phase1',
  'phase2',
  'correlation',
  'filter',
  'connection',
  'warm',
  'sequence'
]

/** IKE and ESP encryption algorithms (RFC 7296, RFC 4106, RFC 4543, RFC 3602, RFC 7634). */
export type EncryptionAlgorithm = 'aes-gcm-16' | 'aes-cbc' | 'null-aes-gmac' | 'chacha20-poly1305'

/** An encryption transform with its key length. */
export interface EncryptionTransform {
  /** The algorithm. */
  algorithm: EncryptionAlgorithm
  /** Key length in bits (128 or 256; 192 for AES-CBC and AES-GCM where offered; 256 for ChaCha20). */
  keyBits: 128 | 192 | 256
}

/** Integrity algorithms; `none` with combined-mode (AEAD) encryption; HMAC-SHA1-96 for legacy peers. */
export type IntegrityAlgorithm =
  'hmac-sha2-256-128' | 'hmac-sha2-384-192' | 'hmac-sha2-512-256' | 'hmac-sha1-96' | 'none'

/** Pseudo-random functions for IKE (HMAC-SHA1 for legacy peers). */
export type PrfAlgorithm = 'hmac-sha2-256' | 'hmac-sha2-384' | 'hmac-sha2-512' | 'hmac-sha1'

/**
 * Key-exchange groups: 31 Curve25519, 32 Curve448, 19 P-256, 20 P-384, 21 P-521, 14 MODP-2048,
 * 15 MODP-3072, 16 MODP-4096; `none` for a Child SA without PFS.
 */
export type KeyExchangeGroup =
  | 'curve25519'
  | 'curve448'
  | 'ecp256'
  | 'ecp384'
  | 'ecp521'
  | 'modp2048'
  | 'modp3072'
  | 'modp4096'
  | 'none'

/** One IKE SA proposal: every combination of the listed transforms is acceptable. */
export interface IkeProposal {
  /** Encryption transforms, most preferred first. */
  encryption: EncryptionTransform[]
  /** Integrity algorithms (`['none']` with AEAD encryption). */
  integrity: IntegrityAlgorithm[]
  /** PRFs, most preferred first. */
  prf: PrfAlgorithm[]
  /** Key-exchange groups, most preferred first. */
  keyExchange: KeyExchangeGroup[]
}

/** One Child SA proposal. */
export interface ChildProposal {
  /** The IPsec protocol; vipsec does ESP only. */
  protocol: 'esp'
  /** Encryption transforms, most preferred first. */
  encryption: EncryptionTransform[]
  /** Integrity algorithms (`['none']` with AEAD encryption). */
  integrity: IntegrityAlgorithm[]
  /** PFS groups for CREATE_CHILD_SA; `['none']` for no PFS. */
  keyExchange: KeyExchangeGroup[]
  /** Whether extended (64-bit) sequence numbers are offered: `[true, false]` offers both. */
  extendedSequenceNumbers: boolean[]
}

/** How the IKE SA authenticates. */
export type AuthMethod = 'psk' | 'ecdsa-p256-sha256' | 'rsa-sha256' | 'digital-signature'

/** IKE identity types (RFC 7296 section 3.5). */
export type IdentityType = 'ipv4' | 'ipv6' | 'fqdn' | 'rfc822' | 'der-dn' | 'key-id'

/** An IKE identity. */
export interface Identity {
  /** The identity type. */
  type: IdentityType
  /** The value: an address, a name, an e-mail address, a DN in RFC 4514 text, or key id in hex. */
  value: string
}

/** Lifetimes of an IKE SA. */
export interface IkeLifetime {
  /** Seconds after which the IKE SA is rekeyed. */
  rekeySeconds: number
  /** Seconds after which the IKE SA is re-authenticated (0: never). */
  reauthSeconds: number
}

/** Liveness checks of an IKE SA (RFC 7296 section 2.4). */
export interface Liveness {
  /** Idle time after which an empty INFORMATIONAL probes the peer, in ms (0: off). */
  intervalMs: number
  /** Time without any answer after which the peer is declared dead, in ms. */
  timeoutMs: number
}

/** The cached phase 1 policy: what the owner used to set up the IKE SA. */
export interface Phase1Policy {
  /** Proposals, in order of preference. */
  proposals: IkeProposal[]
  /** The authentication method this side uses. */
  authMethod: AuthMethod
  /** Lifetimes. */
  lifetime: IkeLifetime
  /** Dead peer detection. */
  liveness: Liveness
}

/** NAT traversal state of an IKE SA (RFC 7296 section 2.23). */
export interface NatTraversal {
  /** Whether this side was found to be behind a NAT. */
  localBehindNat: boolean
  /** Whether the peer was found to be behind a NAT. */
  remoteBehindNat: boolean
  /** Whether IKE and ESP travel in UDP on port 4500 (forced or because of a NAT). */
  encapsulated: boolean
}

/** The IKE SA identifier: the two 8-byte SPIs in lower-case hex (16 digits each). */
export interface IkeSaId {
  /** The initiator's SPI. */
  initiatorSpi: string
  /** The responder's SPI (all zeros until IKE_SA_INIT is answered). */
  responderSpi: string
}

/** Phase 1: one IKE SA of the owner, with what a backup needs to renegotiate it. */
export interface Phase1Record {
  /** Format version. */
  v: 1
  /** Record kind. */
  kind: 'phase1'
  /** Unique among this DVIPA's phase 1 records. */
  id: string
  /** The DVIPA this IKE SA terminates on. */
  dvipa: Dvipa
  /** The IKE SA's SPIs. */
  ikeSaId: IkeSaId
  /** Whether the owner was the IKE initiator. */
  role: 'initiator' | 'responder'
  /** This side's identity. */
  localIdentity: Identity
  /** The peer's identity. */
  remoteIdentity: Identity
  /** The local IKE endpoint (the DVIPA and port 500 or 4500). */
  local: Endpoint
  /** The peer's IKE endpoint as last seen (after NAT). */
  peer: Endpoint
  /** NAT traversal state. */
  nat: NatTraversal
  /** The cached phase 1 policy. */
  policy: Phase1Policy
  /** When the IKE SA was established, ms since the Unix epoch. */
  establishedAt: number
}

/** Lifetimes of a Child SA; 0 in any field means no limit of that kind. */
export interface ChildLifetime {
  /** Seconds to the soft limit (rekey). */
  softSeconds: number
  /** Seconds to the hard limit (delete). */
  hardSeconds: number
  /** Bytes to the soft limit. */
  softBytes: number
  /** Bytes to the hard limit. */
  hardBytes: number
  /** Packets to the soft limit. */
  softPackets: number
  /** Packets to the hard limit. */
  hardPackets: number
}

/** The phase 2 crypto policy of a Child SA. */
export interface Phase2Policy {
  /** Proposals, in order of preference. */
  proposals: ChildProposal[]
  /** The PFS group used when this Child SA is rekeyed (`none`: no PFS). */
  pfsGroup: KeyExchangeGroup
  /** Lifetimes. */
  lifetime: ChildLifetime
}

/** Phase 2: one Child SA (an ESP SA pair) of the owner. */
export interface Phase2Record {
  /** Format version. */
  v: 1
  /** Record kind. */
  kind: 'phase2'
  /** Unique among this DVIPA's phase 2 records. */
  id: string
  /** The DVIPA. */
  dvipa: Dvipa
  /** The IPsec protocol. */
  protocol: 'esp'
  /** The SPI of the inbound SA (chosen by the owner), 8 hex digits. */
  inboundSpi: string
  /** The SPI of the outbound SA (chosen by the peer), 8 hex digits. */
  outboundSpi: string
  /** Tunnel or transport mode. */
  mode: 'tunnel' | 'transport'
  /** The crypto policy. */
  policy: Phase2Policy
  /** The negotiated traffic selectors: the dynamic filter selectors. */
  selectors: {
    /** This side's selectors (the service subnet behind the DVIPA). */
    local: TrafficSelector[]
    /** The peer's selectors. */
    remote: TrafficSelector[]
  }
  /** How ESP is carried: bare (IP protocol 50) or in UDP (RFC 3948). */
  encapsulation: 'none' | 'udp'
  /** When the Child SA was established, ms since the Unix epoch. */
  establishedAt: number
}

/** The correlation of one IKE SA (phase 1) with the Child SAs (phase 2) created under it. */
export interface CorrelationRecord {
  /** Format version. */
  v: 1
  /** Record kind. */
  kind: 'correlation'
  /** Equal to `phase1Id`: one correlation per IKE SA. */
  id: string
  /** The DVIPA. */
  dvipa: Dvipa
  /** The id of the phase 1 record. */
  phase1Id: string
  /** The ids of the phase 2 records under it. */
  phase2Ids: string[]
}

/** What a dynamic filter does with matching traffic. */
export type FilterAction = 'protect' | 'bypass' | 'discard'

/** A dynamic filter: an SPD entry installed for a Child SA. */
export interface FilterRecord {
  /** Format version. */
  v: 1
  /** Record kind. */
  kind: 'filter'
  /** Unique among this DVIPA's filters. */
  id: string
  /** The DVIPA. */
  dvipa: Dvipa
  /** The Child SA this filter belongs to (for `protect`). */
  phase2Id: string | null
  /** Traffic direction the filter applies to. */
  direction: 'inbound' | 'outbound'
  /** What matches. */
  selector: FilterSelector
  /** What is done with it. */
  action: FilterAction
  /** Lower numbers are matched first. */
  priority: number
}

/** One routed connection: which target a flow to the DVIPA is distributed to. */
export interface ConnectionRecord {
  /** Format version. */
  v: 1
  /** Record kind. */
  kind: 'connection'
  /** Unique among this DVIPA's connections (by convention derived from the flow). */
  id: string
  /** The DVIPA. */
  dvipa: Dvipa
  /** The flow, as seen inbound from the peer. */
  flow: FiveTuple
  /** The target node serving the flow. */
  target: NodeId
  /** `false` when the target is the distribution processor itself (a local connection). */
  distributed: boolean
  /** The Child SA the flow travels in, if protected. */
  phase2Id: string | null
  /** When the connection was first seen, ms since the Unix epoch. */
  createdAt: number
}

/**
 * Warm mode: one IKE SA's secret state (keys, message IDs, with its records) sealed under the
 * cluster key (AEAD). The store holds only ciphertext: without a node's cluster key it is
 * useless, and a changed byte, another key id or a move to another record fails to open.
 */
export interface WarmRecord {
  /** Format version. */
  v: 1
  /** Record kind. */
  kind: 'warm'
  /** Equal to `phase1Id`: one sealed state per IKE SA. */
  id: string
  /** The DVIPA. */
  dvipa: Dvipa
  /** The phase 1 record whose state this is. */
  phase1Id: string
  /** The id of the cluster key it is sealed under (so that keys can be rotated). */
  keyId: string
  /**
   * Incremented by the writer on each new sealing of this IKE SA (with its epoch, part of the
   * associated data), so that an older blob cannot be put back in place of a newer one unnoticed
   * by the writer's own bookkeeping.
   */
  version: number
  /** The epoch of the owner that sealed it (associated data). */
  epoch: number
  /** The AEAD nonce, base64 (12 bytes). */
  nonce: string
  /** The ciphertext with its 16-byte tag appended, base64. */
  sealed: string
}

/**
 * Warm mode: the outbound ESP sequence numbers reserved for one outbound SA. The owner never
 * sends a number above `reservedEnd` before it has written a higher one, so an heir that starts
 * past it never repeats a (key, nonce) pair.
 */
export interface SequenceRecord {
  /** Format version. */
  v: 1
  /** Record kind. */
  kind: 'sequence'
  /** Equal to `phase2Id`: one reservation per Child SA. */
  id: string
  /** The DVIPA. */
  dvipa: Dvipa
  /** The Child SA (phase 2 record id). */
  phase2Id: string
  /** The outbound SPI, 8 hex digits. */
  outboundSpi: string
  /** The highest outbound sequence number reserved, decimal (a 64-bit number). */
  reservedEnd: string
  /**
   * The highest inbound sequence number received when the reservation was written, decimal
   * (`0` if unknown): an heir's anti-replay window starts there.
   */
  inbound: string
  /** The id of the cluster key that authenticates it. */
  keyId: string
  /**
   * HMAC-SHA-256 (16 bytes, base64) of the fields above under a key derived from the cluster
   * key, so that a store writer cannot lower a reservation (it can only replay an older one of
   * the same Child SA).
   */
  mac: string
}

/** Any per-DVIPA record. */
export type DvipaRecord =
  | Phase1Record
  | Phase2Record
  | CorrelationRecord
  | FilterRecord
  | ConnectionRecord
  | WarmRecord
  | SequenceRecord

/** Maps a record kind to its record type. */
export interface RecordByKind {
  /** Phase 1. */
  phase1: Phase1Record
  /** Phase 2. */
  phase2: Phase2Record
  /** Correlation. */
  correlation: CorrelationRecord
  /** Dynamic filter. */
  filter: FilterRecord
  /** Connection routing entry. */
  connection: ConnectionRecord
  /** Sealed IKE SA state (warm mode). */
  warm: WarmRecord
  /** Outbound sequence reservation (warm mode). */
  sequence: SequenceRecord
}

/** Who owns a DVIPA, since when, and under which epoch (fencing token). */
export interface Ownership {
  /** Format version. */
  v: 1
  /** The DVIPA. */
  dvipa: Dvipa
  /** The owning distribution processor; `null` once the owner released the DVIPA. */
  owner: NodeId | null
  /** Incremented by every successful claim; carried by every later write as a fencing token. */
  epoch: number
  /** The backups, best first, as the owner published them. */
  ranks: NodeId[]
  /** When the claim succeeded, ms since the Unix epoch. */
  claimedAt: number
  /**
   * The node whose SAs the DVIPA's records still are, when `owner` did not write them: on a
   * released record, the owner that released it; on a claim made in another node's name (a
   * planned switchover to it), the owner that claim replaced. The node that takes the DVIPA
   * over takes it from this node (its report's previous owner, the mailbox its deletes go to).
   * Absent after a node's own claim: the records are then the owner's.
   */
  previousOwner?: NodeId
}

/** A request to delete SAs, left in a node's mailbox by the node that took its DVIPA over. */
export interface DeleteMessage {
  /** Format version. */
  v: 1
  /** Unique message id. */
  id: string
  /** The node the SAs belonged to. */
  to: NodeId
  /** The new owner that sent it. */
  from: NodeId
  /** The DVIPA the SAs served. */
  dvipa: Dvipa
  /** The new owner's epoch. */
  epoch: number
  /** IKE SAs to delete. */
  ikeSas: IkeSaId[]
  /** Child SAs to delete, by their SPIs (8 hex digits). */
  childSas: {
    /** The inbound SPI, 8 hex digits. */
    inboundSpi: string
    /** The outbound SPI, 8 hex digits. */
    outboundSpi: string
  }[]
  /** When it was sent, ms since the Unix epoch. */
  sentAt: number
}

/** A stored record that could not be decoded; it is reported, never silently dropped. */
export interface CorruptEntry {
  /** The kind it was stored as. */
  kind: RecordKind
  /** The id it was stored under. */
  id: string
  /** The error's name: `CorruptRecordError` or `UnsupportedRecordVersionError`. */
  error: string
  /** The error's message, naming the bad field. */
  message: string
}

/**
 * Everything a DVIPA's records hold, grouped by kind, as a takeover reads it, with every stored
 * entry that could not be decoded listed in `corrupt`.
 */
export interface DvipaRecordSet {
  /** Entries that could not be decoded (their bytes stay in the store or the takeover journal). */
  corrupt: CorruptEntry[]
  /** Phase 1 records. */
  phase1: Phase1Record[]
  /** Phase 2 records. */
  phase2: Phase2Record[]
  /** Correlations. */
  correlation: CorrelationRecord[]
  /** Dynamic filters. */
  filter: FilterRecord[]
  /** Connection routing entries. */
  connection: ConnectionRecord[]
  /** Sealed IKE SA states (warm mode). */
  warm: WarmRecord[]
  /** Outbound sequence reservations (warm mode). */
  sequence: SequenceRecord[]
}
