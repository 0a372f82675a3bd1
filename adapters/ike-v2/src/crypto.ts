/**
 * IKEv2 cryptography on `node:crypto` as small functions over `Uint8Array`: prf and prf+
 * (RFC 7296 section 2.13), SKEYSEED and the IKE SA keys (2.14), Child SA keying material (2.17),
 * IKE SA rekey (2.18), the key exchange of groups 31 and 32 (RFC 8031), 19, 20 and 21 (RFC 5903),
 * 14, 15 and 16 (RFC 3526), the SK payload with AES-GCM-16 (RFC 5282), ChaCha20-Poly1305
 * (RFC 7634) and AES-CBC with HMAC-SHA2 (RFC 4868) or HMAC-SHA1-96 (RFC 2404), and
 * pre-shared-key AUTH (2.15).
 *
 * @module
 */
import {
  createCipheriv,
  createDecipheriv,
  createDiffieHellman,
  createDiffieHellmanGroup,
  createECDH,
  type DiffieHellman,
  type ECDH,
  createHash,
  hash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  timingSafeEqual,
  type KeyObject
} from 'node:crypto'
import {
  IkeProtocolError,
  InvalidParametersError,
  type EncryptionTransform,
  type IntegrityAlgorithm,
  type KeyExchangeGroup,
  type PrfAlgorithm,
  type RandomSource
} from '@vipsec/interface'
import { IKE_HEADER_LENGTH, PayloadType } from './constants.js'
import { writeU32 } from '@vipsec/wire'
import {
  concat,
  encodePayloads,
  parsePayloads,
  type IkeHeader,
  type IkeMessage,
  type Payload,
  type SkPayload,
  type SkfPayload
} from './message.js'

const HASH: Record<PrfAlgorithm, { hash: string; length: number }> = {
  'hmac-sha2-256': { hash: 'sha256', length: 32 },
  'hmac-sha2-384': { hash: 'sha384', length: 48 },
  'hmac-sha2-512': { hash: 'sha512', length: 64 },
  'hmac-sha1': { hash: 'sha1', length: 20 }
}

/** The output (and preferred key) length of a PRF, in bytes. */
export function prfLength(alg: PrfAlgorithm): number {
  const h = HASH[alg]
  if (h === undefined) throw new InvalidParametersError('alg', `unknown PRF ${String(alg)}`)
  return h.length
}

/**
 * prf(key, data): HMAC with the PRF's hash.
 *
 * @param alg - the PRF
 * @param key - the key, any length
 * @param data - the data
 */
export function prf(alg: PrfAlgorithm, key: Uint8Array, data: Uint8Array): Uint8Array {
  const h = HASH[alg]
  if (h === undefined) throw new InvalidParametersError('alg', `unknown PRF ${String(alg)}`)
  return view(createHmac(h.hash, key).update(data).digest())
}

/**
 * A `Buffer` that node:crypto returned (a digest, a shared secret: each in an `ArrayBuffer` of its
 * own) as a plain `Uint8Array` over the same memory, instead of a copy.
 */
function view(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
}

/**
 * prf+(key, seed) = T1 | T2 | ..., Tn = prf(key, Tn-1 | seed | n) (RFC 7296 section 2.13).
 *
 * @param alg - the PRF
 * @param key - the key
 * @param seed - the seed
 * @param length - bytes wanted, at most 255 PRF outputs
 */
export function prfPlus(
  alg: PrfAlgorithm,
  key: Uint8Array,
  seed: Uint8Array,
  length: number
): Uint8Array {
  const n = prfLength(alg)
  if (!Number.isInteger(length) || length < 0 || length > 255 * n) {
    throw new InvalidParametersError('length', `must be 0 to ${255 * n}`)
  }
  const { hash } = HASH[alg]
  const out = new Uint8Array(length)
  const counter = new Uint8Array(1)
  let t: Uint8Array | undefined
  let o = 0
  for (let i = 1; o < length; i++) {
    // Tn = prf(key, Tn-1 | seed | n), fed to the HMAC in parts rather than concatenated
    const h = createHmac(hash, key)
    if (t !== undefined) h.update(t)
    counter[0] = i
    t = h.update(seed).update(counter).digest()
    out.set(t.subarray(0, Math.min(t.length, length - o)), o)
    o += t.length
  }
  return out
}

