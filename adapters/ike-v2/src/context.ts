/**
 * What the exchange tasks see of the service: its components, options, counters, SA table and
 * the ways to send and to report.
 *
 * @module
 */
import type {
  Clock,
  Endpoint,
  EspEngine,
  IkeCounters,
  IkeDropReason,
  IkeEvent,
  IkeStateSink,
  RandomSource
} from '@vipsec/interface'
import type { ResolvedInit } from './config.js'
import type { IkeFragmentCounters } from './fragments.js'
import type { IkeSa } from './ike-sa.js'
import type { KeyExchangePool } from './key-pool.js'
import type { WarmCounters } from './task-manager.js'

/** The service as the tasks use it. */
export interface IkeContext {
  /** Time. */
  readonly clock: Clock
  /** Randomness. */
  readonly random: RandomSource
  /** Ephemeral key-exchange values made ahead of time, if the service was given a pool. */
  readonly keyExchanges?: KeyExchangePool | undefined
  /** The ESP engine. */
  readonly engine: EspEngine
  /** Options with defaults applied. */
  readonly init: ResolvedInit
  /** Retransmission timing. */
  readonly retransmit: ResolvedInit['retransmit']
  /** Counters (mutable). */
  readonly stats: IkeCounters & { fragments: IkeFragmentCounters; warm: WarmCounters }
  /** Warm mode: where each key change is recorded before the new keys carry traffic. */
  readonly stateSink?: IkeStateSink
  /** The local address of the port-500 socket. */
  readonly localAddress: string
  /** Sends a message of an SA to its peer (port 4500 with the non-ESP marker once switched). */
  send(sa: IkeSa, packet: Uint8Array): void
  /** Sends a message outside any SA (stateless responses). */
  sendTo(packet: Uint8Array, to: Endpoint, natT: boolean): void
  /** Counts a dropped datagram. */
  drop(reason: IkeDropReason): void
  /** Emits an event. */
  emit(event: IkeEvent): void
  /** Adds an SA to the table (by its local SPI). */
  register(sa: IkeSa): void
  /** Removes an SA from the table. */
  unregister(sa: IkeSa): void
  /** Every SA in the table. */
  sas(): IkeSa[]
  /** A fresh IKE SPI (8 bytes, non-zero, unused). */
  newIkeSpi(): Uint8Array
  /** A fresh ESP SPI (256 to 2^32-1, unused). */
  newEspSpi(): number
  /** Returns an ESP SPI once its Child SA is gone. */
  releaseEspSpi(spi: number): void
  /** Arms the timers of an established SA (keep-alive, liveness, rekey); also after an IKE rekey. */
  armTimers(sa: IkeSa): void
  /** Deletes an SA locally (no message): removes its Child SAs, closes it, emits events. */
  destroy(sa: IkeSa, reason: 'local' | 'remote' | 'dead-peer' | 'initial-contact' | 'expired'): void
}
