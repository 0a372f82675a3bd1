export { IpProtocol, type FiveTuple } from '@vipsec/wire'

/** Identifier of a cluster node (distribution processor or target), unique in the cluster. */
export type NodeId = string

/** A distributed dynamic virtual IP address (DVIPA), as a textual IPv4 or IPv6 address. */
export type Dvipa = string

/** A transport address: IP address and port. */
export interface Endpoint {
  /** IPv4 or IPv6 address in text form. */
  address: string
  /** UDP or TCP port, 0 to 65535. */
  port: number
}

/**
 * An IKEv2 traffic selector (RFC 7296 section 3.13.1): an address range, a protocol and a port
 * range. The address family follows from the addresses.
 */
export interface TrafficSelector {
  /** First address of the range, inclusive. */
  startAddress: string
  /** Last address of the range, inclusive. */
  endAddress: string
  /** IP protocol number, 0 for any. */
  protocol: number
  /** First port, inclusive (0 with `endPort` 65535 for any). */
  startPort: number
  /** Last port, inclusive. */
  endPort: number
}

/**
 * A packet filter selector of the SPD: source and destination prefixes, protocol and port ranges.
 * Prefixes are written `address/length`.
 */
export interface FilterSelector {
  /** Source prefix, e.g. `172.16.2.1/32`, `0.0.0.0/0`. */
  source: string
  /** Destination prefix. */
  destination: string
  /** IP protocol number, 0 for any. */
  protocol: number
  /** Source port range `[first, last]`, inclusive; `[0, 65535]` for any. */
  sourcePorts: [number, number]
  /** Destination port range `[first, last]`, inclusive. */
  destinationPorts: [number, number]
}
