/**
 * What an {@link IkeV2Service} needs (components) and how it is configured (init), with the
 * defaults.
 *
 * @module
 */
import type { IkeStartConnection } from './keep-up.js'
import type { KeyExchangePool, KeyExchangePoolOptions } from './key-pool.js'
import {
  resolveFragmentation,
  type FragmentationOptions,
  type ResolvedFragmentation
} from './fragments.js'
import type {
  Clock,
  EspEngine,
  Identity,
  Phase1Policy,
  Phase2Policy,
  RandomSource,
  TrafficSelector,
  UdpEndpoint
} from '@vipsec/interface'

/** What the service needs from its surroundings. */
export interface IkeV2ServiceComponents {
  /** Time, for retransmissions, keep-alives and liveness. */
  clock: Clock
  /** Randomness for SPIs, nonces, key-exchange secrets and IVs. */
  random: RandomSource
  /** Where negotiated Child SAs (and, by default, their filters) are installed. */
  espEngine: EspEngine
  /** The UDP socket on port 500 of the local address. */
  udp500: UdpEndpoint
  /** The UDP socket on port 4500 (NAT traversal, RFC 3948), shared with ESP-in-UDP. */
  udp4500: UdpEndpoint
  /** Ephemeral key-exchange values made ahead of time. Default: none. */
  keyExchanges?: KeyExchangePool
}

/** A pre-shared key from local configuration. */
export interface PskCredential {
  /** The peer identity the key is shared with. */
  remote: Identity
  /** Our identity it applies to (any, when absent). */
  local?: Identity
  /** The key: bytes, or a string taken as UTF-8. */
  secret: Uint8Array | string
}

/** A certificate and private key of this side, from local configuration. */
export interface CertificateCredential {
  /** Our identity the certificate stands for. */
  identity: Identity
  /** The DER certificate, sent in a CERT payload. */
  certificate: Uint8Array
  /** The private key in PEM (PKCS#8) form: ECDSA (P-256, P-384, P-521) or RSA. */
  privateKey: string
  /**
   * The intermediate CA certificates (DER) between it and the peer's trust anchor, sent in
   * further CERT payloads, the one that issued `certificate` first. Default: none.
   */
  intermediates?: Uint8Array[]
}

/** A certification authority this side trusts. */
export interface TrustAnchor {
  /** The DER (or PEM) CA certificate. */
  certificate: Uint8Array | string
}

/** A Child SA this side accepts from or proposes to a peer. */
export interface IkeChildConfig {
  /** The crypto policy (ESP proposals must use algorithms the ESP engine has: AES-GCM-16). */
  policy: Phase2Policy
  /** Tunnel or transport mode. */
  mode: 'tunnel' | 'transport'
  /** Our selectors (the widest we accept). */
  local: TrafficSelector[]
  /** The peer's selectors (the widest we accept). */
  remote: TrafficSelector[]
}

/** A peer this service answers as responder. */
export interface IkePeerConfig {
  /** Our identity towards this peer. */
  localIdentity: Identity
  /** The identity the peer must prove; absent: any identity for which a credential exists. */
  remoteIdentity?: Identity
  /** The phase 1 policy we accept. */
  phase1: Phase1Policy
  /** The Child SAs we accept, tried in order. */
  children: IkeChildConfig[]
  /**
   * Whether our messages to this peer are fragmented (RFC 7383) when they are too large and it
   * supports fragmentation (swanctl's `fragmentation = yes | no`); also applies to connections
   * we initiate with these identities. Default: the service's `fragmentation.enabled`.
   */
  fragmentation?: boolean
}

/** Retransmission timing (RFC 7296 section 2.1). */
export interface RetransmitOptions {
  /** The first timeout, in ms. Default 2000. */
  timeoutMs?: number
  /** The factor each further timeout grows by. Default 1.8. */
  backoff?: number
  /** Retransmissions after the first send before giving up. Default 5. */
  tries?: number
}

