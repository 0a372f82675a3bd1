/**
 * The live status page of a node's admin endpoint: `GET /` serves {@link STATUS_PAGE}, which
 * reads `GET /status` ({@link NodeView}, made by {@link StatusTracker}) every second and draws
 * the cluster as this node sees it (each DVIPA's owner, epoch, ranks with their health, targets
 * with their connections), the peers and their SAs, and the last takeover's steps on a timeline
 * (as `vipsec demo --report` draws them).
 *
 * @module
 */
import type { VipsecNode } from '@vipsec/container'
import type { DefaultDistributionProcessor } from '@vipsec/core'
import {
  TOKENS,
  type DistributionEvent,
  type DvipaStatus,
  type EspEngine,
  type FailureDetector,
  type TakeoverReport
} from '@vipsec/interface'
import type { LoadedConfig } from './load-config.js'
import { proposalName, selectorName } from './strongswan.js'

/** Inbound and outbound amounts. */
export interface InOut {
  /** Inbound. */
  in: number
  /** Outbound. */
  out: number
}

/** A node as this node's failure detector sees it. */
export interface HealthView {
  /** The node. */
  node: string
  /** `self`, or the detector's health: `alive`, `suspect`, `failed`, `unknown`. */
  health: string
}

/** A target of a DVIPA on the page. */
export interface TargetView extends HealthView {
  /** Connections the owner's routing table holds to it. */
  connections: number
}

/** An ownership or takeover event on the page. */
export interface EventView {
  /** Wall time, ms since the Unix epoch. */
  at: number
  /** The event's type. */
  type: string
  /** The DVIPA. */
  dvipa: string
  /** Epoch, previous owner or duration, in words. */
  detail: string
}

/** A Child SA on the page. */
export interface ChildView {
  /** Inbound SPI (hex). */
  inboundSpi: string
  /** Outbound SPI (hex). */
  outboundSpi: string
  /** ESP proposals, strongSwan-style. */
  proposals: string[]
  /** Local traffic selectors. */
  localTs: string[]
  /** Remote traffic selectors. */
  remoteTs: string[]
  /** Inner bytes in and out (from the ESP engine). */
  bytes: InOut
  /** Packets in and out. */
  packets: InOut
  /** Seconds since it was established. */
  ageSeconds: number
}

/** An IKE SA on the page. */
export interface PeerView {
  /** The DVIPA it terminates on. */
  dvipa: string
  /** The peer's endpoint. */
  peer: string
  /** Our identity. */
  localId: string
  /** The peer's identity. */
  remoteId: string
  /** IKE SPIs. */
  ikeSpis: string
  /** IKE proposals. */
  proposals: string[]
  /** Seconds since it was established. */
  ageSeconds: number
  /** Its Child SAs. */
  children: ChildView[]
}

/** One DVIPA on the page. */
export interface DvipaView extends DvipaStatus {
  /** The ranks, best first, with this node's detector's view of each. */
  ranks: HealthView[]
  /** The targets, with their health and connections. */
  targets: TargetView[]
}

/** A takeover on the page. */
export interface TakeoverView {
  /** Wall time it completed, ms since the Unix epoch. */
  at: number
  /** The node that took over (this one). */
  node: string
  /** The report. */
  report: TakeoverReport
}

/** What `GET /status` answers: this node's view of the cluster. */
export interface NodeView {
  /** This node. */
  node: string
  /** Its role from the files. */
  role: string
  /** Wall time of the view. */
  time: number
  /** Each DVIPA it serves. */
  dvipas: DvipaView[]
  /** The IKE SAs of the DVIPAs it owns. */
  peers: PeerView[]
  /** The last takeover this node ran, if any. */
  lastTakeover: TakeoverView | undefined
  /** The last ownership and takeover events (newest last), wall ms. */
  events: EventView[]
}

