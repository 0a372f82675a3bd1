import type { Observable } from 'rxjs'
import type { AbortOptions } from './abort.js'
import type { Dvipa, FiveTuple, NodeId } from './addressing.js'
import type { Startable } from './startable.js'

/** Messages carried between distribution processors and targets (the "XCF" link). */
export type ClusterMessage =
  | {
      /** A cleartext inbound packet of a distributed connection, from the owner to its target. */
      type: 'packet:inbound'
      /** The DVIPA. */
      dvipa: Dvipa
      /** The sender's epoch for the DVIPA. */
      epoch: number
      /** The connection. */
      flow: FiveTuple
      /** The inner IP packet. */
      packet: Uint8Array
    }
  | {
      /** A cleartext reply from a target, to be protected and sent by the owner. */
      type: 'packet:outbound'
      /** The DVIPA. */
      dvipa: Dvipa
      /** The epoch the target believes current. */
      epoch: number
      /** The connection. */
      flow: FiveTuple
      /** The inner IP packet. */
      packet: Uint8Array
    }
  | {
      /** An owner tells targets that it owns the DVIPA (step 9). */
      type: 'ownership:notice'
      /** The DVIPA. */
      dvipa: Dvipa
      /** The owner. */
      owner: NodeId
      /** Its epoch; targets ignore notices with an older epoch than one already seen. */
      epoch: number
    }
  | {
      /** A liveness signal. */
      type: 'heartbeat'
      /** A counter, increasing. */
      sequence: number
    }

/** A cluster message with its sender. */
export interface ClusterEnvelope {
  /** The sending node. */
  from: NodeId
  /** The message. */
  message: ClusterMessage
}

/** Transport between cluster nodes. Delivery is best effort, like the datagrams it carries. */
export interface ClusterLink extends Startable {
  /** This node's id on the link. */
  readonly localNode: NodeId
  /** Messages received; completes on `stop()`. */
  readonly messages$: Observable<ClusterEnvelope>

  /**
   * Sends a message to a node.
   *
   * @throws NotFoundError when the node is not known to the link
   */
  send(to: NodeId, message: ClusterMessage, options?: AbortOptions): Promise<void>

  /**
   * Optional: sends a message at once, without a promise, for the per-packet path (a promise
   * and a microtask per packet cost as much as the frame's encoding). Returns false when the
   * message was not sent (unknown node, link stopped, frame too long), which the link counts;
   * never throws for those.
   */
  post?(to: NodeId, message: ClusterMessage): boolean
}
