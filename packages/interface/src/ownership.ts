import type { Dvipa, NodeId } from './addressing.js'

/**
 * The role of a node for one DVIPA in its ownership state machine:
 * - `joining`: it just started (or re-joins) and listens for the highest epoch and live owner
 *   known in the cluster for one join window before it may claim anything;
 * - `backup`: it serves nothing and watches the owner;
 * - `taking-over`: it waits out its rank delay, claims, or runs the takeover steps;
 * - `owner`: it holds the current epoch (and serves, unless it is confirming after a pause);
 * - `fenced`: it held the epoch but could not confirm it in time and stopped serving.
 */
export type OwnershipRole = 'joining' | 'backup' | 'taking-over' | 'owner' | 'fenced'

/** Where a node saw an epoch. */
export type EpochSource = 'store' | 'link' | 'target' | 'rejected-write' | 'mailbox' | 'claim'

/** Why an ownership transition happened. */
export type OwnershipCause =
  | 'start'
  | 'stop'
  | 'owner-failed'
  | 'released'
  | 'named-owner'
  | 'rank-delay-elapsed'
  | 'claim-won'
  | 'claim-lost'
  | 'claim-indeterminate'
  | 'claim-failed'
  | 'takeover-completed'
  | 'takeover-failed'
  | 'higher-epoch'
  | 'confirmed'
  | 'fence-deadline'
  | 'paused'
  | 'epoch-regressed'
  | 'start-failed'
  | 'joined'

/** The events of an ownership state machine (part of `DistributionEvent`). */
export type OwnershipEvent =
  | {
      /** The ownership state of a DVIPA changed on this node. */
      type: 'ownership:changed'
      /** The DVIPA. */
      dvipa: Dvipa
      /** The role before. */
      from: OwnershipRole
      /** The role after. */
      to: OwnershipRole
      /** The step of a takeover after the change, when `to` is `taking-over`. */
      step?: 'rank-delay' | 'claiming' | 'resolving' | 'running'
      /** The epoch this node knows after the change. */
      epoch: number
      /** The owner this node knows after the change, if any. */
      owner: NodeId | undefined
      /** Why. */
      cause: OwnershipCause
      /** Where the epoch that caused it was seen, for `higher-epoch`. */
      source?: EpochSource
    }
  | {
      /** An owner read its epoch back from the store (after a pause, or to end a confirmation). */
      type: 'ownership:confirmed'
      /** The DVIPA. */
      dvipa: Dvipa
      /** The epoch confirmed. */
      epoch: number
      /** Why it had to confirm before serving. */
      reason: 'paused' | 'claim-indeterminate' | 'epoch-regressed'
    }
  | {
      /** A claim's reply was lost (the call failed or timed out); the claim is resolved by reading back. */
      type: 'ownership:indeterminate'
      /** The DVIPA. */
      dvipa: Dvipa
      /** The epoch the claim expected to replace. */
      expectedEpoch: number
      /** The error's name and message. */
      error: string
    }
  | {
      /**
       * Alarm: the store holds a lower epoch for the DVIPA than this node has seen (the store lost
       * data). The cluster recovers by claiming above the highest epoch seen.
       */
      type: 'ownership:epoch-regressed'
      /** The DVIPA. */
      dvipa: Dvipa
      /** The epoch the store holds (0 when it has no ownership record at all). */
      storeEpoch: number
      /** The highest epoch this node has seen for the DVIPA. */
      highestSeen: number
    }
  | {
      /** This node paused (its timers ran late by `lateMs`): it confirms before it serves or acts on verdicts. */
      type: 'ownership:paused'
      /** The DVIPA. */
      dvipa: Dvipa
      /** How late its own timer ran, ms. */
      lateMs: number
    }
  | {
      /**
       * The owner made the store's records of a DVIPA match what it holds again: after a
       * read-and-clear at its own epoch it did not make (a duplicated request the store applied
       * late), after the store lost data (records left behind by a rollback are deleted), or
       * when its periodic audit found the store's records differ (`audit`).
       */
      type: 'ownership:records-restored'
      /** The DVIPA. */
      dvipa: Dvipa
      /** The owner's epoch. */
      epoch: number
      /** Why. */
      reason: 'replayed-take' | 'epoch-regressed' | 'audit'
    }