const EVENT_TYPES = new Set([
  'ownership:claimed',
  'ownership:lost',
  'ownership:fenced',
  'takeover:started',
  'takeover:completed',
  'takeover:failed',
  'takeover:stood-down',
  'targets:notified',
  'deletes:applied'
])

/**
 * Keeps what the status page shows that is not in the parts' state: the last takeover and the
 * recent ownership events.
 */
export class StatusTracker {
  private last: TakeoverView | undefined
  private readonly recent: NodeView['events'] = []

  /**
   * @param node - the node
   * @param config - what it runs (read at each view, so a reload shows)
   */
  constructor(
    private readonly node: VipsecNode,
    private readonly config: () => LoadedConfig
  ) {
    if (!node.has(TOKENS.DistributionProcessor)) return
    node.get(TOKENS.DistributionProcessor).events$.subscribe((e) => this.onEvent(e))
  }

  private onEvent(e: DistributionEvent): void {
    if (!EVENT_TYPES.has(e.type)) return
    const at = Date.now()
    if (e.type === 'takeover:completed')
      this.last = { at, node: this.node.nodeId, report: e.report }
    const x = e as unknown as Record<string, unknown>
    const detail =
      e.type === 'takeover:completed'
        ? `epoch ${e.report.epoch} from ${e.report.previousOwner} in ${e.report.durationMs.toFixed(0)} ms`
        : typeof x.epoch === 'number'
          ? `epoch ${x.epoch}`
          : typeof x.previousOwner === 'string'
            ? `from ${x.previousOwner}`
            : ''
    const dvipa = e.type === 'takeover:completed' ? e.report.dvipa : String(x.dvipa ?? '')
    this.recent.push({ at, type: e.type, dvipa, detail })
    if (this.recent.length > 30) this.recent.shift()
  }

  /** The view `GET /status` answers. */
  view(): NodeView {
    const node = this.node
    const config = this.config()
    const base = {
      node: node.nodeId,
      role: config.role,
      time: Date.now(),
      lastTakeover: this.last,
      events: [...this.recent]
    }
    if (!node.has(TOKENS.DistributionProcessor)) return { ...base, dvipas: [], peers: [] }
    const dp = node.get(TOKENS.DistributionProcessor) as DefaultDistributionProcessor
    const detector = node.get(TOKENS.FailureDetector) as FailureDetector
    const esp = node.get(TOKENS.EspEngine) as EspEngine
    let status: DvipaStatus[] = []
    dp.status$.subscribe((s) => (status = s)).unsubscribe()
    const health = (n: string): string =>
      n === node.nodeId ? 'self' : String(detector.health(n) ?? 'unknown')
    const dvipas: DvipaView[] = status.map((s) => {
      const state = dp.states.get(s.dvipa)
      const loads = state?.table.loads() ?? {}
      const cfg = dp.init.dvipas.find((d) => d.dvipa === s.dvipa)
      return {
        ...s,
        ranks: (cfg?.ranks ?? []).map((n) => ({ node: n, health: health(n) })),
        targets: (cfg?.targets ?? []).map((t) => ({
          node: t.node,
          health: health(t.node),
          connections: loads[t.node] ?? 0
        }))
      }
    })
    const sas = new Map(esp.listSas().map((sa) => [`${sa.direction}/${sa.spi}`, sa]))
    const counted = (spi: string, direction: 'inbound' | 'outbound') =>
      sas.get(`${direction}/${Number.parseInt(spi, 16)}`)
    const now = Date.now()
    const age = (at: number): number => Math.max(0, Math.round((now - at) / 1000))
    const peers: PeerView[] = []
    for (const [dvipa, state] of dp.states) {
      if (state.ownership.current().role !== 'owner') continue
      for (const { phase1: p, phase2 } of state.sas.values()) {
        peers.push({
          dvipa,
          peer: `${p.peer.address}:${p.peer.port}`,
          localId: p.localIdentity.value,
          remoteId: p.remoteIdentity.value,
          ikeSpis: `${p.ikeSaId.initiatorSpi}_i ${p.ikeSaId.responderSpi}_r`,
          proposals: p.policy.proposals.map(proposalName),
          ageSeconds: age(p.establishedAt),
          children: [...phase2.values()].map((c) => {
            const i = counted(c.inboundSpi, 'inbound')
            const o = counted(c.outboundSpi, 'outbound')
            return {
              inboundSpi: c.inboundSpi,
              outboundSpi: c.outboundSpi,
              proposals: c.policy.proposals.map(proposalName),
              localTs: c.selectors.local.map(selectorName),
              remoteTs: c.selectors.remote.map(selectorName),
              bytes: { in: i?.bytes ?? 0, out: o?.bytes ?? 0 },
              packets: { in: i?.packets ?? 0, out: o?.packets ?? 0 },
              ageSeconds: age(c.establishedAt)
            }
          })
        })
      }
    }
    return { ...base, dvipas, peers }
  }
}

