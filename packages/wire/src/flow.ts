/** IP protocol numbers vipsec names (any other number is allowed where a `number` is taken). */
export const IpProtocol = {
  /** Any protocol, in selectors. */
  ANY: 0,
  /** ICMP. */
  ICMP: 1,
  /** TCP. */
  TCP: 6,
  /** UDP. */
  UDP: 17,
  /** ESP. */
  ESP: 50,
  /** ICMPv6. */
  ICMPV6: 58
} as const

/** A connection as the distribution processor sees it: the flow's 5-tuple, from the peer's side. */
export interface FiveTuple {
  /** IP protocol number (6 TCP, 17 UDP, ...). */
  protocol: number
  /** Source address (the remote client). */
  sourceAddress: string
  /** Source port (0 for protocols without ports). */
  sourcePort: number
  /** Destination address (the service address behind the DVIPA). */
  destinationAddress: string
  /** Destination port (0 for protocols without ports). */
  destinationPort: number
}
