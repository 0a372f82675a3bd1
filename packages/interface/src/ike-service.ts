import type { Observable } from 'rxjs'
import type { AbortOptions } from './abort.js'
import type { Endpoint, TrafficSelector } from './addressing.js'
import type { IkeErrorKind } from './errors.js'
import type {
  Identity,
  IkeProposal,
  IkeSaId,
  Phase1Policy,
  Phase1Record,
  Phase2Policy,
  Phase2Record
} from './records.js'
import type { Startable } from './startable.js'
import type { UdpEndpoint } from './network-adapter.js'

/** What to set up with a peer: an IKE SA and its first Child SA. */
export interface IkeConnectRequest {
  /** The local IKE endpoint (the DVIPA, port 500). */
  local: Endpoint
  /** The peer's IKE endpoint. */
  peer: Endpoint
  /** This side's identity (its credentials come from local configuration). */
  localIdentity: Identity
  /** The identity the peer must prove. */
  remoteIdentity: Identity
  /** Phase 1 policy. */
  phase1: Phase1Policy
  /** The first Child SA. */
  child: {
    /** Phase 2 policy. */
    policy: Phase2Policy
    /** Tunnel or transport mode. */
    mode: 'tunnel' | 'transport'
    /** Proposed local selectors. */
    local: TrafficSelector[]
    /** Proposed remote selectors. */
    remote: TrafficSelector[]
  }
  /** Send INITIAL_CONTACT (RFC 7296 section 2.4): the peer deletes older IKE SAs of these identities. */
  initialContact?: boolean
  /** Force UDP encapsulation (port 4500) even without a NAT. */
  forceEncapsulation?: boolean
}

/** An established IKE SA and its Child SAs, as the records that describe them. */
export interface IkeSaRecords {
  /** The IKE SA. */
  phase1: Phase1Record
  /** Its Child SAs. */
  phase2: Phase2Record[]
}

/** The outcome of renegotiating one IKE SA with its Child SAs from coupling-store records. */
export type RenegotiationOutcome =
  | {
      /** Renegotiated and installed. */
      status: 'renegotiated'
      /** The old records. */
      previous: IkeSaRecords
      /** The records of the new SAs. */
      current: IkeSaRecords
      /** Child SAs of `previous` that could not be renegotiated (the IKE SA and the others were). */
      failedChildren: {
        /** The old record. */
        previous: Phase2Record
        /** Why. */
        reason: IkeErrorKind
        /** Details. */
        message: string
      }[]
    }
  | {
      /** Not renegotiated. */
      status: 'failed'
      /** The old records. */
      previous: IkeSaRecords
      /** Why. */
      reason: IkeErrorKind
      /** Details. */
      message: string
    }

/**
 * One IKE SA with its Child SAs as an heir needs them to carry on without a handshake (warm
 * takeover): the records, and the engine's secret state (keys, message IDs, what the peer
 * announced) in the engine's own versioned encoding. It holds keys: a distribution processor
 * writes it to the coupling store only sealed under the cluster key, never as it is.
 */
export interface IkeSaState {
  /** The records of the IKE SA and its Child SAs. */
  records: IkeSaRecords
  /** The engine's serialised state; only an engine of the same kind reads it. */
  secret: Uint8Array
  /**
   * Whether the peer announced `IKEV2_MESSAGE_ID_SYNC_SUPPORTED` (RFC 6311): only such an IKE SA
   * can be adopted.
   */
  midSync: boolean
}

/** Where one adopted Child SA's ESP sequence numbers go on (see {@link AdoptionRequest}). */
export interface AdoptedSequences {
  /** The highest outbound number the previous owner may have used; the next one is one more. */
  outbound: bigint
  /** The highest inbound number recorded as received: the anti-replay window starts there. */
  inbound: bigint
  /** The highest outbound number the heir has reserved: the SA's `sequenceLimit`. */
  limit?: bigint
}

