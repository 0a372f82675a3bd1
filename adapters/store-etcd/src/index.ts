/**
 * The coupling store on etcd v3: an {@link EtcdCouplingStore} per node, all nodes of a cluster on
 * one etcd cluster under one key prefix. etcd replicates each write through Raft to a majority of
 * its members before it answers and serves reads linearizably, so ownership epochs never go
 * backwards and nothing acknowledged is lost while a majority of members survives: the store for a
 * vipsec cluster that spans several machines. It passes the whole `CouplingStore` compliance suite
 * against one etcd member and against a three-member cluster.
 *
 * ## Atomicity
 *
 * Every write is one etcd transaction guarded by the revisions of the keys it read (optimistic
 * concurrency): a claim compares the ownership key's revision (the compare-and-set of the epoch);
 * fenced writes compare it too, so a write whose fence was current when read is applied only if
 * the ownership has not changed since; a take also compares the live records' version key and the
 * journal key, and deletes the live records and writes the merged journal in the same
 * transaction. When a guard fails (another writer came first) the call reads again and decides
 * again. Reads are etcd's linearizable reads; a DVIPA's records are one range read, a snapshot.
 *
 * ## Key layout
 *
 * `P` is the `keyPrefix` (default `vipsec/`); DVIPAs and node ids are percent-encoded.
 *
 * | key | holds |
 * |---|---|
 * | `Pd/<dvipa>/owner` | the ownership (JSON: epoch, owner, the encoded record, request ids of the last claim and release) |
 * | `Pd/<dvipa>/r/<kind>/<id>` | a live record, the bytes of `encodeRecord` |
 * | `Pd/<dvipa>/rv` | rewritten by every change of the live records, so a take can compare it |
 * | `Pd/<dvipa>/take` | the takeover journal (JSON: the last take's request id, the journal's epoch, its entries) |
 * | `Pm/<node>/<id>` | a mailbox message; oldest first by creation revision |
 * | `Pmv/<node>` | rewritten by every post to and take of the mailbox, so a take can compare it |
 * | `Pmr/<node>/<id>` | receipt of a mailbox post or take, on a lease that expires after `receiptTtlMs` |
 * | `Pl/<node>` | a node's lease, on an etcd lease |
 * | `Pevents` | the change stream (see below) |
 *
 * A put batch of any size is one transaction (nested in groups of 100 operations, below etcd's
 * `--max-txn-ops` default of 128, which counts each level on its own); a take is four operations
 * whatever the number of records. A batch, and a DVIPA's journal, must fit in etcd's
 * `--max-request-bytes` (1.5 MiB by default).
 *
 * ## Change stream: nothing lost on reconnect
 *
 * Each write also writes its change events (a JSON array) to the one key `Pevents` in the same
 * transaction. Every store watches that key from the revision after the one it last saw, and
 * etcd keeps each revision of it until compaction: after a lost connection, a member's death or
 * a leader change the watch resumes where it stopped, and each event arrives once, in commit
 * order. Only a compaction past the last revision seen (etcd's `--auto-compaction-*`) can make
 * the stream skip; then it resumes from the compacted revision.
 *
 * The watch is opened on one member: at `start()` on the member that has just answered the first
 * read, waiting at most `attemptTimeoutMs` for each member to accept it before trying the next,
 * so a member that died or was cut off delays `start()` by one attempt, not by the tens of
 * seconds a stream to it can hang. When the watch's stream breaks it moves to the next member; a
 * member that goes silent (its packets just vanish) is found out by a keepalive ping every 6 s
 * that gets no answer within 2 s, so the watch resumes elsewhere within about 8 s, from the
 * revision after the last event seen.
 *
 * ## Leases
 *
 * `renewLease` puts the node's lease key on an etcd lease of `ttlMs` rounded up to seconds, so a
 * dead node's key vanishes on etcd's own clock. Below that granularity, `readLeases` counts
 * `ttlMs` on the reader's monotonic clock from when it first saw each renewal (the way
 * Kubernetes' leader election reads its leases), so no two machines' clocks are ever compared.
 *
 * ## Failures, retries and indeterminate results
 *
 * Calls go to one member of `hosts` (the first, then the last that answered); a write whose member
 * fails moves later calls to the next member, and a read without an answer after `hedgeMs` is sent
 * to the next member as well (reads are idempotent and linearizable on every member), so a member
 * that died or was cut off delays an owner's confirmation by at most `hedgeMs`, not a whole
 * attempt (which made owners on the healthy side of a partition fence themselves). A call
 * retries "not now" answers (no leader, member down, connection lost, deadline of one attempt) for
 * up to `operationTimeoutMs` in all, then rejects with `StoreUnavailableError`. When a write may
 * have been applied although its reply never arrived, the error has `indeterminate: true`: read
 * the state back before acting on it. A retry after a lost reply is safe: claims, releases, takes
 * and mailbox calls carry a request id that the retry recognises; puts, deletes and settles are
 * idempotent. etcd refusing the credentials or the rights rejects at once, with a message naming
 * the user and the prefix its role must grant.
 *
 * TLS (`tls.ca`, and `tls.cert`/`tls.key` for client certificates) and etcd's user/password
 * authentication are supported.
 *
 * @example One node's store
 * ```ts
 * import { EtcdCouplingStore } from '@vipsec/store-etcd'
 *
 * const store = new EtcdCouplingStore({}, {
 *   hosts: ['http://10.1.0.1:2379', 'http://10.1.0.2:2379', 'http://10.1.0.3:2379'],
 *   username: 'vipsec',
 *   password: process.env.VIPSEC_ETCD_PASSWORD,
 *   keyPrefix: 'vipsec/cluster-a/'
 * })
 * await store.start()
 * const { epoch } = await store.claimOwnership('10.0.0.100', { owner: 'dp-1', ranks: ['dp-2'], expectedEpoch: 0 })
 * await store.putRecords('10.0.0.100', [], { owner: 'dp-1', epoch })
 * await store.stop()
 * ```
 *
 * @packageDocumentation
 */
export {
  DEFAULT_KEY_PREFIX,
  checkKeyPrefix,
  etcdKeys,
  recordName,
  type EtcdKeyLayout
} from './keys.js'
export {
  resolveInit,
  type EtcdCouplingStoreInit,
  type EtcdTlsOptions,
  type ResolvedEtcdInit
} from './options.js'
export {
  EtcdCouplingStore,
  etcdCouplingStore,
  type EtcdCouplingStoreComponents
} from './etcd-coupling-store.js'
