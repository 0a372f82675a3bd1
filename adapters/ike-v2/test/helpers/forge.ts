/**
 * Forged IKE messages, as an attacker on the path makes them: it sees the SPIs and message IDs
 * (cleartext on the wire) but has no keys.
 */
import { wire } from '../../src/index.js'

/** The cleartext an attacker reads off one IKE SA. */
export interface LiveSa {
  spiI: Uint8Array
  spiR: Uint8Array
}

export interface ForgeOptions {
  exchange: number
  /** Header flags (INITIATOR 0x08, RESPONSE 0x20). */
  flags: number
  messageId: number
  /** The first payload's type, 0 for none. */
  nextPayload?: number
  /** The encoded payload chain after the header. */
  body?: Uint8Array
  /** Header version byte, default 0x20. */
  version?: number
}

/** A message with a valid header over `body`. */
export function forge(sa: LiveSa, o: ForgeOptions): Uint8Array {
  const body = o.body ?? new Uint8Array(0)
  const header = wire.encodeHeader({
    spiI: sa.spiI,
    spiR: sa.spiR,
    nextPayload: o.nextPayload ?? 0,
    version: o.version ?? 0x20,
    exchange: o.exchange,
    flags: o.flags,
    messageId: o.messageId,
    length: 28 + body.length
  })
  return wire.concat(header, body)
}

/** A generic payload header (next, critical flag, length) over `data`. */
export function payload(next: number, data: Uint8Array, critical = false): Uint8Array {
  const len = 4 + data.length
  return wire.concat(Uint8Array.of(next, critical ? 0x80 : 0, len >> 8, len & 0xff), data)
}

/** The SPIs of a phase 1 record. */
export function spisOf(record: {
  ikeSaId: { initiatorSpi: string; responderSpi: string }
}): LiveSa {
  return {
    spiI: Uint8Array.from(Buffer.from(record.ikeSaId.initiatorSpi, 'hex')),
    spiR: Uint8Array.from(Buffer.from(record.ikeSaId.responderSpi, 'hex'))
  }
}