/** What a state sink may answer (see {@link IkeStateSink}). */
export interface IkeStateSinkResult {
  /** The outbound sequence limit of each new Child SA, by phase 2 id. */
  sequenceLimits?: Record<string, bigint>
}

/** What an heir adopts: one IKE SA's state, and where its Child SAs' sequence numbers go on. */
export interface AdoptionRequest {
  /** The state the previous owner recorded. */
  state: IkeSaState
  /**
   * Per Child SA, by phase 2 record id. `outbound`: the highest ESP sequence number the
   * previous owner may have used (the end of its last reserved block); the next packet carries
   * one more. `inbound`: the highest number recorded as received; the anti-replay window starts
   * there. `limit`: the highest outbound number the heir has reserved, installed as the
   * SA's `sequenceLimit`. A Child SA without an entry is not adopted (the outcome lists it).
   */
  sequences: Record<string, AdoptedSequences>
}

/** The outcome of adopting one IKE SA with its Child SAs (a warm takeover's step 6). */
export type AdoptionOutcome =
  | {
      /** Installed as it was, and the message IDs synchronised with the peer (RFC 6311). */
      status: 'synced'
      /** The records, unchanged: same SPIs, keys and ids. */
      records: IkeSaRecords
      /** The message IDs the IKE SA goes on with, as agreed with the peer. */
      messageIds: {
        /** Of the next request this end sends. */
        initiating: number
        /** Of the next request this end expects from the peer. */
        responding: number
      }
      /** Child SAs that could not be adopted (no sequence numbers given); the others were. */
      failedChildren: Phase2Record[]
    }
  | {
      /** Not adopted: nothing of it is installed, so the caller can renegotiate it. */
      status: 'failed'
      /** The records of the state. */
      previous: IkeSaRecords
      /**
       * Why: `UNSUPPORTED` when the peer never announced RFC 6311, `INVALID_STATE` when the
       * state cannot be read, `TIMEOUT` when the peer did not answer the sync, or the error
       * notify it answered with.
       */
      reason: IkeErrorKind | 'UNSUPPORTED' | 'INVALID_STATE'
      /** Details. */
      message: string
      /**
       * True when its Child SAs were installed (and may have sent under the given limits) before
       * the failure removed them again, as when the sync failed: the caller keeps their
       * reservations, so that a later heir starts past what they may have sent.
       */
      installed?: boolean
    }

/** Where a warm-mode IKE service records each IKE SA's new state (see `setStateSink`). */
export type IkeStateSink = (state: IkeSaState) => Promise<void | IkeStateSinkResult>

/** Events of an IKE service. */
export type IkeEvent =
  | {
      /** An IKE SA was established. */
      type: 'ike:established'
      /** Its record. */
      phase1: Phase1Record
    }
  | {
      /** An IKE SA was rekeyed: `previous` is replaced by `phase1`. */
      type: 'ike:rekeyed'
      /** The old SPIs. */
      previous: IkeSaId
      /** The new record. */
      phase1: Phase1Record
    }
  | {
      /** An IKE SA was deleted (by either side, or because the peer was declared dead). */
      type: 'ike:deleted'
      /** Its SPIs. */
      ikeSaId: IkeSaId
      /** Why. */
      reason: 'local' | 'remote' | 'dead-peer' | 'initial-contact' | 'expired'
    }
  | {
      /** A Child SA was established and installed in the ESP engine. */
      type: 'sa:established'
      /** The parent IKE SA's record id. */
      phase1Id: string
      /** Its record. */
      phase2: Phase2Record
    }
  | {
      /** A Child SA was rekeyed. */
      type: 'sa:rekeyed'
      /** The old record id. */
      previousId: string
      /** The new record. */
      phase2: Phase2Record
    }
  | {
      /** A Child SA was deleted. */
      type: 'sa:deleted'
      /** Its record id. */
      phase2Id: string
      /** Why. */
      reason: 'local' | 'remote' | 'expired' | 'parent-deleted'
    }
  | {
      /** An exchange failed. */
      type: 'ike:failed'
      /** The peer. */
      peer: Endpoint
      /** Why. */
      reason: IkeErrorKind
      /** Details. */
      message: string
      /** This end's identity (its value), when known: configured, or the one the peer asked for. */
      localId?: string
      /** The peer's identity (its value), when known: the one it claimed, or the one expected. */
      remoteId?: string
    }

