/**
 * The secret state of an IKE SA and its Child SAs for warm takeover (`IkeSaState.secret`): what
 * an heir needs to carry the IKE SA on as it was. Encoded as one version byte followed by UTF-8
 * JSON with the keys in base64; decoded with every field checked, so that a truncated, corrupt
 * or unknown-version secret is a typed error (`CorruptRecordError`,
 * `UnsupportedRecordVersionError`), never a crash.
 *
 * @module
 */
import {
  CorruptRecordError,
  UnsupportedRecordVersionError,
  validateRecord,
  type EncryptionTransform,
  type IntegrityAlgorithm,
  type KeyExchangeGroup,
  type Phase1Record,
  type Phase2Record,
  type PrfAlgorithm
} from '@vipsec/interface'
import { encryptionKeyLength, integrityKeyLength, prfLength } from './crypto.js'

/** The version byte of the encoding. */
export const WARM_STATE_VERSION = 1

/** Most bytes a secret may have (a bound on what the decoder parses). */
export const WARM_STATE_MAX_BYTES = 1 << 20

/** The IKE SA transforms as the secret holds them. */
export interface WarmIkeChoice {
  /** Encryption. */
  encryption: EncryptionTransform
  /** Integrity (`none` with AEAD). */
  integrity: IntegrityAlgorithm
  /** PRF. */
  prf: PrfAlgorithm
  /** Key exchange group. */
  group: Exclude<KeyExchangeGroup, 'none'>
  /** The chosen proposal's number. */
  number: number
}

/** One Child SA as the secret holds it. */
export interface WarmChild {
  /** Its record (SPIs, mode, policy, selectors, encapsulation, establishedAt). */
  record: Phase2Record
  /** The transforms. */
  chosen: {
    encryption: EncryptionTransform
    integrity: IntegrityAlgorithm
    group: KeyExchangeGroup
    esn: boolean
    number: number
  }
  /** Whether this side initiated the exchange that created it. */
  initiator: boolean
  /** KEYMAT, initiator to responder first (RFC 7296 section 2.17). */
  keys: { encrI: Uint8Array; integI: Uint8Array; encrR: Uint8Array; integR: Uint8Array }
  /** Ni and Nr of that exchange (rekey collisions compare them). */
  nonces: [Uint8Array, Uint8Array]
}

/** The decoded secret of one IKE SA. */
export interface WarmState {
  /** The IKE SA's record (SPIs, role, identities, endpoints, NAT, policy, establishedAt). */
  phase1: Phase1Record
  /** The transforms. */
  chosen: WarmIkeChoice
  /** SK_d, SK_ai, SK_ar, SK_ei, SK_er. */
  keys: { skD: Uint8Array; skAi: Uint8Array; skAr: Uint8Array; skEi: Uint8Array; skEr: Uint8Array }
  /** The message ID of our next request, and the one expected in the peer's next request. */
  messageIds: { next: number; expected: number }
  /** Whether IKE goes on port 4500 with the non-ESP marker. */
  natT: boolean
  /** IKE fragmentation (RFC 7383) as negotiated. */
  fragmentation: { announced: boolean; peer: boolean; send: boolean }
  /** RFC 6311 as announced by this side and the peer. */
  midSync: { announced: boolean; peer: boolean }
  /** Wall ms at which the IKE SA's authentication is renewed, when it is. */
  reauthAt?: number
  /**
   * Wall ms at which the state was taken: an heir adds one message ID per liveness interval
   * since then to the sync's value, for the liveness checks the owner may have sent meanwhile.
   */
  recordedAt: number
  /** The Child SAs. */
  children: WarmChild[]
}

const b64 = (b: Uint8Array): string =>
  Buffer.from(b.buffer, b.byteOffset, b.length).toString('base64')

/** Encodes a state (see the module). */
export function encodeWarmState(state: WarmState): Uint8Array {
  const json = {
    phase1: state.phase1,
    chosen: state.chosen,
    keys: {
      skD: b64(state.keys.skD),
      skAi: b64(state.keys.skAi),
      skAr: b64(state.keys.skAr),
      skEi: b64(state.keys.skEi),
      skEr: b64(state.keys.skEr)
    },
    messageIds: state.messageIds,
    natT: state.natT,
    fragmentation: state.fragmentation,
    midSync: state.midSync,
    recordedAt: state.recordedAt,
    ...(state.reauthAt === undefined ? {} : { reauthAt: state.reauthAt }),
    children: state.children.map((c) => ({
      record: c.record,
      chosen: c.chosen,
      initiator: c.initiator,
      keys: {
        encrI: b64(c.keys.encrI),
        integI: b64(c.keys.integI),
        encrR: b64(c.keys.encrR),
        integR: b64(c.keys.integR)
      },
      nonces: [b64(c.nonces[0]), b64(c.nonces[1])]
    }))
  }
  const body = Buffer.from(JSON.stringify(json), 'utf8')
  const out = new Uint8Array(1 + body.length)
  out[0] = WARM_STATE_VERSION
  out.set(body, 1)
  return out
}

