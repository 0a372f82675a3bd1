/**
 * Encoding and validation of coupling-store records. Every store adapter writes what
 * {@link encodeRecord} returns and reads through {@link decodeRecord}, so a record survives any
 * store byte for byte, and a corrupt or unknown-version record is a typed error, never a crash.
 *
 * @module
 */
import { tryParseIp } from '@vipsec/wire'
import { CorruptRecordError, UnsupportedRecordVersionError } from './errors.js'
import {
  RECORD_KINDS,
  RECORD_VERSION,
  type DeleteMessage,
  type DvipaRecord,
  type DvipaRecordSet,
  type Ownership,
  type RecordByKind,
  type RecordKind
} from './records.js'

type Check = (value: unknown, path: string) => void

const fail = (path: string, message: string): never => {
  throw new CorruptRecordError(path, message)
}

const str: Check = (v, p) => {
  if (typeof v !== 'string') fail(p, 'expected a string')
}
const nonEmpty: Check = (v, p) => {
  str(v, p)
  if ((v as string).length === 0) fail(p, 'expected a non-empty string')
}
const bool: Check = (v, p) => {
  if (typeof v !== 'boolean') fail(p, 'expected a boolean')
}
const int =
  (min: number, max: number): Check =>
  (v, p) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      fail(p, `expected an integer from ${min} to ${max}`)
    }
  }
const nonNegative = int(0, Number.MAX_SAFE_INTEGER)
const port = int(0, 65535)
const hex =
  (digits: number): Check =>
  (v, p) => {
    str(v, p)
    if (!new RegExp(`^[0-9a-f]{${digits}}$`).test(v as string)) {
      fail(p, `expected ${digits} lower-case hex digits`)
    }
  }
const oneOf =
  (...allowed: readonly unknown[]): Check =>
  (v, p) => {
    if (!allowed.includes(v))
      fail(p, `expected one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`)
  }
const nullable =
  (check: Check): Check =>
  (v, p) => {
    if (v !== null) check(v, p)
  }
const array =
  (item: Check, minLength = 0): Check =>
  (v, p) => {
    if (!Array.isArray(v)) return fail(p, 'expected an array')
    if (v.length < minLength) fail(p, `expected at least ${minLength} item(s)`)
    v.forEach((x, i) => item(x, `${p}[${i}]`))
  }
const tuple =
  (...items: Check[]): Check =>
  (v, p) => {
    if (!Array.isArray(v) || v.length !== items.length)
      return fail(p, `expected ${items.length} items`)
    items.forEach((check, i) => check(v[i], `${p}[${i}]`))
  }
/** Checks that a field may leave out (present, it must pass `check`). */
const optionalFields = new WeakSet<Check>()
const optional = (check: Check): Check => {
  const wrapped: Check = (v, p) => check(v, p)
  optionalFields.add(wrapped)
  return wrapped
}
const object =
  (shape: Record<string, Check>): Check =>
  (v, p) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v))
      return fail(p, 'expected an object')
    const o = v as Record<string, unknown>
    for (const [key, check] of Object.entries(shape)) {
      if (!(key in o)) {
        if (optionalFields.has(check)) continue
        fail(`${p}.${key}`, 'missing')
      }
      check(o[key], `${p}.${key}`)
    }
    for (const key of Object.keys(o)) {
      if (!(key in shape)) fail(`${p}.${key}`, 'unknown field')
    }
  }

const address: Check = (v, p) => {
  str(v, p)
  if (tryParseIp(v as string) === undefined) fail(p, 'expected an IPv4 or IPv6 address')
}
const prefix: Check = (v, p) => {
  str(v, p)
  const [a, len, extra] = (v as string).split('/')
  if (extra !== undefined || len === undefined) return fail(p, 'expected address/length')
  address(a, p)
  const max = tryParseIp(a as string)!.length * 8
  if (!/^\d+$/.test(len) || Number(len) > max) fail(p, `expected a prefix length from 0 to ${max}`)
}