/** The keys of an IKE SA (RFC 7296 section 2.14). */
export interface IkeKeys {
  /** SKEYSEED. */
  skeyseed: Uint8Array
  /** Key for deriving Child SA keys. */
  skD: Uint8Array
  /** Integrity key, initiator to responder (empty with AEAD). */
  skAi: Uint8Array
  /** Integrity key, responder to initiator. */
  skAr: Uint8Array
  /** Encryption key (with the 4-byte salt for GCM), initiator to responder. */
  skEi: Uint8Array
  /** Encryption key, responder to initiator. */
  skEr: Uint8Array
  /** Key for the initiator's AUTH payload. */
  skPi: Uint8Array
  /** Key for the responder's AUTH payload. */
  skPr: Uint8Array
}

/**
 * Encryption key length in bytes, including the 4-byte salt of AES-GCM (RFC 5282) and of
 * ChaCha20-Poly1305 (RFC 7634 section 2: a 32-byte key and a salt).
 */
export function encryptionKeyLength(encr: EncryptionTransform): number {
  if (encr.algorithm === 'chacha20-poly1305') return 36
  const bytes = encr.keyBits / 8
  if (encr.algorithm === 'aes-gcm-16' || encr.algorithm === 'null-aes-gmac') return bytes + 4
  return bytes
}

/** Integrity key length in bytes. */
export function integrityKeyLength(integ: IntegrityAlgorithm): number {
  switch (integ) {
    case 'hmac-sha2-256-128':
      return 32
    case 'hmac-sha2-384-192':
      return 48
    case 'hmac-sha2-512-256':
      return 64
    case 'hmac-sha1-96':
      return 20
    case 'none':
      return 0
    default:
      throw new InvalidParametersError('integ', `unknown integrity algorithm ${String(integ)}`)
  }
}

/** Parameters of {@link deriveIkeKeys}. */
export interface IkeKeyInput {
  /** The negotiated PRF. */
  prf: PrfAlgorithm
  /** The negotiated encryption. */
  encryption: EncryptionTransform
  /** The negotiated integrity (`none` with AEAD). */
  integrity: IntegrityAlgorithm
  /** Ni. */
  ni: Uint8Array
  /** Nr. */
  nr: Uint8Array
  /** SPIi (8 bytes). */
  spiI: Uint8Array
  /** SPIr (8 bytes). */
  spiR: Uint8Array
  /** g^ir. */
  sharedSecret: Uint8Array
  /** For an IKE SA rekey: the old SA's SK_d and PRF (SKEYSEED = prf(SK_d, g^ir | Ni | Nr)). */
  rekey?: {
    /** The old IKE SA's SK_d. */
    skD: Uint8Array
    /** The old IKE SA's PRF. */
    prf: PrfAlgorithm
  }
}

/**
 * SKEYSEED = prf(Ni | Nr, g^ir), or for a rekey prf(SK_d old, g^ir new | Ni | Nr); then
 * {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr).
 *
 * @param input - the negotiated algorithms, nonces, SPIs and shared secret
 */
export function deriveIkeKeys(input: IkeKeyInput): IkeKeys {
  const skeyseed =
    input.rekey === undefined
      ? prf(input.prf, concat(input.ni, input.nr), input.sharedSecret)
      : prf(input.rekey.prf, input.rekey.skD, concat(input.sharedSecret, input.ni, input.nr))
  const p = prfLength(input.prf)
  const a = integrityKeyLength(input.integrity)
  const e = encryptionKeyLength(input.encryption)
  const km = prfPlus(
    input.prf,
    skeyseed,
    concat(input.ni, input.nr, input.spiI, input.spiR),
    3 * p + 2 * a + 2 * e
  )
  let o = 0
  // views of one keying-material buffer: one ArrayBuffer per IKE SA rather than one per key
  // (and one shared empty array for the integrity keys of an AEAD)
  const take = (n: number): Uint8Array => (n === 0 ? NO_KEY : km.subarray(o, (o += n)))
  return {
    skeyseed,
    skD: take(p),
    skAi: take(a),
    skAr: take(a),
    skEi: take(e),
    skEr: take(e),
    skPi: take(p),
    skPr: take(p)
  }
}

/** A key of no bytes (the integrity key of an AEAD): shared, nothing writes into it. */
const NO_KEY = new Uint8Array(0)

/** The keys of a Child SA: one encryption and one integrity key per direction. */
export interface ChildKeys {
  /** Encryption key (with salt for GCM), initiator to responder. */
  encrI: Uint8Array
  /** Integrity key, initiator to responder. */
  integI: Uint8Array
  /** Encryption key, responder to initiator. */
  encrR: Uint8Array
  /** Integrity key, responder to initiator. */
  integR: Uint8Array
}

