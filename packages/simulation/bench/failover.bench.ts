/**
 * npm run bench:failover — the time from the owner's death to traffic flowing again, and where
 * it goes, for 1, 10, 100 and 1000 peers, in the simulated cluster. Each size runs twice: on a
 * virtual clock (times are what the protocol costs: detection, timers, round trips; computing is
 * free) and on the system clock (end to end in real time, with both sides of every handshake
 * computing in this one process). Prints a table and one JSON line.
 *
 * Options: --peers 1,10,100,1000 (the sizes), --seed S.
 */
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { TAKEOVER_STEPS, type TakeoverReport } from '@vipsec/interface'
import { SimulatedCluster } from '../src/index.js'

const { values } = parseArgs({ options: { peers: { type: 'string' }, seed: { type: 'string' } } })
const sizes = (values.peers ?? '1,10,100,1000').split(',').map(Number)

interface Row {
  mode: 'virtual' | 'real'
  peers: number
  detectionMs: number
  takeoverMs: number
  firstAnswerMs: number
  allPeersAnsweringMs: number
  takeoverWallMs: number
  realByStep: Record<string, number>
  renegotiatedPerRealSecond: number
  lost: number
  /** Takeovers before the crash: the one process was too busy to send heartbeats in time. */
  falseTakeovers: number
}

async function measure(peers: number, mode: Row['mode']): Promise<Row> {
  const cluster = new SimulatedCluster({
    peers,
    realTime: mode === 'real',
    seed: values.seed ?? 'bench',
    trafficIntervalMs: Math.max(20, peers),
    retransmit: { timeoutMs: 1000, backoff: 2, tries: 4 }
  })
  let report: TakeoverReport | undefined
  let startedAt = 0
  let crashed = ''
  let crashedAt = Number.POSITIVE_INFINITY
  let falseTakeovers = 0
  cluster.events$.subscribe(({ at, event }) => {
    if (event.type === 'takeover:started') {
      if (at < crashedAt) falseTakeovers++
      else if (event.previousOwner === crashed) startedAt = at
    }
    if (
      event.type === 'takeover:completed' &&
      event.report.previousOwner === crashed &&
      at >= crashedAt
    ) {
      report = event.report
    }
  })
  await cluster.start()
  cluster.startTraffic()
  await cluster.advance(Math.max(500, peers * 2))
  // The owner now (normally dp-1; another DP if a busy process already failed over falsely).
  crashed = cluster.ownership()?.owner ?? 'dp-1'
  crashedAt = cluster.clock.monotonic()
  const wallStart = performance.now()
  await cluster.crash(crashed)
  for (let i = 0; i < 300 && report === undefined; i++) await cluster.advance(50)
  const takeoverWallMs = performance.now() - wallStart
  await cluster.advance(Math.max(1000, peers * 3))
  cluster.stopTraffic()
  await cluster.advance(300)
  if (report === undefined) {
    // Only seen on the system clock with 1000 peers, when the one process is so busy that the
    // detectors keep failing nodes over: say so in the table rather than stop the benchmark.
    await cluster.stop()
    return {
      mode,
      peers,
      detectionMs: Number.NaN,
      takeoverMs: Number.NaN,
      firstAnswerMs: Number.NaN,
      allPeersAnsweringMs: Number.NaN,
      takeoverWallMs: Number.NaN,
      realByStep: {},
      renegotiatedPerRealSecond: Number.NaN,
      lost: Number.NaN,
      falseTakeovers
    }
  }
  const firsts = cluster.peers.map(
    (p) => p.traffic.answerTimes.find((t) => t > crashedAt + 1) ?? Number.NaN
  )
  const traffic = cluster.traffic()
  const realByStep: Record<string, number> = {}
  for (const s of report.steps) realByStep[s.step] = Number(s.wallMs.toFixed(2))
  const row: Row = {
    mode,
    peers,
    detectionMs: startedAt - crashedAt,
    takeoverMs: report.durationMs - (report.steps[0]?.durationMs ?? 0),
    firstAnswerMs: Math.min(...firsts) - crashedAt,
    allPeersAnsweringMs: Math.max(...firsts) - crashedAt,
    takeoverWallMs,
    realByStep,
    renegotiatedPerRealSecond: report.renegotiated / ((realByStep.renegotiate ?? 1) / 1000),
    lost: traffic.sent - traffic.answered,
    falseTakeovers
  }
  await cluster.stop()
  return row
}

const rows: Row[] = []
for (const n of sizes) {
  rows.push(await measure(n, 'virtual'))
  rows.push(await measure(n, 'real'))
}

const f = (n: number): string => (Number.isFinite(n) ? n.toFixed(1) : '-')
const out = (line: string): void => console.log(line)
out(
  'failover in the simulated cluster (3 DPs, 3 targets; heartbeat 100 ms x 3; network latency 0.2 ms)'
)
out('virtual: virtual clock, times are the protocol (timers, round trips), computing is free')
out('real: system clock, end to end, both sides of every handshake computing in this one process')
out(
  'each peer sends a request every max(20, peers) ms, so "first answer" includes up to one interval'
)
out('')
out(
  'mode    | peers | detect ms | takeover ms | first answer ms | all answering ms | renegotiate CPU ms | IKE SAs/s | lost | false takeovers'
)
for (const r of rows) {
  const cells = [
    r.mode.padEnd(7),
    String(r.peers).padStart(5),
    f(r.detectionMs).padStart(9),
    f(r.takeoverMs).padStart(11),
    f(r.firstAnswerMs).padStart(15),
    f(r.allPeersAnsweringMs).padStart(16),
    f(r.realByStep.renegotiate ?? 0).padStart(18),
    f(r.renegotiatedPerRealSecond).padStart(9),
    String(r.lost).padStart(4),
    String(r.falseTakeovers)
  ]
  out(cells.join(' | '))
}
out('')
out('real ms by step (where the CPU time goes):')
out(`${'step'.padEnd(22)} | ${rows.map((r) => `${r.peers} ${r.mode}`.padStart(12)).join(' | ')}`)
for (const step of TAKEOVER_STEPS.filter((s) => s !== 'detect')) {
  out(
    `${step.padEnd(22)} | ${rows.map((r) => f(r.realByStep[step] ?? 0).padStart(12)).join(' | ')}`
  )
}
out(JSON.stringify({ bench: 'failover', rows }))
