import { FrameGuard, type ClusterKey } from '@vipsec/cluster-link-udp'

/** The two bytes that start every heartbeat: `VH`. */
export const HEARTBEAT_MAGIC = [0x56, 0x48] as const

/** Heartbeats are this long at most (a header and a tag; node ids are up to 255 bytes). */
export const MAX_HEARTBEAT_BYTES = 25 + 255 + 16

/** A decoded heartbeat. */
export interface Heartbeat {
  /** The sending node. */
  node: string
  /** Identifies one run of the sender: a restarted node has a higher one. */
  incarnation: number
  /** Its sequence number within the incarnation, increasing by one per heartbeat. */
  sequence: number
}

/**
 * The frame guard of heartbeats: a heartbeat is a cluster frame with magic `VH` and an empty
 * payload, whose counter is the heartbeat's sequence number. Its tag (AES-256-GCM over the
 * header) is made under a key derived from the cluster key for heartbeats, the sender and its
 * incarnation, so a heartbeat can never pass for a link frame or the reverse.
 *
 * @param keys - the cluster keys (the sending one first), or none for insecure mode
 */
export function heartbeatGuard(keys: readonly ClusterKey[]): FrameGuard {
  return new FrameGuard({ magic: HEARTBEAT_MAGIC, purpose: 'heartbeat', keys, windowSize: 32 })
}