/**
 * KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr), taken as initiator-to-responder keys first
 * (RFC 7296 section 2.17).
 *
 * @param alg - the IKE SA's PRF
 * @param skD - the IKE SA's SK_d
 * @param ni - the exchange's Ni
 * @param nr - the exchange's Nr
 * @param encryption - the Child SA's encryption
 * @param integrity - the Child SA's integrity
 * @param sharedSecret - the PFS shared secret, if any
 */
export function deriveChildKeys(
  alg: PrfAlgorithm,
  skD: Uint8Array,
  ni: Uint8Array,
  nr: Uint8Array,
  encryption: EncryptionTransform,
  integrity: IntegrityAlgorithm,
  sharedSecret?: Uint8Array
): ChildKeys {
  const e = encryptionKeyLength(encryption)
  const a = integrityKeyLength(integrity)
  const seed = sharedSecret === undefined ? concat(ni, nr) : concat(sharedSecret, ni, nr)
  const km = prfPlus(alg, skD, seed, 2 * (e + a))
  let o = 0
  const take = (n: number): Uint8Array => km.subarray(o, (o += n))
  return { encrI: take(e), integI: take(a), encrR: take(e), integR: take(a) }
}

/** The IKE group number of a key-exchange group. */
export const GROUP_NUMBER: Record<Exclude<KeyExchangeGroup, 'none'>, number> = {
  curve25519: 31,
  curve448: 32,
  ecp256: 19,
  ecp384: 20,
  ecp521: 21,
  modp2048: 14,
  modp3072: 15,
  modp4096: 16
}

const BY_NUMBER = new Map(
  Object.entries(GROUP_NUMBER).map(([g, n]) => [n, g as Exclude<KeyExchangeGroup, 'none'>])
)

/** The key-exchange group of an IKE group number, if supported. */
export function groupByNumber(n: number): Exclude<KeyExchangeGroup, 'none'> | undefined {
  return BY_NUMBER.get(n)
}

/** The length of a group's KE payload data (x and y for ECP, RFC 5903 section 7). */
const PUBLIC_LENGTH: Record<Exclude<KeyExchangeGroup, 'none'>, number> = {
  curve25519: 32,
  curve448: 56,
  ecp256: 64,
  ecp384: 96,
  ecp521: 132,
  modp2048: 256,
  modp3072: 384,
  modp4096: 512
}

/** The length of a group's KE payload data. */
export function publicValueLength(group: Exclude<KeyExchangeGroup, 'none'>): number {
  return PUBLIC_LENGTH[group]
}

/** One side of an ephemeral key exchange. */
export interface KeyExchange {
  /** The group. */
  readonly group: Exclude<KeyExchangeGroup, 'none'>
  /** This side's public value as carried in the KE payload. */
  readonly publicValue: Uint8Array
  /**
   * Computes g^ir from the peer's KE payload data.
   *
   * @throws IkeProtocolError INVALID_SYNTAX when the peer's value is malformed or invalid
   */
  computeSharedSecret(peer: Uint8Array): Uint8Array
}

function b64url(b: Uint8Array): string {
  return Buffer.from(b).toString('base64url')
}

/** A Montgomery curve of RFC 7748 as node:crypto names it, with its base point and sizes. */
interface Montgomery {
  group: 'curve25519' | 'curve448'
  crv: 'X25519' | 'X448'
  size: number
  base: string
}

const X25519: Montgomery = {
  group: 'curve25519',
  crv: 'X25519',
  size: 32,
  base: b64url(Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 9 : 0)))
}
const X448: Montgomery = {
  group: 'curve448',
  crv: 'X448',
  size: 56,
  base: b64url(Uint8Array.from({ length: 56 }, (_, i) => (i === 0 ? 5 : 0)))
}

/** X25519 and X448 (RFC 7748, RFC 8031). */
class MontgomeryExchange implements KeyExchange {
  readonly group: 'curve25519' | 'curve448'
  readonly publicValue: Uint8Array
  private readonly key: KeyObject

  constructor(
    private readonly curve: Montgomery,
    priv: Uint8Array
  ) {
    this.group = curve.group
    // A JWK import is ~6x cheaper than PKCS#8 here. The import derives the public value from
    // `d` (the placeholder `x` is not used): read it back rather than computing X(k, base
    // point) once more (one scalar multiplication less, ~40 us, per key exchange).
    this.key = createPrivateKey({
      key: { kty: 'OKP', crv: curve.crv, d: b64url(priv), x: curve.base },
      format: 'jwk'
    })
    const { x } = this.key.export({ format: 'jwk' })
    this.publicValue = view(Buffer.from(x ?? '', 'base64url'))
    if (this.publicValue.length !== curve.size) {
      throw new InvalidParametersError('priv', `${curve.crv} public value length`)
    }
  }

