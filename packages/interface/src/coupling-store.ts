import type { Observable } from 'rxjs'
import type { AbortOptions } from './abort.js'
import type { Dvipa, NodeId } from './addressing.js'
import type {
  DeleteMessage,
  DvipaRecord,
  DvipaRecordSet,
  Ownership,
  RecordByKind,
  RecordKind
} from './records.js'
import type { Startable } from './startable.js'

/**
 * The fencing token a writer presents: the owner and epoch it believes are current. A write is
 * accepted only if the DVIPA's ownership record has exactly this owner and epoch.
 */
export interface Fence {
  /** The writer's node id. */
  owner: NodeId
  /** The epoch the writer claimed. */
  epoch: number
}

/** A claim of a DVIPA. */
export interface OwnershipClaim {
  /** The claiming node. */
  owner: NodeId
  /** The backups, best first, that the new owner publishes. */
  ranks: NodeId[]
  /**
   * The epoch the claimer read and expects to replace (0 when the DVIPA has never been owned).
   * The claim succeeds only if the current epoch still equals it; the new epoch is one more.
   */
  expectedEpoch: number
  /**
   * For a claim in another node's name (a planned switchover to `owner`): the owner it replaces,
   * recorded as the new ownership's `previousOwner`, so that `owner` takes the DVIPA over from it.
   * A node claiming for itself leaves it out.
   */
  previousOwner?: NodeId
}

/** Changes in a coupling store, as its change stream reports them. */
export type CouplingStoreEvent =
  | {
      /** An ownership record was created or replaced by a successful claim. */
      type: 'ownership:claimed'
      /** The new ownership. */
      ownership: Ownership
    }
  | {
      /** An owner gave a DVIPA up. */
      type: 'ownership:released'
      /** The DVIPA. */
      dvipa: Dvipa
      /** The epoch that was released. */
      epoch: number
      /** The owner that released it (the released record's `previousOwner`). */
      previousOwner?: NodeId
    }
  | {
      /** A record was written. */
      type: 'record:put'
      /** The DVIPA. */
      dvipa: Dvipa
      /** The record's kind. */
      kind: RecordKind
      /** The record's id. */
      id: string
      /** The writer's epoch. */
      epoch: number
    }
  | {
      /** A record was deleted. */
      type: 'record:deleted'
      /** The DVIPA. */
      dvipa: Dvipa
      /** The record's kind. */
      kind: RecordKind
      /** The record's id. */
      id: string
      /** The writer's epoch. */
      epoch: number
    }
  | {
      /** A new owner read and cleared a DVIPA's records (see {@link CouplingStore.takeRecords}). */
      type: 'records:taken'
      /** The DVIPA. */
      dvipa: Dvipa
      /** The taker's epoch. */
      epoch: number
      /** How many records were taken. */
      count: number
    }
  | {
      /** A message was left in a node's mailbox. */
      type: 'mailbox:posted'
      /** The recipient. */
      to: NodeId
      /** The message id. */
      id: string
    }

/** Options of {@link CouplingStore.listRecords}. */
export interface ListRecordsOptions extends AbortOptions {
  /** Only records of this kind. */
  kind?: RecordKind
}

/**
 * The coupling store (CF): the shared memory of a cluster. It holds, per DVIPA, the ownership
 * record with its epoch, the owner's IPsec records, and per node a mailbox of SA deletes.
 *
 * Ownership changes only by compare-and-set ({@link claimOwnership}); every record write carries
 * a {@link Fence} and is rejected with `StaleEpochError` unless it names the current owner and
 * epoch. Reading a missing record or ownership rejects with `NotFoundError`; reading a damaged one
 * with `getRecord` rejects with `CorruptRecordError` (set reads report it in `corrupt`). Every method rejects with `AbortError` if its signal is
 * already aborted, and with `NotStartedError` outside `start()`/`stop()`.
 *
 * Records are stored as {@link encodeRecord} makes them and read through {@link decodeRecord}.
 */
export interface CouplingStore extends Startable {
  /** The change stream: emits after `start()`, completes on `stop()`. */
  readonly events$: Observable<CouplingStoreEvent>

  /**
   * Reads a DVIPA's ownership.
   *
   * @throws NotFoundError when the DVIPA has never been claimed
   */
  getOwnership(dvipa: Dvipa, options?: AbortOptions): Promise<Ownership>