/**
 * Why an IKE service dropped an incoming datagram; each reason has a counter. `unprotected`: a
 * message of an IKE SA with keys that carries no SK payload, or one too short to hold an IV and
 * an ICV — it cannot be authenticated (RFC 7296 section 2.21) and is never answered.
 */
export type IkeDropReason =
  | 'malformed'
  | 'unknown-sa'
  | 'invalid-message-id'
  | 'icv-failure'
  | 'unprotected'
  | 'half-open-limit'
  | 'unexpected'

/** Message counters of an IKE service. */
export interface IkeCounters {
  /** IKE messages received (before any check). */
  received: number
  /** IKE messages sent, retransmissions included. */
  sent: number
  /** Requests retransmitted after a timeout. */
  retransmitted: number
  /** Cached responses sent again for retransmitted requests. */
  responsesReplayed: number
  /** COOKIE notifies sent (RFC 7296 section 2.6). */
  cookiesSent: number
  /** Unprotected error notifies not sent because their rate limit was reached. */
  notifiesSuppressed: number
  /** Datagrams dropped, by reason. */
  dropped: Record<IkeDropReason, number>
}

/**
 * An IKEv2 (RFC 7296) service: it answers and initiates exchanges on its endpoints and installs
 * the Child SAs it negotiates into an `EspEngine`. Credentials come only from local configuration.
 * Malformed messages are dropped and counted, never thrown out of the service.
 */
export interface IkeService extends Startable {
  /** SA events; completes on `stop()`. */
  readonly events$: Observable<IkeEvent>

  /**
   * Establishes an IKE SA and its first Child SA as initiator. When the peer accepts the IKE SA
   * but refuses the Child SA (NO_PROPOSAL_CHOSEN, TS_UNACCEPTABLE...), the IKE SA is deleted and
   * the Child SA's error is thrown. The Child SA's selectors in the result are the ones the
   * responder narrowed them to.
   *
   * @throws IkeProtocolError when the peer refuses or does not answer (kind `TIMEOUT`)
   */
  connect(request: IkeConnectRequest, options?: AbortOptions): Promise<IkeSaRecords>

  /**
   * The takeover's renegotiation (step 6): for each IKE SA in `records`, sets up a new IKE SA with
   * the same identities, peer and policy, sending INITIAL_CONTACT, and new Child SAs with the
   * same selectors and crypto policy; installs them in the ESP engine. Never rejects for one
   * peer's failure: each IKE SA gets an outcome, in the order of `records`, and a Child SA that
   * alone fails is listed in its outcome's `failedChildren`.
   *
   * Because INITIAL_CONTACT makes the peer drop every other IKE SA of the same identities, only
   * the first IKE SA of each (identities, peer) group carries it and the rest of that group follow
   * it one by one; different groups run in parallel.
   */
  renegotiate(records: IkeSaRecords[], options?: AbortOptions): Promise<RenegotiationOutcome[]>

  /**
   * Rekeys a Child SA with CREATE_CHILD_SA.
   *
   * @throws NotFoundError | IkeProtocolError
   */
  rekeyChildSa(phase2Id: string, options?: AbortOptions): Promise<Phase2Record>

  /**
   * Rekeys an IKE SA with CREATE_CHILD_SA.
   *
   * @throws NotFoundError | IkeProtocolError
   */
  rekeyIkeSa(phase1Id: string, options?: AbortOptions): Promise<Phase1Record>

