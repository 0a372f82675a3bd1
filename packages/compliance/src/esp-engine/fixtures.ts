import type {
  ChildLifetime,
  DynamicFilter,
  EspAlgorithm,
  EspIntegrityAlgorithm,
  EspSaParams,
  FilterSelector
} from '@vipsec/interface'

/** Lifetimes without limits. */
export const NO_LIFETIME_LIMITS: ChildLifetime = {
  softSeconds: 0,
  hardSeconds: 0,
  softBytes: 0,
  hardBytes: 0,
  softPackets: 0,
  hardPackets: 0
}

/**
 * Keying material for the suite: an AES key of `keyBytes` bytes and a 4-byte salt, byte i being
 * `seed + i`.
 *
 * @param seed - the first byte
 * @param keyBytes - 16 or 32
 */
export function sampleKeyMaterial(seed: number, keyBytes = 32): Uint8Array {
  return Uint8Array.from({ length: keyBytes + 4 }, (_, i) => (seed + i) & 0xff)
}

/**
 * An outbound tunnel-mode AES-GCM SA from 192.0.2.1 to 198.51.100.2.
 *
 * @param overrides - fields to change
 */
export function sampleOutboundSa(overrides: Partial<EspSaParams> = {}): EspSaParams {
  return {
    spi: 0x0000c001,
    direction: 'outbound',
    mode: 'tunnel',
    algorithm: 'aes-gcm-16',
    keyMaterial: sampleKeyMaterial(1),
    extendedSequenceNumbers: false,
    lifetime: NO_LIFETIME_LIMITS,
    tunnel: { local: '192.0.2.1', remote: '198.51.100.2' },
    ...overrides
  }
}

/**
 * The inbound SA that decrypts what `outbound` encrypts (same SPI, key and options), as the peer
 * would hold it; installed in the same engine it makes a loopback.
 *
 * @param outbound - the outbound SA
 */
export function inboundOf(outbound: EspSaParams): EspSaParams {
  return {
    ...outbound,
    direction: 'inbound',
    tunnel:
      outbound.tunnel != null
        ? { local: outbound.tunnel.remote, remote: outbound.tunnel.local }
        : undefined,
    initialSequence: undefined
  }
}

/** A selector matching all IPv4 traffic. */
export const ANY_IPV4: FilterSelector = {
  source: '0.0.0.0/0',
  destination: '0.0.0.0/0',
  protocol: 0,
  sourcePorts: [0, 65535],
  destinationPorts: [0, 65535]
}

/**
 * A protect filter for all IPv4 traffic.
 *
 * @param overrides - fields to change
 */
export function sampleFilter(overrides: Partial<DynamicFilter> = {}): DynamicFilter {
  return {
    id: 'protect-all',
    direction: 'outbound',
    selector: ANY_IPV4,
    action: 'protect',
    priority: 100,
    spi: 0x0000c001,
    ...overrides
  }
}

function sum16(data: Uint8Array, start: number, end: number, initial = 0): number {
  let sum = initial
  for (let i = start; i < end; i += 2) sum += (data[i] << 8) | (i + 1 < end ? data[i + 1] : 0)
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
  return sum
}

/**
 * Builds an IPv4/UDP packet with correct header and UDP checksums.
 *
 * @param source - dotted-quad source address
 * @param destination - dotted-quad destination address
 * @param sourcePort - UDP source port
 * @param destinationPort - UDP destination port
 * @param payload - the UDP data
 */
export function sampleUdpPacket(
  source = '10.1.0.5',
  destination = '10.2.0.7',
  sourcePort = 40000,
  destinationPort = 53,
  payload: Uint8Array = new TextEncoder().encode('vipsec compliance')
): Uint8Array {
  const length = 28 + payload.length
  const p = new Uint8Array(length)
  p[0] = 0x45
  p[2] = length >> 8
  p[3] = length & 0xff
  p[8] = 64
  p[9] = 17
  p.set(source.split('.').map(Number), 12)
  p.set(destination.split('.').map(Number), 16)
  const ipSum = ~sum16(p, 0, 20) & 0xffff
  p[10] = ipSum >> 8
  p[11] = ipSum & 0xff
  const udpLength = 8 + payload.length
  p[20] = sourcePort >> 8
  p[21] = sourcePort & 0xff
  p[22] = destinationPort >> 8
  p[23] = destinationPort & 0xff
  p[24] = udpLength >> 8
  p[25] = udpLength & 0xff
  p.set(payload, 28)
  const pseudo = sum16(p, 12, 20, 17 + udpLength)
  let udpSum = ~sum16(p, 20, length, pseudo) & 0xffff
  if (udpSum === 0) udpSum = 0xffff
  p[26] = udpSum >> 8
  p[27] = udpSum & 0xff
  return p
}

/** An ESP transform the compliance suite can run its SAs with, and the sizes of its packets. */
export interface EspSuiteTransform {
  /** Shown in the suite's title, for example `AES-256-CBC with HMAC-SHA2-256-128`. */
  name: string
  /** The encryption transform. */
  algorithm: EspAlgorithm
  /** The integrity transform (with `aes-cbc`). */
  integrity?: EspIntegrityAlgorithm
  /**
   * Keying material of the right length for this transform, byte i being `seed + i`.
   *
   * @param seed - the first byte
   */
  keyMaterial(seed: number): Uint8Array
  /** Bytes of the explicit IV (8, or 16 for AES-CBC). */
  ivLength: number
  /** Bytes of the ICV. */
  icvLength: number
  /** Payload and trailer are padded to a multiple of this (4, or 16 for AES-CBC). */
  blockSize: number
}

function material(length: number): (seed: number) => Uint8Array {
  return (seed) => Uint8Array.from({ length }, (_, i) => (seed + i) & 0xff)
}

/**
 * The transforms beyond AES-GCM that an engine may implement: ChaCha20-Poly1305 (RFC 7634) and
 * AES-CBC (RFC 3602) with each integrity transform (RFC 4868, RFC 2404). Pass one as
 * `transform` to run the suite with it.
 */
export const ESP_SUITE_TRANSFORMS: readonly EspSuiteTransform[] = [
  {
    name: 'ChaCha20-Poly1305',
    algorithm: 'chacha20-poly1305',
    keyMaterial: material(36),
    ivLength: 8,
    icvLength: 16,
    blockSize: 4
  },
  {
    name: 'AES-256-CBC with HMAC-SHA2-256-128',
    algorithm: 'aes-cbc',
    integrity: 'hmac-sha2-256-128',
    keyMaterial: material(32 + 32),
    ivLength: 16,
    icvLength: 16,
    blockSize: 16
  },
  {
    name: 'AES-192-CBC with HMAC-SHA2-384-192',
    algorithm: 'aes-cbc',
    integrity: 'hmac-sha2-384-192',
    keyMaterial: material(24 + 48),
    ivLength: 16,
    icvLength: 24,
    blockSize: 16
  },
  {
    name: 'AES-256-CBC with HMAC-SHA2-512-256',
    algorithm: 'aes-cbc',
    integrity: 'hmac-sha2-512-256',
    keyMaterial: material(32 + 64),
    ivLength: 16,
    icvLength: 32,
    blockSize: 16
  },
  {
    name: 'AES-128-CBC with HMAC-SHA1-96',
    algorithm: 'aes-cbc',
    integrity: 'hmac-sha1-96',
    keyMaterial: material(16 + 20),
    ivLength: 16,
    icvLength: 12,
    blockSize: 16
  }
]