  computeSharedSecret(peer: Uint8Array): Uint8Array {
    const name = this.curve.crv
    if (peer.length !== this.curve.size) {
      throw new IkeProtocolError('INVALID_SYNTAX', `${name} value length`)
    }
    let secret: Uint8Array
    try {
      const publicKey = createPublicKey({
        key: { kty: 'OKP', crv: name, x: b64url(peer) },
        format: 'jwk'
      })
      secret = view(diffieHellman({ privateKey: this.key, publicKey }))
    } catch (err) {
      throw new IkeProtocolError('INVALID_SYNTAX', `bad ${name} public value`, { cause: err })
    }
    // RFC 8031 section 2: an all-zero result must be rejected
    if (secret.every((x) => x === 0)) {
      throw new IkeProtocolError('INVALID_SYNTAX', `${name} shared secret is zero`)
    }
    return secret
  }
}

const ECP_CURVE: Record<'ecp256' | 'ecp384' | 'ecp521', { curve: string; size: number }> = {
  ecp256: { curve: 'prime256v1', size: 32 },
  ecp384: { curve: 'secp384r1', size: 48 },
  ecp521: { curve: 'secp521r1', size: 66 }
}

/** The random ECP groups of RFC 5903: x and y in the KE payload, x as the shared secret. */
class EcpExchange implements KeyExchange {
  readonly publicValue: Uint8Array
  private readonly ecdh: ECDH
  private readonly size: number

  constructor(
    readonly group: 'ecp256' | 'ecp384' | 'ecp521',
    priv: Uint8Array
  ) {
    const { curve, size } = ECP_CURVE[group]
    this.size = size
    this.ecdh = createECDH(curve)
    this.ecdh.setPrivateKey(priv)
    this.publicValue = new Uint8Array(this.ecdh.getPublicKey()).slice(1)
  }

  computeSharedSecret(peer: Uint8Array): Uint8Array {
    const name = this.group.toUpperCase()
    if (peer.length !== 2 * this.size) {
      throw new IkeProtocolError('INVALID_SYNTAX', `${name} value length`)
    }
    try {
      const x = new Uint8Array(this.ecdh.computeSecret(Buffer.concat([Buffer.of(4), peer])))
      return leftPad(x, this.size)
    } catch (err) {
      throw new IkeProtocolError('INVALID_SYNTAX', `bad ${name} public value`, { cause: err })
    }
  }
}

const MODP: Record<'modp2048' | 'modp3072' | 'modp4096', { name: string; size: number }> = {
  modp2048: { name: 'modp14', size: 256 },
  modp3072: { name: 'modp15', size: 384 },
  modp4096: { name: 'modp16', size: 512 }
}
const MODP_PRIMES = new Map<string, Buffer>()

function leftPad(b: Uint8Array, n: number): Uint8Array {
  if (b.length >= n) return b
  const out = new Uint8Array(n)
  out.set(b, n - b.length)
  return out
}

/** The MODP groups of RFC 3526 (generator 2). */
class ModpExchange implements KeyExchange {
  readonly publicValue: Uint8Array
  private readonly dh: DiffieHellman
  private readonly size: number

  constructor(
    readonly group: 'modp2048' | 'modp3072' | 'modp4096',
    priv: Uint8Array
  ) {
    const { name, size } = MODP[group]
    this.size = size
    let prime = MODP_PRIMES.get(name)
    if (prime === undefined) {
      prime = createDiffieHellmanGroup(name).getPrime()
      MODP_PRIMES.set(name, prime)
    }
    this.dh = createDiffieHellman(prime, 2)
    this.dh.setPrivateKey(Buffer.from(priv))
    this.dh.generateKeys()
    this.publicValue = leftPad(new Uint8Array(this.dh.getPublicKey()), size)
  }

  computeSharedSecret(peer: Uint8Array): Uint8Array {
    const name = this.group.toUpperCase()
    if (peer.length !== this.size) throw new IkeProtocolError('INVALID_SYNTAX', `${name} length`)
    // RFC 7296 / SP 800-56A: 1 < y < p-1
    let allZeroButLast = true
    for (let i = 0; i < this.size - 1; i++) if (peer[i] !== 0) allZeroButLast = false
    if (allZeroButLast && peer[this.size - 1] <= 1) {
      throw new IkeProtocolError('INVALID_SYNTAX', `${name} value out of range`)
    }
    try {
      return leftPad(new Uint8Array(this.dh.computeSecret(Buffer.from(peer))), this.size)
    } catch (err) {
      throw new IkeProtocolError('INVALID_SYNTAX', `bad ${name} public value`, { cause: err })
    }
  }
}

