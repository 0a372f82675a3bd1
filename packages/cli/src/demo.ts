import {
  InvalidConfigError,
  TAKEOVER_STEPS,
  type StepTiming,
  type TakeoverReport
} from '@vipsec/interface'
import { DVIPA, SimulatedCluster, type ClusterEvent } from '@vipsec/simulation'
import { renderReport } from './report.js'

/** Options of {@link runDemo}. */
export interface DemoOptions {
  /** Remote IPsec peers. Default 6. */
  peers?: number
  /** The failure to inject: kill the primary, cut it off from the other DPs, or none. Default `crash`. */
  failure?: 'crash' | 'partition' | 'none'
  /** Virtual ms of normal running before the failure. Default 3000. */
  before?: number
  /** Virtual ms after the failure. Default 4000. */
  after?: number
  /** Virtual time per real time: 1 runs in real time (to watch), 0 as fast as possible. Default 1. */
  speed?: number
  /** Seed of the simulation. Default `demo`. */
  seed?: string
  /** Where to write the takeover timeline as a self-contained HTML page. */
  report?: string
  /** Where lines go. Default `console.log`. */
  print?: (line: string) => void
  /** Whether to redraw the live view in place (a terminal). Default: whether stdout is a TTY. */
  live?: boolean
}

/** What a demo run measured. */
export interface DemoSummary {
  /** Whether the DVIPA ended with a live owner and traffic flowing on the same targets. */
  ok: boolean
  /** The owner and epoch at the end. */
  owner: string | undefined
  /** The epoch at the end. */
  epoch: number
  /** The takeover report, if a takeover happened. */
  report: TakeoverReport | undefined
  /** Virtual ms from the failure to the takeover's start (detection). */
  detectionMs: number | undefined
  /** Virtual ms of the renegotiation step. */
  renegotiationMs: number | undefined
  /** Virtual ms from the failure to the first request answered after it. */
  firstAnswerMs: number | undefined
  /** The longest time without any answer, around the failure (virtual ms). */
  outageMs: number | undefined
  /** Requests sent and never answered. */
  lost: number
  /** Requests sent in all. */
  sent: number
  /** Requests answered in all. */
  answered: number
  /** Whether every peer's answers after the failure came from the targets that served it before. */
  sameTargets: boolean
}

const BAR_WIDTH = 24

function pad(text: string | number, width: number): string {
  return String(text).padEnd(width)
}

/**
 * Runs the demo: a simulated cluster (1 primary, 2 backups, 3 targets, several peers sending
 * requests through IPsec), a live view while it runs, the failure, the takeover timeline and a
 * summary. Returns what it measured; the caller decides the exit code from `ok`.
 *
 * @param options - size, failure, pacing and output
 * @throws InvalidConfigError when an option is out of range
 */
