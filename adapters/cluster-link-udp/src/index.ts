/**
 * The vipsec cluster link over UDP: distribution processors and targets exchange cleartext
 * packets of distributed connections, ownership notices and heartbeats as compact binary frames,
 * authenticated by default.
 *
 * Every frame carries the id of the cluster key it was made with, the sender's incarnation (one
 * per start) and a counter, and an AES-256-GCM tag over all of it; with `encrypt: true` its
 * payload is encrypted too. The AES key is derived from the cluster key for each sender and
 * incarnation, and the nonce is the counter, so no (key, nonce) pair is ever used twice. A
 * receiver keeps a replay window per peer: forged, replayed, too-old (reordered past the
 * window), stale-incarnation, unknown-key, oversized, malformed and unknown-sender frames are
 * dropped and counted by reason ({@link UdpClusterLink.counters}), and only an authenticated
 * frame moves a peer's window. A restarted peer has a higher incarnation and is accepted again;
 * frames of its earlier runs are not. A link without keys refuses to be built unless
 * `insecure: true`. Two keys can be held at once for rotation.
 *
 * Packet frames go in a compact form (the DVIPA as address bytes, no flow) only to a peer known
 * to read it: one whose current incarnation sent an authenticated link announcement (each link
 * announces itself when it starts, answers one that asks, and asks a silent peer again, less and
 * less often) or an authenticated compact frame. Any other peer, such as a node of an older
 * version during a rolling upgrade, gets the full form; a peer that restarts is asked again.
 *
 * The same {@link FrameGuard} and key format serve the heartbeats of
 * `@vipsec/detector-heartbeat`. It runs on any `NetworkAdapter`: the Linux one in a real
 * cluster, the virtual one in a simulation.
 *
 * @example Two nodes on a virtual network
 * ```ts
 * import { generateClusterKey, UdpClusterLink } from '@vipsec/cluster-link-udp'
 *
 * const key = generateClusterKey() // in a real cluster: `vipsec keygen`, one file for all nodes
 * const dp = new UdpClusterLink({ network: dpNetwork }, {
 *   node: 'dp-1',
 *   local: { address: '10.9.0.1', port: 7400 },
 *   peers: { 'target-1': { address: '10.9.0.11', port: 7400 } },
 *   keys: [key]
 * })
 * await dp.start()
 * await dp.send('target-1', { type: 'ownership:notice', dvipa: '10.0.0.100', owner: 'dp-1', epoch: 1 })
 * console.log(dp.counters().dropped) // { oversized: 0, malformed: 0, 'unknown-sender': 0, ... }
 * ```
 *
 * @packageDocumentation
 */
export {
  checkClusterKeys,
  CLUSTER_KEY_BYTES,
  decodeKeyFile,
  encodeKeyFile,
  generateClusterKey,
  MAX_CLUSTER_KEYS,
  type ClusterKey
} from './cluster-key.js'
export { decodeMessage, encodeMessage, LINK_MAGIC, messageLength, writeMessage } from './codec.js'
export { ReplayWindow, type ReplayVerdict } from './replay-window.js'
export {
  CLUSTER_FRAME_DROP_REASONS,
  emptyDropCounts,
  FRAME_TAG_BYTES,
  FrameGuard,
  nextIncarnation,
  parseFrameHeader,
  type ClusterFrameDropReason,
  type FrameGuardInit,
  type FrameHeader
} from './secure-frame.js'
export {
  UdpClusterLink,
  udpClusterLink,
  type ClusterLinkCounters,
  type UdpClusterLinkComponents,
  type UdpClusterLinkInit
} from './udp-cluster-link.js'
