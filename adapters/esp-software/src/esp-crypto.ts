import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createSecretKey,
  type KeyObject
} from 'node:crypto'
import {
  InvalidParametersError,
  SequenceExhaustedError,
  type EspAlgorithm
} from '@vipsec/interface'

/** Bytes of the ESP header (SPI and sequence number). */
export const ESP_HEADER_LENGTH = 8
/** Bytes of the explicit IV of AES-GCM and AES-GMAC in ESP (RFC 4106, RFC 4543). */
export const ESP_IV_LENGTH = 8
/** Bytes of the ICV (the 16-byte GCM tag). */
export const ESP_ICV_LENGTH = 16
/** Bytes of the salt at the end of the keying material. */
export const ESP_SALT_LENGTH = 4
/** Bytes an ESP packet adds around its payload, before padding: header, IV, trailer, ICV. */
export const ESP_OVERHEAD = ESP_HEADER_LENGTH + ESP_IV_LENGTH + 2 + ESP_ICV_LENGTH

/** A prepared ESP key: the AES-GCM cipher name, the key object and the 4-byte salt. */
export interface EspKey {
  /** `aes-128-gcm`, `aes-192-gcm` or `aes-256-gcm`. */
  readonly cipher: 'aes-128-gcm' | 'aes-192-gcm' | 'aes-256-gcm'
  /** The AES key. */
  readonly key: KeyObject
  /** The salt: the first four bytes of every nonce. */
  readonly salt: Uint8Array
  /**
   * Scratch space for the nonce (salt, then IV) and the AAD (`aad8` is the first 8 bytes of
   * `aad`), reused by every call on this key in its thread (node:crypto copies both before
   * returning).
   *
   * @internal
   */
  readonly scratch: { nonce: Buffer; aad: Buffer; aad8: Buffer }
}

const GCM_OPTIONS = { authTagLength: ESP_ICV_LENGTH }

/**
 * Splits RFC 4106 keying material (the AES key followed by a 4-byte salt) into an {@link EspKey}.
 *
 * @param keyMaterial - 20, 28 or 36 bytes
 * @param argument - the name reported in the error
 * @throws InvalidParametersError when the length is not 20, 28 or 36
 */
export function espKey(keyMaterial: Uint8Array, argument = 'keyMaterial'): EspKey {
  if (!(keyMaterial instanceof Uint8Array)) {
    throw new InvalidParametersError(argument, 'must be a Uint8Array')
  }
  const keyLength = keyMaterial.length - ESP_SALT_LENGTH
  const cipher =
    keyLength === 16
      ? 'aes-128-gcm'
      : keyLength === 24
        ? 'aes-192-gcm'
        : keyLength === 32
          ? 'aes-256-gcm'
          : undefined
  if (cipher == null) {
    throw new InvalidParametersError(
      argument,
      `must be a 16, 24 or 32-byte AES key and a 4-byte salt (20, 28 or 36 bytes), not ${keyMaterial.length}`
    )
  }
  const salt = keyMaterial.slice(keyLength)
  const nonce = Buffer.alloc(12)
  nonce.set(salt, 0)
  const aad = Buffer.alloc(12)
  return {
    cipher,
    key: createSecretKey(keyMaterial.subarray(0, keyLength)),
    salt,
    scratch: { nonce, aad, aad8: aad.subarray(0, 8) }
  }
}

/** The inputs of {@link sealEsp}. */
export interface SealInput {
  /** AES-GCM (encrypts) or AES-GMAC (authenticates only). */
  algorithm: EspAlgorithm
  /** The prepared key. */
  key: EspKey
  /** The SPI, written as is (0 to 2^32-1). */
  spi: number
  /** The sequence number (its low 32 bits go on the wire). */
  sequence: bigint
  /** Whether the high 32 bits of `sequence` are authenticated (RFC 4303 extended sequence numbers). */
  esn: boolean
  /** The 8-byte explicit IV. */
  iv: Uint8Array
  /** The payload: an IP packet (tunnel mode) or an upper-layer segment (transport mode). */
  payload: Uint8Array
  /** The next-header value for the trailer (4 IPv4, 41 IPv6, 6 TCP, ...). */
  nextHeader: number
}

/** What {@link openEsp} returns. */
export type OpenResult =
  | {
      /** Verified. */
      ok: true
      /** The payload, without padding and trailer. */
      payload: Uint8Array
      /** The next-header value. */
      nextHeader: number
    }
  | {
      /** Not verified or not well formed. */
      ok: false
      /** `icv-failure` when the ICV did not verify; `malformed` when too short or the trailer is inconsistent. */
      reason: 'icv-failure' | 'malformed'
    }

/**
 * Bytes of padding that align payload + trailer to 4 bytes (RFC 4303 section 2.4).
 *
 * @param payloadLength - the payload length
 */