/** Warm mode (RFC 6311 message ID sync, state export and adoption); see the README. */
export interface WarmOptions {
  /**
   * Whether IKEV2_MESSAGE_ID_SYNC_SUPPORTED is announced in IKE_AUTH, Child SA keys are kept for
   * `exportState`, and a peer's IKEV2_MESSAGE_ID_SYNC is answered. Default false.
   */
  enabled?: boolean
  /**
   * Added to the recorded message ID of our next request in the sync an heir sends: the dead
   * owner may have sent requests after its state was recorded, and the peer ignores a sync whose
   * value is below the one it expects. One more per liveness interval since the state was
   * recorded is added to it. Default 16.
   */
  midSyncMargin?: number
  /**
   * IKE SAs adopted (synchronised) at once by `adopt`; also the most post-adoption IKE rekeys
   * (`rekeyAfterAdoptMs`) under way at once. Default 64.
   */
  adoptConcurrency?: number
  /**
   * Each adopted IKE SA is rekeyed (CREATE_CHILD_SA, through the state sink like any IKE rekey)
   * after a random delay from 0 up to this many ms, counted from when no adoption is under way
   * any more (the rekeys of a takeover wait for all of its adoptions), so that it has fresh keys, a fresh IV space
   * and a fresh lifetime before any next takeover: an heir cannot know how many IVs the dead
   * owner used under the adopted keys, and some peers (strongSwan's charon under AES-GCM) destroy
   * an IKE SA that gets a second message ID sync under the same keys. The random delay spreads
   * the rekeys of many adopted SAs. 0 turns it off; a negative value is an InvalidConfigError.
   * Default 2000.
   */
  rekeyAfterAdoptMs?: number
}

/** Options of the service; every field has a default. */
export interface IkeV2ServiceInit {
  /**
   * The peers this service answers as responder. Default: none (responder refuses all). The
   * service keeps this array and reads it at each negotiation: it may be edited in place (a
   * reload), followed by {@link configChanged} (see there); its entries are read as values.
   */
  peers?: IkePeerConfig[]
  /** Pre-shared keys from local configuration. Default: none. Edited in place as `peers`. */
  psks?: PskCredential[]
  /** Our certificates and private keys. Default: none. Edited in place as `peers`. */
  certificates?: CertificateCredential[]
  /** Trusted CAs that peer certificates must be issued by. Default: none. Edited in place as `peers`. */
  trustAnchors?: TrustAnchor[]
  /**
   * Connections this service initiates itself when it starts, and keeps up (strongSwan's
   * `start_action = start`): those whose `request.local.address` is the address of this
   * service's sockets (so that every service of a factory starts its own DVIPA's). Default: none
   * (the service only answers and does what it is asked).
   */
  connections?: IkeStartConnection[]
  /**
   * Whether our RSA keys sign with RSASSA-PSS (RFC 8017) rather than PKCS#1 v1.5, in RFC 7427
   * digital signatures (strongSwan's `rsa_pss = yes`). Peers' PSS signatures are verified either
   * way. Default false.
   */
  rsaPss?: boolean
  /** Retransmission timing. */
  retransmit?: RetransmitOptions
  /** IKE message fragmentation (RFC 7383): on by default, with a 576/1280-byte fragment size. */
  fragmentation?: FragmentationOptions
  /**
   * Half-open (IKE_SA_INIT answered, no IKE_AUTH yet) SAs of one source address beyond which
   * that address must return a COOKIE (RFC 7296 section 2.6). Never a reason to drop: a request
   * with a valid cookie proves its address, so spoofing a peer's address cannot lock it out.
   * Default 10.
   */
  halfOpenLimitPerPeer?: number
  /**
   * Half-open SAs in total beyond which every IKE_SA_INIT must return a COOKIE before any key
   * exchange is computed or state is kept. Default 50.
   */
  cookieThreshold?: number
  /**
   * Most half-open SAs in total: requests beyond it are dropped (counted as `half-open-limit`)
   * even with a valid cookie. Bounds the responder's memory. Default 2000.
   */
  halfOpenLimit?: number
  /**
   * Unprotected error notifies (INVALID_SYNTAX, NO_PROPOSAL_CHOSEN, INVALID_KE_PAYLOAD,
   * INVALID_MAJOR_VERSION, UNSUPPORTED_CRITICAL_PAYLOAD in IKE_SA_INIT responses) sent per
   * second at most; the rest are counted in `notifiesSuppressed`. COOKIE is not limited.
   * Default 100.
   */
  unprotectedNotifiesPerSecond?: number
  /** How long a half-open SA is kept, in ms. Default 30000. */
  halfOpenTimeoutMs?: number
  /** NAT keep-alive interval (RFC 3948) when this side is behind a NAT, in ms. Default 20000. */
  keepaliveIntervalMs?: number
  /** Whether the service installs protect filters for its Child SAs in the ESP engine. Default true. */
  installFilters?: boolean
  /** Priority of those filters (lower first). Default 100. */
  filterPriority?: number
  /** Nonce length in bytes, 16 to 256. Default 32. */
  nonceLength?: number
  /** Warm mode (RFC 6311). Default off. */
  warm?: WarmOptions
  /**
   * Ephemeral key-exchange values made ahead of time, while idle, by
   * {@link ikeV2ServiceFactory} for all the services it makes (see {@link KeyExchangePool}).
   * Default: none (each value is made when its exchange needs it). Ignored by a service made
   * directly, which uses the pool of its components, if any.
   */
  keyExchangePool?: KeyExchangePoolOptions
}

