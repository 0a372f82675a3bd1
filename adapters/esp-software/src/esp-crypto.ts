import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createSecretKey,
  randomBytes,
  randomInt,
  timingSafeEqual,
  type Cipher,
  type Decipher,
  type KeyObject
} from 'node:crypto'
import { aeadKey, type AeadCipher, type AeadKey } from '@vipsec/aead'
import {
  InvalidParametersError,
  SequenceExhaustedError,
  type EspAlgorithm,
  type EspIntegrityAlgorithm
} from '@vipsec/interface'

/** Bytes of the ESP header (SPI and sequence number). */
export const ESP_HEADER_LENGTH = 8
/** Bytes of the explicit IV of AES-GCM, AES-GMAC and ChaCha20-Poly1305 in ESP (RFC 4106, 4543, 7634). */
export const ESP_IV_LENGTH = 8
/** Bytes of the explicit IV of AES-CBC in ESP (one AES block, RFC 3602 section 3). */
export const ESP_CBC_IV_LENGTH = 16
/** Bytes of the ICV of the combined-mode algorithms (the 16-byte GCM or Poly1305 tag). */
export const ESP_ICV_LENGTH = 16
/** Bytes of the salt at the end of the keying material of the combined-mode algorithms. */
export const ESP_SALT_LENGTH = 4
/** Bytes an AES-GCM ESP packet adds around its payload, before padding: header, IV, trailer, ICV. */
export const ESP_OVERHEAD = ESP_HEADER_LENGTH + ESP_IV_LENGTH + 2 + ESP_ICV_LENGTH
/** Bytes of the local key that makes AES-CBC IVs from sequence numbers (AES-128). */
export const ESP_CBC_IV_KEY_LENGTH = 16

/** What an integrity transform of AES-CBC takes and gives. */
export interface EspIntegritySpec {
  /** The node:crypto hash of the HMAC. */
  readonly hash: 'sha1' | 'sha256' | 'sha384' | 'sha512'
  /** Bytes of its key in the keying material (RFC 4868 section 2.1.1, RFC 2404 section 3). */
  readonly keyLength: number
  /** Bytes of the truncated HMAC carried as ICV. */
  readonly icvLength: number
}

/** The integrity transforms of AES-CBC, with their key and ICV lengths. */
export const ESP_INTEGRITY: Readonly<Record<EspIntegrityAlgorithm, EspIntegritySpec>> = {
  'hmac-sha2-256-128': { hash: 'sha256', keyLength: 32, icvLength: 16 },
  'hmac-sha2-384-192': { hash: 'sha384', keyLength: 48, icvLength: 24 },
  'hmac-sha2-512-256': { hash: 'sha512', keyLength: 64, icvLength: 32 },
  'hmac-sha1-96': { hash: 'sha1', keyLength: 20, icvLength: 12 }
}

/** The sizes of an ESP transform's packets. */
export interface EspShape {
  /** Bytes of the explicit IV: 8, or 16 for AES-CBC. */
  readonly ivLength: number
  /** Bytes of the ICV. */
  readonly icvLength: number
  /** Payload and trailer are padded to a multiple of this: 4, or the AES block (16) for AES-CBC. */
  readonly blockSize: number
}

/**
 * A prepared ESP key: the cipher, its key object, the salt (combined-mode algorithms) or the
 * HMAC key (AES-CBC), and the sizes of the packets it makes.
 */