export function espPadLength(payloadLength: number): number {
  return (4 - ((payloadLength + 2) & 3)) & 3
}

/**
 * Builds an ESP packet (SPI to ICV) with AES-GCM (RFC 4106) or AES-GMAC (RFC 4543). This is the
 * pure transform: the caller chooses the IV. The engine never calls it with anything but an SA's
 * own sequence counter, through {@link EspSealer}, which makes reuse impossible; call it directly
 * only for known-answer tests.
 *
 * @param input - key, SPI, sequence number, IV, payload and next header
 */
export function sealEsp(input: SealInput): Uint8Array {
  const sequence = BigInt.asUintN(64, input.sequence)
  return sealRaw(
    input.algorithm === 'null-aes-gmac',
    input.key,
    input.spi >>> 0,
    Number(sequence >> 32n),
    Number(sequence & 0xffffffffn),
    input.esn,
    input.iv,
    input.payload,
    input.nextHeader
  )
}

/**
 * The length of the ESP packet that sealing a payload of `payloadLength` bytes makes.
 *
 * @param payloadLength - the payload length
 */
export function espPacketLength(payloadLength: number): number {
  return (
    ESP_HEADER_LENGTH +
    ESP_IV_LENGTH +
    payloadLength +
    espPadLength(payloadLength) +
    2 +
    ESP_ICV_LENGTH
  )
}

/**
 * Bytes of each slab that sealed packets are carved from: one zero-filled ArrayBuffer serves
 * many packets, and each packet costs a single Uint8Array view instead of a Buffer from node's
 * pool plus a plain view over it. A packet keeps its slab alive, as a pooled Buffer keeps its
 * pool; the rest of a slab holds only zeros and other sealed packets (as they go on the wire).
 */
const SLAB_SIZE = 32 * 1024
/** Packets larger than this get an ArrayBuffer of their own. */
const SLAB_MAX_PACKET = SLAB_SIZE / 4
let slab = new ArrayBuffer(SLAB_SIZE)
let slabBytes = new Uint8Array(slab)
let slabUsed = 0

/**
 * @internal a copy of `length` bytes of `source` from `start`, in a packet-sized view of a slab
 */
export function copyPacket(source: Uint8Array, start: number, length: number): Uint8Array {
  const out = allocPacket(length)
  out.set(start === 0 && length === source.length ? source : source.subarray(start, start + length))
  return out
}

/** A zero-filled packet-sized view (slabs are per thread: each worker has its own). */
function allocPacket(length: number): Uint8Array {
  if (length > SLAB_MAX_PACKET) return new Uint8Array(length)
  if (slabUsed + length > SLAB_SIZE) {
    slab = new ArrayBuffer(SLAB_SIZE)
    slabBytes = new Uint8Array(slab)
    slabUsed = 0
  }
  const at = slabUsed
  slabUsed += (length + 7) & ~7
  return new Uint8Array(slab, at, length)
}

/** @internal the transform, with the sequence number as two 32-bit halves */
export function sealRaw(
  gmac: boolean,
  key: EspKey,
  spi: number,
  high: number,
  low: number,
  esn: boolean,
  iv: Uint8Array,
  payload: Uint8Array,
  nextHeader: number
): Uint8Array {
  const length = espPacketLength(payload.length)
  const out = allocPacket(length)
  try {
    if (out.buffer === slab) {
      sealInto(slabBytes, out.byteOffset, gmac, key, spi, high, low, esn, iv, payload, nextHeader)
    } else {
      sealInto(out, 0, gmac, key, spi, high, low, esn, iv, payload, nextHeader)
    }
  } catch (err) {
    // the slab is shared with packets already handed out: leave no plaintext in it
    out.fill(0)
    throw err
  }
  return out
}

/**
 * @internal seals into `out` from offset `at`, which must have `espPacketLength(payload.length)`
 * bytes free; returns that length
 */
