import { createServer, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { VipsecNode } from '@vipsec/container'
import type { DefaultDistributionProcessor } from '@vipsec/core'
import { TOKENS, type DvipaStatus } from '@vipsec/interface'
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client'
import { addClusterNetworkMetrics } from './link-metrics.js'

/** A running admin server: `/metrics`, `/healthz`, `/readyz`. */
export interface AdminServer {
  /** The HTTP server. */
  server: Server
  /** The port it listens on. */
  port: number
}

/** Options of {@link nodeRegistry}. */
export interface NodeRegistryOptions {
  /**
   * Collect prom-client's process metrics (`process_*`, `nodejs_*`). Their event-loop lag
   * histogram samples the loop with a timer every 10 ms and their GC metrics observe every
   * collection, whether anything scrapes them or not: a node without an admin endpoint passes
   * false and wakes only for its own work. Default true.
   */
  processMetrics?: boolean
}

/**
 * A registry for one node: process metrics (`process_*`, `nodejs_*`, unless turned off) and
 * gauges and counters read from the node's parts when scraped. Pass it to `createNode` as
 * `metrics.registry`, then call {@link addPartMetrics} with the node.
 *
 * @param options - whether to collect the process metrics
 */
export function nodeRegistry(options: NodeRegistryOptions = {}): Registry {
  const registry = new Registry()
  if (options.processMetrics !== false) collectDefaultMetrics({ register: registry })
  return registry
}

/**
 * Registers the metrics read from a node's parts at scrape time: per-DVIPA ownership, epoch, SAs
 * and connections, packet and drop counters of the processor, ESP engine, IKE services, cluster
 * link, heartbeats and target stack. A target has the link, heartbeat and target-stack ones.
 *
 * @param registry - the node's registry
 * @param node - the node
 */
export function addPartMetrics(registry: Registry, node: VipsecNode): void {
  const registers = [registry]
  let status: DvipaStatus[] = []
  const dp = node.has(TOKENS.DistributionProcessor)
    ? (node.get(TOKENS.DistributionProcessor) as DefaultDistributionProcessor)
    : undefined
  dp?.status$.subscribe((s) => (status = s))
  if (dp !== undefined) {
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
      new Gauge({
        name,
        help,
        labelNames: ['dvipa'],
        registers,
        collect() {
          this.reset()
          for (const s of status) this.set({ dvipa: s.dvipa }, pick(s))
        }
      })
    }
    new Counter({
      name: 'vipsec_packets_total',
      help: 'Packets through the distribution processor, by direction and outcome',
      labelNames: ['direction', 'outcome'],
      registers,
      collect() {
        const c = dp.counters()
        this.reset()
        this.inc({ direction: 'inbound', outcome: 'forwarded' }, c.inbound)
        this.inc({ direction: 'outbound', outcome: 'sent' }, c.outbound)
        this.inc({ direction: 'any', outcome: 'dropped' }, c.dropped)
        this.inc({ direction: 'outbound', outcome: 'not-owner' }, c.notOwner)
      }
    })
    new Counter({
      name: 'vipsec_store_errors_total',
      help: 'Coupling-store writes that failed',
      registers,
      collect() {
        this.reset()
        this.inc(dp.counters().storeErrors)
      }
    })
    if (dp.warmCounters() !== undefined) {
      new Counter({
        name: 'vipsec_warm_total',
        help: 'Warm takeover: states sealed and opened, records that did not open (unknown key id, failed authentication, malformed), states recorded, sequence blocks reserved, failed writes',
        labelNames: ['event'],
        registers,
        collect() {
          const w = dp.warmCounters()
          this.reset()
          if (w === undefined) return
          this.inc({ event: 'sealed' }, w.sealed)
          this.inc({ event: 'opened' }, w.opened)
          this.inc({ event: 'unknown-key' }, w.unknownKey)
          this.inc({ event: 'authentication-failed' }, w.authentication)
          this.inc({ event: 'malformed' }, w.malformed)
          this.inc({ event: 'state-recorded' }, w.statesRecorded)
          this.inc({ event: 'block-reserved' }, w.blocksReserved)
          this.inc({ event: 'write-failed' }, w.writeFailures)
        }
      })
    }
    const ikes = () =>
      [...dp.states.values()].flatMap((s) => (s.ike === undefined ? [] : [s.ike.counters()]))
    new Counter({
      name: 'vipsec_ike_messages_total',
      help: 'IKE messages, by kind',
      labelNames: ['kind'],
      registers,
      collect() {
        this.reset()
        for (const x of ikes()) {
          this.inc({ kind: 'received' }, x.received)
          this.inc({ kind: 'sent' }, x.sent)
          this.inc({ kind: 'retransmitted' }, x.retransmitted)
        }
      }
    })
    new Counter({
      name: 'vipsec_ike_dropped_total',
      help: 'IKE messages dropped, by reason',
      labelNames: ['reason'],
      registers,
      collect() {
        this.reset()
        for (const x of ikes())
          for (const [reason, n] of Object.entries(x.dropped)) this.inc({ reason }, n)
      }
    })
  }
  if (node.has(TOKENS.EspEngine)) {
    const esp = node.get(TOKENS.EspEngine)
    new Counter({
      name: 'vipsec_esp_packets_total',
      help: 'ESP packets, by operation',
      labelNames: ['op'],
      registers,
      collect() {
        const e = esp.counters()
        this.reset()
        this.inc({ op: 'encapsulated' }, e.encapsulated)
        this.inc({ op: 'decapsulated' }, e.decapsulated)
        this.inc({ op: 'bypassed' }, e.bypassed)
      }
    })
    new Counter({
      name: 'vipsec_esp_dropped_total',
      help: 'ESP packets dropped, by reason',
      labelNames: ['reason'],
      registers,
      collect() {
        this.reset()
        for (const [reason, n] of Object.entries(esp.counters().dropped)) this.inc({ reason }, n)
      }
    })
  }
  const udpLink = addClusterNetworkMetrics(registry, node)
  for (const [token, name, help] of [
    [TOKENS.ClusterLink, 'vipsec_link_frames_total', 'Cluster-link frames, by outcome'],
    [TOKENS.TargetStack, 'vipsec_target_packets_total', 'Target-stack packets, by outcome']
  ] as const) {
    if (!node.has(token) || (token === TOKENS.ClusterLink && udpLink)) continue
    const part = node.get(token as symbol) as unknown as {
      counters?: () => Record<string, unknown>
    }
    if (typeof part.counters !== 'function') continue
    new Counter({
      name,
      help,
      labelNames: ['outcome'],
      registers,
      collect() {
        this.reset()
        for (const [outcome, n] of Object.entries(part.counters!()))
          if (typeof n === 'number') this.inc({ outcome }, n)
      }
    })
  }
}

