/**
 * Connections this service starts and keeps up (strongSwan's `start_action = start`): each is
 * initiated when the service starts, and again, after a delay, whenever an attempt fails or no
 * IKE SA of it is left (deleted by the peer, dead peer detection, expiry). Rekeys replace an
 * IKE SA without ending the connection, so they start nothing.
 *
 * @module
 */
import type { Clock, IkeConnectRequest, IkeEvent, TimerHandle } from '@vipsec/interface'
import type { IkeSa } from './ike-sa.js'
import { sameIdentity } from './selectors.js'

/** A connection this service initiates itself. */
export interface IkeStartConnection {
  /** Its name (for the caller's logs; unique among the connections). */
  name: string
  /** What to initiate: peer, identities, policies, the first Child SA. */
  request: IkeConnectRequest
  /**
   * `start`: initiate at start and keep up (strongSwan `start_action = start`, with
   * `close_action` / `dpd_action = start`); `none`: only answer. Default `start`.
   */
  startAction?: 'start' | 'none'
  /** The delay before initiating again after a failure or a close, in ms. Default 5000. */
  retryDelayMs?: number
}

/** What {@link KeepUp} needs of the service. */
export interface KeepUpHost {
  /** Time. */
  readonly clock: Clock
  /** Establishes an IKE SA with its first Child SA. */
  connect(request: IkeConnectRequest): Promise<unknown>
  /** The SAs in the table. */
  sas(): IkeSa[]
}

interface Kept {
  connection: IkeStartConnection
  timer?: TimerHandle
  inFlight: boolean
  attempts: number
}

/** Initiates the connections named `start` and keeps them up, until stopped. */
export class KeepUp {
  private kept: Kept[] = []
  private running = false

  constructor(
    private readonly host: KeepUpHost,
    connections: IkeStartConnection[]
  ) {
    this.kept = connections
      .filter((c) => (c.startAction ?? 'start') === 'start')
      .map((connection) => ({ connection, inFlight: false, attempts: 0 }))
  }

  /** Initiates every connection now. */
  start(): void {
    this.running = true
    for (const k of this.kept) this.initiate(k)
  }

  /** Cancels the pending attempts; what is in flight ends by itself. */
  stop(): void {
    this.running = false
    for (const k of this.kept) {
      if (k.timer !== undefined) this.host.clock.clearTimeout(k.timer)
      k.timer = undefined
    }
  }

  /** How many times each connection has been initiated, by name. */
  attempts(): Record<string, number> {
    return Object.fromEntries(this.kept.map((k) => [k.connection.name, k.attempts]))
  }

  /** Watches the service's events: an IKE SA that ends may leave a connection down. */
  onEvent(event: IkeEvent): void {
    if (!this.running || event.type !== 'ike:deleted') return
    for (const k of this.kept) if (!this.isUp(k)) this.schedule(k)
  }

  private isUp(k: Kept): boolean {
    const r = k.connection.request
    return this.host
      .sas()
      .some(
        (sa) =>
          (sa.state === 'established' || sa.state === 'init' || sa.state === 'auth') &&
          sa.remote.address === r.peer.address &&
          sa.remoteIdentity !== undefined &&
          sameIdentity(sa.remoteIdentity, r.remoteIdentity)
      )
  }

  private schedule(k: Kept): void {
    if (!this.running || k.inFlight || k.timer !== undefined) return
    k.timer = this.host.clock.setTimeout(() => {
      k.timer = undefined
      if (!this.isUp(k)) this.initiate(k)
    }, k.connection.retryDelayMs ?? 5000)
  }

  private initiate(k: Kept): void {
    if (!this.running || k.inFlight) return
    k.inFlight = true
    k.attempts++
    this.host.connect(k.connection.request).then(
      () => {
        k.inFlight = false
      },
      () => {
        k.inFlight = false
        this.schedule(k)
      }
    )
  }
}
