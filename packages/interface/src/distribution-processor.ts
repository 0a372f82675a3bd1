import type { Observable } from 'rxjs'
import type { AbortOptions } from './abort.js'
import type { Dvipa, NodeId } from './addressing.js'
import type { IkeErrorKind } from './errors.js'
import type { ConnectionRecord } from './records.js'
import type { Startable } from './startable.js'

/** The steps of a takeover, in the order they run (ARCHITECTURE.md steps 4 to 12). */
export type TakeoverStep =
  | 'detect'
  | 'claim'
  | 'read-and-clear'
  | 'renegotiate'
  | 'install-filters'
  | 'take-address'
  | 'notify-targets'
  | 'localize-connections'
  | 'write-records'
  | 'send-deletes'

/** How long one step of a takeover took. */
export interface StepTiming {
  /** The step. */
  step: TakeoverStep
  /** Monotonic ms at which it started. */
  startedAt: number
  /** Its duration in ms. */
  durationMs: number
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
  /** IKE SAs that could not be renegotiated, with the reason. */
  failed: {
    /** The phase 1 record that failed. */
    phase1Id: string
    /** Why. */
    reason: IkeErrorKind
  }[]
  /** Connections re-routed through this node. */
  connections: number
  /** Total duration in ms, detection to deletes sent. */
  durationMs: number
}

/** The role a distribution processor has for a DVIPA. */
export type DvipaRole = 'owner' | 'backup' | 'taking-over' | 'stood-down'

/** Events of a distribution processor. */
export type DistributionEvent =
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
      /** A takeover began. */
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
      /** A takeover completed. */
      type: 'takeover:completed'
      /** What it did. */
      report: TakeoverReport
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
   *
   * @throws TakeoverError when this node may not or could not claim the DVIPA
   */
  takeover(dvipa: Dvipa, previousOwner: NodeId, options?: AbortOptions): Promise<TakeoverReport>

  /**
   * The connection routing table of a DVIPA this node owns.
   *
   * @param dvipa - the DVIPA
   */
  connections(dvipa: Dvipa): ConnectionRecord[]
}
