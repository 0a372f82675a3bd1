import type { Observable } from 'rxjs'
import type { Endpoint, FilterSelector } from './addressing.js'
import type { ChildLifetime, FilterAction } from './records.js'
import type { Startable } from './startable.js'

/**
 * ESP encryption transforms: AES-GCM with a 16-byte ICV (RFC 4106), AES-GMAC (RFC 4543),
 * ChaCha20-Poly1305 (RFC 7634), all combined-mode (AEAD); and AES-CBC (RFC 3602), which needs an
 * `integrity` algorithm beside it.
 */
export type EspAlgorithm = 'aes-gcm-16' | 'null-aes-gmac' | 'chacha20-poly1305' | 'aes-cbc'

/**
 * ESP integrity transforms for AES-CBC: HMAC-SHA-256, -384 and -512 truncated to 128, 192 and
 * 256 bits (RFC 4868), and HMAC-SHA-1 truncated to 96 bits (RFC 2404) for legacy peers.
 */
export type EspIntegrityAlgorithm =
  'hmac-sha2-256-128' | 'hmac-sha2-384-192' | 'hmac-sha2-512-256' | 'hmac-sha1-96'

/** The direction of an SA or a filter, seen from this node. */
export type EspDirection = 'inbound' | 'outbound'

/** The parameters of one unidirectional ESP SA. */
export interface EspSaParams {
  /** The SPI, 256 to 2^32-1 (0 and 1-255 are reserved by RFC 4303, and refused). */
  spi: number
  /** Whether this SA decrypts (inbound) or encrypts (outbound). */
  direction: EspDirection
  /** Tunnel or transport mode. */
  mode: 'tunnel' | 'transport'
  /** The encryption transform. */
  algorithm: EspAlgorithm
  /**
   * The integrity transform: required with `aes-cbc`, and must be absent with the combined-mode
   * algorithms (their ICV is their own).
   */
  integrity?: EspIntegrityAlgorithm
  /**
   * Keying material, in the order RFC 7296 section 2.17 takes it from KEYMAT (encryption key
   * first, then integrity key):
   * - `aes-gcm-16`, `null-aes-gmac`: the AES key (16, 24 or 32 bytes), then a 4-byte salt
   *   (RFC 4106 section 8.1, RFC 4543);
   * - `chacha20-poly1305`: the 32-byte key, then a 4-byte salt (RFC 7634 section 2);
   * - `aes-cbc`: the AES key (16, 24 or 32 bytes), then the HMAC key (32, 48 or 64 bytes for
   *   HMAC-SHA-256/384/512, 20 for HMAC-SHA-1).
   */
  keyMaterial: Uint8Array
  /** Whether 64-bit extended sequence numbers are used. */
  extendedSequenceNumbers: boolean
  /** Anti-replay window size in packets (inbound): default 128, at most 4096, 0 turns it off. */
  replayWindow?: number
  /** Soft and hard limits; 0 means none of that kind. */
  lifetime: ChildLifetime
  /**
   * Outer addresses, this side and the peer. In tunnel mode the tunnel endpoints (outbound
   * packets go to `remote`); in transport mode the two hosts, from which inbound packets get their
   * IP header back (and are checked against the inbound filters). Required for outbound
   * tunnel-mode and inbound transport-mode SAs (`InvalidParametersError` naming `params.tunnel`).
   */
  tunnel?: {
    /** This side's address. */
    local: string
    /** The peer's address. */
    remote: string
  }
  /** UDP encapsulation (RFC 3948): the ports of both sides, as seen after NAT. */
  udpEncapsulation?: {
    /** This side's address and port. */
    local: Endpoint
    /** The peer's address and port (where outbound packets go). */
    remote: Endpoint
  }
  /**
   * Where the sequence numbers continue, for an SA that takes over from another copy of itself
   * (default 0). Outbound: the last number already used; the next packet carries one more. Never
   * set it lower than a number already used under the same key. Inbound: the highest number
   * already received; the window starts there, with every number at or below it taken as seen.
   */
  initialSequence?: bigint
  /**
   * Outbound, warm mode: the highest sequence number this SA may use before its owner reserves
   * more in the coupling store (see `EspEngine.setSequenceLimit`); a packet past it is dropped
   * and counted. Default: no limit.
   */
  sequenceLimit?: bigint
  /** An opaque tag the owner uses to find its Child SA (for example the phase 2 record id). */
  tag?: string
}

