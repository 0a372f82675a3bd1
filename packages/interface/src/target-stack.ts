import type { Observable } from 'rxjs'
import type { Dvipa, FiveTuple, NodeId } from './addressing.js'
import type { Startable } from './startable.js'

/** A datagram or segment handed to an application on a target. */
export interface AppRequest {
  /** The connection. */
  flow: FiveTuple
  /** The transport payload. */
  payload: Uint8Array
}

/** An application on a target host: answers a payload with zero or more payloads. */
export type AppHandler = (request: AppRequest) => Uint8Array[] | Promise<Uint8Array[]>

/** Events of a target stack. */
export type TargetEvent =
  | {
      /** The target accepted an ownership notice: replies now go to `owner`. */
      type: 'owner:changed'
      /** The DVIPA. */
      dvipa: Dvipa
      /** The new owner. */
      owner: NodeId
      /** Its epoch. */
      epoch: number
    }
  | {
      /** The target ignored a notice or packet with an older epoch than it knows. */
      type: 'notice:stale-ignored'
      /** The DVIPA. */
      dvipa: Dvipa
      /** The sender. */
      from: NodeId
      /** The stale epoch. */
      epoch: number
    }

/** The owner of a DVIPA as a target knows it. */
export interface OwnerNotice {
  /** The owning node. */
  owner: NodeId
  /** Its epoch. */
  epoch: number
}

/**
 * The target host's side: it receives distributed connections from the DVIPA's owner over the
 * cluster link, hands them to registered applications, and sends replies through whichever
 * node owns the DVIPA now (the highest epoch it has been told of).
 */
export interface TargetStack extends Startable {
  /** This target's node id. */
  readonly id: NodeId
  /** Ownership and notice events; completes on `stop()`. */
  readonly events$: Observable<TargetEvent>

  /**
   * Registers an application for a protocol and port of the service address.
   *
   * @param protocol - IP protocol number (17 UDP, 6 TCP)
   * @param port - the destination port
   * @param handler - the application
   */
  register(protocol: number, port: number, handler: AppHandler): void

  /**
   * The owner and epoch this target sends a DVIPA's replies to, if it knows one.
   *
   * @param dvipa - the DVIPA
   */
  ownerOf(dvipa: Dvipa): OwnerNotice | undefined
}