export interface EspKey extends EspShape {
  /** `aead` for AES-GCM, AES-GMAC and ChaCha20-Poly1305; `cbc` for AES-CBC with an HMAC. */
  readonly transform: 'aead' | 'cbc'
  /** The node:crypto cipher name (`aes-256-gcm`, `chacha20-poly1305`, `aes-128-cbc`, ...). */
  readonly cipher: string
  /** The encryption key. */
  readonly key: KeyObject
  /** The salt: the first four bytes of every nonce (combined-mode algorithms; empty for AES-CBC). */
  readonly salt: Uint8Array
  /**
   * Combined-mode algorithms: the key's cipher contexts, kept for the life of the key (see
   * `@vipsec/aead`: OpenSSL's libcrypto where it loads, node:crypto otherwise). A key belongs to
   * the thread that prepared it.
   */
  readonly aead?: AeadKey
  /** AES-CBC: the HMAC's hash and key. */
  readonly integrity?: {
    /** The node:crypto hash name (`sha256`, `sha384`, `sha512`, `sha1`). */
    readonly hash: string
    /**
     * The HMAC key. Each packet's HMAC is one `createHmac` with it: on Node 20 that costs less
     * than copying kept hash states after the padded key blocks (two objects and two digests a
     * packet, measured 20% slower at 64 bytes and 5% at 1400 in `bench:esp`'s pairing).
     */
    readonly key: KeyObject
  }
  /**
   * AES-CBC, sealing side: the generator of the IVs, AES-128-ECB under a local key that never
   * leaves this process, over the block (n as 64 bits, 64 zero bits) of sequence number n:
   * distinct for every n and unpredictable without the key (NIST SP 800-38A appendix C). Blocks
   * are made {@link CBC_IV_BATCH} sequence numbers at a time. The IV of sequence number n is that
   * block encrypted once more, under the SA's AES key, by its kept cipher (`chain`), see
   * {@link sealInto}: E_K(E_L(n)).
   *
   * @internal
   */
  readonly ivs?: CbcIvs
  /**
   * AES-CBC: ciphers kept for the life of the key, so that a packet costs no cipher set-up, each
   * made by the first packet that needs it: the encrypting one (sealing side, with `ivs`) with a
   * copy of the last ciphertext block it made (`last`), and the decrypting one. Both only ever
   * see whole blocks and are never finalised.
   *
   * @internal
   */
  readonly chain?: {
    encrypt: Cipher | undefined
    last: Buffer
    decrypt: Decipher | undefined
  }
  /**
   * Scratch space for the nonce (salt, then IV), the AAD (`aad8` is the first 8 bytes of `aad`),
   * the ESN high half, the AES-CBC IV and the ICV of a packet being opened, reused by every call on this key in its thread
   * (node:crypto copies them before returning).
   *
   * @internal
   */
  readonly scratch: {
    nonce: Buffer
    aad: Buffer
    aad8: Buffer
    high: Buffer
    iv: Buffer
    tag: Buffer
  }
}

/** AES-CBC IVs are encrypted this many sequence numbers at a time (one ECB update). */
export const CBC_IV_BATCH = 256

/** @internal the IVs of a run of sequence numbers from (high, low), made in one ECB update */
interface CbcIvs {
  readonly cipher: Cipher
  readonly blocks: Buffer
  ivs: Buffer | undefined
  high: number
  low: number
  count: number
}

/** The empty input and output of AES-GMAC, which only authenticates. */
const EMPTY = new Uint8Array(0)
/** The first chaining value of a kept AES-CBC cipher (any value would do: see {@link sealInto}). */
const ZERO_BLOCK = Buffer.alloc(16)

function aesBits(length: number): 128 | 192 | 256 | undefined {
  return length === 16 ? 128 : length === 24 ? 192 : length === 32 ? 256 : undefined
}

function makeScratch(salt: Uint8Array): EspKey['scratch'] {
  // one array for all of them: an SA's scratch is one allocation, not four
  const all = Buffer.alloc(12 + 12 + 4 + 16 + 16)
  const nonce = all.subarray(0, 12)
  nonce.set(salt, 0)
  const aad = all.subarray(12, 24)
  return {
    nonce,
    aad,
    aad8: aad.subarray(0, 8),
    high: all.subarray(24, 28),
    iv: all.subarray(28, 44),
    tag: all.subarray(44)
  }
}

/**
 * Prepares the keying material of any ESP transform the engine implements (see
 * `EspSaParams.keyMaterial` for the layouts: encryption key first, then salt or HMAC key).
 *
 * @param algorithm - the encryption transform
 * @param integrity - the integrity transform: required with `aes-cbc`, absent otherwise
 * @param keyMaterial - the keying material
 * @param argument - the name reported when the keying material is wrong
 * @param ivKey - AES-CBC, sealing side: the 16-byte local key of the IV generator (the opening
 *   side needs none)
 * @throws InvalidParametersError when the lengths do not fit the transforms (named `argument`, or
 *   `integrity` for a missing or superfluous integrity transform)
 */
