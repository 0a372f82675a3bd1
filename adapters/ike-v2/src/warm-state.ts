/**
 * The secret state of an IKE SA and its Child SAs for warm takeover (`IkeSaState.secret`): what
 * an heir needs to carry the IKE SA on as it was, beside the records (`IkeSaState.records`).
 *
 * Version 2 (written): the version byte, the length of a UTF-8 JSON part (4 bytes, big-endian),
 * that JSON (transforms, message IDs, flags, and per Child SA its record id and nonce lengths),
 * then the raw keys in a fixed order (SK_d, SK_ai, SK_ar, SK_ei, SK_er, then per Child SA
 * encr_i, integ_i, encr_r, integ_r, Ni, Nr), their lengths given by the transforms. The records
 * are not repeated: the decoder takes them from the state's records. Version 1 (still read): the
 * version byte and UTF-8 JSON holding the records too, with the keys in base64. Decoded with
 * every field checked, so that a truncated, corrupt or unknown-version secret is a typed error
 * (`CorruptRecordError`, `UnsupportedRecordVersionError`), never a crash.
 *
 * @module
 */
import {
  CorruptRecordError,
  UnsupportedRecordVersionError,
  validateRecord,
  type EncryptionTransform,
  type IkeSaRecords,
  type IntegrityAlgorithm,
  type KeyExchangeGroup,
  type Phase1Record,
  type Phase2Record,
  type PrfAlgorithm,
  type RecordByKind
} from '@vipsec/interface'
import { encryptionKeyLength, integrityKeyLength, prfLength } from './crypto.js'

/** The version byte of the encoding written. */
export const WARM_STATE_VERSION = 2

/** The version byte of the first encoding (records inside, keys in base64), still read. */
export const WARM_STATE_VERSION_1 = 1

/** Most bytes a nonce may have in a secret (RFC 7296 allows 16 to 256). */
const MAX_NONCE_BYTES = 256

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

