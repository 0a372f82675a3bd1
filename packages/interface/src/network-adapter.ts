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

  /**
   * Makes this node answer for `address` and announces it (gratuitous ARP on Linux), so that
   * datagrams to it reach this node from now on. Emits `address:acquired`.
   *
   * @param address - the address (a DVIPA or a node address)
   * @param options - `signal` aborts the call
   * @throws AbortError when the signal is aborted
   */
  acquireAddress(address: string, options?: AbortOptions): Promise<void>

  /**
   * Optional: gets ready what acquiring `address` needs that can be had before it is needed (on
   * Linux with `holdAddresses: 'process'`, the device that will hold it), so that a takeover's
   * {@link acquireAddress} does only the part that cannot wait. The node calls it for every
   * DVIPA it may have to take over. Idempotent; answers nothing for `address` yet. Failing is
   * not fatal: `acquireAddress` does what was not done.
   *
   * @param address - the address
   * @param options - `signal` aborts the call
   */
  prepareAddress?(address: string, options?: AbortOptions): Promise<void>

  /**
   * Stops answering for `address`; sockets bound to it receive nothing more. Emits
   * `address:released`.
   *
   * @param address - the address
   * @param options - `signal` aborts the call
   * @throws AbortError when the signal is aborted
   */
  releaseAddress(address: string, options?: AbortOptions): Promise<void>

  /**
   * Opens a UDP socket bound to `local` (port 0 picks a free port; see `UdpEndpoint.local`).
   *
   * @param local - the address and port to bind
   * @param options - `signal` aborts the call
   * @throws InvalidParametersError when the port is already bound on that address
   * @throws AbortError when the signal is aborted
   */
  openUdp(local: Endpoint, options?: AbortOptions): Promise<UdpEndpoint>
}
