/**
 * Warm mode's sealing: an IKE SA's secret state (`IkeSaState`: records, the engine's keys and
 * message IDs) goes to the coupling store only as a `warm` record sealed under the cluster key
 * (AES-256-GCM, a random 12-byte nonce per sealing). The associated data binds the blob to its
 * record (DVIPA, phase 1 id, key id, the sealer's epoch and the record's version), so a blob
 * copied to another record, or a record whose fields were changed, fails authentication. The
 * store never sees a key: the keys live in the nodes' secrets files only.
 *
 * The sealed plaintext (format 2, written): the byte 2, a flags byte (bit 0: the peer announced
 * RFC 6311), the length of the records' UTF-8 JSON (4 bytes, big-endian), that JSON, then the
 * engine's secret as it is. Format 1 (still opened): UTF-8 JSON of the records, the secret in
 * base64 and the flag; it starts with `{`, which format 2 never does.
 *
 * @module
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  hkdfSync,
  randomBytes,
  timingSafeEqual
} from 'node:crypto'
import {
  InvalidConfigError,
  SealedStateError,
  validateRecord,
  type Dvipa,
  type IkeSaState,
  type Phase2Record,
  type SequenceRecord,
  type WarmRecord
} from '@vipsec/interface'

/** How long a warm key's secret is, in bytes. */
export const WARM_KEY_BYTES = 32

const NONCE_BYTES = 12
const TAG_BYTES = 16
const HKDF_INFO = 'vipsec warm state v1'
const HKDF_INFO_MAC = 'vipsec warm sequence v1'
const MAC_BYTES = 16
/** The first byte of a format 2 plaintext (see the module). */
const FORMAT_2 = 2
/** The first byte of a format 1 plaintext: `{` of its JSON. */
const FORMAT_1 = 0x7b
const MID_SYNC = 1

/** The cluster keys of warm mode, as a node's secrets give them. */
export interface WarmKeys {
  /** Secrets by key id ({@link WARM_KEY_BYTES} random bytes each). */
  keys: Record<string, Uint8Array>
  /** The key id new states are sealed under; the others only open. */
  current: string
}

/** Counters of a {@link WarmKeySet}. */
export interface WarmSealCounters {
  /** States sealed. */
  sealed: number
  /** States opened. */
  opened: number
  /** Records under a key id this node does not have. */
  unknownKey: number
  /** Records whose tag did not verify (changed, or moved to another record). */
  authentication: number
  /** Records that opened but did not hold an IKE SA state. */
  malformed: number
}

/** What a sealed blob is bound to (the associated data, with the key id). */
export interface SealIdentity {
  /** The DVIPA. */
  dvipa: Dvipa
  /** The phase 1 record id. */
  phase1Id: string
  /** The sealer's epoch. */
  epoch: number
  /** The record's version (the sealer increments it per sealing of this IKE SA). */
  version: number
}

function associatedData(keyId: string, id: SealIdentity): Buffer {
  // length-prefixed fields, so that no two identities give the same bytes
  const parts = [
    'vipsec-warm-v1',
    id.dvipa,
    id.phase1Id,
    keyId,
    String(id.epoch),
    String(id.version)
  ]
  return Buffer.concat(
    parts.map((p) => {
      const bytes = Buffer.from(p, 'utf8')
      const length = Buffer.alloc(4)
      length.writeUInt32BE(bytes.length)
      return Buffer.concat([length, bytes])
    })
  )
}

/**
 * The cluster key set of warm mode: seals with the current key, opens with any configured one
 * (so a key can be rotated: add the new one everywhere, make it current, drop the old one once
 * every record was sealed again). Each key's AEAD key is derived from its secret with HKDF-SHA256.
 */
export class WarmKeySet {
  private readonly keys = new Map<string, Buffer>()
  private readonly macKeys = new Map<string, Buffer>()
  /** The key id new states are sealed under. */
  readonly current: string
  private readonly counts: WarmSealCounters = {
    sealed: 0,
    opened: 0,
    unknownKey: 0,
    authentication: 0,
    malformed: 0
  }

