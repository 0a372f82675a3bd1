import { InvalidConfigError, type Dvipa, type NodeId, type RecordKind } from '@vipsec/interface'

/** The key prefix used when none is given: `vipsec:`. */
export const DEFAULT_KEY_PREFIX = 'vipsec:'

/** The field a record is stored under in a DVIPA's record and journal hashes: `kind/id`. */
export type RecordField = `${RecordKind}/${string}`

/**
 * The names of every Redis key and channel a {@link RedisCouplingStore} uses under one prefix
 * (one cluster). All keys of one DVIPA share the hash tag `{dvipa}`, and all keys of one mailbox
 * the hash tag `{node}`, so that each script touches keys of a single hash slot.
 *
 * | name | type | holds |
 * |---|---|---|
 * | `<prefix>{<dvipa>}:owner` | hash | `epoch`, `owner` (absent once released), `record` (the encoded ownership), `claimId`, `releaseId`, `takeId` (request ids that make retries idempotent), `journalEpoch` |
 * | `<prefix>{<dvipa>}:records` | hash | live records: field `kind/id`, value the bytes `encodeRecord` made |
 * | `<prefix>{<dvipa>}:journal` | hash | the unsettled takeover journal, same fields as `records` |
 * | `<prefix>mailbox:{<node>}` | list | encoded delete messages, oldest first |
 * | `<prefix>mailbox:{<node>}:posted:<request id>` | string | marks a post as done (expires) |
 * | `<prefix>mailbox:{<node>}:taken:<request id>` | list | what one take removed, kept until its reply arrived (expires) |
 * | `<prefix>lease:{<node>}` | string | a node's lease, expiring with it (`PX`, Redis's clock) |
 * | `<prefix>events` | pub/sub channel | JSON arrays of change events |
 */
export interface RedisKeyLayout {
  /** The prefix every key and the channel begin with. */
  readonly prefix: string
  /** The pub/sub channel of the change stream. */
  readonly events: string
  /**
   * The ownership hash of a DVIPA.
   *
   * @param dvipa - the DVIPA
   */
  owner(dvipa: Dvipa): string
  /**
   * The hash of a DVIPA's live records.
   *
   * @param dvipa - the DVIPA
   */
  records(dvipa: Dvipa): string
  /**
   * The hash of a DVIPA's unsettled takeover journal.
   *
   * @param dvipa - the DVIPA
   */
  journal(dvipa: Dvipa): string
  /**
   * The list that is a node's mailbox.
   *
   * @param node - the recipient
   */
  mailbox(node: NodeId): string
  /**
   * The receipt of one mailbox operation, which makes a retried post or take idempotent.
   *
   * @param node - the recipient
   * @param operation - `posted` or `taken`
   * @param requestId - the operation's request id
   */
  receipt(node: NodeId, operation: 'posted' | 'taken', requestId: string): string
  /**
   * A node's lease: a string that expires with it (`PX`).
   *
   * @param node - the node
   */
  lease(node: NodeId): string
  /**
   * The field of a record in the record and journal hashes.
   *
   * @param kind - the record's kind
   * @param id - the record's id
   */
  field(kind: RecordKind, id: string): RecordField
}

/**
 * Checks a key prefix: a non-empty string without `{`, `}` or glob characters, so that hash tags
 * and `SCAN MATCH <prefix>*` work on it.
 *
 * @param prefix - the candidate
 * @throws InvalidConfigError naming `keyPrefix`
 */
export function checkKeyPrefix(prefix: unknown): string {
  if (typeof prefix !== 'string' || prefix.length === 0) {
    throw new InvalidConfigError('keyPrefix', 'expected a non-empty string')
  }
  if (/[{}*?[\]\\\s]/.test(prefix)) {
    throw new InvalidConfigError(
      'keyPrefix',
      'must not contain braces, glob characters or white space'
    )
  }
  return prefix
}

/**
 * Returns the key layout of one cluster.
 *
 * @param prefix - the cluster's key prefix; default {@link DEFAULT_KEY_PREFIX}
 * @throws InvalidConfigError when the prefix is not acceptable
 */
export function redisKeys(prefix: string = DEFAULT_KEY_PREFIX): RedisKeyLayout {
  const p = checkKeyPrefix(prefix)
  return {
    prefix: p,
    events: `${p}events`,
    owner: (dvipa) => `${p}{${dvipa}}:owner`,
    records: (dvipa) => `${p}{${dvipa}}:records`,
    journal: (dvipa) => `${p}{${dvipa}}:journal`,
    mailbox: (node) => `${p}mailbox:{${node}}`,
    receipt: (node, operation, requestId) => `${p}mailbox:{${node}}:${operation}:${requestId}`,
    lease: (node) => `${p}lease:{${node}}`,
    field: (kind, id) => `${kind}/${id}`
  }
}

/**
 * Splits a record field back into kind and id (at the first `/`).
 *
 * @param field - a field of a record or journal hash
 */
export function splitField(field: string): { kind: RecordKind; id: string } {
  const slash = field.indexOf('/')
  return slash < 0
    ? { kind: field as RecordKind, id: '' }
    : { kind: field.slice(0, slash) as RecordKind, id: field.slice(slash + 1) }
}
