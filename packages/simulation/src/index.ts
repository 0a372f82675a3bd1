/**
 * A whole vipsec cluster in one process, for tests, benchmarks and the demo:
 * {@link SimulatedCluster} runs distribution processors, targets and remote IPsec peers (vipsec's
 * own IKE initiators with their own ESP engines) on a virtual network and a virtual clock, with
 * continuous traffic and fault injection (crash, restart, partition, packet loss). The same
 * adapters run in a real cluster; only the network and the clock are simulated.
 *
 * @example Kill the primary and watch the takeover
 * ```ts
 * import { SimulatedCluster } from '@vipsec/simulation'
 *
 * const cluster = new SimulatedCluster({ dps: 3, targets: 3, peers: 4 })
 * await cluster.start()
 * cluster.startTraffic()
 * await cluster.advance(1000)
 * await cluster.crash('dp-1')
 * await cluster.advance(3000) // dp-2 detects, claims epoch 2 and renegotiates with every peer
 * console.log(cluster.ownership()?.owner, cluster.traffic())
 * await cluster.stop()
 * ```
 *
 * @packageDocumentation
 */
export {
  CLUSTER_IDENTITY,
  DVIPA,
  PHASE1,
  PHASE2,
  SERVICE_ADDRESS,
  SERVICE_PORT,
  SimulatedCluster,
  innerAddress,
  outerAddress,
  peerIdentity,
  type ClusterEvent,
  type PeerTraffic,
  type SimDp,
  type SimPeer,
  type SimTarget,
  type SimulatedClusterOptions,
  type SimulationHooks,
  type TrafficTotals
} from './cluster.js'
export * from './chaos/index.js'