  /**
   * Deletes a Child SA (INFORMATIONAL with a Delete payload) and removes it from the ESP engine.
   *
   * @throws NotFoundError
   */
  deleteChildSa(phase2Id: string, options?: AbortOptions): Promise<void>

  /**
   * Deletes an IKE SA with its Child SAs.
   *
   * @throws NotFoundError
   */
  deleteIkeSa(phase1Id: string, options?: AbortOptions): Promise<void>

  /**
   * Checks that the peer of an IKE SA is alive with an empty INFORMATIONAL request (RFC 7296
   * section 2.4). When the peer does not answer, the IKE SA is deleted (`ike:deleted` with reason
   * `dead-peer`) and the call rejects with `IkeProtocolError` of kind `TIMEOUT`.
   *
   * @throws NotFoundError | IkeProtocolError
   */
  checkLiveness(phase1Id: string, options?: AbortOptions): Promise<void>

  /**
   * Warm mode: the state of an established IKE SA and its Child SAs, for the coupling store
   * (sealed). Engines without warm mode leave it out.
   *
   * @throws NotFoundError
   */
  exportState?(phase1Id: string): IkeSaState

  /**
   * Warm takeover (step 6 without handshakes): installs each IKE SA and its Child SAs as they
   * were (same SPIs and keys; ESP sequence numbers going on from `sequences`) and, for an IKE SA
   * whose peer announced RFC 6311, synchronises the message IDs: an INFORMATIONAL with message ID
   * 0 carrying `IKEV2_MESSAGE_ID_SYNC`, answered by the peer with its own. Then the IKE SA carries
   * on (DPD, rekeys, deletes) as if it had been made here. The Child SAs carry traffic from their
   * install on, which need not wait for the sync (an engine may install every request's first and
   * synchronise after). Never rejects for one peer's failure: each request gets an outcome, in
   * order; an IKE SA that fails leaves nothing installed, for the caller to renegotiate.
   * Aborting ends the syncs still under way, as failures.
   */
  adopt?(requests: AdoptionRequest[], options?: AbortOptions): Promise<AdoptionOutcome[]>

  /**
   * Warm mode: `sink` is awaited with an IKE SA's new state whenever its keys change (IKE SA
   * established or rekeyed, Child SA established or rekeyed), before the new keys carry traffic:
   * before the new Child SAs are installed in the ESP engine, and as responder before the
   * response that completes the exchange is sent. It may answer with the outbound sequence limit
   * of each new Child SA (by phase 2 id), which the service installs as the SA's
   * `sequenceLimit`. If it rejects, the exchange goes on without limits and the service counts
   * it; the sink's owner must then treat that IKE SA's recorded state as stale. `undefined`
   * turns it off.
   */
  setStateSink?(sink: IkeStateSink | undefined): void

  /** The records of every established IKE SA and its Child SAs. */
  list(): IkeSaRecords[]

  /** Current message counters (a copy). */
  counters(): IkeCounters
}

/** The UDP sockets an IKE service works on: ports 500 and 4500 of one local address. */
export interface IkeSockets {
  /** Port 500. */
  udp500: UdpEndpoint
  /** Port 4500 (NAT traversal, shared with ESP-in-UDP). */
  udp4500: UdpEndpoint
}

/**
 * Makes an IKE service bound to given sockets. A distribution processor makes one per DVIPA
 * when it starts serving it (a backup only once it has taken the address over). It may say what
 * its engine cannot do of an IKE SA proposal (`unsupportedIn`: each encryption transform as
 * `algorithm/keyBits`, each PRF, integrity algorithm and group by name; empty when it can do all
 * of it): a distribution processor checks its configured IKE proposals with it at start, before
 * it claims or binds anything, and skips the check for a factory without it.
 */
export type IkeServiceFactory = ((sockets: IkeSockets) => IkeService) & {
  /**
   * What of an IKE SA proposal the engine cannot do; empty when it can do all of it.
   *
   * @param proposal - the proposal
   */
  unsupportedIn?(proposal: IkeProposal): string[]
}