const endpoint = object({ address, port })
const identity = object({
  type: oneOf('ipv4', 'ipv6', 'fqdn', 'rfc822', 'der-dn', 'key-id'),
  value: nonEmpty
})
const encryption = object({
  algorithm: oneOf('aes-gcm-16', 'aes-cbc', 'null-aes-gmac', 'chacha20-poly1305'),
  keyBits: oneOf(128, 192, 256)
})
const integrity = oneOf(
  'hmac-sha2-256-128',
  'hmac-sha2-384-192',
  'hmac-sha2-512-256',
  'hmac-sha1-96',
  'none'
)
const keyExchange = oneOf(
  'curve25519',
  'curve448',
  'ecp256',
  'ecp384',
  'ecp521',
  'modp2048',
  'modp3072',
  'modp4096',
  'none'
)
const ikeProposal = object({
  encryption: array(encryption, 1),
  integrity: array(integrity, 1),
  prf: array(oneOf('hmac-sha2-256', 'hmac-sha2-384', 'hmac-sha2-512', 'hmac-sha1'), 1),
  keyExchange: array(keyExchange, 1)
})
const childProposal = object({
  protocol: oneOf('esp'),
  encryption: array(encryption, 1),
  integrity: array(integrity, 1),
  keyExchange: array(keyExchange, 1),
  extendedSequenceNumbers: array(bool, 1)
})
const trafficSelector = object({
  startAddress: address,
  endAddress: address,
  protocol: int(0, 255),
  startPort: port,
  endPort: port
})
const filterSelector = object({
  source: prefix,
  destination: prefix,
  protocol: int(0, 255),
  sourcePorts: tuple(port, port),
  destinationPorts: tuple(port, port)
})
const fiveTuple = object({
  protocol: int(0, 255),
  sourceAddress: address,
  sourcePort: port,
  destinationAddress: address,
  destinationPort: port
})
const base64 =
  (bytes?: number): Check =>
  (v, p) => {
    str(v, p)
    const text = v as string
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0)
      return fail(p, 'expected base64')
    const length = (text.length / 4) * 3 - (text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0)
    if (bytes !== undefined && length !== bytes) fail(p, `expected ${bytes} bytes`)
  }
const MAX_SEQUENCE = 0xffffffffffffffffn
const sequenceNumber: Check = (v, p) => {
  str(v, p)
  if (!/^(0|[1-9][0-9]{0,19})$/.test(v as string) || BigInt(v as string) > MAX_SEQUENCE)
    fail(p, 'expected a decimal number from 0 to 2^64-1')
}
const ikeSaId = object({ initiatorSpi: hex(16), responderSpi: hex(16) })
const spi = hex(8)
const common = { v: int(0, Number.MAX_SAFE_INTEGER), id: nonEmpty, dvipa: address }

const recordShapes: { [K in RecordKind]: Check } = {
  phase1: object({
    ...common,
    kind: oneOf('phase1'),
    ikeSaId,
    role: oneOf('initiator', 'responder'),
    localIdentity: identity,
    remoteIdentity: identity,
    local: endpoint,
    peer: endpoint,
    nat: object({ localBehindNat: bool, remoteBehindNat: bool, encapsulated: bool }),
    policy: object({
      proposals: array(ikeProposal, 1),
      authMethod: oneOf('psk', 'ecdsa-p256-sha256', 'rsa-sha256', 'digital-signature'),
      lifetime: object({ rekeySeconds: nonNegative, reauthSeconds: nonNegative }),
      liveness: object({ intervalMs: nonNegative, timeoutMs: nonNegative })
    }),
    establishedAt: nonNegative
  }),
  phase2: object({
    ...common,
    kind: oneOf('phase2'),
    protocol: oneOf('esp'),
    inboundSpi: spi,
    outboundSpi: spi,
    mode: oneOf('tunnel', 'transport'),
    policy: object({
      proposals: array(childProposal, 1),
      pfsGroup: keyExchange,
      lifetime: object({
        softSeconds: nonNegative,
        hardSeconds: nonNegative,
        softBytes: nonNegative,
        hardBytes: nonNegative,
        softPackets: nonNegative,
        hardPackets: nonNegative
      })
    }),
    selectors: object({ local: array(trafficSelector, 1), remote: array(trafficSelector, 1) }),
    encapsulation: oneOf('none', 'udp'),
    establishedAt: nonNegative
  }),
  correlation: object({
    ...common,
    kind: oneOf('correlation'),
    phase1Id: nonEmpty,
    phase2Ids: array(nonEmpty)
  }),
  filter: object({
    ...common,
    kind: oneOf('filter'),
    phase2Id: nullable(nonEmpty),
    direction: oneOf('inbound', 'outbound'),
    selector: filterSelector,
    action: oneOf('protect', 'bypass', 'discard'),
    priority: int(0, 0xffffffff)
  }),
  connection: object({
    ...common,
    kind: oneOf('connection'),
    flow: fiveTuple,
    target: nonEmpty,
    distributed: bool,
    phase2Id: nullable(nonEmpty),
    createdAt: nonNegative
  }),
  warm: object({
    ...common,
    kind: oneOf('warm'),
    phase1Id: nonEmpty,
    keyId: nonEmpty,
    version: nonNegative,
    epoch: nonNegative,
    nonce: base64(12),
    // at least the 16-byte tag
    sealed: (v, p) => {
      base64()(v, p)
      if ((v as string).length < 24) fail(p, 'expected at least the 16-byte tag')
    }
  }),
  sequence: object({
    ...common,
    kind: oneOf('sequence'),
    phase2Id: nonEmpty,
    outboundSpi: spi,
    reservedEnd: sequenceNumber,
    inbound: sequenceNumber,
    keyId: nonEmpty,
    mac: base64(16)
  })
}