/** Encodes a state (version 2, see the module). */
export function encodeWarmState(state: WarmState): Uint8Array {
  const meta = {
    chosen: state.chosen,
    messageIds: state.messageIds,
    natT: state.natT,
    fragmentation: state.fragmentation,
    midSync: state.midSync,
    recordedAt: state.recordedAt,
    ...(state.reauthAt === undefined ? {} : { reauthAt: state.reauthAt }),
    children: state.children.map((c) => ({
      id: c.record.id,
      chosen: c.chosen,
      initiator: c.initiator,
      nonces: [c.nonces[0].length, c.nonces[1].length]
    }))
  }
  const json = Buffer.from(JSON.stringify(meta), 'utf8')
  const k = state.keys
  const keys: Uint8Array[] = [k.skD, k.skAi, k.skAr, k.skEi, k.skEr]
  for (const c of state.children)
    keys.push(c.keys.encrI, c.keys.integI, c.keys.encrR, c.keys.integR, c.nonces[0], c.nonces[1])
  let length = 5 + json.length
  for (const key of keys) length += key.length
  const out = new Uint8Array(length)
  out[0] = WARM_STATE_VERSION
  new DataView(out.buffer).setUint32(1, json.length)
  out.set(json, 5)
  let at = 5 + json.length
  for (const key of keys) {
    out.set(key, at)
    at += key.length
  }
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
 * Decodes a secret made by {@link encodeWarmState}, or of version 1.
 *
 * @param secret - the bytes
 * @param records - the state's records: a version 2 secret takes the IKE SA's and the Child SAs'
 *   records from here (each checked), a version 1 secret holds its own
 * @throws UnsupportedRecordVersionError for another version byte, CorruptRecordError (naming
 *   the first bad field) for anything else that is wrong
 */
export function decodeWarmState(secret: Uint8Array, records?: IkeSaRecords): WarmState {
  if (!(secret instanceof Uint8Array)) fail('', 'expected bytes')
  if (secret.length === 0) fail('', 'empty')
  if (secret[0] !== WARM_STATE_VERSION && secret[0] !== WARM_STATE_VERSION_1) {
    throw new UnsupportedRecordVersionError('IKE SA state', secret[0])
  }
  if (secret.length > WARM_STATE_MAX_BYTES) fail('', `longer than ${WARM_STATE_MAX_BYTES} bytes`)
  if (secret[0] === WARM_STATE_VERSION_1) return decodeVersion1(parseJson(secret.subarray(1)))
  if (secret.length < 5) fail('', 'shorter than its header')
  const view = new DataView(secret.buffer, secret.byteOffset, secret.byteLength)
  const jsonLength = view.getUint32(1)
  if (jsonLength > secret.length - 5) fail('', 'the JSON part runs past the end')
  const o = obj(parseJson(secret.subarray(5, 5 + jsonLength)), '')
  if (typeof records !== 'object' || records === null) {
    fail('records', 'a version 2 secret is read with its records')
  }
  const phase1 = checked('phase1', records!.phase1, 'records.phase1')
  if (!Array.isArray(records!.phase2)) fail('records.phase2', 'expected an array')
  const given = new Map<string, Phase2Record>()
  records!.phase2.forEach((raw, i) => {
    const r = checked('phase2', raw, `records.phase2[${i}]`)
    if (given.has(r.id)) fail(`records.phase2[${i}].id`, 'duplicate Child SA id')
    given.set(r.id, r)
  })
  const state = common(o, phase1)
  const keys = new KeyReader(secret, 5 + jsonLength)
  const p = prfLength(state.chosen.prf)
  const a = integrityKeyLength(state.chosen.integrity)
  const e = encryptionKeyLength(state.chosen.encryption)
  state.keys = {
    skD: keys.take(p, 'keys.skD'),
    skAi: keys.take(a, 'keys.skAi'),
    skAr: keys.take(a, 'keys.skAr'),
    skEi: keys.take(e, 'keys.skEi'),
    skEr: keys.take(e, 'keys.skEr')
  }
  const children = childList(o.children)
  if (children.length !== given.size) {
    fail('children', 'not the Child SAs of the records')
  }
  const ids = new Set<string>()
  children.forEach((raw, i) => {
    const path = `children[${i}]`
    const ch = obj(raw, path)
    if (typeof ch.id !== 'string') fail(`${path}.id`, 'expected a string')
    const record = given.get(ch.id as string)
    if (record === undefined) fail(`${path}.id`, 'not a Child SA of the records')
    if (ids.has(ch.id as string)) fail(`${path}.id`, 'duplicate Child SA id')
    ids.add(ch.id as string)
    const chosen = childChoice(ch.chosen, `${path}.chosen`)
    if (!Array.isArray(ch.nonces) || ch.nonces.length !== 2) {
      fail(`${path}.nonces`, 'expected two nonce lengths')
    }
    const lengths = ch.nonces as unknown[]
    const n0 = int(lengths[0], `${path}.nonces[0]`, 0, MAX_NONCE_BYTES)
    const n1 = int(lengths[1], `${path}.nonces[1]`, 0, MAX_NONCE_BYTES)
    const ce = encryptionKeyLength(chosen.encryption)
    const ca = integrityKeyLength(chosen.integrity)
    state.children.push({
      record: record!,
      chosen,
      initiator: bool(ch.initiator, `${path}.initiator`),
      keys: {
        encrI: keys.take(ce, `${path}.keys.encrI`),
        integI: keys.take(ca, `${path}.keys.integI`),
        encrR: keys.take(ce, `${path}.keys.encrR`),
        integR: keys.take(ca, `${path}.keys.integR`)
      },
      nonces: [keys.take(n0, `${path}.nonces[0]`), keys.take(n1, `${path}.nonces[1]`)]
    })
  })
  keys.end()
  return state
}

/** Reads the raw keys of a version 2 secret, in order, each a copy. */
class KeyReader {
  constructor(
    private readonly bytes: Uint8Array,
    private at: number
  ) {}

  take(length: number, path: string): Uint8Array {
    if (this.at + length > this.bytes.length) fail(path, `expected ${length} bytes`)
    const out = this.bytes.slice(this.at, this.at + length)
    this.at += length
    return out
  }

  end(): void {
    if (this.at !== this.bytes.length) fail('', 'bytes after the last key')
  }
}

function parseJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(UTF8.decode(bytes))
  } catch (err) {
    throw new CorruptRecordError('secret', 'not UTF-8 JSON after the version byte', { cause: err })
  }
}