  /**
   * @param config - the keys and the current key id
   * @param field - the configuration path, for errors (default `warm`)
   * @throws InvalidConfigError naming `<field>.keys.<id>` or `<field>.current`
   */
  constructor(config: WarmKeys, field = 'warm') {
    const entries = Object.entries(config?.keys ?? {})
    if (entries.length === 0)
      throw new InvalidConfigError(`${field}.keys`, 'expected at least one key')
    for (const [id, secret] of entries) {
      if (!/^[A-Za-z0-9._-]{1,64}$/.test(id))
        throw new InvalidConfigError(
          `${field}.keys.${id}`,
          'a key id is 1 to 64 of A-Z a-z 0-9 . _ -'
        )
      if (!(secret instanceof Uint8Array) || secret.length !== WARM_KEY_BYTES)
        throw new InvalidConfigError(`${field}.keys.${id}`, `must be ${WARM_KEY_BYTES} bytes`)
      const key = Buffer.from(hkdfSync('sha256', secret, Buffer.from(id, 'utf8'), HKDF_INFO, 32))
      this.keys.set(id, key)
      const mac = Buffer.from(
        hkdfSync('sha256', secret, Buffer.from(id, 'utf8'), HKDF_INFO_MAC, 32)
      )
      this.macKeys.set(id, mac)
    }
    if (typeof config.current !== 'string' || !this.keys.has(config.current))
      throw new InvalidConfigError(`${field}.current`, 'must name one of the keys')
    this.current = config.current
  }

  /** The configured key ids. */
  keyIds(): string[] {
    return [...this.keys.keys()]
  }

  /** Counters (a copy). */
  counters(): WarmSealCounters {
    return { ...this.counts }
  }