/**
 * The status page: one HTML file with its script, no external resources (the admin endpoint
 * serves it with a Content-Security-Policy that allows nothing else). Every text it draws goes
 * through `textContent`, never `innerHTML`, so names from the files cannot inject markup.
 */
export const STATUS_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vipsec node</title>
<style>
body{font-family:sans-serif;margin:20px;color:#222}
h1{font-size:20px}h2{font-size:16px;margin-top:22px}
table{border-collapse:collapse;margin:6px 0}th,td{text-align:left;padding:3px 10px;border-bottom:1px solid #eee;font-size:13px}
.owner{color:#1a7f37;font-weight:600}.backup{color:#555}.taking-over{color:#b35900}.fenced,.failed{color:#c00}
.alive,.self{color:#1a7f37}.suspect{color:#b35900}
#state{font-size:12px;color:#777}
</style></head><body>
<h1>vipsec <span id="node"></span> <span id="role"></span></h1>
<div id="state">connecting</div>
<h2>Cluster</h2>
<table id="dvipas"><thead><tr><th>DVIPA</th><th>this node</th><th>owner</th><th>epoch</th><th>ranks</th><th>targets (connections)</th><th>IKE SAs</th><th>Child SAs</th></tr></thead><tbody></tbody></table>
<h2>Peers</h2>
<table id="peers"><thead><tr><th>DVIPA</th><th>peer</th><th>identities</th><th>IKE SPIs</th><th>proposals</th><th>age</th><th>Child SAs</th></tr></thead><tbody></tbody></table>
<h2>Last takeover</h2>
<div id="takeover">none on this node</div>
<svg id="timeline" width="900" height="10" font-family="sans-serif"></svg>
<h2>Events</h2>
<table id="events"><thead><tr><th>time</th><th>event</th><th>DVIPA</th><th></th></tr></thead><tbody></tbody></table>
<script>
const SVG = 'http://www.w3.org/2000/svg'
const COLORS = ['#4e79a7','#f28e2b','#e15759','#76b7b2','#59a14f','#edc948','#b07aa1','#ff9da7','#9c755f','#bab0ac','#86bcb6']
function el(tag, text, cls) { const e = document.createElement(tag); if (text !== undefined) e.textContent = String(text); if (cls) e.className = cls; return e }
function row(cells) { const tr = el('tr'); for (const c of cells) { const td = el('td'); if (c instanceof Node) td.append(c); else td.textContent = String(c); tr.append(td) } return tr }
function spans(items) { const d = el('span'); items.forEach((x, i) => { if (i) d.append(', '); d.append(el('span', x.text, x.cls)) }); return d }
function fill(id, rows) { const b = document.querySelector('#' + id + ' tbody'); b.replaceChildren(...rows) }
function draw(v) {
  document.getElementById('node').textContent = v.node
  document.getElementById('role').textContent = '(' + v.role + ' by rank)'
  fill('dvipas', v.dvipas.map((d) => { const r = row([d.dvipa, el('span', d.role, d.role), d.owner || '-', d.epoch,
    spans(d.ranks.map((x) => ({ text: x.node + ' ' + x.health, cls: x.health }))),
    spans(d.targets.map((x) => ({ text: x.node + ' (' + x.connections + ')', cls: x.health }))), d.ikeSas, d.childSas]); r.dataset.dvipa = d.dvipa; r.dataset.owner = d.owner || ''; return r }))
  fill('peers', v.peers.map((p) => { const kids = el('div'); for (const c of p.children) kids.append(el('div',
    c.inboundSpi + '_i ' + c.outboundSpi + '_o ' + c.proposals.join(',') + ' ' + c.localTs.join(',') + ' === ' + c.remoteTs.join(',') +
    ' ' + c.bytes.in + ' bytes_i (' + c.packets.in + ' pkts), ' + c.bytes.out + ' bytes_o (' + c.packets.out + ' pkts)'))
    const r = row([p.dvipa, p.peer, p.localId + ' - ' + p.remoteId, p.ikeSpis, p.proposals.join(','), p.ageSeconds + 's', kids]); r.className = 'peer'; return r }))
  fill('events', v.events.slice().reverse().map((e) => row([new Date(e.at).toISOString().slice(11, 23), e.type, e.dvipa, e.detail])))
  const t = v.lastTakeover, svg = document.getElementById('timeline')
  svg.replaceChildren()
  if (!t) { document.getElementById('takeover').textContent = 'none on this node'; svg.setAttribute('height', '10'); return }
  const rep = t.report
  document.getElementById('takeover').textContent = rep.dvipa + ': ' + t.node + ' took over from ' + rep.previousOwner +
    ' at epoch ' + rep.epoch + ' in ' + rep.durationMs.toFixed(1) + ' ms, ' + rep.renegotiated + ' IKE SAs renegotiated, ' +
    rep.failed.length + ' failed, ' + rep.connections + ' connections, at ' + new Date(t.at).toISOString()
  const from = Math.min(...rep.steps.map((s) => s.startedAt)), to = Math.max(...rep.steps.map((s) => s.startedAt + s.durationMs), from + 1)
  const left = 170, width = 900, x = (ms) => left + ((ms - from) / (to - from)) * (width - left - 90)
  let y = 4
  rep.steps.forEach((s, i) => {
    const g = document.createElementNS(SVG, 'g'); g.setAttribute('class', 'step'); g.dataset.step = s.step
    const label = document.createElementNS(SVG, 'text'); label.setAttribute('x', '4'); label.setAttribute('y', String(y + 12)); label.setAttribute('font-size', '12'); label.textContent = s.step
    const bar = document.createElementNS(SVG, 'rect'); bar.setAttribute('x', String(x(s.startedAt))); bar.setAttribute('y', String(y)); bar.setAttribute('height', '14')
    bar.setAttribute('width', String(Math.max(2, x(s.startedAt + s.durationMs) - x(s.startedAt)))); bar.setAttribute('fill', COLORS[i % COLORS.length])
    const ms = document.createElementNS(SVG, 'text'); ms.setAttribute('x', String(x(s.startedAt + s.durationMs) + 4)); ms.setAttribute('y', String(y + 12)); ms.setAttribute('font-size', '11'); ms.textContent = s.durationMs.toFixed(1) + ' ms'
    g.append(label, bar, ms); svg.append(g); y += 20
  })
  svg.setAttribute('height', String(y + 4))
}
async function poll() {
  try {
    const r = await fetch('status', { cache: 'no-store' })
    draw(await r.json())
    document.getElementById('state').textContent = 'live, updated ' + new Date().toISOString().slice(11, 19)
  } catch (e) { document.getElementById('state').textContent = 'no answer from the node: ' + e }
  setTimeout(poll, 1000)
}
poll()
</script></body></html>
`