/** What an engine reports about one installed SA. */
export interface EspSaInfo {
  /** The SPI. */
  spi: number
  /** The direction. */
  direction: EspDirection
  /** The mode. */
  mode: 'tunnel' | 'transport'
  /** The encryption transform. */
  algorithm: EspAlgorithm
  /** The integrity transform (with `aes-cbc`). */
  integrity?: EspIntegrityAlgorithm
  /** The tag given at install. */
  tag?: string
  /** Outbound: the last sequence number used; inbound: the highest sequence number accepted. */
  sequence: bigint
  /** Outbound, warm mode: the highest sequence number it may use (absent: no limit). */
  sequenceLimit?: bigint
  /** Packets processed under this SA. */
  packets: number
  /** Inner bytes processed under this SA. */
  bytes: number
  /** When it was installed, in ms of the engine's clock (`monotonic()`). */
  installedAt: number
  /** Whether a soft limit has been passed (a rekey is due). */
  softExpired: boolean
}

/** A dynamic filter (SPD entry) as the engine holds it. */
export interface DynamicFilter {
  /** Unique id. */
  id: string
  /** The direction it applies to. */
  direction: EspDirection
  /** What matches. */
  selector: FilterSelector
  /** What happens with a match. */
  action: FilterAction
  /** Lower numbers are matched first; equal priorities match in order of installation. */
  priority: number
  /** For `protect`: the SPI of the SA to use (outbound) or that must have carried the packet (inbound). */
  spi?: number
}

/**
 * Why the engine dropped a packet; each reason has a counter. `bad-padding`: the ICV verified but
 * the decrypted padding or pad length is not what RFC 4303 section 2.4 prescribes.
 */
export type EspDropReason =
  | 'unknown-spi'
  | 'icv-failure'
  | 'replay'
  | 'outside-window'
  | 'policy-mismatch'
  | 'malformed'
  | 'sa-expired'
  | 'no-policy'
  | 'no-sa'
  | 'discard-policy'
  | 'bad-padding'
  | 'sequence-unreserved'

/** Every {@link EspDropReason}, in the order counters report them. */
export const ESP_DROP_REASONS: readonly EspDropReason[] = [
  'unknown-spi',
  'icv-failure',
  'replay',
  'outside-window',
  'policy-mismatch',
  'malformed',
  'sa-expired',
  'no-policy',
  'no-sa',
  'discard-policy',
  'bad-padding',
  'sequence-unreserved'
]

/** Packet and drop counters of an engine. */
export interface EspCounters {
  /** Packets encapsulated. */
  encapsulated: number
  /** Packets decapsulated and accepted. */
  decapsulated: number
  /** Packets passed by a bypass policy. */
  bypassed: number
  /** NAT keep-alives (RFC 3948) received and ignored. */
  keepalives: number
  /** Drops by reason. */
  dropped: Record<EspDropReason, number>
}

/** The result of protecting one outbound inner packet. */
export type OutboundResult =
  | {
      /** The packet was encrypted. */
      action: 'protect'
      /** The ESP packet (or ESP-in-UDP payload) to send. */
      packet: Uint8Array
      /** The SA's SPI. */
      spi: number
      /**
       * Where to send it: the tunnel's remote address (transport mode without `tunnel`: the inner
       * destination), and the peer's UDP port if encapsulated (0 for bare ESP).
       */
      to: Endpoint
      /** Whether `packet` is to be sent as a UDP payload (RFC 3948). */
      udp: boolean
    }
  | {
      /** A bypass policy matched: send the packet as it is. */
      action: 'bypass'
      /** The packet. */
      packet: Uint8Array
    }
  | {
      /** Dropped; see `reason`. */
      action: 'drop'
      /** Why. */
      reason: EspDropReason
    }