const ownershipShape = object({
  v: int(0, Number.MAX_SAFE_INTEGER),
  dvipa: address,
  owner: nullable(nonEmpty),
  epoch: int(1, Number.MAX_SAFE_INTEGER),
  ranks: array(nonEmpty),
  claimedAt: nonNegative,
  previousOwner: optional(nonEmpty)
})

const deleteMessageShape = object({
  v: int(0, Number.MAX_SAFE_INTEGER),
  id: nonEmpty,
  to: nonEmpty,
  from: nonEmpty,
  dvipa: address,
  epoch: int(1, Number.MAX_SAFE_INTEGER),
  ikeSas: array(ikeSaId),
  childSas: array(object({ inboundSpi: spi, outboundSpi: spi })),
  sentAt: nonNegative
})

/** Serialises with object keys sorted, so equal records always give equal bytes. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const sorted: Record<string, unknown> = {}
      for (const k of Object.keys(v).sort()) sorted[k] = (v as Record<string, unknown>)[k]
      return sorted
    }
    return v
  })
}

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

function parse(bytes: Uint8Array, what: string): unknown {
  if (!(bytes instanceof Uint8Array)) throw new CorruptRecordError(what, 'expected bytes')
  try {
    return JSON.parse(decoder.decode(bytes))
  } catch (err) {
    throw new CorruptRecordError(what, 'not valid UTF-8 JSON', { cause: err })
  }
}

function checkVersion(value: unknown, what: string): void {
  if (value === null || typeof value !== 'object')
    throw new CorruptRecordError(what, 'expected an object')
  const v = (value as { v?: unknown }).v
  if (v !== RECORD_VERSION) {
    if (typeof v === 'number' && Number.isInteger(v))
      throw new UnsupportedRecordVersionError(what, v)
    throw new CorruptRecordError(`${what}.v`, 'missing or not an integer')
  }
}

/**
 * Validates a record of the given kind held in memory, throwing what {@link decodeRecord} would.
 *
 * @param kind - the expected kind
 * @param value - the candidate record
 * @throws CorruptRecordError when a field is missing, mistyped or out of range
 * @throws UnsupportedRecordVersionError when `v` is not {@link RECORD_VERSION}
 */
export function validateRecord<K extends RecordKind>(kind: K, value: unknown): RecordByKind[K] {
  if (!RECORD_KINDS.includes(kind))
    throw new CorruptRecordError('kind', `unknown record kind ${String(kind)}`)
  checkVersion(value, kind)
  recordShapes[kind](value, kind)
  return value as RecordByKind[K]
}

/**
 * Encodes a record as canonical UTF-8 JSON (sorted keys). Equal records give equal bytes.
 *
 * @param record - a record, validated first
 * @throws CorruptRecordError when the record is not valid for its kind
 */
export function encodeRecord(record: DvipaRecord): Uint8Array {
  validateRecord(record.kind, record)
  return encoder.encode(canonicalJson(record))
}

