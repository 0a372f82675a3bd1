import { UdpClusterLink } from '@vipsec/cluster-link-udp'
import type { VipsecNode } from '@vipsec/container'
import {
  HeartbeatFailureDetector,
  ThreadedHeartbeatFailureDetector
} from '@vipsec/detector-heartbeat'
import { TOKENS } from '@vipsec/interface'
import type { Family } from './metrics.js'

/**
 * The metrics of a node's cluster network: frames of the cluster link and heartbeats sent,
 * received, and dropped by reason (forged, replayed, too old, unknown key, ...). Parts that are
 * not the built-in link or heartbeat detector have none.
 *
 * @param node - the node
 */
export function clusterNetworkFamilies(node: VipsecNode): Family[] {
  const nodeLabel = { node: node.nodeId }
  const families: Family[] = []
  const add = (
    prefix: string,
    what: string,
    c: { sent: number; received: number; dropped: Record<string, number> }
  ): void => {
    families.push(
      {
        name: `vipsec_${prefix}_total`,
        help: `${what} sent and accepted`,
        type: 'counter',
        samples: [
          { labels: { ...nodeLabel, kind: 'sent' }, value: c.sent },
          { labels: { ...nodeLabel, kind: 'received' }, value: c.received }
        ]
      },
      {
        name: `vipsec_${prefix}_dropped_total`,
        help: `${what} received and dropped, by reason`,
        type: 'counter',
        samples: Object.entries(c.dropped).map(([reason, value]) => ({
          labels: { ...nodeLabel, reason },
          value
        }))
      }
    )
  }
  const link = node.has(TOKENS.ClusterLink) ? node.get(TOKENS.ClusterLink) : undefined
  if (link instanceof UdpClusterLink) add('link_frames', 'Cluster-link frames', link.counters())
  const detector = node.has(TOKENS.FailureDetector) ? node.get(TOKENS.FailureDetector) : undefined
  if (
    detector instanceof HeartbeatFailureDetector ||
    detector instanceof ThreadedHeartbeatFailureDetector
  ) {
    add('heartbeats', 'Heartbeats', detector.counters())
  }
  return families
}