/** A record checked by its kind's shape, its error named under `path`. */
function checked<K extends 'phase1' | 'phase2'>(
  kind: K,
  value: unknown,
  path: string
): RecordByKind[K] {
  try {
    return validateRecord(kind, value)
  } catch (err) {
    throw new CorruptRecordError(
      `secret.${path}.${(err as CorruptRecordError).path ?? ''}`,
      (err as Error).message,
      { cause: err }
    )
  }
}

function childList(v: unknown): unknown[] {
  if (!Array.isArray(v)) fail('children', 'expected an array')
  const children = v as unknown[]
  if (children.length > 1024) fail('children', 'more than 1024 Child SAs')
  return children
}

function childChoice(v: unknown, path: string): WarmChild['chosen'] {
  const cc = obj(v, path)
  const enc = encryption(cc.encryption, `${path}.encryption`)
  const integ = oneOf(cc.integrity, `${path}.integrity`, INTEGRITY)
  aeadPair(enc, integ, `${path}.integrity`)
  const group = oneOf(cc.group, `${path}.group`, [...GROUPS, 'none'] as const)
  return {
    encryption: enc,
    integrity: integ,
    group,
    esn: bool(cc.esn, `${path}.esn`),
    number: int(cc.number, `${path}.number`, 1, 255)
  }
}

const NO_KEYS: WarmState['keys'] = {
  skD: new Uint8Array(0),
  skAi: new Uint8Array(0),
  skAr: new Uint8Array(0),
  skEi: new Uint8Array(0),
  skEr: new Uint8Array(0)
}

/** The fields both versions hold alike (keys and Child SAs left to the caller). */
function common(o: Record<string, unknown>, phase1: Phase1Record): WarmState {
  const c = obj(o.chosen, 'chosen')
  const chosen: WarmIkeChoice = {
    encryption: encryption(c.encryption, 'chosen.encryption'),
    integrity: oneOf(c.integrity, 'chosen.integrity', INTEGRITY),
    prf: oneOf(c.prf, 'chosen.prf', PRF),
    group: oneOf(c.group, 'chosen.group', GROUPS),
    number: int(c.number, 'chosen.number', 1, 255)
  }
  aeadPair(chosen.encryption, chosen.integrity, 'chosen.integrity')
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
    keys: NO_KEYS,
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
  return state
}

/** A version 1 secret: the records inside, the keys in base64. */
function decodeVersion1(parsed: unknown): WarmState {
  const o = obj(parsed, '')
  const state = common(o, checked('phase1', o.phase1, 'phase1'))
  const k = obj(o.keys, 'keys')
  const p = prfLength(state.chosen.prf)
  const a = integrityKeyLength(state.chosen.integrity)
  const e = encryptionKeyLength(state.chosen.encryption)
  state.keys = {
    skD: bytes(k.skD, 'keys.skD', p),
    skAi: bytes(k.skAi, 'keys.skAi', a),
    skAr: bytes(k.skAr, 'keys.skAr', a),
    skEi: bytes(k.skEi, 'keys.skEi', e),
    skEr: bytes(k.skEr, 'keys.skEr', e)
  }
  const ids = new Set<string>()
  childList(o.children).forEach((raw, i) => {
    const path = `children[${i}]`
    const ch = obj(raw, path)
    const record = checked('phase2', ch.record, `${path}.record`)
    if (ids.has(record.id)) fail(`${path}.record.id`, 'duplicate Child SA id')
    ids.add(record.id)
    const chosen = childChoice(ch.chosen, `${path}.chosen`)
    const ck = obj(ch.keys, `${path}.keys`)
    const ce = encryptionKeyLength(chosen.encryption)
    const ca = integrityKeyLength(chosen.integrity)
    if (!Array.isArray(ch.nonces) || ch.nonces.length !== 2) {
      fail(`${path}.nonces`, 'expected two nonces')
    }
    const nonces = ch.nonces as unknown[]
    state.children.push({
      record,
      chosen,
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