export function sealInto(
  out: Uint8Array,
  at: number,
  gmac: boolean,
  key: EspKey,
  spi: number,
  high: number,
  low: number,
  esn: boolean,
  iv: Uint8Array,
  payload: Uint8Array,
  nextHeader: number
): number {
  const padLength = espPadLength(payload.length)
  out[at] = spi >>> 24
  out[at + 1] = spi >>> 16
  out[at + 2] = spi >>> 8
  out[at + 3] = spi
  out[at + 4] = low >>> 24
  out[at + 5] = low >>> 16
  out[at + 6] = low >>> 8
  out[at + 7] = low
  out.set(iv, at + 8)
  // a worker's batch buffer already holds the payload in place
  if (payload.buffer !== out.buffer || payload.byteOffset !== out.byteOffset + at + 16) {
    out.set(payload, at + 16)
  }
  let p = at + 16 + payload.length
  for (let i = 1; i <= padLength; i++) out[p++] = i
  out[p++] = padLength
  out[p++] = nextHeader
  const scratch = key.scratch
  scratch.nonce.set(iv, 4)
  const cipher = createCipheriv(key.cipher, key.key, scratch.nonce, GCM_OPTIONS)
  if (gmac) {
    // RFC 4543: everything from the SPI to the trailer is AAD; with ESN the high half follows the low
    cipher.setAAD(esn ? esnAad(out.subarray(at, p), high, p - at) : out.subarray(at, p))
    cipher.final()
  } else {
    // RFC 4106: SPI and sequence number (with ESN: SPI, high half, low half), from the scratch
    cipher.setAAD(esn ? esnHeader(scratch.aad, spi, high, low) : spiSeqAad(scratch.aad8, spi, low))
    out.set(cipher.update(out.subarray(at + 16, p)), at + 16)
    cipher.final()
  }
  out.set(cipher.getAuthTag(), p)
  return p + ESP_ICV_LENGTH - at
}

/** A plain Uint8Array view (a Buffer's `slice` would share memory, unlike Uint8Array's). */
function plain(buffer: Buffer): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
}

function spiSeqAad(aad: Buffer, spi: number, low: number): Buffer {
  aad.writeUInt32BE(spi, 0)
  aad.writeUInt32BE(low, 4)
  return aad
}

function esnHeader(aad: Buffer, spi: number, high: number, low: number): Buffer {
  aad.writeUInt32BE(spi, 0)
  aad.writeUInt32BE(high, 4)
  aad.writeUInt32BE(low, 8)
  return aad
}

function esnAad(packet: Uint8Array, high: number, end: number): Buffer {
  // SPI, sequence high, sequence low, IV, payload and trailer
  const aad = Buffer.allocUnsafe(end + 4)
  aad.set(packet.subarray(0, 4), 0)
  aad.writeUInt32BE(high, 4)
  aad.set(packet.subarray(4, end), 8)
  return aad
}

/**
 * Reads the SPI of an ESP packet; `undefined` when shorter than an ESP header.
 *
 * @param packet - the ESP packet
 */
export function espSpi(packet: Uint8Array): number | undefined {
  if (packet.length < ESP_HEADER_LENGTH) return undefined
  return ((packet[0] << 24) | (packet[1] << 16) | (packet[2] << 8) | packet[3]) >>> 0
}

/**
 * Reads the (low 32 bits of the) sequence number of an ESP packet.
 *
 * @param packet - the ESP packet, at least 8 bytes
 */
export function espSequence(packet: Uint8Array): number {
  return ((packet[4] << 24) | (packet[5] << 16) | (packet[6] << 8) | packet[7]) >>> 0
}

/** The inputs of {@link openEsp}. */
export interface OpenInput {
  /** The algorithm. */
  algorithm: EspAlgorithm
  /** The prepared key. */
  key: EspKey
  /** Whether extended sequence numbers are in use. */
  esn: boolean
  /** With ESN: the high 32 bits of the sequence number (inferred from the replay window). */
  sequenceHigh?: number
  /** The ESP packet, SPI to ICV. */
  packet: Uint8Array
}

/**
 * Verifies and decrypts an ESP packet (AES-GCM or AES-GMAC) and strips its padding and trailer.
 * Never throws for bad input: returns `{ ok: false, reason }`.
 *
 * @param input - key and packet
 */
export function openEsp(input: OpenInput): OpenResult {
  return openRaw(
    input.algorithm === 'null-aes-gmac',
    input.key,
    input.esn,
    input.sequenceHigh ?? 0,
    input.packet
  )
}

const MALFORMED: OpenResult = { ok: false, reason: 'malformed' }
const ICV_FAILURE: OpenResult = { ok: false, reason: 'icv-failure' }

/** @internal */
export function openRaw(
  gmac: boolean,
  key: EspKey,
  esn: boolean,
  high: number,
  packet: Uint8Array
): OpenResult {
  const textLength = packet.length - ESP_HEADER_LENGTH - ESP_IV_LENGTH - ESP_ICV_LENGTH
  if (textLength < 2) return MALFORMED
  const icvOffset = packet.length - ESP_ICV_LENGTH
  const nonce = key.scratch.nonce
  nonce.set(packet.subarray(8, 16), 4)
  let text: Uint8Array
  try {
    const decipher = createDecipheriv(key.cipher, key.key, nonce, GCM_OPTIONS)
    decipher.setAuthTag(packet.subarray(icvOffset))
    if (gmac) {
      const spiSeq = packet.subarray(0, icvOffset)
      decipher.setAAD(esn ? esnAad(spiSeq, high, icvOffset) : spiSeq)
      decipher.final()
      text = packet.subarray(16, icvOffset)
    } else {
      const spi = espSpi(packet) as number
      decipher.setAAD(
        esn ? esnHeader(key.scratch.aad, spi, high, espSequence(packet)) : packet.subarray(0, 8)
      )
      text = plain(decipher.update(packet.subarray(16, icvOffset)))
      decipher.final()
    }
  } catch {
    return ICV_FAILURE
  }
  const padLength = text[textLength - 2]
  const nextHeader = text[textLength - 1]
  const payloadLength = textLength - 2 - padLength
  if (payloadLength < 0) return MALFORMED
  // RFC 4303 section 2.4: default padding is 1, 2, 3, ...
  for (let i = 0; i < padLength; i++) if (text[payloadLength + i] !== i + 1) return MALFORMED
  return { ok: true, payload: text.subarray(0, payloadLength), nextHeader }
}

