/**
 * npm run bench:failover — time from the owner's death to traffic flowing again, and where the
 * time goes, for 1, 10, 100 and 1000 peers, in the simulated cluster: virtual time (what the
 * protocol costs: detection, timers, round trips) and real time (what the CPU costs: the
 * renegotiation's crypto, the store, the bookkeeping). Prints a table and one JSON line.
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
  peers: number
  detectionMs: number
  takeoverVirtualMs: number
  firstAnswerMs: number
  allPeersAnsweringMs: number
  takeoverRealMs: number
  realByStep: Record<string, number>
  renegotiatedPerRealSecond: number
  lost: number
}

async function measure(peers: number): Promise<Row> {
  const cluster = new SimulatedCluster({
    peers,
    seed: values.seed ?? 'bench',
    trafficIntervalMs: Math.max(20, peers),
    retransmit: { timeoutMs: 1000, backoff: 2, tries: 4 }
  })
  let report: TakeoverReport | undefined
  let startedAt = 0
  cluster.events$.subscribe(({ at, event }) => {
    if (event.type === 'takeover:started') startedAt = at
    if (event.type === 'takeover:completed') report = event.report
  })
  await cluster.start()
  cluster.startTraffic()
  await cluster.advance(Math.max(500, peers * 2))
  const crashedAt = cluster.clock.monotonic()
  const realStart = performance.now()
  await cluster.crash('dp-1')
  for (let i = 0; i < 100 && report === undefined; i++) await cluster.advance(100)
  const takeoverRealMs = performance.now() - realStart
  await cluster.advance(Math.max(1000, peers * 3))
  cluster.stopTraffic()
  await cluster.advance(200)
  if (report === undefined) throw new Error(`no takeover with ${peers} peers`)
  const firsts = cluster.peers.map(
    (p) => p.traffic.answerTimes.find((t) => t > crashedAt + 1) ?? Number.NaN
  )
  const traffic = cluster.traffic()
  const realByStep: Record<string, number> = {}
  for (const s of report.steps) realByStep[s.step] = Number(s.wallMs.toFixed(2))
  const row: Row = {
    peers,
    detectionMs: startedAt - crashedAt,
    takeoverVirtualMs: report.durationMs - (report.steps[0]?.durationMs ?? 0),
    firstAnswerMs: Math.min(...firsts) - crashedAt,
    allPeersAnsweringMs: Math.max(...firsts) - crashedAt,
    takeoverRealMs,
    realByStep,
    renegotiatedPerRealSecond: report.renegotiated / ((realByStep.renegotiate ?? 1) / 1000),
    lost: traffic.sent - traffic.answered
  }
  await cluster.stop()
  return row
}

const rows: Row[] = []
for (const n of sizes) rows.push(await measure(n))

const f = (n: number): string => (Number.isFinite(n) ? n.toFixed(1) : '-')
console.log(
  'failover in the simulated cluster (3 DPs, 3 targets; heartbeat 100 ms x 3; virtual network latency 0.2 ms)'
)
console.log(
  'virtual ms: what the protocol costs; real ms: what the CPU costs (both sides of every handshake run in this process)'
)
console.log('')
console.log(
  'peers | detect (v) | takeover (v) | first answer (v) | all peers answering (v) | takeover (real) | renegotiate (real) | IKE SAs/s (real) | lost'
)
for (const r of rows) {
  console.log(
    `${String(r.peers).padStart(5)} | ${f(r.detectionMs).padStart(10)} | ${f(r.takeoverVirtualMs).padStart(12)} | ${f(r.firstAnswerMs).padStart(16)} | ${f(r.allPeersAnsweringMs).padStart(23)} | ${f(r.takeoverRealMs).padStart(15)} | ${f(r.realByStep.renegotiate ?? 0).padStart(18)} | ${f(r.renegotiatedPerRealSecond).padStart(16)} | ${r.lost}`
  )
}
console.log('')
console.log('real ms by step (where the CPU time goes):')
console.log(
  `${'step'.padEnd(22)} | ${rows.map((r) => `${r.peers} peers`.padStart(11)).join(' | ')}`
)
for (const step of TAKEOVER_STEPS.filter((s) => s !== 'detect')) {
  console.log(
    `${step.padEnd(22)} | ${rows.map((r) => f(r.realByStep[step] ?? 0).padStart(11)).join(' | ')}`
  )
}
console.log(JSON.stringify({ bench: 'failover', rows }))
