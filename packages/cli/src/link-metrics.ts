import { UdpClusterLink } from '@vipsec/cluster-link-udp'
import type { VipsecNode } from '@vipsec/container'
import {
  HeartbeatFailureDetector,
  ThreadedHeartbeatFailureDetector
} from '@vipsec/detector-heartbeat'
import { TOKENS } from '@vipsec/interface'
import { Counter, type Registry } from 'prom-client'

interface NetworkCounters {
  sent: number
  received: number
  dropped: Record<string, number>
}

function register(
  registry: Registry,
  prefix: string,
  what: string,
  counters: () => NetworkCounters
): void {
  const registers = [registry]
  new Counter({
    name: `vipsec_${prefix}_total`,
    help: `${what} sent and accepted`,
    labelNames: ['kind'],
    registers,
    collect() {
      const c = counters()
      this.reset()
      this.inc({ kind: 'sent' }, c.sent)
      this.inc({ kind: 'received' }, c.received)
    }
  })
  new Counter({
    name: `vipsec_${prefix}_dropped_total`,
    help: `${what} received and dropped, by reason`,
    labelNames: ['reason'],
    registers,
    collect() {
      this.reset()
      for (const [reason, n] of Object.entries(counters().dropped)) this.inc({ reason }, n)
    }
  })
}

/**
 * Registers the metrics of a node's cluster network, read at scrape time: frames of the cluster
 * link and heartbeats sent, received (`vipsec_link_frames_total{kind}`,
 * `vipsec_heartbeats_total{kind}`), and dropped by reason (forged, replayed, too old, unknown
 * key, ...: `vipsec_link_frames_dropped_total{reason}`, `vipsec_heartbeats_dropped_total{reason}`).
 * Parts that are not the built-in link or heartbeat detector have none.
 *
 * @param registry - the node's registry
 * @param node - the node
 * @returns whether the cluster link's metrics were registered
 */
export function addClusterNetworkMetrics(registry: Registry, node: VipsecNode): boolean {
  const link = node.has(TOKENS.ClusterLink) ? node.get(TOKENS.ClusterLink) : undefined
  if (link instanceof UdpClusterLink)
    register(registry, 'link_frames', 'Cluster-link frames', () => link.counters())
  const detector = node.has(TOKENS.FailureDetector) ? node.get(TOKENS.FailureDetector) : undefined
  if (
    detector instanceof HeartbeatFailureDetector ||
    detector instanceof ThreadedHeartbeatFailureDetector
  ) {
    register(registry, 'heartbeats', 'Heartbeats', () => detector.counters())
  }
  return link instanceof UdpClusterLink
}