/**
 * Decodes and validates a record read from a store.
 *
 * @param kind - the kind the caller expects
 * @param bytes - what the store held
 * @throws CorruptRecordError when the bytes are not a valid record of that kind
 * @throws UnsupportedRecordVersionError when the record's version is unknown
 */
export function decodeRecord<K extends RecordKind>(kind: K, bytes: Uint8Array): RecordByKind[K] {
  return validateRecord(kind, parse(bytes, kind))
}

/**
 * Encodes an ownership record.
 *
 * @param ownership - validated first
 * @throws CorruptRecordError when it is not valid
 */
export function encodeOwnership(ownership: Ownership): Uint8Array {
  decodeOwnershipValue(ownership)
  return encoder.encode(canonicalJson(ownership))
}

/**
 * Decodes and validates an ownership record.
 *
 * @param bytes - what the store held
 * @throws CorruptRecordError | UnsupportedRecordVersionError
 */
export function decodeOwnership(bytes: Uint8Array): Ownership {
  return decodeOwnershipValue(parse(bytes, 'ownership'))
}

function decodeOwnershipValue(value: unknown): Ownership {
  checkVersion(value, 'ownership')
  ownershipShape(value, 'ownership')
  return value as Ownership
}

/**
 * Encodes a mailbox delete message.
 *
 * @param message - validated first
 * @throws CorruptRecordError when it is not valid
 */
export function encodeDeleteMessage(message: DeleteMessage): Uint8Array {
  decodeDeleteMessageValue(message)
  return encoder.encode(canonicalJson(message))
}

/**
 * Decodes and validates a mailbox delete message.
 *
 * @param bytes - what the store held
 * @throws CorruptRecordError | UnsupportedRecordVersionError
 */
export function decodeDeleteMessage(bytes: Uint8Array): DeleteMessage {
  return decodeDeleteMessageValue(parse(bytes, 'mailbox'))
}

function decodeDeleteMessageValue(value: unknown): DeleteMessage {
  checkVersion(value, 'mailbox')
  deleteMessageShape(value, 'mailbox')
  return value as DeleteMessage
}

/** Returns a {@link DvipaRecordSet} with every list empty. */
export function emptyRecordSet(): DvipaRecordSet {
  return {
    phase1: [],
    phase2: [],
    correlation: [],
    filter: [],
    connection: [],
    warm: [],
    sequence: [],
    corrupt: []
  }
}

/** One stored entry: its kind, id and bytes, as a store adapter holds it. */
export interface StoredEntry {
  /** The kind it was stored as. */
  kind: RecordKind
  /** The id it was stored under. */
  id: string
  /** The bytes {@link encodeRecord} made (or whatever the store now holds). */
  bytes: Uint8Array
}

const byId = (a: { id: string }, b: { id: string }): number =>
  a.id < b.id ? -1 : a.id > b.id ? 1 : 0

/**
 * Decodes stored entries into a {@link DvipaRecordSet}: each list sorted by id, and every entry
 * that fails to decode listed in `corrupt` instead of failing the whole read.
 *
 * @param entries - stored entries of any kinds
 */
export function decodeRecordSet(entries: Iterable<StoredEntry>): DvipaRecordSet {
  const set = emptyRecordSet()
  for (const { kind, id, bytes } of entries) {
    try {
      if (!RECORD_KINDS.includes(kind)) {
        throw new CorruptRecordError('kind', `unknown record kind ${String(kind)}`)
      }
      const record = decodeRecord(kind, bytes)
      if (record.id !== id) throw new CorruptRecordError(`${kind}.id`, `stored under id ${id}`)
      ;(set[kind] as DvipaRecord[]).push(record)
    } catch (err) {
      const e = err as Error
      set.corrupt.push({ kind, id, error: e.name, message: e.message })
    }
  }
  for (const kind of RECORD_KINDS) set[kind].sort(byId)
  set.corrupt.sort((a, b) => (a.kind === b.kind ? byId(a, b) : a.kind < b.kind ? -1 : 1))
  return set
}

/**
 * The number of decoded records in a set (corrupt entries not counted).
 *
 * @param set - a record set
 */
export function countRecords(set: DvipaRecordSet): number {
  return RECORD_KINDS.reduce((n, kind) => n + set[kind].length, 0)
}
