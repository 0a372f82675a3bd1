import type { Observable } from 'rxjs'
import type { Endpoint, FilterSelector } from './addressing.js'
import type { ChildLifetime, FilterAction } from './records.js'
import type { Startable } from './startable.js'

/** ESP algorithms the engine implements: AES-GCM with a 16-byte ICV (RFC 4106) or AES-GMAC (RFC 4543). */
export type EspAlgorithm = 'aes-gcm-16' | 'null-aes-gmac'

/** The parameters of one unidirectional ESP SA. */
export interface EspSaParams {
  /** The SPI, 1 to 2^32-1 (0 and 1-255 are reserved by RFC 4303, and refused). */
  spi: number
  /** Whether this SA decrypts (inbound) or encrypts (outbound). */
  direction: 'inbound' | 'outbound'
  /** Tunnel or transport mode. */
  mode: 'tunnel' | 'transport'
  /** The algorithm. */
  algorithm: EspAlgorithm
  /** Keying material: the AES key (16 or 32 bytes) followed by the 4-byte salt. */
  keyMaterial: Uint8Array
  /** Whether 64-bit extended sequence numbers are used. */
  extendedSequenceNumbers: boolean
  /** Anti-replay window size in packets (inbound): default 128, at most 4096, 0 turns it off. */
  replayWindow?: number
  /** Soft and hard limits; 0 means none of that kind. */
  lifetime: ChildLifetime
  /** Tunnel endpoints (outer addresses) for tunnel mode: this side and the peer. */
  tunnel?: { local: string; remote: string }
  /** UDP encapsulation (RFC 3948): the ports of both sides, as seen after NAT. */
  udpEncapsulation?: { local: Endpoint; remote: Endpoint }
  /** An opaque tag the owner uses to find its Child SA (for example the phase 2 record id). */
  tag?: string
}

/** A dynamic filter (SPD entry) as the engine holds it. */
export interface DynamicFilter {
  /** Unique id. */
  id: string
  /** The direction it applies to. */
  direction: 'inbound' | 'outbound'
  /** What matches. */
  selector: FilterSelector
  /** What happens with a match. */
  action: FilterAction
  /** Lower numbers are matched first. */
  priority: number
  /** For `protect`: the SPI of the SA to use (outbound) or that must have carried the packet (inbound). */
  spi?: number
}

/** Why the engine dropped a packet; each reason has a counter. */
export type EspDropReason =
  | 'unknown-spi'
  | 'icv-failure'
  | 'replay'
  | 'outside-window'
  | 'policy-mismatch'
  | 'malformed'
  | 'sa-expired'
  | 'no-policy'
  | 'discard-policy'

/** Packet and drop counters of an engine. */
export interface EspCounters {
  /** Packets encapsulated. */
  encapsulated: number
  /** Packets decapsulated. */
  decapsulated: number
  /** Packets passed by a bypass policy. */
  bypassed: number
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
      /** Where to send it (the tunnel's remote address, and the UDP port if encapsulated). */
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
      /** The inner packet (an IP packet in tunnel mode; the payload with its next header in transport mode). */
      packet: Uint8Array
      /** The SA's SPI. */
      spi: number
      /** The next-header value. */
      nextHeader: number
    }
  | {
      /** Dropped; see `reason`. */
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
      direction: 'inbound' | 'outbound'
      /** Its tag. */
      tag?: string
    }
  | {
      /** An SA was removed (by request or at its hard limit). */
      type: 'sa:removed'
      /** Its SPI. */
      spi: number
      /** Its direction. */
      direction: 'inbound' | 'outbound'
      /** Why. */
      reason: 'deleted' | 'hard-expired' | 'sequence-exhausted'
    }
  | {
      /** An SA passed a soft limit: time to rekey. */
      type: 'sa:soft-expired'
      /** Its SPI. */
      spi: number
      /** Its direction. */
      direction: 'inbound' | 'outbound'
      /** Which limit. */
      limit: 'time' | 'bytes' | 'packets' | 'sequence'
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
      /** Installing a filter found an active one with the same selector: the older one was removed. */
      type: 'filter:duplicate-removed'
      /** The id of the filter that was removed. */
      removed: string
      /** The id of the filter that replaced it. */
      keptId: string
    }

/**
 * The ESP data plane (RFC 4303): a security association database (SAD) keyed by SPI, a security
 * policy database (SPD) of ordered dynamic filters, and anti-replay. Malformed input never throws
 * through the data path: it is dropped and counted.
 */
export interface EspEngine extends Startable {
  /** SA and filter events; completes on `stop()`. */
  readonly events$: Observable<EspEvent>

  /**
   * Installs an SA.
   *
   * @throws DuplicateSaError when an SA with this SPI and direction exists
   * @throws InvalidParametersError when a parameter is out of range
   */
  addSa(params: EspSaParams): void

  /**
   * Removes an SA; returns whether it existed.
   *
   * @param spi - its SPI
   * @param direction - its direction
   */
  removeSa(spi: number, direction: 'inbound' | 'outbound'): boolean

  /**
   * Installs a dynamic filter. An active filter with the same direction and selector is removed
   * (a `filter:duplicate-removed` event) so that exactly one remains.
   *
   * @returns the ids of the duplicates that were removed
   */
  installFilter(filter: DynamicFilter): string[]

  /**
   * Removes a filter; returns whether it existed.
   *
   * @param id - the filter's id
   */
  removeFilter(id: string): boolean

  /**
   * Processes an outbound inner IP packet: SPD lookup, then encapsulation with the SA.
   *
   * @param packet - an IPv4 or IPv6 packet
   */
  protect(packet: Uint8Array): OutboundResult

  /**
   * Processes an inbound ESP packet (or the payload of an ESP-in-UDP datagram).
   *
   * @param packet - the ESP packet, starting at the SPI
   */
  unprotect(packet: Uint8Array): InboundResult

  /** Current counters (a copy). */
  counters(): EspCounters
}