export async function runDemo(options: DemoOptions = {}): Promise<DemoSummary> {
  const peers = options.peers ?? 6
  const failure = options.failure ?? 'crash'
  const before = options.before ?? 3000
  const after = options.after ?? 4000
  const speed = options.speed ?? 1
  const print = options.print ?? ((line: string) => console.log(line))
  const live = options.live ?? process.stdout.isTTY === true
  if (!Number.isInteger(peers) || peers < 1 || peers > 2000)
    throw new InvalidConfigError('peers', 'must be an integer from 1 to 2000')
  if (!['crash', 'partition', 'none'].includes(failure))
    throw new InvalidConfigError('failure', "must be 'crash', 'partition' or 'none'")
  if (!(speed >= 0)) throw new InvalidConfigError('speed', 'must be 0 or more')

  const cluster = new SimulatedCluster({ dps: 3, targets: 3, peers, seed: options.seed ?? 'demo' })
  const events: ClusterEvent[] = []
  cluster.events$.subscribe((e) => events.push(e))
  print(
    `vipsec demo: 3 distribution processors (dp-1 primary), 3 targets, ${peers} IPsec peers, DVIPA ${DVIPA}`
  )
  await cluster.start()
  cluster.startTraffic()
  const t0 = cluster.clock.monotonic()
  print(
    `all ${peers} peers connected (IKEv2 + ESP-in-UDP, AES-GCM-256); requests flowing every 20 ms per peer`
  )
  print('')

  const servedBefore = new Map<string, Set<string>>()
  let failedAt = t0
  let lastSample = { at: t0, out: new Map<string, number>(), answered: 0 }
  const sample = (): string => {
    const now = cluster.clock.monotonic()
    const elapsed = (now - lastSample.at) / 1000
    const own = cluster.ownership()
    const parts: string[] = []
    const out = new Map<string, number>()
    for (const dp of cluster.dps.values()) {
      const sent = dp.processor.counters().outbound
      out.set(dp.node, sent)
      const rate =
        elapsed > 0 ? Math.round((sent - (lastSample.out.get(dp.node) ?? sent)) / elapsed) : 0
      const sas = dp.up ? dp.esp.listSas().length / 2 : 0
      parts.push(`${dp.node}${dp.up ? '' : ' (down)'} ${sas} SAs ${rate} pkt/s`)
    }
    const answered = cluster.traffic().answered
    const rate = elapsed > 0 ? Math.round((answered - lastSample.answered) / elapsed) : 0
    lastSample = { at: now, out, answered }
    const time = ((now - t0) / 1000).toFixed(1).padStart(5)
    return `t=${time}s  owner ${own?.owner ?? '-'} epoch ${own?.epoch ?? 0} | ${parts.join(' | ')} | answers ${rate}/s`
  }

  const runFor = async (ms: number): Promise<void> => {
    const step = 250
    for (let t = 0; t < ms; t += step) {
      const started = Date.now()
      await cluster.advance(Math.min(step, ms - t))
      const line = sample()
      if (live) process.stdout.write(`\r\u001b[2K${line}`)
      else if ((t / step) % 4 === 3) print(line)
      if (speed > 0) {
        const wait = Math.min(step, ms - t) / speed - (Date.now() - started)
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
      }
    }
    if (live) process.stdout.write('\n')
  }

  await runFor(before)
  for (const p of cluster.peers) servedBefore.set(p.node, new Set(Object.keys(p.traffic.servedBy)))
  const answeredAtFailure = new Map(cluster.peers.map((p) => [p.node, { ...p.traffic.servedBy }]))
  failedAt = cluster.clock.monotonic()
  if (failure === 'crash') {
    print(`\n*** t=${((failedAt - t0) / 1000).toFixed(1)}s: killing dp-1, the owner of ${DVIPA}\n`)
    await cluster.crash('dp-1')
  } else if (failure === 'partition') {
    print(`\n*** t=${((failedAt - t0) / 1000).toFixed(1)}s: cutting dp-1 off from dp-2 and dp-3\n`)
    cluster.partition(['dp-1'], ['dp-2', 'dp-3'])
  }
  await runFor(after)
  cluster.stopTraffic()
  await cluster.advance(200)

  const completed = events.find((e) => e.event.type === 'takeover:completed')
  const report = completed?.event.type === 'takeover:completed' ? completed.event.report : undefined
  const started = events.find((e) => e.event.type === 'takeover:started')
  const firstAnswer = Math.min(
    ...cluster.peers.flatMap((p) =>
      p.traffic.answerTimes.filter((t) => t > failedAt + 1).slice(0, 1)
    )
  )
  let sameTargets = true
  for (const p of cluster.peers) {
    const then = answeredAtFailure.get(p.node) ?? {}
    const later = Object.entries(p.traffic.servedBy)
      .filter(([t, n]) => n > (then[t] ?? 0))
      .map(([t]) => t)
    if (later.some((t) => !servedBefore.get(p.node)!.has(t))) sameTargets = false
  }
  const traffic = cluster.traffic()
  const ownership = cluster.ownership()
  const times = cluster.peers
    .flatMap((p) => p.traffic.answerTimes.filter((t) => t >= failedAt - 100))
    .sort((a, b) => a - b)
  let outage: number | undefined
  for (let i = 1; i < times.length; i++) outage = Math.max(outage ?? 0, times[i]! - times[i - 1]!)
  // Traffic stopped 200 ms before the end, so nothing is still in flight: what is unanswered is lost.
  const lost = traffic.sent - traffic.answered

  if (report !== undefined) {
    print('takeover timeline (virtual ms from the failure):')
    printTimeline(report.steps, failedAt, print)
    print('')
  }
  const summary: DemoSummary = {
    ok:
      failure === 'none'
        ? ownership?.owner === 'dp-1' && traffic.answered > 0
        : report !== undefined &&
          ownership?.owner !== 'dp-1' &&
          sameTargets &&
          Number.isFinite(firstAnswer),
    owner: ownership?.owner ?? undefined,
    epoch: ownership?.epoch ?? 0,
    report,
    detectionMs: started === undefined ? undefined : started.at - failedAt,
    renegotiationMs: report?.steps.find((s) => s.step === 'renegotiate')?.durationMs,
    firstAnswerMs: Number.isFinite(firstAnswer) ? firstAnswer - failedAt : undefined,
    outageMs: outage,
    lost,
    sent: traffic.sent,
    answered: traffic.answered,
    sameTargets
  }
  const ms = (v: number | undefined): string => (v === undefined ? '-' : `${v.toFixed(1)} ms`)
  print('summary')
  print(`  owner now            ${summary.owner ?? '-'} (epoch ${summary.epoch})`)
  print(`  detection            ${ms(summary.detectionMs)}`)
  const realMs = report?.steps.find((x) => x.step === 'renegotiate')?.wallMs
  print(
    `  renegotiation        ${ms(summary.renegotiationMs)} virtual, ${ms(realMs)} real CPU (${report?.renegotiated ?? 0} IKE SAs, ${report?.failed.length ?? 0} failed)`
  )
  print(`  first answer after   ${ms(summary.firstAnswerMs)}`)
  print(`  longest silence      ${ms(summary.outageMs)}`)
  print(
    `  requests             ${summary.sent} sent, ${summary.answered} answered, ${summary.lost} lost`
  )
  print(`  same targets         ${summary.sameTargets ? 'yes' : 'NO'}`)
  print(
    `  served by            ${Object.entries(traffic.servedBy)
      .map(([t, n]) => `${t} ${n}`)
      .join(', ')}`
  )
  if (options.report !== undefined) {
    const { writeFile } = await import('node:fs/promises')
    await writeFile(
      options.report,
      renderReport({ events, cluster, failedAt, t0, summary, failure })
    )
    print(`  report               ${options.report}`)
  }
  await cluster.stop()
  return summary
}

function printTimeline(steps: StepTiming[], failedAt: number, print: (line: string) => void): void {
  const end = Math.max(...steps.map((s) => s.startedAt + s.durationMs))
  const span = Math.max(1, end - failedAt)
  for (const step of TAKEOVER_STEPS) {
    const s = steps.find((x) => x.step === step)
    if (s === undefined) continue
    const from = Math.max(0, s.startedAt - failedAt)
    const startCol = Math.round((from / span) * BAR_WIDTH)
    const width = Math.max(1, Math.round((s.durationMs / span) * BAR_WIDTH))
    const bar =
      ' '.repeat(Math.min(BAR_WIDTH, startCol)) +
      '#'.repeat(Math.min(width, BAR_WIDTH - Math.min(BAR_WIDTH, startCol) + 1))
    const wall = s.wallMs > 0.05 ? `  (${s.wallMs.toFixed(1)} ms real)` : ''
    print(
      `  ${pad(step, 22)} ${pad(bar, BAR_WIDTH + 1)} ${from.toFixed(1).padStart(7)} +${s.durationMs.toFixed(1)} ms${wall}`
    )
  }
}