/** The private value lengths drawn for each group, in bytes. */
const PRIVATE_LENGTH: Record<Exclude<KeyExchangeGroup, 'none'>, number> = {
  curve25519: 32,
  curve448: 56,
  ecp256: 32,
  ecp384: 48,
  ecp521: 66,
  modp2048: 32,
  modp3072: 32,
  modp4096: 48
}

/**
 * Creates this side of a key exchange from a given private value (for known-answer tests).
 *
 * @param group - the group
 * @param priv - the private value: 32 bytes (X25519, P-256), 56 (X448), 48 (P-384), 66 (P-521),
 *   or 32 up to the prime's length (MODP)
 */
export function keyExchangeFromPrivate(
  group: Exclude<KeyExchangeGroup, 'none'>,
  priv: Uint8Array
): KeyExchange {
  const length = PRIVATE_LENGTH[group]
  if (length === undefined) {
    throw new InvalidParametersError('group', `unsupported group ${String(group)}`)
  }
  switch (group) {
    case 'curve25519':
    case 'curve448':
    case 'ecp256':
    case 'ecp384':
    case 'ecp521':
      if (priv.length !== length)
        throw new InvalidParametersError('priv', `must be ${length} bytes`)
      return group === 'curve25519'
        ? new MontgomeryExchange(X25519, priv)
        : group === 'curve448'
          ? new MontgomeryExchange(X448, priv)
          : new EcpExchange(group, priv)
    default: {
      const max = MODP[group].size
      if (priv.length < 32 || priv.length > max) {
        throw new InvalidParametersError('priv', `must be 32 to ${max} bytes`)
      }
      return new ModpExchange(group, priv)
    }
  }
}

/**
 * Creates this side of a key exchange with a private value from `random`.
 *
 * @param group - the group
 * @param random - the random source
 */
export function createKeyExchange(
  group: Exclude<KeyExchangeGroup, 'none'>,
  random: RandomSource
): KeyExchange {
  const ecp = group === 'ecp256' || group === 'ecp384' || group === 'ecp521'
  for (let i = 0; i < 8; i++) {
    const priv = random.randomBytes(PRIVATE_LENGTH[group] ?? 32)
    // a P-521 scalar has 521 bits: the top byte keeps its lowest bit only
    if (group === 'ecp521') priv[0] &= 0x01
    try {
      return keyExchangeFromPrivate(group, priv)
    } catch (err) {
      // an ECP scalar outside [1, n-1] (probability at most ~2^-32 but for P-521): draw again
      if (!ecp) throw err
    }
  }
  throw new InvalidParametersError('random', 'did not yield a valid private value')
}

/** The SK payload keys of one direction, and the algorithms. */
export interface SkKeys {
  /** The encryption transform. */
  encryption: EncryptionTransform
  /** The integrity algorithm (`none` with AES-GCM). */
  integrity: IntegrityAlgorithm
  /** The encryption key (with the 4-byte salt for GCM). */
  encryptionKey: Uint8Array
  /** The integrity key (empty with AES-GCM). */
  integrityKey: Uint8Array
}

function isAeadSk(encr: EncryptionTransform): boolean {
  return encr.algorithm === 'aes-gcm-16' || encr.algorithm === 'chacha20-poly1305'
}

function icvLength(keys: SkKeys): number {
  if (isAeadSk(keys.encryption)) return 16
  switch (keys.integrity) {
    case 'hmac-sha1-96':
      return 12
    case 'hmac-sha2-256-128':
      return 16
    case 'hmac-sha2-384-192':
      return 24
    case 'hmac-sha2-512-256':
      return 32
    default:
      throw new InvalidParametersError('keys.integrity', 'an integrity algorithm is required')
  }
}

function hmacHash(integ: IntegrityAlgorithm): string {
  return integ === 'hmac-sha2-256-128'
    ? 'sha256'
    : integ === 'hmac-sha2-384-192'
      ? 'sha384'
      : integ === 'hmac-sha1-96'
        ? 'sha1'
        : 'sha512'
}

function cipherName(encr: EncryptionTransform): string {
  if (encr.algorithm === 'chacha20-poly1305') return 'chacha20-poly1305'
  const mode = encr.algorithm === 'aes-gcm-16' ? 'gcm' : 'cbc'
  return `aes-${encr.keyBits}-${mode}`
}

/** What an SK or SKF payload adds around its plaintext. */
export interface SkOverhead {
  /** Bytes of IV before the ciphertext. */
  iv: number
  /** Bytes of integrity check value after it. */
  icv: number
  /** The block size the padded plaintext must be a multiple of. */
  block: number
}