/** The init with every default applied. */
export interface ResolvedInit {
  peers: IkePeerConfig[]
  psks: PskCredential[]
  certificates: CertificateCredential[]
  trustAnchors: TrustAnchor[]
  connections: IkeStartConnection[]
  rsaPss: boolean
  retransmit: Required<RetransmitOptions>
  fragmentation: ResolvedFragmentation
  halfOpenLimitPerPeer: number
  cookieThreshold: number
  halfOpenLimit: number
  unprotectedNotifiesPerSecond: number
  halfOpenTimeoutMs: number
  keepaliveIntervalMs: number
  installFilters: boolean
  filterPriority: number
  nonceLength: number
  warm: Required<WarmOptions>
}

/** Applies the defaults. */
export function resolveInit(init: IkeV2ServiceInit): ResolvedInit {
  return {
    peers: init.peers ?? [],
    psks: init.psks ?? [],
    certificates: init.certificates ?? [],
    trustAnchors: init.trustAnchors ?? [],
    connections: init.connections ?? [],
    rsaPss: init.rsaPss ?? false,
    retransmit: {
      timeoutMs: init.retransmit?.timeoutMs ?? 2000,
      backoff: init.retransmit?.backoff ?? 1.8,
      tries: init.retransmit?.tries ?? 5
    },
    fragmentation: resolveFragmentation(init.fragmentation),
    halfOpenLimitPerPeer: init.halfOpenLimitPerPeer ?? 10,
    cookieThreshold: init.cookieThreshold ?? 50,
    halfOpenLimit: init.halfOpenLimit ?? 2000,
    unprotectedNotifiesPerSecond: init.unprotectedNotifiesPerSecond ?? 100,
    halfOpenTimeoutMs: init.halfOpenTimeoutMs ?? 30000,
    keepaliveIntervalMs: init.keepaliveIntervalMs ?? 20000,
    installFilters: init.installFilters ?? true,
    filterPriority: init.filterPriority ?? 100,
    nonceLength: init.nonceLength ?? 32,
    warm: {
      enabled: init.warm?.enabled ?? false,
      midSyncMargin: init.warm?.midSyncMargin ?? 16,
      adoptConcurrency: init.warm?.adoptConcurrency ?? 64,
      rekeyAfterAdoptMs: init.warm?.rekeyAfterAdoptMs ?? 2000
    }
  }
}