export function espTransformKey(
  algorithm: EspAlgorithm,
  integrity: EspIntegrityAlgorithm | undefined,
  keyMaterial: Uint8Array,
  argument = 'keyMaterial',
  ivKey?: Uint8Array
): EspKey {
  if (!(keyMaterial instanceof Uint8Array)) {
    throw new InvalidParametersError(argument, 'must be a Uint8Array')
  }
  if (algorithm === 'aes-cbc') {
    const spec = integrity === undefined ? undefined : ESP_INTEGRITY[integrity]
    if (spec === undefined) {
      throw new InvalidParametersError(
        'integrity',
        `aes-cbc needs one of ${Object.keys(ESP_INTEGRITY).join(', ')}`
      )
    }
    const keyLength = keyMaterial.length - spec.keyLength
    const bits = aesBits(keyLength)
    if (bits === undefined) {
      throw new InvalidParametersError(
        argument,
        `must be a 16, 24 or 32-byte AES key and a ${spec.keyLength}-byte ${integrity} key ` +
          `(${16 + spec.keyLength}, ${24 + spec.keyLength} or ${32 + spec.keyLength} bytes), not ${keyMaterial.length}`
      )
    }
    const aesKey = createSecretKey(keyMaterial.subarray(0, keyLength))
    const cipherName = `aes-${bits}-cbc`
    let ivs: CbcIvs | undefined
    if (ivKey !== undefined) {
      if (!(ivKey instanceof Uint8Array) || ivKey.length !== ESP_CBC_IV_KEY_LENGTH) {
        throw new InvalidParametersError('ivKey', `must be ${ESP_CBC_IV_KEY_LENGTH} bytes`)
      }
      const cipher = createCipheriv('aes-128-ecb', ivKey, null)
      cipher.setAutoPadding(false)
      ivs = {
        cipher,
        blocks: Buffer.alloc(CBC_IV_BATCH * 16),
        ivs: undefined,
        high: 0,
        low: 0,
        count: 0
      }
    }
    const hmacKey = keyMaterial.subarray(keyLength)
    return {
      transform: 'cbc',
      cipher: cipherName,
      key: aesKey,
      salt: new Uint8Array(0),
      integrity: { hash: spec.hash, key: createSecretKey(hmacKey) },
      ...(ivs !== undefined ? { ivs } : {}),
      chain: { encrypt: undefined, last: Buffer.alloc(16), decrypt: undefined },
      ivLength: ESP_CBC_IV_LENGTH,
      icvLength: spec.icvLength,
      blockSize: 16,
      scratch: makeScratch(new Uint8Array(0))
    }
  }
  if (integrity !== undefined) {
    throw new InvalidParametersError('integrity', `${algorithm} is combined-mode: no integrity`)
  }
  const keyLength = keyMaterial.length - ESP_SALT_LENGTH
  let cipher: string | undefined
  if (algorithm === 'chacha20-poly1305') {
    cipher = keyLength === 32 ? 'chacha20-poly1305' : undefined
    if (cipher === undefined) {
      throw new InvalidParametersError(
        argument,
        `must be a 32-byte ChaCha20 key and a 4-byte salt (36 bytes), not ${keyMaterial.length}`
      )
    }
  } else {
    const bits = aesBits(keyLength)
    cipher = bits === undefined ? undefined : `aes-${bits}-gcm`
    if (cipher === undefined) {
      throw new InvalidParametersError(
        argument,
        `must be a 16, 24 or 32-byte AES key and a 4-byte salt (20, 28 or 36 bytes), not ${keyMaterial.length}`
      )
    }
  }
  const salt = keyMaterial.slice(keyLength)
  const encryptionKey = keyMaterial.subarray(0, keyLength)
  return {
    transform: 'aead',
    cipher,
    key: createSecretKey(encryptionKey),
    salt,
    aead: aeadKey(cipher as AeadCipher, encryptionKey, { tagLength: ESP_ICV_LENGTH }),
    ivLength: ESP_IV_LENGTH,
    icvLength: ESP_ICV_LENGTH,
    blockSize: 4,
    scratch: makeScratch(salt)
  }
}

/**
 * Splits RFC 4106 keying material (the AES key followed by a 4-byte salt) into an {@link EspKey}.
 *
 * @param keyMaterial - 20, 28 or 36 bytes
 * @param argument - the name reported in the error
 * @throws InvalidParametersError when the length is not 20, 28 or 36
 */
export function espKey(keyMaterial: Uint8Array, argument = 'keyMaterial'): EspKey {
  return espTransformKey('aes-gcm-16', undefined, keyMaterial, argument)
}

/** The inputs of {@link sealEsp}. */
export interface SealInput {
  /** The encryption transform (AES-GMAC authenticates only); it must be the one `key` was made for. */
  algorithm: EspAlgorithm
  /** The prepared key ({@link espKey}, {@link espTransformKey}). */
  key: EspKey
  /** The SPI, written as is (0 to 2^32-1). */
  spi: number
  /** The sequence number (its low 32 bits go on the wire). */
  sequence: bigint
  /** Whether the high 32 bits of `sequence` are authenticated (RFC 4303 extended sequence numbers). */
  esn: boolean
  /** The explicit IV: 8 bytes, or 16 for AES-CBC. */
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
      /**
       * `icv-failure` when the ICV did not verify; `malformed` when too short or not a whole
       * number of cipher blocks; `bad-padding` when the ICV verified but the padding or pad length
       * is not what RFC 4303 section 2.4 prescribes.
       */
      reason: 'icv-failure' | 'malformed' | 'bad-padding'
    }

/**
 * Bytes of padding that align payload + trailer to `blockSize` (RFC 4303 section 2.4): 4 bytes,
 * or the cipher's block (16 for AES-CBC).
 *
 * @param payloadLength - the payload length
 * @param blockSize - 4 or 16 (default 4)
 */
