/**
 * Encoding and validation of coupling-store records. Every store adapter writes what
 * {@link encodeRecord} returns and reads through {@link decodeRecord}, so a record survives any
 * store byte for byte, and a corrupt or unknown-version record is a typed error, never a crash.
 *
 * @module
 */
import { CorruptRecordError, UnsupportedRecordVersionError } from './errors.js'
import { deleteMessageShape, ownershipShape, recordShapes, type Check } from './record-shapes.js'
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

/**
 * Serialises with object keys sorted, so equal records always give equal bytes. For the
 * validated values it is given (plain JSON: no `undefined`, no `toJSON`), the same text as
 * `JSON.stringify` with a replacer that sorts each object's keys, without calling back into a
 * replacer for every field.
 */
function canonicalJson(value: unknown): string {
  return JSON.stringify(sortedKeys(value))
}

function sortedKeys(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v
  if (Array.isArray(v)) return v.map(sortedKeys)
  const o = v as Record<string, unknown>
  const sorted: Record<string, unknown> = {}
  for (const k of Object.keys(o).sort()) sorted[k] = sortedKeys(o[k])
  return sorted
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

/**
 * Throws the error of the first wrong field of `value`, if any: the quick check first, the one
 * that names the field only for a value that fails it.
 */
function passes(shape: Check, value: unknown, what: string): void {
  if (shape.ok(value)) return
  shape(value, what)
  // the two forms disagree: still refuse the value
  throw new CorruptRecordError(what, 'invalid')
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
  passes(recordShapes[kind], value, kind)
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
  passes(ownershipShape, value, 'ownership')
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
  passes(deleteMessageShape, value, 'mailbox')
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
