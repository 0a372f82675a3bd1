import type { Observable } from 'rxjs'
import type { AbortOptions } from './abort.js'
import type { Dvipa, NodeId } from './addressing.js'
import type { IkeErrorKind } from './errors.js'
import type { ConnectionRecord, CorruptEntry } from './records.js'
import type { OwnershipEvent } from './ownership.js'
import type { Startable } from './startable.js'

/**
 * The steps of a takeover, in the order they run (ARCHITECTURE.md steps 4 to 12). Step 8 runs
 * before the renegotiation: the new IKE SAs must come from the DVIPA's address, and the first
 * packet of each flow in a renegotiated SA must find the flow's old target in the table.
 */
export type TakeoverStep =
  | 'detect'
  | 'claim'
  | 'read-and-clear'
  | 'take-address'
  | 'reroute-connections'
  | 'renegotiate'
  | 'install-filters'
  | 'notify-targets'
  | 'localize-connections'
  | 'write-records'
  | 'send-deletes'

/** Every takeover step, in order. */
export const TAKEOVER_STEPS: readonly TakeoverStep[] = [
  'detect',
  'claim',
  'read-and-clear',
  'take-address',
  'reroute-connections',
  'renegotiate',
  'install-filters',
  'notify-targets',
  'localize-connections',
  'write-records',
  'send-deletes'
]

/** How long one step of a takeover took. */
export interface StepTiming {
  /** The step. */
  step: TakeoverStep
  /** Monotonic ms at which it started. */
  startedAt: number
  /** Its duration in ms, on the node's clock. */
  durationMs: number
  /**
   * Its duration in real ms (`performance.now()`), which is what the work cost in CPU and I/O
   * when the node runs on a virtual clock (where computing takes no virtual time).
   */
  wallMs: number
}

/** What a completed takeover did. */
export interface TakeoverReport {
  /** The DVIPA. */
  dvipa: Dvipa
  /** The failed owner. */
  previousOwner: NodeId
  /** The new epoch. */
  epoch: number
  /** Step timings, in order. */
  steps: StepTiming[]
  /** IKE SAs renegotiated. */
  renegotiated: number
  /**
   * Warm mode: IKE SAs adopted as they were (same keys and SPIs, message IDs synchronised,
   * RFC 6311), by phase 1 id. Absent without warm mode.
   */
  adopted?: string[]
  /**
   * Warm mode: IKE SAs that were not adopted and went through renegotiation instead, by phase 1
   * id, with why: `no-state` (no sealed state recorded), `unsealed` (the sealed state did not
   * open: unknown key id, failed authentication), `no-adopt` (the IKE service cannot adopt),
   * `reserve-failed` (the heir's first sequence block could not be written), or the adoption's
   * failure reason (`UNSUPPORTED`, `INVALID_STATE`, `TIMEOUT`, an IKE error). Absent without
   * warm mode.
   */
  fellBack?: {
    /** The phase 1 record. */
    phase1Id: string
    /** Why it was not adopted. */
    reason: string
  }[]
  /** IKE SAs that could not be renegotiated, with the reason. */
  failed: {
    /** The phase 1 record that failed (the phase 2 record's id for a Child SA no IKE SA names). */
    phase1Id: string
    /** Why. */
    reason: IkeErrorKind
  }[]
  /** Connections re-routed through this node. */
  connections: number
  /**
   * Stored entries the takeover could not decode: their SAs could not be renegotiated. They are
   * reported here, and their bytes are dropped with the journal when the takeover settles.
   */
  corrupt: CorruptEntry[]
  /** Total duration in ms, detection to deletes sent. */
  durationMs: number
}

/** The role a distribution processor has for a DVIPA. */
export type DvipaRole = 'owner' | 'backup' | 'taking-over' | 'stood-down' | 'fenced'

/** Why a backup did not take a DVIPA over. */
export type StandDownReason = 'lost-claim'