export function espPadLength(payloadLength: number, blockSize = 4): number {
  const mask = blockSize - 1
  return (blockSize - ((payloadLength + 2) & mask)) & mask
}

/**
 * Builds an ESP packet (SPI to ICV) with AES-GCM (RFC 4106), AES-GMAC (RFC 4543),
 * ChaCha20-Poly1305 (RFC 7634) or AES-CBC with an HMAC (RFC 3602, RFC 4868, RFC 2404). This is
 * the pure transform: the caller chooses the IV. The engine never calls it with anything but an
 * SA's own sequence counter, through {@link EspSealer}, which makes reuse impossible; call it
 * directly only for known-answer tests.
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

const GCM_SHAPE: EspShape = { ivLength: ESP_IV_LENGTH, icvLength: ESP_ICV_LENGTH, blockSize: 4 }

/**
 * The length of the ESP packet that sealing a payload of `payloadLength` bytes makes.
 *
 * @param payloadLength - the payload length
 * @param shape - the transform's sizes (an {@link EspKey}); default those of AES-GCM
 */
export function espPacketLength(payloadLength: number, shape: EspShape = GCM_SHAPE): number {
  return (
    ESP_HEADER_LENGTH +
    shape.ivLength +
    payloadLength +
    espPadLength(payloadLength, shape.blockSize) +
    2 +
    shape.icvLength
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
  iv: Uint8Array | undefined,
  payload: Uint8Array,
  nextHeader: number
): Uint8Array {
  const length = espPacketLength(payload.length, key)
  const out = allocPacket(length)
  try {
    if (length <= SLAB_MAX_PACKET) {
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
 * @internal seals into `out` from offset `at`, which must have `espPacketLength(payload.length,
 * key)` bytes free; returns that length. `iv` is the explicit IV; for AES-CBC it may be
 * `undefined`, and is then made from the sequence number with the key's IV cipher.
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
  iv: Uint8Array | undefined,
  payload: Uint8Array,
  nextHeader: number
): number {
  const ivLength = key.ivLength
  const start = at + ESP_HEADER_LENGTH + ivLength
  const padLength = espPadLength(payload.length, key.blockSize)
  out[at] = spi >>> 24
  out[at + 1] = spi >>> 16
  out[at + 2] = spi >>> 8
  out[at + 3] = spi
  out[at + 4] = low >>> 24
  out[at + 5] = low >>> 16
  out[at + 6] = low >>> 8
  out[at + 7] = low
  const scratch = key.scratch
  const textLength = payload.length + padLength + 2
  if (key.transform === 'aead' && !gmac) {
    // the plaintext is staged in this thread's buffer, through a view kept for its length: the
    // packet's own bytes are written once, with ciphertext, and no view is made per packet
    const text = stagedText(payload, padLength, nextHeader, textLength, 0)
    let p = start + textLength
    writeAeadIv(out, at, iv, scratch.nonce)
    // RFC 4106, RFC 7634: SPI and sequence number (with ESN: SPI, high half, low half), from the
    // scratch; the ciphertext and the ICV go straight into the packet
    key.aead!.seal(
      scratch.nonce,
      esn ? esnHeader(scratch.aad, spi, high, low) : spiSeqAad(scratch.aad8, spi, low),
      text,
      out.subarray(start, p),
      out.subarray(p, p + ESP_ICV_LENGTH)
    )
    p += ESP_ICV_LENGTH
    return p - at
  }
  if (key.transform === 'cbc' && iv === undefined) {
    // The kept cipher continues from the last ciphertext block C it made (zero at first). Fed
    // G xor C, for the generated block G, and then the plaintext, it gives E(G), which becomes
    // the IV, and then the CBC encryption of the plaintext under that IV. The IV is
    // unpredictable because G is (RFC 3602 section 2.1), distinct for each sequence number as
    // both are permutations, and no cipher is set up per packet. The input is staged like an
    // AEAD plaintext, behind that first block.
    const length = ESP_CBC_IV_LENGTH + textLength
    const input = stagedText(payload, padLength, nextHeader, length, ESP_CBC_IV_LENGTH)
    cbcIv(key, high, low, input, 0)
    const chain = key.chain as NonNullable<EspKey['chain']>
    const last = chain.last
    if (chain.encrypt === undefined) {
      chain.encrypt = createCipheriv(key.cipher, key.key, ZERO_BLOCK).setAutoPadding(false)
      last.fill(0)
    }
    // G xor C: the cipher's own chaining cancels, so the IV is E(G) whatever the cipher sealed
    // before (in this thread or another)
    for (let i = 0; i < 16; i++) input[i] ^= last[i]
    const text = chain.encrypt.update(input)
    if (text.length !== length) {
      // cannot happen with whole blocks; never let a cipher with a partial block in it go on
      chain.encrypt = undefined
      throw new InvalidParametersError('payload', 'AES-CBC lost its block alignment')
    }
    out.set(text, at + 8)
    for (let i = 0; i < 16; i++) last[i] = text[length - 16 + i]
    return cbcIcv(out, at, start + textLength, key, esn, high)
  }
  // a worker's batch buffer already holds the payload in place
  if (payload.byteOffset !== out.byteOffset + start || payload.buffer !== out.buffer) {
    out.set(payload, start)
  }
  let p = start + payload.length
  for (let i = 1; i <= padLength; i++) out[p++] = i
  out[p++] = padLength
  out[p++] = nextHeader
  if (key.transform === 'cbc') {
    // an explicit IV (known-answer tests): a cipher of its own
    const explicit = iv as Uint8Array
    if (explicit.length !== ESP_CBC_IV_LENGTH) {
      throw new InvalidParametersError('iv', `must be ${ESP_CBC_IV_LENGTH} bytes for AES-CBC`)
    }
    out.set(explicit, at + 8)
    const cipher = createCipheriv(key.cipher, key.key, explicit)
    cipher.setAutoPadding(false)
    out.set(cipher.update(out.subarray(start, p)), start)
    cipher.final()
    return cbcIcv(out, at, p, key, esn, high)
  }
  writeAeadIv(out, at, iv, scratch.nonce)
  // RFC 4543: everything from the SPI to the trailer is AAD; with ESN the high half follows the low
  key.aead!.seal(
    scratch.nonce,
    esn ? esnAad(out.subarray(at, p), high, p - at) : out.subarray(at, p),
    EMPTY,
    EMPTY,
    out.subarray(p, p + ESP_ICV_LENGTH)
  )
  return p + ESP_ICV_LENGTH - at
}

/**
 * Writes the ICV of an AES-CBC packet (SPI at `at`, ciphertext ending at `p`) after it; returns
 * the packet's length. RFC 4303 section 2.2.1: the ICV covers SPI to the end of the ciphertext,
 * then (ESN) the high half.
 */
function cbcIcv(
  out: Uint8Array,
  at: number,
  p: number,
  key: EspKey,
  esn: boolean,
  high: number
): number {
  const integrity = key.integrity as NonNullable<EspKey['integrity']>
  const hmac = createHmac(integrity.hash, integrity.key).update(out.subarray(at, p))
  if (esn) hmac.update(highHalf(key.scratch.high, high))
  const digest = hmac.digest()
  const icvLength = key.icvLength
  for (let i = 0; i < icvLength; i++) out[p + i] = digest[i]
  return p + icvLength - at
}

/** Checks an 8-byte explicit IV and writes it into the packet at `at` + 8 and into the nonce. */
function writeAeadIv(out: Uint8Array, at: number, iv: Uint8Array | undefined, nonce: Buffer): void {
  if (iv === undefined || iv.length !== ESP_IV_LENGTH) {
    throw new InvalidParametersError('iv', `must be ${ESP_IV_LENGTH} bytes`)
  }
  // byte by byte: cheaper than TypedArray.prototype.set for 8 bytes
  for (let i = 0; i < ESP_IV_LENGTH; i++) {
    const b = iv[i]
    out[at + 8 + i] = b
    nonce[4 + i] = b
  }
}

/** Plaintexts up to this length get a staging view kept for their length. */
const STAGE_KEPT_VIEWS = 2048
/** This thread's staging buffer for plaintext before encryption; it grows to the largest packet. */
let stage = new Uint8Array(STAGE_KEPT_VIEWS)
let stageViews: (Uint8Array | undefined)[] = []

/**
 * The payload, padding and trailer in the staging buffer from `lead`, as a view of exactly
 * `length` bytes from its start (the first `lead` bytes are the caller's to fill).
 */
function stagedText(
  payload: Uint8Array,
  padLength: number,
  nextHeader: number,
  length: number,
  lead: number
): Uint8Array {
  if (length > stage.length) {
    stage = new Uint8Array(length)
    stageViews = []
  }
  const text = stage
  text.set(payload, lead)
  let p = lead + payload.length
  for (let i = 1; i <= padLength; i++) text[p++] = i
  text[p++] = padLength
  text[p] = nextHeader
  if (length > STAGE_KEPT_VIEWS) return text.subarray(0, length)
  let view = stageViews[length]
  if (view === undefined) {
    view = text.subarray(0, length)
    stageViews[length] = view
  }
  return view
}

/**
 * The ICV an integrity transform of AES-CBC computes over `data` (the ESP packet from the SPI to
 * the end of the ciphertext, then with ESN the high half of the sequence number): the HMAC
 * truncated to the transform's ICV length.
 *
 * @param algorithm - the integrity transform
 * @param key - its key (32, 48, 64 or 20 bytes)
 * @param data - the authenticated bytes, in order
 */
export function espIcv(
  algorithm: EspIntegrityAlgorithm,
  key: Uint8Array,
  ...data: Uint8Array[]
): Uint8Array {
  const spec = ESP_INTEGRITY[algorithm]
  if (spec === undefined) {
    throw new InvalidParametersError(
      'algorithm',
      `must be one of ${Object.keys(ESP_INTEGRITY).join(', ')}`
    )
  }
  const hmac = createHmac(spec.hash, key)
  for (const part of data) hmac.update(part)
  return plain(hmac.digest()).slice(0, spec.icvLength)
}

/**
 * Writes the generated first block of sequence number (high, low) into `out` at `to`: the
 * encryption of the counter block under the key's local IV key. The IV cipher is ECB without
 * padding, so one update encrypts the blocks of the next {@link CBC_IV_BATCH} sequence numbers
 * (never across a change of the high half).
 */
function cbcIv(key: EspKey, high: number, low: number, out: Uint8Array, to: number): void {
  const g = key.ivs
  if (g === undefined) {
    throw new InvalidParametersError('iv', 'an AES-CBC key without an IV key needs an explicit IV')
  }
  const offset = low - g.low
  if (g.ivs === undefined || high !== g.high || offset < 0 || offset >= g.count) {
    // the next CBC_IV_BATCH numbers, from this one
    const count = Math.min(CBC_IV_BATCH, MAX_32 - low + 1)
    const blocks = g.blocks
    for (let i = 0, o = 0; i < count; i++, o += 16) {
      const n = low + i
      blocks[o] = high >>> 24
      blocks[o + 1] = high >>> 16
      blocks[o + 2] = high >>> 8
      blocks[o + 3] = high
      blocks[o + 4] = n >>> 24
      blocks[o + 5] = n >>> 16
      blocks[o + 6] = n >>> 8
      blocks[o + 7] = n
    }
    g.ivs = g.cipher.update(blocks.subarray(0, count * 16))
    g.high = high
    g.low = low
    g.count = count
  }
  // copied byte by byte: cheaper than a Buffer view per packet
  const from = g.ivs
  const base = (low - g.low) * 16
  for (let i = 0; i < 16; i++) out[to + i] = from[base + i]
}

function highHalf(buffer: Buffer, high: number): Buffer {
  put32(buffer, 0, high)
  return buffer
}

/** A plain Uint8Array view (a Buffer's `slice` would share memory, unlike Uint8Array's). */
function plain(buffer: Buffer): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
}

/** Writes `value` big-endian at `at` (no range checks: the callers pass 32-bit unsigned values). */
function put32(buffer: Uint8Array, at: number, value: number): void {
  buffer[at] = value >>> 24
  buffer[at + 1] = value >>> 16
  buffer[at + 2] = value >>> 8
  buffer[at + 3] = value
}

function spiSeqAad(aad: Buffer, spi: number, low: number): Buffer {
  put32(aad, 0, spi)
  put32(aad, 4, low)
  return aad
}

function esnHeader(aad: Buffer, spi: number, high: number, low: number): Buffer {
  put32(aad, 0, spi)
  put32(aad, 4, high)
  put32(aad, 8, low)
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
const BAD_PADDING: OpenResult = { ok: false, reason: 'bad-padding' }

/**
 * The smallest ESP packet a transform can make (an empty payload): shorter input is malformed.
 *
 * @param shape - the transform's sizes (an {@link EspKey})
 */
export function espMinimumLength(shape: EspShape): number {
  return espPacketLength(0, shape)
}

/** @internal */
export function openRaw(
  gmac: boolean,
  key: EspKey,
  esn: boolean,
  high: number,
  packet: Uint8Array
): OpenResult {
  if (key.transform === 'cbc') return openCbc(key, esn, high, packet)
  const textLength = packet.length - ESP_HEADER_LENGTH - ESP_IV_LENGTH - ESP_ICV_LENGTH
  if (textLength < 2) return MALFORMED
  const icvOffset = packet.length - ESP_ICV_LENGTH
  // nonce, tag and AAD go through the key's scratch, byte by byte: node:crypto copies them, and a
  // loop of 8 or 16 bytes costs less than a view
  const scratch = key.scratch
  const nonce = scratch.nonce
  for (let i = 0; i < 8; i++) nonce[4 + i] = packet[8 + i]
  const tag = scratch.tag
  for (let i = 0; i < ESP_ICV_LENGTH; i++) tag[i] = packet[icvOffset + i]
  const aead = key.aead!
  if (gmac) {
    const spiSeq = packet.subarray(0, icvOffset)
    const aad = esn ? esnAad(spiSeq, high, icvOffset) : spiSeq
    if (!aead.open(nonce, aad, EMPTY, EMPTY, tag)) return ICV_FAILURE
    return unpad(packet.subarray(16, icvOffset), 0, textLength)
  }
  const aad = scratch.aad
  if (esn) {
    for (let i = 0; i < 4; i++) aad[i] = packet[i]
    aad[4] = high >>> 24
    aad[5] = high >>> 16
    aad[6] = high >>> 8
    aad[7] = high
    for (let i = 4; i < 8; i++) aad[i + 4] = packet[i]
  } else {
    for (let i = 0; i < 8; i++) aad[i] = packet[i]
  }
  // the plaintext gets bytes of its own (the caller may keep the payload; the packet stays as it came)
  const text = Buffer.allocUnsafe(textLength)
  if (!aead.open(nonce, esn ? aad : scratch.aad8, packet.subarray(16, icvOffset), text, tag)) {
    return ICV_FAILURE
  }
  return unpad(text, 0, textLength)
}

/** RFC 4303 section 3.4.4.1: the ICV is verified (in constant time) before anything is decrypted. */
function openCbc(key: EspKey, esn: boolean, high: number, packet: Uint8Array): OpenResult {
  const icvLength = key.icvLength
  const textLength = packet.length - ESP_HEADER_LENGTH - ESP_CBC_IV_LENGTH - icvLength
  if (textLength < 16 || (textLength & 15) !== 0) return MALFORMED
  const icvOffset = packet.length - icvLength
  const integrity = key.integrity as NonNullable<EspKey['integrity']>
  const hmac = createHmac(integrity.hash, integrity.key).update(packet.subarray(0, icvOffset))
  if (esn) hmac.update(highHalf(key.scratch.high, high))
  const digest = hmac.digest()
  if (!timingSafeEqual(digest.subarray(0, icvLength), packet.subarray(icvOffset))) {
    return ICV_FAILURE
  }
  // A kept decipher continues from the last block it was given: fed the IV first, it turns that
  // block into garbage (cleared below) and then decrypts the ciphertext chained from the IV.
  const chain = key.chain as NonNullable<EspKey['chain']>
  const decipher = (chain.decrypt ??= createDecipheriv(
    key.cipher,
    key.key,
    ZERO_BLOCK
  ).setAutoPadding(false))
  const text = decipher.update(packet.subarray(8, icvOffset))
  if (text.length !== icvOffset - 8) {
    // cannot happen with whole blocks; never let a decipher with a partial block in it go on
    chain.decrypt = undefined
    return MALFORMED
  }
  text.fill(0, 0, ESP_CBC_IV_LENGTH)
  return unpad(text, ESP_CBC_IV_LENGTH, textLength)
}

/**
 * Strips padding and trailer from the `textLength` bytes of plaintext at `offset` of `text`,
 * checking the padding is 1, 2, 3, ... (RFC 4303 section 2.4); the payload is a plain Uint8Array
 * view.
 */
function unpad(text: Uint8Array, offset: number, textLength: number): OpenResult {
  const end = offset + textLength
  const padLength = text[end - 2]
  const nextHeader = text[end - 1]
  const payloadLength = textLength - 2 - padLength
  if (payloadLength < 0) return BAD_PADDING
  const padAt = offset + payloadLength
  for (let i = 0; i < padLength; i++) if (text[padAt + i] !== i + 1) return BAD_PADDING
  return {
    ok: true,
    payload: new Uint8Array(text.buffer, text.byteOffset + offset, payloadLength),
    nextHeader
  }
}

const MAX_32 = 0xffffffff

/**
 * The outbound half of an SA: owns the key and the sequence counter, and takes each packet's IV
 * from the counter, so an IV is never repeated under its key: for the combined-mode algorithms the
 * IV is the 64-bit sequence number itself (RFC 4106 section 3.1, RFC 7634 section 2); for AES-CBC
 * it is the counter encrypted under a local random key and then under the SA's key,
 * unpredictable as RFC 3602 section 2.1 requires. It refuses to seal past the last sequence number (2^32-1, or 2^64-1 with ESN) rather
 * than wrap.
 */
export class EspSealer {
  private readonly gmac: boolean
  private readonly key: EspKey
  private readonly spi: number
  private readonly esn: boolean
  private high: number
  private low: number
  private readonly cbc: boolean
  private readonly iv = Buffer.alloc(ESP_IV_LENGTH)
  /** AES-CBC: the local key of the IV generator, for a worker thread that seals for this SA. */
  readonly ivKey: Uint8Array | undefined
  /**
   * AES-GCM, AES-GMAC, ChaCha20-Poly1305: what the high half of each explicit IV is XORed with.
   * 0 for an SA that starts at sequence number 0 (its key is new: the IV is the sequence
   * number); random and not 0 for one that takes over from another copy of itself (an heir's
   * adopted SA), so that its IVs never equal one the first copy used, even if a reservation in
   * the store was rolled back and the two copies send the same sequence numbers.
   */
  readonly ivMask: number

  /**
   * @param algorithm - the encryption transform
   * @param keyMaterial - keying material (see `EspSaParams.keyMaterial`)
   * @param spi - the SA's SPI
   * @param esn - extended sequence numbers
   * @param initialSequence - the last sequence number already used (default 0)
   * @param integrity - the integrity transform of AES-CBC
   * @param ivKey - AES-CBC: the 16-byte local key of the IV generator (default: random)
   * @param key - the key already made from these `algorithm`, `integrity`, `keyMaterial` and
   *   `ivKey` by {@link espTransformKey} (an engine validating an SA made it), so that it is not
   *   made twice; AES-CBC needs `ivKey` with it
   */
  constructor(
    algorithm: EspAlgorithm,
    keyMaterial: Uint8Array,
    spi: number,
    esn: boolean,
    initialSequence = 0n,
    integrity?: EspIntegrityAlgorithm,
    ivKey?: Uint8Array,
    key?: EspKey
  ) {
    this.gmac = algorithm === 'null-aes-gmac'
    this.cbc = algorithm === 'aes-cbc'
    if (key !== undefined && this.cbc && ivKey === undefined) {
      throw new InvalidParametersError('ivKey', 'required with a prebuilt AES-CBC key')
    }
    this.ivKey = this.cbc ? (ivKey ?? randomBytes(ESP_CBC_IV_KEY_LENGTH)) : undefined
    this.key = key ?? espTransformKey(algorithm, integrity, keyMaterial, 'keyMaterial', this.ivKey)
    this.spi = spi >>> 0
    this.esn = esn
    const max = esn ? 0xffffffffffffffffn : 0xffffffffn
    if (typeof initialSequence !== 'bigint' || initialSequence < 0n || initialSequence > max) {
      throw new InvalidParametersError('initialSequence', `must be a bigint from 0 to ${max}`)
    }
    this.high = Number(initialSequence >> 32n)
    this.low = Number(initialSequence & 0xffffffffn)
    this.ivMask = !this.cbc && initialSequence > 0n ? randomInt(1, 0x1_0000_0000) : 0
  }

  /**
   * Warm mode: the high and low halves of the highest sequence number this SA may use
   * (`Infinity` high: no limit). Numbers, so that the per-packet check is a number compare.
   */
  private limitHigh = Number.POSITIVE_INFINITY
  private limitLow = 0

  /** The sequence limit (see `EspSaParams.sequenceLimit`), or `undefined` for none. */
  get limit(): bigint | undefined {
    return this.limitHigh === Number.POSITIVE_INFINITY
      ? undefined
      : (BigInt(this.limitHigh) << 32n) | BigInt(this.limitLow)
  }

  /**
   * Sets the highest sequence number this SA may use (`undefined`: no limit).
   *
   * @param limit - a bigint from 0 to the sequence space's end
   * @throws InvalidParametersError when out of range
   */
  setLimit(limit: bigint | undefined): void {
    if (limit === undefined) {
      this.limitHigh = Number.POSITIVE_INFINITY
      this.limitLow = 0
      return
    }
    const max = this.esn ? 0xffffffffffffffffn : 0xffffffffn
    if (typeof limit !== 'bigint' || limit < 0n || limit > max) {
      throw new InvalidParametersError('sequenceLimit', `must be a bigint from 0 to ${max}`)
    }
    this.limitHigh = Number(limit >> 32n)
    this.limitLow = Number(limit & 0xffffffffn)
  }

  /** Whether the next sequence number would pass the limit (always false without one). */
  get atLimit(): boolean {
    return this.high > this.limitHigh || (this.high === this.limitHigh && this.low >= this.limitLow)
  }

  /** How many sequence numbers are left below the limit, as a number (Infinity without one). */
  get toLimit(): number {
    return (this.limitHigh - this.high) * 4294967296 + (this.limitLow - this.low)
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
    const high = this.high
    const low = this.low
    if (this.cbc) {
      return sealRaw(false, this.key, this.spi, high, low, this.esn, undefined, payload, nextHeader)
    }
    const iv = this.iv
    const ivHigh = (high ^ this.ivMask) >>> 0
    iv[0] = ivHigh >>> 24
    iv[1] = ivHigh >>> 16
    iv[2] = ivHigh >>> 8
    iv[3] = ivHigh
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