/**
 * The per-message cost of an SK or SKF payload under `keys`: the IV and ICV lengths and the
 * block the plaintext (with its pad-length byte) is padded to.
 */
export function skOverhead(keys: SkKeys): SkOverhead {
  const gcm = isAeadSk(keys.encryption)
  // ChaCha20 is a stream cipher: no padding is needed (RFC 7634 section 3)
  const block = keys.encryption.algorithm === 'chacha20-poly1305' ? 1 : gcm ? 4 : 16
  return { iv: gcm ? 8 : 16, icv: icvLength(keys), block }
}

/**
 * Encrypts and protects encoded payloads into an SK payload (RFC 7296 section 3.14) or, with
 * `fragment`, an SKF payload (RFC 7383 section 2.5, whose fragment number and total are
 * authenticated with the header).
 */
function seal(
  header: Omit<IkeHeader, 'nextPayload' | 'length'>,
  first: number,
  bytes: Uint8Array,
  keys: SkKeys,
  iv: Uint8Array,
  fragment?: { number: number; total: number }
): Uint8Array {
  const gcm = isAeadSk(keys.encryption)
  const { block, icv } = skOverhead(keys)
  if (iv.length !== (gcm ? 8 : 16)) throw new InvalidParametersError('iv', 'wrong IV length')
  const padLength = (block - ((bytes.length + 1) % block)) % block
  const plainLength = bytes.length + padLength + 1
  const head = fragment === undefined ? 4 : 8
  const skLength = head + iv.length + plainLength + icv
  // the whole message in one array: header, SK header, IV, the plaintext (encrypted in place
  // of itself), the ICV
  if (header.spiI.length !== 8 || header.spiR.length !== 8) {
    throw new InvalidParametersError('header', 'SPIs must be 8 bytes')
  }
  const total = IKE_HEADER_LENGTH + skLength
  const out = new Uint8Array(total)
  out.set(header.spiI, 0)
  out.set(header.spiR, 8)
  out[16] = fragment === undefined ? PayloadType.SK : PayloadType.SKF
  out[17] = header.version
  out[18] = header.exchange
  out[19] = header.flags
  writeU32(out, 20, header.messageId)
  writeU32(out, 24, total)
  const sk = IKE_HEADER_LENGTH
  out[sk] = first
  out[sk + 2] = skLength >> 8
  out[sk + 3] = skLength & 0xff
  if (fragment !== undefined) {
    out[sk + 4] = fragment.number >> 8
    out[sk + 5] = fragment.number & 0xff
    out[sk + 6] = fragment.total >> 8
    out[sk + 7] = fragment.total & 0xff
  }
  out.set(iv, sk + head)
  const p0 = sk + head + iv.length
  out.set(bytes, p0)
  out[p0 + plainLength - 1] = padLength
  const plain = out.subarray(p0, p0 + plainLength)
  if (gcm) {
    const key = keys.encryptionKey.subarray(0, keys.encryptionKey.length - 4)
    const salt = keys.encryptionKey.subarray(keys.encryptionKey.length - 4)
    const c = createCipheriv(cipherName(keys.encryption) as 'aes-256-gcm', key, concat(salt, iv), {
      authTagLength: 16
    })
    c.setAAD(out.subarray(0, sk + head))
    out.set(c.update(plain), p0)
    c.final()
    out.set(c.getAuthTag(), p0 + plainLength)
    return out
  }
  const c = createCipheriv(cipherName(keys.encryption), keys.encryptionKey, iv)
  c.setAutoPadding(false)
  out.set(c.update(plain), p0)
  c.final()
  const mac = createHmac(hmacHash(keys.integrity), keys.integrityKey)
    .update(out.subarray(0, total - icv))
    .digest()
  out.set(mac.subarray(0, icv), total - icv)
  return out
}

/**
 * Builds an encrypted message: HDR, SK { payloads }.
 *
 * @param header - the header (next payload and length are filled in)
 * @param payloads - the payloads to protect
 * @param keys - the sender's SK keys
 * @param iv - for AES-GCM and ChaCha20-Poly1305 an 8-byte IV that is never reused with this key
 *   (a counter); for AES-CBC 16 unpredictable bytes
 */
export function encryptMessage(
  header: Omit<IkeHeader, 'nextPayload' | 'length'>,
  payloads: Payload[],
  keys: SkKeys,
  iv: Uint8Array
): Uint8Array {
  const { first, bytes } = encodePayloads(payloads)
  return seal(header, first, bytes, keys, iv)
}

