import { InvalidConfigError, type Dvipa, type NodeId, type RecordKind } from '@vipsec/interface'

/** The key prefix used when none is given: `vipsec/`. */
export const DEFAULT_KEY_PREFIX = 'vipsec/'

/**
 * The names of every etcd key an {@link EtcdCouplingStore} uses under one prefix (one cluster).
 * Node ids are percent-encoded in key names, so that no id can reach into another's keys.
 *
 * | key | holds |
 * |---|---|
 * | `<prefix>d/<dvipa>/owner` | JSON: `epoch`, `owner` (null once released), `record` (the ownership as `encodeOwnership` makes it, base64), `claimId` / `releaseId` (request ids that make a retried call idempotent) |
 * | `<prefix>d/<dvipa>/take` | JSON: `takeId` (of the last take) and `journalEpoch` (of the unsettled journal, if any) |
 * | `<prefix>d/<dvipa>/rv` | empty; rewritten by every change of the live records, so a take or delete can compare its revision |
 * | `<prefix>d/<dvipa>/r/<kind>/<id>` | a live record, the bytes `encodeRecord` made |
 * | `<prefix>d/<dvipa>/j/<kind>/<id>` | a record of the unsettled takeover journal |
 * | `<prefix>m/<node>/<request id>` | a delete message in a mailbox (oldest first by creation revision) |
 * | `<prefix>mv/<node>` | empty; rewritten by every post to and take of the mailbox, so a take can compare its revision |
 * | `<prefix>mr/<node>/<request id>` | the receipt of a mailbox post or take, on a receipt lease (expires) |
 * | `<prefix>l/<node>` | a node's lease: JSON `ttlMs`, on an etcd lease |
 * | `<prefix>events` | the change stream: rewritten by every write with its events as a JSON array, watched from the revision last seen |
 */
export interface EtcdKeyLayout {
  /** The prefix every key begins with. */
  readonly prefix: string
  /** The key the change stream is written to and watched on. */
  readonly events: string
  /**
   * The ownership key of a DVIPA.
   *
   * @param dvipa - the DVIPA
   */
  owner(dvipa: Dvipa): string
  /**
   * The take bookkeeping key of a DVIPA.
   *
   * @param dvipa - the DVIPA
   */
  take(dvipa: Dvipa): string
  /**
   * The key rewritten by every change of a DVIPA's live records.
   *
   * @param dvipa - the DVIPA
   */
  recordsVersion(dvipa: Dvipa): string
  /**
   * The prefix of a DVIPA's live records.
   *
   * @param dvipa - the DVIPA
   */
  records(dvipa: Dvipa): string
  /**
   * The prefix of a DVIPA's takeover journal.
   *
   * @param dvipa - the DVIPA
   */
  journal(dvipa: Dvipa): string
  /**
   * The prefix of a node's mailbox.
   *
   * @param node - the recipient
   */
  mailbox(node: NodeId): string
  /**
   * The key rewritten by every post to a node's mailbox, so a take can compare it.
   *
   * @param node - the recipient
   */
  mailboxVersion(node: NodeId): string
  /**
   * The receipt of one mailbox post or take.
   *
   * @param node - the recipient
   * @param requestId - the call's request id
   */
  receipt(node: NodeId, requestId: string): string
  /**
   * A node's lease key.
   *
   * @param node - the node
   */
  lease(node: NodeId): string
}

/**
 * Checks a key prefix: a non-empty string without white space.
 *
 * @param prefix - the candidate
 * @throws InvalidConfigError naming `keyPrefix`
 */
export function checkKeyPrefix(prefix: unknown): string {
  if (typeof prefix !== 'string' || prefix.length === 0) {
    throw new InvalidConfigError('keyPrefix', 'expected a non-empty string')
  }
  if (/\s/.test(prefix)) throw new InvalidConfigError('keyPrefix', 'must not contain white space')
  return prefix
}

/**
 * Returns the key layout of one cluster.
 *
 * @param prefix - the cluster's key prefix; default {@link DEFAULT_KEY_PREFIX}
 * @throws InvalidConfigError when the prefix is not acceptable
 */
export function etcdKeys(prefix: string = DEFAULT_KEY_PREFIX): EtcdKeyLayout {
  const p = checkKeyPrefix(prefix)
  const n = (node: NodeId): string => encodeURIComponent(node)
  const d = (dvipa: Dvipa): string => `${p}d/${encodeURIComponent(dvipa)}/`
  return {
    prefix: p,
    events: `${p}events`,
    owner: (dvipa) => `${d(dvipa)}owner`,
    take: (dvipa) => `${d(dvipa)}take`,
    recordsVersion: (dvipa) => `${d(dvipa)}rv`,
    records: (dvipa) => `${d(dvipa)}r/`,
    journal: (dvipa) => `${d(dvipa)}j/`,
    mailbox: (node) => `${p}m/${n(node)}/`,
    mailboxVersion: (node) => `${p}mv/${n(node)}`,
    receipt: (node, requestId) => `${p}mr/${n(node)}/${requestId}`,
    lease: (node) => `${p}l/${n(node)}`
  }
}

/**
 * The name of a record under a records or journal prefix: `<kind>/<id>`.
 *
 * @param kind - the record's kind
 * @param id - the record's id
 */
export function recordName(kind: RecordKind, id: string): string {
  return `${kind}/${id}`
}

/**
 * Splits a record name back into kind and id (at the first `/`).
 *
 * @param name - what follows a records or journal prefix
 */
export function splitRecordName(name: string): { kind: RecordKind; id: string } {
  const slash = name.indexOf('/')
  return slash < 0
    ? { kind: name as RecordKind, id: '' }
    : { kind: name.slice(0, slash) as RecordKind, id: name.slice(slash + 1) }
}

/**
 * The end of the key range of every key that begins with `prefix` (etcd's `range_end`): the
 * prefix with its last byte incremented.
 *
 * @param prefix - the prefix, as bytes
 */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix)
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i] = end[i]! + 1
      return end.subarray(0, i + 1)
    }
  }
  // a prefix of 0xff bytes only: up to the end of the key space
  return Buffer.from([0])
}
