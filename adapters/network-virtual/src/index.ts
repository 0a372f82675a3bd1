/**
 * A simulated IP network for vipsec, in one process: {@link VirtualNetwork} routes each address
 * to the node that acquired it last, carries UDP datagrams with latency on an injected clock,
 * and loses, duplicates or partitions them on request. Each node gets a
 * {@link VirtualNetworkAdapter} (the `NetworkAdapter` contract), so the same node code that runs
 * on Linux runs here, deterministically under a `VirtualClock`.
 *
 * @example Moving an address between two nodes
 * ```ts
 * import { VirtualClock } from '@vipsec/clock'
 * import { VirtualNetwork } from '@vipsec/network-virtual'
 *
 * const clock = new VirtualClock()
 * const net = new VirtualNetwork({ clock }, { latencyMs: 0.2 })
 * const a = net.attach('dp-1')
 * const b = net.attach('dp-2')
 * await a.start(); await b.start()
 * await a.acquireAddress('10.0.0.100')
 * await b.acquireAddress('10.0.0.100') // the DVIPA now routes to dp-2
 * ```
 *
 * @packageDocumentation
 */
export {
  VirtualNetwork,
  virtualNetwork,
  type TrafficEvent,
  type VirtualDropReason,
  type VirtualNetworkComponents,
  type VirtualNetworkInit,
  type VirtualNetworkStats
} from './virtual-network.js'
export { VirtualNetworkAdapter, type SentCounters } from './virtual-network-adapter.js'
