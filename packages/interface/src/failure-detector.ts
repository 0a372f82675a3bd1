import type { Observable } from 'rxjs'
import type { Endpoint, NodeId } from './addressing.js'
import type { Startable } from './startable.js'

/** What a failure detector believes of a node. */
export type NodeHealth = 'unknown' | 'alive' | 'suspect' | 'failed'

/** Events of a failure detector. */
export type FailureDetectorEvent =
  | {
      /** A node missed its first signal(s) but is not declared failed yet. */
      type: 'node:suspect'
      /** The node. */
      node: NodeId
      /** Monotonic ms since its last signal. */
      silentMs: number
    }
  | {
      /** A node is declared failed. */
      type: 'node:failed'
      /** The node. */
      node: NodeId
      /** Monotonic ms since its last signal. */
      silentMs: number
    }
  | {
      /** A suspect or failed node was heard again. */
      type: 'node:recovered'
      /** The node. */
      node: NodeId
    }

/** A node to watch, and where its signals come from. */
export interface WatchTarget {
  /** The node. */
  node: NodeId
  /** Its heartbeat endpoint, for detectors that need one. */
  endpoint?: Endpoint
}

/**
 * Detects the failure of cluster nodes. Each watched node moves
 * `unknown -> alive -> suspect -> failed`, and back to `alive` (with `node:recovered`) when heard.
 */
export interface FailureDetector extends Startable {
  /** Health changes; completes on `stop()`. */
  readonly events$: Observable<FailureDetectorEvent>

  /**
   * The least time, ms, from a node's last sign of life to the moment this detector (on any
   * node) may declare it failed, when the detector can state it: for a lease detector, its lease
   * lifetime less one renewal interval. A distribution processor checks its `selfFenceMs` against
   * it at start: an owner must stop serving before a backup may start.
   */
  readonly minDetectionMs?: number

  /**
   * The longest time, ms, from a node's last sign of life to the moment this detector declares
   * it failed (or, for a node it has not heard yet, to the moment it has heard a live one), when
   * the detector can state it: for heartbeats, interval x multiplier; for a lease, its lifetime.
   * A distribution processor's join window at start is at least this long.
   */
  readonly detectionTimeMs?: number

  /**
   * Starts watching a node; watching one already watched updates its endpoint. The node is
   * `unknown` until first heard; from then on `events$` reports `node:suspect`, `node:failed`
   * and `node:recovered` for it.
   *
   * @param target - the node and its endpoint
   */
  watch(target: WatchTarget): void

  /**
   * Stops watching a node; no more events are emitted for it and its health becomes `unknown`.
   *
   * @param node - the node
   */
  unwatch(node: NodeId): void

  /**
   * What the detector believes of a node now (`unknown` for one not watched).
   *
   * @param node - the node
   */
  health(node: NodeId): NodeHealth
}