/** One decoder for every secret (making one per secret was a tenth of the decoding's time). */
const UTF8 = new TextDecoder('utf-8', { fatal: true })

const fail = (path: string, message: string): never => {
  throw new CorruptRecordError(`secret.${path}`, message)
}

function obj(v: unknown, path: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(path, 'expected an object')
  return v as Record<string, unknown>
}

function bool(v: unknown, path: string): boolean {
  if (typeof v !== 'boolean') fail(path, 'expected a boolean')
  return v as boolean
}

function int(v: unknown, path: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    fail(path, `expected an integer from ${min} to ${max}`)
  }
  return v as number
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

function bytes(v: unknown, path: string, length?: number): Uint8Array {
  if (typeof v !== 'string' || v.length % 4 !== 0 || !BASE64.test(v)) {
    fail(path, 'expected base64')
  }
  const b = new Uint8Array(Buffer.from(v as string, 'base64'))
  if (length !== undefined && b.length !== length) fail(path, `expected ${length} bytes`)
  return b
}

function oneOf<T extends string>(v: unknown, path: string, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    fail(path, `expected one of ${allowed.join(', ')}`)
  }
  return v as T
}

const ENCRYPTION = ['aes-gcm-16', 'aes-cbc', 'null-aes-gmac', 'chacha20-poly1305'] as const
const INTEGRITY = [
  'hmac-sha2-256-128',
  'hmac-sha2-384-192',
  'hmac-sha2-512-256',
  'hmac-sha1-96',
  'none'
] as const
const PRF = ['hmac-sha2-256', 'hmac-sha2-384', 'hmac-sha2-512', 'hmac-sha1'] as const
const GROUPS = [
  'curve25519',
  'curve448',
  'ecp256',
  'ecp384',
  'ecp521',
  'modp2048',
  'modp3072',
  'modp4096'
] as const

function encryption(v: unknown, path: string): EncryptionTransform {
  const o = obj(v, path)
  const algorithm = oneOf(o.algorithm, `${path}.algorithm`, ENCRYPTION)
  const keyBits = o.keyBits
  const ok =
    algorithm === 'chacha20-poly1305'
      ? keyBits === 256
      : algorithm === 'null-aes-gmac'
        ? keyBits === 128 || keyBits === 256 || keyBits === 192
        : keyBits === 128 || keyBits === 192 || keyBits === 256
  if (!ok) fail(`${path}.keyBits`, `not a key length of ${algorithm}`)
  return { algorithm, keyBits: keyBits as 128 | 192 | 256 }
}

function aeadPair(enc: EncryptionTransform, integ: IntegrityAlgorithm, path: string): void {
  const aead = enc.algorithm !== 'aes-cbc'
  if (aead !== (integ === 'none')) fail(path, 'integrity must be none exactly with AEAD')
}

/**
 * Decodes a secret made by {@link encodeWarmState}.
 *
 * @throws UnsupportedRecordVersionError for another version byte, CorruptRecordError (naming
 *   the first bad field) for anything else that is wrong
 */