  /**
   * Claims a DVIPA by compare-and-set: succeeds only if its epoch is still
   * `claim.expectedEpoch`, and then writes `{ owner, epoch: expectedEpoch + 1, ranks }`.
   * Among any number of concurrent claims with the same expected epoch exactly one succeeds.
   *
   * @returns the new ownership
   * @throws OwnershipConflictError when the epoch has moved on
   */
  claimOwnership(dvipa: Dvipa, claim: OwnershipClaim, options?: AbortOptions): Promise<Ownership>

  /**
   * Gives a DVIPA up: the ownership record keeps its epoch but has no owner any more, so the next
   * claim (with that epoch expected) gets a higher one. Fenced.
   *
   * @throws StaleEpochError when `fence` is not current
   */
  releaseOwnership(dvipa: Dvipa, fence: Fence, options?: AbortOptions): Promise<void>

  /**
   * Writes (creates or replaces) records under a DVIPA, all or none. Fenced.
   *
   * @throws StaleEpochError when `fence` is not current
   * @throws CorruptRecordError when a record is invalid (nothing is written)
   */
  putRecords(
    dvipa: Dvipa,
    records: DvipaRecord[],
    fence: Fence,
    options?: AbortOptions
  ): Promise<void>

  /**
   * Deletes records by kind and id, all or none; missing ones are ignored. Fenced.
   *
   * @throws StaleEpochError when `fence` is not current
   */
  deleteRecords(
    dvipa: Dvipa,
    keys: { kind: RecordKind; id: string }[],
    fence: Fence,
    options?: AbortOptions
  ): Promise<void>

  /**
   * Reads one record.
   *
   * @throws NotFoundError when there is no such record
   * @throws CorruptRecordError | UnsupportedRecordVersionError when it cannot be decoded
   */
  getRecord<K extends RecordKind>(
    dvipa: Dvipa,
    kind: K,
    id: string,
    options?: AbortOptions
  ): Promise<RecordByKind[K]>

  /**
   * Reads a consistent snapshot of a DVIPA's records (no concurrent write or take shows half).
   * Entries that cannot be decoded are listed in the result's `corrupt`, not thrown.
   */
  listRecords(dvipa: Dvipa, options?: ListRecordsOptions): Promise<DvipaRecordSet>

  /**
   * The takeover's read-and-clear (step 5): atomically returns every record of the DVIPA and
   * removes them, so that no reader ever sees half. Fenced: only the new owner may take.
   *
   * Entries that cannot be decoded are listed in `corrupt` and move to the journal with the rest.
   * So that a takeover that dies half-way loses nothing, the taken records are kept in a journal
   * under the taker's epoch until {@link settleTakeover}; a later taker (higher epoch) receives
   * the records of every unsettled journal together with the live ones.
   *
   * @throws StaleEpochError when `fence` is not current
   */
  takeRecords(dvipa: Dvipa, fence: Fence, options?: AbortOptions): Promise<DvipaRecordSet>

  /**
   * Drops the journal {@link takeRecords} kept, once the new owner has written its own records.
   * Fenced.
   *
   * @throws StaleEpochError when `fence` is not current
   */
  settleTakeover(dvipa: Dvipa, fence: Fence, options?: AbortOptions): Promise<void>

  /** Leaves a delete message in the recipient's mailbox (`message.to`). */
  postMessage(message: DeleteMessage, options?: AbortOptions): Promise<void>

  /**
   * Removes and returns every message in a node's mailbox, oldest first. Each message is
   * delivered to exactly one call, even when several calls race.
   */
  takeMessages(node: NodeId, options?: AbortOptions): Promise<DeleteMessage[]>

  /**
   * Renews a node's lease: it now expires `ttlMs` from now, on the store's own clock (so that
   * nodes whose clocks differ agree on it). A lease detector renews its node's lease and reads
   * the others'.
   *
   * @param node - the node
   * @param ttlMs - lifetime in ms, 1 or more
   * @throws InvalidParametersError when `ttlMs` is out of range
   */
  renewLease(node: NodeId, ttlMs: number, options?: AbortOptions): Promise<void>

  /**
   * Reads how long each node's lease has left, in ms: 0 for a lease that expired or never
   * existed.
   *
   * @param nodes - the nodes
   */
  readLeases(nodes: NodeId[], options?: AbortOptions): Promise<Record<NodeId, number>>
}