/**
 * Builds an encrypted message from payloads already encoded (by `encodePayloads`): HDR, SK.
 *
 * @param header - the header (next payload and length are filled in)
 * @param first - the type of the first encoded payload
 * @param bytes - the encoded payloads
 * @param keys - the sender's SK keys
 * @param iv - as for {@link encryptMessage}
 */
export function encryptEncoded(
  header: Omit<IkeHeader, 'nextPayload' | 'length'>,
  first: number,
  bytes: Uint8Array,
  keys: SkKeys,
  iv: Uint8Array
): Uint8Array {
  return seal(header, first, bytes, keys, iv)
}

/**
 * Builds one fragment message: HDR, SKF { a piece of the encoded inner payloads } (RFC 7383
 * section 2.5). Each fragment has its own IV, padding and ICV.
 *
 * @param header - the header of the message being fragmented (same message ID in every fragment)
 * @param first - the type of the first inner payload; 0 in every fragment but the first
 * @param chunk - this fragment's piece of the encoded inner payloads
 * @param fragment - its number (from 1) and the total
 * @param keys - the sender's SK keys
 * @param iv - as for {@link encryptMessage}
 */
export function encryptFragment(
  header: Omit<IkeHeader, 'nextPayload' | 'length'>,
  first: number,
  chunk: Uint8Array,
  fragment: { number: number; total: number },
  keys: SkKeys,
  iv: Uint8Array
): Uint8Array {
  return seal(header, first, chunk, keys, iv, fragment)
}

/**
 * Why the SK payload of a message could not be opened: `unprotected` when it is absent or too
 * short to carry an IV and an ICV, `icv-failure` when its integrity check fails. Either way
 * nothing in the message can be trusted (RFC 7296 section 2.21).
 */
export type SkFailure = 'unprotected' | 'icv-failure'

/** The opened SK payload: the first inner payload's type and the decrypted, unpadded body. */
export interface OpenedSk {
  /** The type of the first inner payload. */
  innerType: number
  /** The inner payloads, encoded; `undefined` when the padding was wrong (authenticated). */
  body: Uint8Array | undefined
}

/** What {@link openSk} found: the opened payload, or why there is none. */
export type OpenSkResult =
  | {
      /** The ICV verified. */
      ok: true
      /** The decrypted payload. */
      sk: OpenedSk
    }
  | {
      /** Nothing in the message can be trusted. */
      ok: false
      /** Why. */
      reason: SkFailure
    }

/**
 * Checks the integrity of a message's SK (or SKF, one fragment) payload and decrypts it, without parsing the inner
 * payloads: a result means the message was made by the holder of the keys.
 *
 * @param message - a parsed message whose last payload should be SK
 * @param keys - the keys of the sender's direction
 */
export function openSk(message: IkeMessage, keys: SkKeys): OpenSkResult {
  const sk = message.payloads.at(-1) as SkPayload | SkfPayload | undefined
  if (sk === undefined || (sk.type !== PayloadType.SK && sk.type !== PayloadType.SKF))
    return { ok: false, reason: 'unprotected' }
  const gcm = isAeadSk(keys.encryption)
  const ivLength = gcm ? 8 : 16
  const icv = icvLength(keys)
  const body = sk.body
  if (body.length < ivLength + icv + (gcm ? 1 : 16)) return { ok: false, reason: 'unprotected' }
  const iv = body.subarray(0, ivLength)
  const ct = body.subarray(ivLength, body.length - icv)
  const tag = body.subarray(body.length - icv)
  let plain: Uint8Array
  if (gcm) {
    const key = keys.encryptionKey.subarray(0, keys.encryptionKey.length - 4)
    const salt = keys.encryptionKey.subarray(keys.encryptionKey.length - 4)
    try {
      const d = createDecipheriv(
        cipherName(keys.encryption) as 'aes-256-gcm',
        key,
        concat(salt, iv),
        {
          authTagLength: 16
        }
      )
      // the generic header, and for SKF the fragment number and total (RFC 7383 section 2.5)
      d.setAAD(message.raw.subarray(0, sk.offset + (sk.type === PayloadType.SKF ? 8 : 4)))
      d.setAuthTag(tag)
      plain = concat(d.update(ct), d.final())
    } catch {
      return { ok: false, reason: 'icv-failure' }
    }
  } else {
    if (ct.length % 16 !== 0) return { ok: false, reason: 'icv-failure' }
    const mac = createHmac(hmacHash(keys.integrity), keys.integrityKey)
      .update(message.raw.subarray(0, message.raw.length - icv))
      .digest()
      .subarray(0, icv)
    if (!timingSafeEqual(mac, tag)) return { ok: false, reason: 'icv-failure' }
    const d = createDecipheriv(cipherName(keys.encryption), keys.encryptionKey, iv)
    d.setAutoPadding(false)
    plain = concat(d.update(ct), d.final())
  }
  const padLength = plain[plain.length - 1]
  return {
    ok: true,
    sk: {
      innerType: sk.innerType,
      body:
        padLength + 1 > plain.length ? undefined : plain.subarray(0, plain.length - 1 - padLength)
    }
  }
}