export function decodeWarmState(secret: Uint8Array): WarmState {
  if (!(secret instanceof Uint8Array)) fail('', 'expected bytes')
  if (secret.length === 0) fail('', 'empty')
  if (secret[0] !== WARM_STATE_VERSION) {
    throw new UnsupportedRecordVersionError('IKE SA state', secret[0])
  }
  if (secret.length > WARM_STATE_MAX_BYTES) fail('', `longer than ${WARM_STATE_MAX_BYTES} bytes`)
  let parsed: unknown
  try {
    const text = UTF8.decode(secret.subarray(1))
    parsed = JSON.parse(text)
  } catch (err) {
    throw new CorruptRecordError('secret', 'not UTF-8 JSON after the version byte', { cause: err })
  }
  const o = obj(parsed, '')
  let phase1: Phase1Record
  try {
    phase1 = validateRecord('phase1', o.phase1)
  } catch (err) {
    throw new CorruptRecordError(
      `secret.phase1.${(err as CorruptRecordError).path ?? ''}`,
      (err as Error).message,
      { cause: err }
    )
  }
  const c = obj(o.chosen, 'chosen')
  const chosen: WarmIkeChoice = {
    encryption: encryption(c.encryption, 'chosen.encryption'),
    integrity: oneOf(c.integrity, 'chosen.integrity', INTEGRITY),
    prf: oneOf(c.prf, 'chosen.prf', PRF),
    group: oneOf(c.group, 'chosen.group', GROUPS),
    number: int(c.number, 'chosen.number', 1, 255)
  }
  aeadPair(chosen.encryption, chosen.integrity, 'chosen.integrity')
  const k = obj(o.keys, 'keys')
  const p = prfLength(chosen.prf)
  const a = integrityKeyLength(chosen.integrity)
  const e = encryptionKeyLength(chosen.encryption)
  const keys = {
    skD: bytes(k.skD, 'keys.skD', p),
    skAi: bytes(k.skAi, 'keys.skAi', a),
    skAr: bytes(k.skAr, 'keys.skAr', a),
    skEi: bytes(k.skEi, 'keys.skEi', e),
    skEr: bytes(k.skEr, 'keys.skEr', e)
  }
  const m = obj(o.messageIds, 'messageIds')
  const messageIds = {
    next: int(m.next, 'messageIds.next', 0, 0x7fff_ffff),
    expected: int(m.expected, 'messageIds.expected', 0, 0x7fff_ffff)
  }
  const f = obj(o.fragmentation, 'fragmentation')
  const s = obj(o.midSync, 'midSync')
  const state: WarmState = {
    phase1,
    chosen,
    keys,
    messageIds,
    natT: bool(o.natT, 'natT'),
    fragmentation: {
      announced: bool(f.announced, 'fragmentation.announced'),
      peer: bool(f.peer, 'fragmentation.peer'),
      send: bool(f.send, 'fragmentation.send')
    },
    midSync: {
      announced: bool(s.announced, 'midSync.announced'),
      peer: bool(s.peer, 'midSync.peer')
    },
    recordedAt: int(o.recordedAt, 'recordedAt', 0, Number.MAX_SAFE_INTEGER),
    children: []
  }
  if (o.reauthAt !== undefined) {
    state.reauthAt = int(o.reauthAt, 'reauthAt', 0, Number.MAX_SAFE_INTEGER)
  }
  if (!Array.isArray(o.children)) fail('children', 'expected an array')
  const children = o.children as unknown[]
  if (children.length > 1024) fail('children', 'more than 1024 Child SAs')
  const ids = new Set<string>()
  children.forEach((raw, i) => {
    const path = `children[${i}]`
    const ch = obj(raw, path)
    let record: Phase2Record
    try {
      record = validateRecord('phase2', ch.record)
    } catch (err) {
      throw new CorruptRecordError(
        `secret.${path}.record.${(err as CorruptRecordError).path ?? ''}`,
        (err as Error).message,
        { cause: err }
      )
    }
    if (ids.has(record.id)) fail(`${path}.record.id`, 'duplicate Child SA id')
    ids.add(record.id)
    const cc = obj(ch.chosen, `${path}.chosen`)
    const enc = encryption(cc.encryption, `${path}.chosen.encryption`)
    const integ = oneOf(cc.integrity, `${path}.chosen.integrity`, INTEGRITY)
    aeadPair(enc, integ, `${path}.chosen.integrity`)
    const group = oneOf(cc.group, `${path}.chosen.group`, [...GROUPS, 'none'] as const)
    const ck = obj(ch.keys, `${path}.keys`)
    const ce = encryptionKeyLength(enc)
    const ca = integrityKeyLength(integ)
    if (!Array.isArray(ch.nonces) || ch.nonces.length !== 2) {
      fail(`${path}.nonces`, 'expected two nonces')
    }
    const nonces = ch.nonces as unknown[]
    state.children.push({
      record,
      chosen: {
        encryption: enc,
        integrity: integ,
        group,
        esn: bool(cc.esn, `${path}.chosen.esn`),
        number: int(cc.number, `${path}.chosen.number`, 1, 255)
      },
      initiator: bool(ch.initiator, `${path}.initiator`),
      keys: {
        encrI: bytes(ck.encrI, `${path}.keys.encrI`, ce),
        integI: bytes(ck.integI, `${path}.keys.integI`, ca),
        encrR: bytes(ck.encrR, `${path}.keys.encrR`, ce),
        integR: bytes(ck.integR, `${path}.keys.integR`, ca)
      },
      nonces: [bytes(nonces[0], `${path}.nonces[0]`), bytes(nonces[1], `${path}.nonces[1]`)]
    })
  })
  return state
}
