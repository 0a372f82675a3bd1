import { InvalidParametersError } from './errors.js'
import { buildUdp } from './packet.js'

/** The UDP port of IKE and ESP after NAT detection (RFC 3948, RFC 7296). */
export const NAT_T_PORT = 4500

/** What a UDP payload on the NAT-T port is (RFC 3948 section 2). */
export type UdpPayloadKind = 'esp' | 'ike' | 'keepalive' | 'malformed'

/**
 * Tells apart what arrives on UDP port 4500: a NAT keep-alive (the single byte 0xFF), an IKE
 * message (after the non-ESP marker, four zero bytes), or ESP (a non-zero SPI first). Anything
 * shorter than an ESP header that is neither is `malformed`.
 *
 * @param payload - the UDP payload
 */
export function classifyUdpPayload(payload: Uint8Array): UdpPayloadKind {
  if (!(payload instanceof Uint8Array)) return 'malformed'
  if (payload.length === 1 && payload[0] === 0xff) return 'keepalive'
  if (
    payload.length >= 4 &&
    payload[0] === 0 &&
    payload[1] === 0 &&
    payload[2] === 0 &&
    payload[3] === 0
  ) {
    return 'ike'
  }
  return payload.length >= 8 ? 'esp' : 'malformed'
}

/**
 * Prefixes an IKE message with the non-ESP marker for sending on port 4500.
 *
 * @param message - the IKE message
 */
export function withNonEspMarker(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + message.length)
  out.set(message, 4)
  return out
}

/** The NAT keep-alive payload (RFC 3948 section 2.3). */
export function natKeepalive(): Uint8Array {
  return new Uint8Array([0xff])
}

/** Where an ESP-in-UDP datagram goes. */
export interface UdpEncapsulationFields {
  /** Outer source address. */
  source: string | Uint8Array
  /** Outer destination address. */
  destination: string | Uint8Array
  /** Source port; default 4500. */
  sourcePort?: number
  /** Destination port; default 4500. */
  destinationPort?: number
  /** The ESP packet. */
  esp: Uint8Array
}

/**
 * Builds the UDP header and data of an ESP-in-UDP datagram (RFC 3948 section 2.1): over IPv4 the
 * checksum is zero, as the RFC recommends; over IPv6 it is computed.
 *
 * @param fields - addresses, ports and the ESP packet
 */
export function encapsulateUdp(fields: UdpEncapsulationFields): Uint8Array {
  if (!(fields.esp instanceof Uint8Array) || fields.esp.length < 8) {
    throw new InvalidParametersError('fields.esp', 'must be an ESP packet of at least 8 bytes')
  }
  return buildUdp({
    source: fields.source,
    destination: fields.destination,
    sourcePort: fields.sourcePort ?? NAT_T_PORT,
    destinationPort: fields.destinationPort ?? NAT_T_PORT,
    payload: fields.esp,
    zeroChecksum: true
  })
}
