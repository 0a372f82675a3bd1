import {
  IpProtocol,
  type ChildLifetime,
  type DynamicFilter,
  type EspSaParams
} from '@vipsec/interface'
import { buildIpPacket, buildUdp } from '@vipsec/wire'

/** No lifetime limits. */
export const NO_LIMITS: ChildLifetime = {
  softSeconds: 0,
  hardSeconds: 0,
  softBytes: 0,
  hardBytes: 0,
  softPackets: 0,
  hardPackets: 0
}

/** 256-bit key and salt, byte i = seed + i. */
export function keyMaterial(seed: number, length = 36): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (seed + i) & 0xff)
}

/** An SA pair's common part: a tunnel between 192.0.2.1 (here) and 198.51.100.2 (peer). */
export function saParams(overrides: Partial<EspSaParams> = {}): EspSaParams {
  return {
    spi: 0x1001,
    direction: 'outbound',
    mode: 'tunnel',
    algorithm: 'aes-gcm-16',
    keyMaterial: keyMaterial(1),
    extendedSequenceNumbers: false,
    lifetime: NO_LIMITS,
    tunnel: { local: '192.0.2.1', remote: '198.51.100.2' },
    ...overrides
  }
}

/** The inbound twin of an outbound SA: same SPI and key, addresses seen from the other side. */
export function inboundTwin(params: EspSaParams): EspSaParams {
  return {
    ...params,
    direction: 'inbound',
    tunnel:
      params.tunnel != null
        ? { local: params.tunnel.remote, remote: params.tunnel.local }
        : undefined,
    initialSequence: undefined
  }
}

/** A filter matching everything of one family. */
export function anyFilter(overrides: Partial<DynamicFilter> = {}): DynamicFilter {
  return {
    id: 'f-any',
    direction: 'outbound',
    selector: {
      source: '0.0.0.0/0',
      destination: '0.0.0.0/0',
      protocol: 0,
      sourcePorts: [0, 65535],
      destinationPorts: [0, 65535]
    },
    action: 'protect',
    priority: 100,
    spi: 0x1001,
    ...overrides
  }
}

/** A UDP/IPv4 packet from 10.1.0.5:40000 to 10.2.0.7:53 (or as given). */
export function udpPacket(
  payload: Uint8Array = new Uint8Array([1, 2, 3, 4, 5]),
  source = '10.1.0.5',
  destination = '10.2.0.7',
  sourcePort = 40000,
  destinationPort = 53
): Uint8Array {
  return buildIpPacket({
    source,
    destination,
    protocol: IpProtocol.UDP,
    payload: buildUdp({ source, destination, sourcePort, destinationPort, payload })
  })
}