const MAX_32 = 0xffffffff

/**
 * The outbound half of an SA: owns the key and the sequence counter, and takes each packet's IV
 * from the counter (the 64-bit sequence number, RFC 4106 section 3.1), so an IV is never repeated
 * under its key. It refuses to seal past the last sequence number (2^32-1, or 2^64-1 with ESN)
 * rather than wrap.
 */
export class EspSealer {
  private readonly gmac: boolean
  private readonly key: EspKey
  private readonly spi: number
  private readonly esn: boolean
  private high: number
  private low: number
  private readonly iv = Buffer.alloc(ESP_IV_LENGTH)

  /**
   * @param algorithm - AES-GCM or AES-GMAC
   * @param keyMaterial - key and salt (20, 28 or 36 bytes)
   * @param spi - the SA's SPI
   * @param esn - extended sequence numbers
   * @param initialSequence - the last sequence number already used (default 0)
   */
  constructor(
    algorithm: EspAlgorithm,
    keyMaterial: Uint8Array,
    spi: number,
    esn: boolean,
    initialSequence = 0n
  ) {
    this.gmac = algorithm === 'null-aes-gmac'
    this.key = espKey(keyMaterial)
    this.spi = spi >>> 0
    this.esn = esn
    const max = esn ? 0xffffffffffffffffn : 0xffffffffn
    if (typeof initialSequence !== 'bigint' || initialSequence < 0n || initialSequence > max) {
      throw new InvalidParametersError('initialSequence', `must be a bigint from 0 to ${max}`)
    }
    this.high = Number(initialSequence >> 32n)
    this.low = Number(initialSequence & 0xffffffffn)
  }

  /** The last sequence number used (0 before the first packet). */
  get sequence(): bigint {
    return (BigInt(this.high) << 32n) | BigInt(this.low)
  }

  /** Whether the last sequence number has been used: the SA can seal nothing more. */
  get exhausted(): boolean {
    return this.low === MAX_32 && (!this.esn || this.high === MAX_32)
  }

  /**
   * How many packets the SA can still seal, as a number (capped at 2^53).
   */
  get remaining(): number {
    const maxHigh = this.esn ? MAX_32 : 0
    return Math.min((maxHigh - this.high) * 4294967296 + (MAX_32 - this.low), 2 ** 53)
  }

  /**
   * Takes the next sequence number without sealing, for a caller that seals elsewhere (a worker
   * thread) with `sealRaw` and the IV made of the returned halves.
   *
   * @returns the high and low halves of the sequence number taken
   * @throws SequenceExhaustedError when the counter is at its end
   */
  reserve(): [high: number, low: number] {
    this.advance()
    return [this.high, this.low]
  }

  private advance(): void {
    if (this.low === MAX_32) {
      if (!this.esn || this.high === MAX_32) {
        throw new SequenceExhaustedError(`SPI ${this.spi}: sequence number space exhausted`)
      }
      this.high++
      this.low = 0
    } else {
      this.low++
    }
  }

  /**
   * Takes the next sequence number and seals `payload` with it.
   *
   * @param payload - the payload
   * @param nextHeader - its next-header value
   * @throws SequenceExhaustedError when the counter is at its end
   */
  seal(payload: Uint8Array, nextHeader: number): Uint8Array {
    this.advance()
    const iv = this.iv
    const high = this.high
    const low = this.low
    iv[0] = high >>> 24
    iv[1] = high >>> 16
    iv[2] = high >>> 8
    iv[3] = high
    iv[4] = low >>> 24
    iv[5] = low >>> 16
    iv[6] = low >>> 8
    iv[7] = low
    return sealRaw(
      this.gmac,
      this.key,
      this.spi,
      this.high,
      this.low,
      this.esn,
      this.iv,
      payload,
      nextHeader
    )
  }
}

/**
 * A fingerprint of keying material (SHA-256, hex), to recognise a key without keeping it.
 *
 * @param keyMaterial - the key and salt
 */
export function keyFingerprint(keyMaterial: Uint8Array): string {
  return createHash('sha256').update(keyMaterial).digest('hex')
}
