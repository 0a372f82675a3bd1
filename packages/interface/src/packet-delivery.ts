import type { Observable } from 'rxjs'
import type { Startable } from './startable.js'

/**
 * Where a target stack hands the cleartext packets of its connections when no built-in
 * application takes them: for example its host's kernel through a TUN device that holds the
 * service addresses, so that unmodified applications serve. The packets it emits are the
 * replies (whole IP packets sourced from a service address), which the target stack sends to
 * the DVIPA's owner.
 */
export interface PacketDelivery extends Startable {
  /** Packets from the host for the DVIPA's peers, one whole IP packet each; completes on `stop()`. */
  readonly packets$: Observable<Uint8Array>

  /**
   * Hands one inbound IP packet to the host. Never throws: a packet the host refuses is
   * dropped and counted.
   *
   * @param packet - a whole IPv4 or IPv6 packet
   */
  deliver(packet: Uint8Array): void
}
