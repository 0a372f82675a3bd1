import { Subject, type Observable } from 'rxjs'
import type { CouplingStoreEvent, Dvipa, NodeId, RecordKind } from '@vipsec/interface'

/** The key of a record inside one DVIPA: `kind/id`. */
export type RecordKey = `${RecordKind}/${string}`

/** What the in-memory facility holds for one DVIPA. */
export interface DvipaSlot {
  /** The encoded ownership record, if the DVIPA was ever claimed. */
  ownership?: Uint8Array
  /** The current owner and epoch, kept decoded beside the bytes for fencing checks. */
  owner: NodeId | null
  /** The current epoch (0 if never claimed). */
  epoch: number
  /** Live records, encoded, by `kind/id`. */
  records: Map<RecordKey, Uint8Array>
  /** Journals of unsettled takeovers: taker's epoch to the entries it took. */
  journals: Map<number, Map<RecordKey, Uint8Array>>
  /** The epoch of the last take applied (kept through the settle): one take per epoch. */
  takenEpoch?: number
}

/**
 * The shared memory behind any number of {@link MemoryCouplingStore} instances in one process:
 * the "coupling facility" of a simulated cluster. Give the same facility to every node's store
 * and they see one another's claims, records, mailboxes and changes, as nodes sharing a Redis
 * server would.
 */
export class MemoryCouplingFacility {
  /** Per-DVIPA state. */
  readonly dvipas = new Map<Dvipa, DvipaSlot>()
  /** Per-node mailboxes of encoded delete messages, oldest first. */
  readonly mailboxes = new Map<NodeId, Uint8Array[]>()
  /** Per-node lease expiry, ms on the clock of the store that renewed it. */
  readonly leases = new Map<NodeId, number>()
  private readonly changes = new Subject<CouplingStoreEvent>()

  /** Every change made through any store on this facility. */
  get changes$(): Observable<CouplingStoreEvent> {
    return this.changes.asObservable()
  }

  /**
   * Returns the slot of a DVIPA, creating an empty one.
   *
   * @param dvipa - the DVIPA
   */
  slot(dvipa: Dvipa): DvipaSlot {
    let slot = this.dvipas.get(dvipa)
    if (slot === undefined) {
      slot = { owner: null, epoch: 0, records: new Map(), journals: new Map() }
      this.dvipas.set(dvipa, slot)
    }
    return slot
  }

  /**
   * Publishes a change to every store on this facility.
   *
   * @param event - the change
   */
  publish(event: CouplingStoreEvent): void {
    this.changes.next(event)
  }
}