/** Events of a distribution processor. */
export type DistributionEvent =
  | OwnershipEvent
  | {
      /** This node claimed a DVIPA. */
      type: 'ownership:claimed'
      /** The DVIPA. */
      dvipa: Dvipa
      /** The new epoch. */
      epoch: number
    }
  | {
      /** This node saw a higher epoch and stopped serving a DVIPA. */
      type: 'ownership:lost'
      /** The DVIPA. */
      dvipa: Dvipa
      /** The epoch it had. */
      epoch: number
      /** The epoch that superseded it. */
      supersededBy: number
    }
  | {
      /** This owner could not confirm its ownership in the store for too long and stopped serving. */
      type: 'ownership:fenced'
      /** The DVIPA. */
      dvipa: Dvipa
      /** The epoch it had. */
      epoch: number
      /** How long the store had not answered, ms. */
      silentMs: number
    }
  | {
      /** A takeover began (step 4, detection). */
      type: 'takeover:started'
      /** The DVIPA. */
      dvipa: Dvipa
      /** The failed owner. */
      previousOwner: NodeId
    }
  | {
      /** A takeover step finished. */
      type: 'takeover:step'
      /** The DVIPA. */
      dvipa: Dvipa
      /** The step and its timing. */
      timing: StepTiming
    }
  | {
      /** The renegotiation step finished: how many IKE SAs were renegotiated and failed. */
      type: 'takeover:renegotiated'
      /** The DVIPA. */
      dvipa: Dvipa
      /** IKE SAs renegotiated. */
      renegotiated: number
      /** IKE SAs that failed (they are retried with backoff). */
      failed: number
      /** Warm mode: IKE SAs adopted without a handshake (0 without warm mode). */
      adopted?: number
    }
  | {
      /** This backup did not take the DVIPA over. */
      type: 'takeover:stood-down'
      /** The DVIPA. */
      dvipa: Dvipa
      /** Why. */
      reason: StandDownReason
    }
  | {
      /**
       * An IKE SA of the taken records was merged into another of the same peer and identities:
       * one IKE SA per peer is renegotiated, carrying the Child SAs of both.
       */
      type: 'takeover:merged'
      /** The DVIPA. */
      dvipa: Dvipa
      /** The phase 1 record merged. */
      phase1Id: string
      /** The phase 1 record it was merged into. */
      into: string
      /** `no-child-sa` (it had none) or `same-peer` (an older IKE SA of the same peer). */
      reason: 'no-child-sa' | 'same-peer'
      /** The Child SAs it brought along. */
      childSas: number
    }
  | {
      /** A takeover completed. */
      type: 'takeover:completed'
      /** What it did. */
      report: TakeoverReport
    }
  | {
      /** A takeover failed after claiming; the DVIPA is released for the next backup. */
      type: 'takeover:failed'
      /** The DVIPA. */
      dvipa: Dvipa
      /** The error's name and message. */
      error: string
    }
  | {
      /** A failed renegotiation was retried. */
      type: 'renegotiation:retried'
      /** The DVIPA. */
      dvipa: Dvipa
      /** The phase 1 record being renegotiated. */
      phase1Id: string
      /** The attempt number (2 for the first retry). */
      attempt: number
      /** Whether this attempt succeeded. */
      succeeded: boolean
    }
  | {
      /** A new connection was distributed to a target. */
      type: 'connection:created'
      /** The connection. */
      connection: ConnectionRecord
    }
  | {
      /** A connection had no packet for the idle time and was removed. */
      type: 'connection:expired'
      /** The connection. */
      connection: ConnectionRecord
    }
  | {
      /** A connection was re-routed through this node to its old target. */
      type: 'connection:rerouted'
      /** The connection. */
      connection: ConnectionRecord
    }
  | {
      /** Targets were told of the new owner. */
      type: 'targets:notified'
      /** The DVIPA. */
      dvipa: Dvipa
      /** The targets told. */
      targets: NodeId[]
      /** The epoch in the notice. */
      epoch: number
    }
  | {
      /** Deletes for a failed owner's SAs were left in its mailbox. */
      type: 'deletes:sent'
      /** The DVIPA. */
      dvipa: Dvipa
      /** The failed owner. */
      to: NodeId
      /** IKE SAs to delete. */
      ikeSas: number
      /** Child SAs to delete. */
      childSas: number
    }
  | {
      /** This node found deletes in its mailbox and applied them. */
      type: 'deletes:applied'
      /** The DVIPA they concern. */
      dvipa: Dvipa
      /** The node that sent them. */
      from: NodeId
      /** IKE SAs deleted. */
      ikeSas: number
      /** Child SAs removed. */
      childSas: number
    }