  /**
   * Seals an IKE SA's state into a `warm` record under the current key.
   *
   * @param state - the state the IKE service exported
   * @param id - what the blob is bound to
   */
  seal(state: IkeSaState, id: SealIdentity): WarmRecord {
    const keyId = this.current
    const key = this.keys.get(keyId) as Buffer
    const nonce = randomBytes(NONCE_BYTES)
    const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES })
    cipher.setAAD(associatedData(keyId, id))
    const records = Buffer.from(JSON.stringify(state.records), 'utf8')
    const header = Buffer.alloc(6)
    header[0] = FORMAT_2
    header[1] = state.midSync ? MID_SYNC : 0
    header.writeUInt32BE(records.length, 2)
    const sealed = Buffer.concat([
      cipher.update(header),
      cipher.update(records),
      cipher.update(state.secret),
      cipher.final(),
      cipher.getAuthTag()
    ])
    this.counts.sealed++
    return {
      v: 1,
      kind: 'warm',
      id: id.phase1Id,
      dvipa: id.dvipa,
      phase1Id: id.phase1Id,
      keyId,
      version: id.version,
      epoch: id.epoch,
      nonce: nonce.toString('base64'),
      sealed: sealed.toString('base64')
    }
  }

  /**
   * Authenticates a sequence reservation under the current key (sets `keyId` and `mac`).
   *
   * @param record - the reservation; its `keyId` and `mac` are replaced
   */
  authenticate(record: Omit<SequenceRecord, 'keyId' | 'mac'>): SequenceRecord {
    const keyId = this.current
    return { ...record, keyId, mac: this.macOf(keyId, record) }
  }

  /**
   * Checks a sequence reservation's MAC.
   *
   * @param record - as the store returned it
   * @throws SealedStateError with `unknown-key` or `authentication` (counted)
   */
  verify(record: SequenceRecord): SequenceRecord {
    if (!this.macKeys.has(record.keyId)) {
      this.counts.unknownKey++
      throw new SealedStateError(
        'unknown-key',
        record.keyId,
        `sequence record ${record.id}: no cluster key ${record.keyId} on this node`
      )
    }
    const expected = Buffer.from(this.macOf(record.keyId, record), 'base64')
    const given = Buffer.from(record.mac, 'base64')
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      this.counts.authentication++
      throw new SealedStateError(
        'authentication',
        record.keyId,
        `sequence record ${record.id}: the MAC did not verify (changed, or not this record's)`
      )
    }
    return record
  }

  private macOf(keyId: string, r: Omit<SequenceRecord, 'keyId' | 'mac'>): string {
    const fields = [
      'vipsec-sequence-v1',
      r.dvipa,
      r.id,
      r.phase2Id,
      r.outboundSpi,
      r.reservedEnd,
      r.inbound,
      keyId
    ]
    const hmac = createHmac('sha256', this.macKeys.get(keyId) as Buffer)
    for (const f of fields) {
      const bytes = Buffer.from(f, 'utf8')
      const length = Buffer.alloc(4)
      length.writeUInt32BE(bytes.length)
      hmac.update(length).update(bytes)
    }
    return hmac.digest().subarray(0, MAC_BYTES).toString('base64')
  }

  /**
   * Opens a `warm` record.
   *
   * @param record - the record as the store returned it (decoded and validated)
   * @throws SealedStateError with `unknown-key`, `authentication` or `malformed` (counted)
   */
  open(record: WarmRecord): IkeSaState {
    const key = this.keys.get(record.keyId)
    if (key === undefined) {
      this.counts.unknownKey++
      throw new SealedStateError(
        'unknown-key',
        record.keyId,
        `warm record ${record.id}: no cluster key ${record.keyId} on this node`
      )
    }
    if (record.id !== record.phase1Id) {
      this.counts.malformed++
      throw new SealedStateError(
        'malformed',
        record.keyId,
        `warm record ${record.id}: id is not its phase1Id`
      )
    }
    const blob = Buffer.from(record.sealed, 'base64')
    let plaintext: Buffer
    try {
      if (blob.length < TAG_BYTES) throw new Error('shorter than the tag')
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(record.nonce, 'base64'), {
        authTagLength: TAG_BYTES
      })
      decipher.setAAD(
        associatedData(record.keyId, {
          dvipa: record.dvipa,
          phase1Id: record.phase1Id,
          epoch: record.epoch,
          version: record.version
        })
      )
      decipher.setAuthTag(blob.subarray(blob.length - TAG_BYTES))
      plaintext = Buffer.concat([
        decipher.update(blob.subarray(0, blob.length - TAG_BYTES)),
        decipher.final()
      ])
    } catch (err) {
      this.counts.authentication++
      throw new SealedStateError(
        'authentication',
        record.keyId,
        `warm record ${record.id}: the sealed state did not authenticate (changed, or not this record's)`,
        { cause: err }
      )
    }
    try {
      const value = plaintextState(plaintext)
      const records = value.records as { phase1?: unknown; phase2?: unknown } | null
      const phase1 = validateRecord('phase1', records?.phase1)
      if (!Array.isArray(records!.phase2)) throw new Error('records.phase2: expected an array')
      const phase2 = (records!.phase2 as unknown[]).map((p) =>
        validateRecord('phase2', p)
      ) as Phase2Record[]
      if (phase1.id !== record.phase1Id || phase1.dvipa !== record.dvipa)
        throw new Error('the state is of another IKE SA')
      this.counts.opened++
      return { records: { phase1, phase2 }, secret: value.secret, midSync: value.midSync }
    } catch (err) {
      this.counts.malformed++
      throw new SealedStateError(
        'malformed',
        record.keyId,
        `warm record ${record.id}: ${(err as Error).message}`,
        { cause: err }
      )
    }
  }
}

/** The parts of an opened plaintext, either format (the records not yet checked). */
function plaintextState(plaintext: Buffer): {
  records: unknown
  secret: Uint8Array
  midSync: boolean
} {
  if (plaintext[0] === FORMAT_2) {
    if (plaintext.length < 6) throw new Error('shorter than its header')
    if ((plaintext[1]! & ~MID_SYNC) !== 0) throw new Error('unknown flags')
    const length = plaintext.readUInt32BE(2)
    if (length > plaintext.length - 6) throw new Error('the records run past the end')
    return {
      records: JSON.parse(plaintext.toString('utf8', 6, 6 + length)),
      secret: new Uint8Array(plaintext.subarray(6 + length)),
      midSync: (plaintext[1]! & MID_SYNC) !== 0
    }
  }
  if (plaintext[0] !== FORMAT_1) throw new Error('not a sealed IKE SA state')
  const value = JSON.parse(plaintext.toString('utf8')) as {
    records?: unknown
    secret?: unknown
    midSync?: unknown
  } | null
  if (typeof value?.secret !== 'string' || typeof value.midSync !== 'boolean')
    throw new Error('secret or midSync missing')
  return {
    records: value.records,
    secret: new Uint8Array(Buffer.from(value.secret, 'base64')),
    midSync: value.midSync
  }
}