/**
 * Verifies and decrypts a message's SK payload and parses the inner payloads.
 *
 * @throws IkeProtocolError INVALID_SYNTAX when there is no SK payload, the ICV does not match or
 *   the inner payloads do not parse (UNSUPPORTED_CRITICAL_PAYLOAD for an unknown critical one)
 */
export function decryptMessage(message: IkeMessage, keys: SkKeys): Payload[] {
  const opened = openSk(message, keys)
  if (!opened.ok) {
    throw new IkeProtocolError(
      'INVALID_SYNTAX',
      opened.reason === 'unprotected' ? 'no SK payload' : 'ICV check failed'
    )
  }
  if (opened.sk.body === undefined) throw new IkeProtocolError('INVALID_SYNTAX', 'bad padding')
  return parsePayloads(opened.sk.innerType, opened.sk.body)
}

const KEY_PAD = new TextEncoder().encode('Key Pad for IKEv2')

/**
 * The octets an AUTH payload signs (RFC 7296 section 2.15): the sender's first message, the
 * peer's nonce, and prf(SK_p, the sender's ID payload body).
 *
 * @param alg - the IKE SA's PRF
 * @param message - the sender's IKE_SA_INIT message, as sent
 * @param peerNonce - the other side's nonce data
 * @param skP - SK_pi (initiator) or SK_pr (responder)
 * @param idBody - the sender's ID payload body (type, reserved, data)
 */
export function signedOctets(
  alg: PrfAlgorithm,
  message: Uint8Array,
  peerNonce: Uint8Array,
  skP: Uint8Array,
  idBody: Uint8Array
): Uint8Array {
  return concat(message, peerNonce, prf(alg, skP, idBody))
}

/**
 * AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), signed octets).
 *
 * @param alg - the IKE SA's PRF
 * @param psk - the pre-shared key
 * @param octets - from {@link signedOctets}
 */
export function pskAuth(alg: PrfAlgorithm, psk: Uint8Array, octets: Uint8Array): Uint8Array {
  return prf(alg, prf(alg, psk, KEY_PAD), octets)
}

/** Two hexadecimal digits for each byte value. */
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))

/**
 * `bytes` in lower-case hexadecimal (what `Buffer.from(bytes).toString('hex')` gives), without
 * a `Buffer`: for SPIs, which are looked up in tables for every message.
 */
export function toHex(bytes: Uint8Array): string {
  let s = ''
  for (let i = 0; i < bytes.length; i++) s += HEX[bytes[i]!]!
  return s
}

/** Compares two byte arrays in constant time (false when the lengths differ). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b)
}

/**
 * Compares two byte arrays that are no secret (SPIs, NAT detection hashes, messages as sent on
 * the wire) with a plain loop, which returns at the first difference: cheaper than
 * {@link bytesEqual} for a few bytes, and not for keys, AUTH values or ICVs.
 */
export function publicBytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/**
 * The NAT detection hash SHA-1(SPIi | SPIr | IP | port) (RFC 7296 section 2.23).
 *
 * @param spiI - SPIi
 * @param spiR - SPIr (zero in the IKE_SA_INIT request)
 * @param address - the IP address bytes
 * @param port - the port
 */
export function natHash(
  spiI: Uint8Array,
  spiR: Uint8Array,
  address: Uint8Array,
  port: number
): Uint8Array {
  const b = NAT_HASH_INPUT
  b.set(spiI, 0)
  b.set(spiR, spiI.length)
  let n = spiI.length + spiR.length
  b.set(address, n)
  n += address.length
  b[n++] = port >> 8
  b[n++] = port & 0xff
  return view(hash('sha1', b.subarray(0, n), 'buffer'))
}

/** The input of {@link natHash}, written in place (two SPIs, an IPv6 address, a port). */
const NAT_HASH_INPUT = Buffer.alloc(8 + 8 + 16 + 2)

/** SHA-256 of `data` (for cookies, and the hash of a request whose response is cached). */
export function sha256(...data: Uint8Array[]): Uint8Array {
  // one part (the usual case): the one-shot hash, without a Hash object
  if (data.length === 1) return view(hash('sha256', data[0]!, 'buffer'))
  const h = createHash('sha256')
  for (const d of data) h.update(d)
  return view(h.digest())
}