/** The result of processing one inbound ESP packet. */
export type InboundResult =
  | {
      /** Decrypted and accepted by policy. */
      action: 'accept'
      /**
       * The inner IP packet: in tunnel mode the packet that was carried; in transport mode the
       * upper-layer payload with an IP header rebuilt from the SA's `tunnel` addresses.
       */
      packet: Uint8Array
      /** The SA's SPI. */
      spi: number
      /** The next-header value of the ESP trailer. */
      nextHeader: number
    }
  | {
      /** Dropped; see `reason`. */
      action: 'drop'
      /** Why. */
      reason: EspDropReason
    }

/** The result of processing the payload of one UDP datagram received on port 4500 (RFC 3948). */
export type UdpInboundResult =
  | InboundResult
  | {
      /** An IKE message behind the non-ESP marker: hand it to the IKE service. */
      action: 'ike'
      /** The IKE message, without the four-byte marker. */
      message: Uint8Array
    }
  | {
      /** A NAT keep-alive (one 0xFF byte): ignored and counted. */
      action: 'keepalive'
    }

/** The result of checking one inbound cleartext (not ESP) packet against the SPD. */
export type CleartextInboundResult =
  | {
      /** A bypass policy admits it. */
      action: 'bypass'
      /** The packet. */
      packet: Uint8Array
    }
  | {
      /**
       * Dropped: `policy-mismatch` when a protect filter covers it (it should have come in ESP),
       * `discard-policy` for a discard filter, `no-policy` when no filter matches.
       */
      action: 'drop'
      /** Why. */
      reason: EspDropReason
    }

/** Events of an ESP engine. */
export type EspEvent =
  | {
      /** An SA was installed. */
      type: 'sa:installed'
      /** Its SPI. */
      spi: number
      /** Its direction. */
      direction: EspDirection
      /** Its tag. */
      tag?: string
    }
  | {
      /** An SA was removed (by request or at its hard limit). */
      type: 'sa:removed'
      /** Its SPI. */
      spi: number
      /** Its direction. */
      direction: EspDirection
      /** Its tag. */
      tag?: string
      /** Why. */
      reason: 'deleted' | 'hard-expired' | 'sequence-exhausted'
    }
  | {
      /** An SA passed a soft limit: time to rekey. Emitted once per SA. */
      type: 'sa:soft-expired'
      /** Its SPI. */
      spi: number
      /** Its direction. */
      direction: EspDirection
      /** Its tag. */
      tag?: string
      /** Which limit. */
      limit: 'time' | 'bytes' | 'packets' | 'sequence'
    }
  | {
      /**
       * Warm mode: an outbound SA with a `sequenceLimit` came within the engine's low water of it (for the software engine, `sequenceLowWater`)
       * (emitted once per limit): its owner reserves the next block and raises the limit with
       * `setSequenceLimit`. Past the limit, packets are dropped as `sequence-unreserved`.
       */
      type: 'sa:sequence-low'
      /** Its SPI. */
      spi: number
      /** Always outbound. */
      direction: 'outbound'
      /** Its tag. */
      tag?: string
      /** The last sequence number used. */
      sequence: bigint
      /** The current limit. */
      limit: bigint
    }
  | {
      /** A filter was installed. */
      type: 'filter:installed'
      /** The filter. */
      filter: DynamicFilter
    }
  | {
      /** A filter was removed on request. */
      type: 'filter:removed'
      /** Its id. */
      id: string
    }
  | {
      /**
       * Installing a filter found an active one with the same id, or with the same direction and
       * selector: the older one was removed.
       */
      type: 'filter:duplicate-removed'
      /** The id of the filter that was removed. */
      removed: string
      /** The id of the filter that replaced it. */
      keptId: string
    }

/**
 * The ESP data plane (RFC 4303): a security association database (SAD) keyed by SPI, a security
 * policy database (SPD) of ordered dynamic filters, and anti-replay. Malformed input never throws
 * through the data path (`protect`, `unprotect`, `unprotectUdp`, `checkInbound`): it is dropped
 * and counted. The control methods (`addSa`, `installFilter`) throw `NotStartedError` before
 * `start()` and after `stop()`; `stop()` removes every SA and filter.
 */
