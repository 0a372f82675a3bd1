import { TAKEOVER_STEPS } from '@vipsec/interface'
import type { ClusterEvent, SimulatedCluster } from '@vipsec/simulation'
import type { DemoSummary } from './demo.js'

/** What the report shows. */
export interface ReportInput {
  /** Every distribution processor event of the run. */
  events: ClusterEvent[]
  /** The cluster (for the peers' answer times). */
  cluster: SimulatedCluster
  /** Virtual ms of the failure. */
  failedAt: number
  /** Virtual ms of the start of traffic. */
  t0: number
  /** The demo's summary. */
  summary: DemoSummary
  /** The failure injected. */
  failure: string
}

const COLORS = [
  '#4e79a7',
  '#f28e2b',
  '#e15759',
  '#76b7b2',
  '#59a14f',
  '#edc948',
  '#b07aa1',
  '#ff9da7',
  '#9c755f',
  '#bab0ac',
  '#86bcb6'
]

function escape(text: string): string {
  return text.replace(
    /[&<>"]/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!
  )
}

/**
 * Renders the takeover as a self-contained HTML page: the summary, an SVG timeline of the
 * takeover's steps on the new owner, and the answers the peers received over time, with the
 * failure marked. No scripts, no external resources.
 *
 * @param input - the run's events, cluster and summary
 */
export function renderReport(input: ReportInput): string {
  const { events, cluster, failedAt, summary } = input
  const report = summary.report
  const from = failedAt - 600
  const to = Math.max(
    failedAt + 1500,
    ...(report === undefined ? [] : report.steps.map((s) => s.startedAt + s.durationMs + 600))
  )
  const width = 960
  const left = 170
  const x = (t: number): number => left + ((t - from) / (to - from)) * (width - left - 20)
  const rows: string[] = []
  let y = 40
  const label = (text: string, yy: number): string =>
    `<text x="8" y="${yy + 13}" font-size="12">${escape(text)}</text>`

  // The old owner's life.
  rows.push(label('dp-1 owner', y))
  const ownerEnd = input.failure === 'none' ? to : failedAt
  rows.push(
    `<rect x="${x(from)}" y="${y}" width="${Math.max(1, x(ownerEnd) - x(from))}" height="16" fill="#999"><title>dp-1 serves ${report?.dvipa ?? ''}</title></rect>`
  )
  y += 24
  // The takeover's steps.
  if (report !== undefined) {
    for (const [i, step] of TAKEOVER_STEPS.entries()) {
      const s = report.steps.find((t) => t.step === step)
      if (s === undefined) continue
      rows.push(label(step, y))
      const w = Math.max(2, x(s.startedAt + s.durationMs) - x(s.startedAt))
      rows.push(
        `<rect x="${x(s.startedAt)}" y="${y}" width="${w}" height="16" fill="${COLORS[i % COLORS.length]}"><title>${step}: ${s.durationMs.toFixed(1)} ms</title></rect>` +
          `<text x="${x(s.startedAt) + w + 4}" y="${y + 13}" font-size="11" fill="#444">${s.durationMs.toFixed(1)} ms${s.wallMs > 0.05 ? ` (${s.wallMs.toFixed(1)} ms real)` : ''}</text>`
      )
      y += 22
    }
  }
  // Answers per 50 ms.
  y += 10
  rows.push(label('answers / 50 ms', y + 20))
  const bucket = 50
  const counts = new Map<number, number>()
  for (const peer of cluster.peers) {
    for (const t of peer.traffic.answerTimes) {
      if (t < from || t > to) continue
      const b = Math.floor((t - from) / bucket)
      counts.set(b, (counts.get(b) ?? 0) + 1)
    }
  }
  const max = Math.max(1, ...counts.values())
  for (const [b, n] of counts) {
    const h = (n / max) * 40
    rows.push(
      `<rect x="${x(from + b * bucket)}" y="${y + 40 - h}" width="${Math.max(1, x(from + (b + 1) * bucket) - x(from + b * bucket) - 1)}" height="${h}" fill="#59a14f"><title>${n} answers</title></rect>`
    )
  }
  y += 50
  // Axis and the failure marker.
  const ticks: string[] = []
  for (let t = Math.ceil((from - failedAt) / 500) * 500; t <= to - failedAt; t += 500) {
    ticks.push(
      `<line x1="${x(failedAt + t)}" y1="30" x2="${x(failedAt + t)}" y2="${y}" stroke="#eee"/><text x="${x(failedAt + t)}" y="${y + 14}" font-size="10" text-anchor="middle">${t} ms</text>`
    )
  }
  const marker = `<line x1="${x(failedAt)}" y1="24" x2="${x(failedAt)}" y2="${y}" stroke="#e15759" stroke-dasharray="4 3"/><text x="${x(failedAt) + 4}" y="20" font-size="12" fill="#e15759">${escape(input.failure === 'none' ? 'no failure' : `${input.failure} of dp-1`)}</text>`
  const svg = `<svg width="${width}" height="${y + 24}" font-family="sans-serif">${ticks.join('')}${rows.join('')}${marker}</svg>`

  const ms = (v: number | undefined): string => (v === undefined ? '-' : `${v.toFixed(1)} ms`)
  const table = [
    ['owner now', `${summary.owner ?? '-'} (epoch ${summary.epoch})`],
    ['detection', ms(summary.detectionMs)],
    [
      'renegotiation',
      `${ms(summary.renegotiationMs)} (${report?.renegotiated ?? 0} IKE SAs, ${report?.failed.length ?? 0} failed)`
    ],
    ['first answer after the failure', ms(summary.firstAnswerMs)],
    ['requests', `${summary.sent} sent, ${summary.answered} answered, ${summary.lost} lost`],
    ['same targets after the takeover', summary.sameTargets ? 'yes' : 'no']
  ]
    .map(([k, v]) => `<tr><th>${escape(k!)}</th><td>${escape(v!)}</td></tr>`)
    .join('')
  const log = events
    .filter((e) => !e.event.type.startsWith('connection:') && e.event.type !== 'takeover:step')
    .map(
      (e) =>
        `<tr><td>${(e.at - failedAt).toFixed(1)}</td><td>${escape(e.node)}</td><td>${escape(e.event.type)}</td></tr>`
    )
    .join('')
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vipsec takeover report</title>
<style>body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:12px 0}th,td{text-align:left;padding:3px 12px;border-bottom:1px solid #eee;font-size:13px}th{font-weight:600}</style>
</head><body>
<h1>vipsec takeover of ${escape(report?.dvipa ?? 'the DVIPA')}</h1>
<p>Simulated cluster: ${cluster.dps.size} distribution processors, ${cluster.targets.size} targets, ${cluster.peers.length} IPsec peers. Times are virtual ms, 0 is the failure; in brackets, the real time a step took (the simulation spends no virtual time computing).</p>
<table>${table}</table>
<h2>Timeline</h2>
${svg}
<h2>Events</h2>
<table><tr><th>ms</th><th>node</th><th>event</th></tr>${log}</table>
</body></html>
`
}