/**
 * Whether a node is ready to serve: started, and (for a distribution processor) owning or
 * backing up every DVIPA with a known epoch, none in takeover.
 *
 * @param node - the node
 */
export function isReady(node: VipsecNode): boolean {
  if (!node.isStarted()) return false
  if (!node.has(TOKENS.DistributionProcessor)) return true
  let status: DvipaStatus[] = []
  node
    .get(TOKENS.DistributionProcessor)
    .status$.subscribe((s) => (status = s))
    .unsubscribe()
  return (
    status.length > 0 &&
    status.every((s) => (s.role === 'owner' || s.role === 'backup') && s.epoch > 0)
  )
}

/** What the admin endpoint serves besides `/metrics`, `/healthz` and `/readyz`. */
export interface AdminHandlers {
  /** `POST /reload`: reloads the node's files and answers with the result (JSON). */
  reload?: () => Promise<unknown>
  /** `GET /status`: the node's live view (JSON), for the status page. */
  status?: () => unknown
  /** `GET /`: the status page (HTML). */
  page?: string
  /**
   * Whether the node is starting (a distribution processor waiting out its join window): then
   * `/healthz` answers 200 `starting`, and `/readyz` 503.
   */
  starting?: () => boolean
}

/** Whether a request comes from this host: a loopback address, or the address it was sent to. */
export function fromThisHost(remote: string | undefined, local: string | undefined): boolean {
  if (remote === undefined) return false
  const bare = remote.replace(/^::ffff:/, '')
  return bare.startsWith('127.') || bare === '::1' || remote === local
}

/**
 * Serves `/metrics` (Prometheus text), `/healthz` (200 while the process runs or starts the node),
 * `/readyz` (200 when {@link isReady}, else 503), and with `handlers` the status page (`/`),
 * its data (`/status`) and `POST /reload`. A POST is taken from this host only (403 otherwise,
 * counted in `vipsec_admin_refused_total`): it changes what the node runs.
 *
 * @param registry - the node's registry
 * @param node - the node
 * @param address - the address to listen on
 * @param port - the port (0: any free one)
 * @param handlers - the reload, the status view and the page
 */
export async function serveAdmin(
  registry: Registry,
  node: VipsecNode,
  address: string,
  port: number,
  handlers: AdminHandlers = {}
): Promise<AdminServer> {
  const refused = new Counter({
    name: 'vipsec_admin_refused_total',
    help: 'Admin requests refused: a POST from another host',
    registers: [registry]
  })
  const json = (res: ServerResponse, status: number, body: unknown): void =>
    void res
      .writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' })
      .end(`${JSON.stringify(body)}\n`)
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    if (req.method === 'POST') {
      if (!fromThisHost(req.socket.remoteAddress, req.socket.localAddress)) {
        refused.inc()
        return json(res, 403, { error: 'admin requests are taken from this host only' })
      }
      if (path === '/reload' && handlers.reload !== undefined) {
        handlers.reload().then(
          (result) => json(res, 200, result),
          (err: Error) => json(res, 500, { error: err.message })
        )
        return
      }
      return json(res, 404, { error: 'not found' })
    }
    if (path === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (err: Error) => res.writeHead(500).end(`${err.message}\n`)
      )
    } else if (path === '/healthz') {
      const ok = node.isStarted()
      const starting = !ok && handlers.starting?.() === true
      res
        .writeHead(ok || starting ? 200 : 503)
        .end(ok ? 'ok\n' : starting ? 'starting\n' : 'stopped\n')
    } else if (path === '/readyz') {
      const ok = isReady(node)
      res.writeHead(ok ? 200 : 503).end(ok ? 'ready\n' : 'not ready\n')
    } else if (path === '/status' && handlers.status !== undefined) {
      json(res, 200, handlers.status())
    } else if (path === '/' && handlers.page !== undefined) {
      res
        .writeHead(200, {
          'content-type': 'text/html; charset=utf-8',
          'cache-control': 'no-store',
          'content-security-policy':
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'"
        })
        .end(handlers.page)
    } else {
      res.writeHead(404).end('not found\n')
    }
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, address, () => resolve())
  })
  return { server, port: (server.address() as AddressInfo).port }
}
