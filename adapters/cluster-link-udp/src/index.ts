/**
 * The vipsec cluster link over UDP: distribution processors and targets exchange cleartext
 * packets of distributed connections, ownership notices and heartbeats as compact binary frames,
 * optionally authenticated with a cluster key. It runs on any `NetworkAdapter`: the Linux one in
 * a real cluster, the virtual one in a simulation.
 *
 * @example Two nodes on a virtual network
 * ```ts
 * import { UdpClusterLink } from '@vipsec/cluster-link-udp'
 *
 * const dp = new UdpClusterLink({ network: dpNetwork }, {
 *   node: 'dp-1',
 *   local: { address: '10.9.0.1', port: 7400 },
 *   peers: { 'target-1': { address: '10.9.0.11', port: 7400 } }
 * })
 * await dp.start()
 * await dp.send('target-1', { type: 'ownership:notice', dvipa: '10.0.0.100', owner: 'dp-1', epoch: 1 })
 * ```
 *
 * @packageDocumentation
 */
export { decodeFrame, encodeFrame, type FrameRejection } from './codec.js'
export {
  UdpClusterLink,
  udpClusterLink,
  type ClusterLinkCounters,
  type UdpClusterLinkComponents,
  type UdpClusterLinkInit
} from './udp-cluster-link.js'
