import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { VipsecNode } from '@vipsec/container'
import type { DefaultDistributionProcessor } from '@vipsec/core'
import { TOKENS, type DvipaStatus, type TakeoverReport } from '@vipsec/interface'
import { clusterNetworkFamilies } from './link-metrics.js'

/** One sample of a metric. */
export interface Sample {
  /** Its labels. */
  labels?: Record<string, string>
  /** Its value. */
  value: number
}

/** A metric family in the Prometheus text format. */
export interface Family {
  /** The metric name. */
  name: string
  /** One line of help. */
  help: string
  /** Counter or gauge. */
  type: 'counter' | 'gauge'
  /** Its samples. */
  samples: Sample[]
}

/** A running metrics server. */
export interface MetricsServer {
  /** The HTTP server. */
  server: Server
  /** The port it listens on. */
  port: number
}

const escape = (v: string): string =>
  v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')

/**
 * Renders metric families in the Prometheus text exposition format (version 0.0.4).
 *
 * @param families - the metrics
 */
export function renderPrometheus(families: Family[]): string {
  const lines: string[] = []
  for (const f of families) {
    lines.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`)
    for (const s of f.samples) {
      const labels = Object.entries(s.labels ?? {})
      const text =
        labels.length === 0 ? '' : `{${labels.map(([k, v]) => `${k}="${escape(v)}"`).join(',')}}`
      lines.push(`${f.name}${text} ${Number.isFinite(s.value) ? s.value : 0}`)
    }
  }
  return `${lines.join('\n')}\n`
}

/** What a node's metrics are made of: its parts' counters, its status and its takeovers. */
export class NodeMetrics {
  private readonly node: VipsecNode
  private status: DvipaStatus[] = []
  private readonly takeovers: TakeoverReport[] = []

  /**
   * @param node - the node built by `createNode`
   */
  constructor(node: VipsecNode) {
    this.node = node
    if (node.has(TOKENS.DistributionProcessor)) {
      const dp = node.get(TOKENS.DistributionProcessor)
      dp.status$.subscribe((s) => (this.status = s))
      dp.events$.subscribe((e) => {
        if (e.type === 'takeover:completed') this.takeovers.push(e.report)
      })
    }
  }

  /** The metrics now, as Prometheus text. */
  render(): string {
    const families: Family[] = []
    const nodeLabel = { node: this.node.nodeId }
    const counter = (name: string, help: string, samples: Sample[]): void => {
      families.push({ name, help, type: 'counter', samples })
    }
    const gauge = (name: string, help: string, samples: Sample[]): void => {
      families.push({ name, help, type: 'gauge', samples })
    }
    if (this.node.has(TOKENS.DistributionProcessor)) {
      const dp = this.node.get(TOKENS.DistributionProcessor) as DefaultDistributionProcessor
      const c = dp.counters()
      counter(
        'vipsec_packets_total',
        'Packets through the distribution processor, by direction and outcome',
        [
          {
            labels: { ...nodeLabel, direction: 'inbound', outcome: 'forwarded' },
            value: c.inbound
          },
          { labels: { ...nodeLabel, direction: 'outbound', outcome: 'sent' }, value: c.outbound },
          { labels: { ...nodeLabel, direction: 'any', outcome: 'dropped' }, value: c.dropped },
          {
            labels: { ...nodeLabel, direction: 'outbound', outcome: 'not-owner' },
            value: c.notOwner
          }
        ]
      )
      counter('vipsec_store_errors_total', 'Coupling-store writes that failed', [
        { labels: nodeLabel, value: c.storeErrors }
      ])
      for (const [name, help, pick] of [
        [
          'vipsec_dvipa_epoch',
          'The epoch this node knows for each DVIPA',
          (s: DvipaStatus) => s.epoch
        ],
        [
          'vipsec_dvipa_owned',
          '1 when this node owns the DVIPA',
          (s: DvipaStatus) => (s.role === 'owner' ? 1 : 0)
        ],
        ['vipsec_ike_sas', 'IKE SAs of the DVIPA on this node', (s: DvipaStatus) => s.ikeSas],
        ['vipsec_child_sas', 'Child SAs of the DVIPA on this node', (s: DvipaStatus) => s.childSas],
        [
          'vipsec_connections',
          'Connections in the routing table of the DVIPA',
          (s: DvipaStatus) => s.connections
        ]
      ] as const) {
        gauge(
          name,
          help,
          this.status.map((s) => ({ labels: { ...nodeLabel, dvipa: s.dvipa }, value: pick(s) }))
        )
      }
      counter('vipsec_takeovers_total', 'Takeovers this node completed', [
        { labels: nodeLabel, value: this.takeovers.length }
      ])
      const last = this.takeovers.at(-1)
      gauge(
        'vipsec_last_takeover_step_ms',
        'Duration of each step of the last takeover (detect is the silence before it)',
        (last?.steps ?? []).map((s) => ({
          labels: { ...nodeLabel, step: s.step },
          value: s.durationMs
        }))
      )
      gauge('vipsec_last_takeover_ms', 'Total duration of the last takeover, detection included', [
        { labels: nodeLabel, value: last?.durationMs ?? 0 }
      ])
      const ikes = [...dp.states.values()].flatMap((s) =>
        s.ike === undefined ? [] : [s.ike.counters()]
      )
      const sum = (pick: (x: (typeof ikes)[number]) => number): number =>
        ikes.reduce((n, x) => n + pick(x), 0)
      counter('vipsec_ike_messages_total', 'IKE messages, by kind', [
        { labels: { ...nodeLabel, kind: 'received' }, value: sum((x) => x.received) },
        { labels: { ...nodeLabel, kind: 'sent' }, value: sum((x) => x.sent) },
        { labels: { ...nodeLabel, kind: 'retransmitted' }, value: sum((x) => x.retransmitted) }
      ])
      const reasons = new Set(ikes.flatMap((x) => Object.keys(x.dropped)))
      counter(
        'vipsec_ike_dropped_total',
        'IKE messages dropped, by reason',
        [...reasons].map((reason) => ({
          labels: { ...nodeLabel, reason },
          value: sum((x) => (x.dropped as Record<string, number>)[reason] ?? 0)
        }))
      )
    }
    if (this.node.has(TOKENS.EspEngine)) {
      const e = this.node.get(TOKENS.EspEngine).counters()
      counter('vipsec_esp_packets_total', 'ESP packets, by operation', [
        { labels: { ...nodeLabel, op: 'encapsulated' }, value: e.encapsulated },
        { labels: { ...nodeLabel, op: 'decapsulated' }, value: e.decapsulated },
        { labels: { ...nodeLabel, op: 'bypassed' }, value: e.bypassed }
      ])
      counter(
        'vipsec_esp_dropped_total',
        'ESP packets dropped, by reason',
        Object.entries(e.dropped).map(([reason, value]) => ({
          labels: { ...nodeLabel, reason },
          value
        }))
      )
    }
    families.push(...clusterNetworkFamilies(this.node))
    return renderPrometheus(families)
  }
}

/**
 * Serves `/metrics` over HTTP.
 *
 * @param metrics - what to serve
 * @param address - the address to listen on
 * @param port - the port (0: any free one)
 * @returns the server and the port it listens on
 */
export async function serveMetrics(
  metrics: NodeMetrics,
  address: string,
  port: number
): Promise<MetricsServer> {
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end('not found\n')
      return
    }
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(metrics.render())
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, address, () => resolve())
  })
  return { server, port: (server.address() as AddressInfo).port }
}
