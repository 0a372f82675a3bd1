import type { Observable } from 'rxjs'
import type { AbortOptions } from './abort.js'
import type { Endpoint } from './addressing.js'
import type { Startable } from './startable.js'

/** A datagram received on a {@link UdpEndpoint}. */
export interface Datagram {
  /** The payload. */
  data: Uint8Array
  /** The sender. */
  from: Endpoint
}

/** A bound UDP socket. */
export interface UdpEndpoint {
  /** The local address and port it is bound to. */
  readonly local: Endpoint
  /** Datagrams received; completes when closed. */
  readonly datagrams$: Observable<Datagram>
  /**
   * Sends a datagram; errors are counted by the adapter, not thrown (datagrams are best effort).
   *
   * @param data - the payload
   * @param to - the destination
   */
  send(data: Uint8Array, to: Endpoint): void
  /** Closes the socket. */
  close(): Promise<void>
}

/** Events of a network adapter. */
export type NetworkEvent =
  | {
      /** This node now holds the address. */
      type: 'address:acquired'
      /** The address. */
      address: string
    }
  | {
      /** This node no longer holds the address. */
      type: 'address:released'
      /** The address. */
      address: string
    }

/**
 * Moves addresses between nodes and opens UDP sockets on them: `ip addr` and gratuitous ARP on
 * Linux, a re-pointed route in the virtual network of a simulation.
 */
export interface NetworkAdapter extends Startable {
  /** Address events; completes on `stop()`. */
  readonly events$: Observable<NetworkEvent>

  /** Makes this node answer for `address` (and announces it). */
  acquireAddress(address: string, options?: AbortOptions): Promise<void>

  /** Stops answering for `address`. */
  releaseAddress(address: string, options?: AbortOptions): Promise<void>

  /** Opens a UDP socket bound to `local`. */
  openUdp(local: Endpoint, options?: AbortOptions): Promise<UdpEndpoint>
}