/** The parts of a Child SA proposal an ESP engine's capabilities are checked against. */
export interface EspProposalShape {
  /** Encryption transforms with key lengths. */
  readonly encryption: readonly {
    /** The algorithm, as `EncryptionAlgorithm` names it (`aes-cbc`, `chacha20-poly1305`, ...). */
    readonly algorithm: string
    /** Key length in bits. */
    readonly keyBits: number
  }[]
  /** Integrity algorithms (`none` with AEAD). */
  readonly integrity: readonly string[]
}

export interface EspEngine extends Startable {
  /** SA and filter events; completes on `stop()`. */
  readonly events$: Observable<EspEvent>

  /**
   * What of a Child SA proposal this engine cannot install (each encryption transform as
   * `algorithm/keyBits`, each integrity algorithm that goes with none of them); empty when it can
   * do all of it. Optional: a distribution processor checks its configured proposals with it at
   * start, before it claims or binds anything, and skips the check for an engine without it.
   *
   * @param proposal - the proposal
   */
  unsupportedIn?(proposal: EspProposalShape): string[]

  /**
   * Installs an SA.
   *
   * @throws DuplicateSaError when an SA with this SPI and direction exists
   * @throws InvalidParametersError when a parameter is out of range (named in `argument`)
   * @throws NotStartedError when the engine is not started
   */
  addSa(params: EspSaParams): void

  /**
   * Removes an SA; returns whether it existed.
   *
   * @param spi - its SPI
   * @param direction - its direction
   */
  removeSa(spi: number, direction: EspDirection): boolean

  /** The installed SAs, with their sequence numbers and usage. */
  listSas(): EspSaInfo[]

  /**
   * One installed SA, as `listSas` gives it, without listing every SA (an owner with thousands
   * of SAs reads one at a time). Engines without it leave it out; callers fall back to
   * `listSas`.
   */
  saInfo?(spi: number, direction: EspDirection): EspSaInfo | undefined

  /**
   * Installs a dynamic filter. An active filter with the same id, or with the same direction and
   * selector, is removed (a `filter:duplicate-removed` event) so that exactly one remains.
   *
   * @returns the ids of the duplicates that were removed
   * @throws InvalidParametersError when the filter is malformed (named in `argument`)
   * @throws NotStartedError when the engine is not started
   */
  installFilter(filter: DynamicFilter): string[]

  /**
   * Removes a filter; returns whether it existed.
   *
   * @param id - the filter's id
   */
  removeFilter(id: string): boolean

  /** The active filters, in matching order. */
  listFilters(): DynamicFilter[]

  /**
   * Processes an outbound inner IP packet: SPD lookup, then encapsulation with the SA.
   *
   * @param packet - an IPv4 or IPv6 packet
   */
  protect(packet: Uint8Array): OutboundResult

  /**
   * Processes an inbound ESP packet: SAD lookup, anti-replay, ICV, then the SPD check of the inner
   * packet against the inbound filters.
   *
   * @param packet - the ESP packet, starting at the SPI
   */
  unprotect(packet: Uint8Array): InboundResult

  /**
   * Processes the payload of a UDP datagram received on the NAT-T port (RFC 3948): a keep-alive
   * is ignored, an IKE message (non-ESP marker) is handed back, anything else is ESP.
   *
   * @param payload - the UDP payload
   */
  unprotectUdp(payload: Uint8Array): UdpInboundResult

  /**
   * Checks an inbound cleartext IP packet against the inbound filters: only `bypass` admits it.
   *
   * @param packet - an IPv4 or IPv6 packet
   */
  checkInbound(packet: Uint8Array): CleartextInboundResult

  /** Current counters (a copy). */
  counters(): EspCounters

  /**
   * Warm mode: sets the highest sequence number an outbound SA may use (see
   * `EspSaParams.sequenceLimit`); the owner raises it only after the reservation is in the
   * coupling store. `undefined` removes the limit. Engines without warm mode leave it out.
   *
   * @returns whether the SA exists
   * @throws InvalidParametersError when `limit` is not a bigint in the SA's sequence range
   */
  setSequenceLimit?(spi: number, limit: bigint | undefined): boolean
}