/** A distribution processor's view of one DVIPA. */
export interface DvipaStatus {
  /** The DVIPA. */
  dvipa: Dvipa
  /** This node's role for it. */
  role: DvipaRole
  /** The epoch this node knows. */
  epoch: number
  /** The owner this node knows. */
  owner: NodeId | undefined
  /** IKE SAs this node holds for it (0 unless it owns it). */
  ikeSas: number
  /** Child SAs this node holds for it. */
  childSas: number
  /** Connections in its routing table. */
  connections: number
}

/** Packet counters of a distribution processor. */
export interface DistributionCounters {
  /** ESP packets decrypted and forwarded to a target (or handled locally). */
  inbound: number
  /** Packets from targets encrypted and sent to a peer. */
  outbound: number
  /** Packets dropped: by the ESP engine, for a stale epoch, or with no route to a target. */
  dropped: number
  /** Packets from targets refused because this node does not own the DVIPA (any more). */
  notOwner: number
  /** Coupling-store writes that failed for another reason than a newer epoch (they are retried by the next change). */
  storeErrors: number
  /** Times the store held a lower epoch than this node had seen (the store lost data): an alarm. */
  epochRegressions: number
}

/**
 * A distribution processor: owns or backs up DVIPAs, terminates IKE and ESP on them, distributes
 * connections to targets, and runs the takeover when the owner of a DVIPA it backs up fails.
 */
export interface DistributionProcessor extends Startable {
  /** This node's id. */
  readonly id: NodeId
  /** Events; completes on `stop()`. */
  readonly events$: Observable<DistributionEvent>
  /** The status of every DVIPA this node owns or backs up; replays the latest to new subscribers. */
  readonly status$: Observable<DvipaStatus[]>

  /**
   * Takes a DVIPA over from `previousOwner` now (steps 4 to 12), as the failure detector would.
   * A call while a takeover of the same DVIPA runs returns that takeover's result.
   *
   * Emits `takeover:started`, a `takeover:step` as each step ends, `ownership:claimed` after the
   * claim (a better-ranked live backup is given `rankDelayMs` first), `takeover:renegotiated` per
   * peer, `connection:rerouted`, `targets:notified`, `deletes:sent`
   * and finally `takeover:completed` with the report. A lost claim emits `takeover:stood-down`;
   * a step that throws after the claim emits `takeover:failed` and releases the DVIPA.
   *
   * @param dvipa - a DVIPA this node backs up
   * @param previousOwner - the owner it replaces; the claim fails if the store names another
   * @param options - `signal` aborts the call before it starts
   * @returns the report: step timings, renegotiated and failed peers, corrupt records
   * @throws TakeoverError when this node does not back up the DVIPA, another node owns or
   *   claimed it first, or the claim's compare-and-set lost
   * @throws AbortError when the signal is already aborted
   * @throws StoreUnavailableError (or another store error) when a step after the claim fails;
   *   the DVIPA is then released
   */
  takeover(dvipa: Dvipa, previousOwner: NodeId, options?: AbortOptions): Promise<TakeoverReport>

  /**
   * The connection routing table of a DVIPA this node owns.
   *
   * @param dvipa - the DVIPA
   */
  connections(dvipa: Dvipa): ConnectionRecord[]

  /** Packet counters (a copy). */
  counters(): DistributionCounters
}
