/**
 * IKEv2 handshake rate on one core: full handshakes per second (IKE_SA_INIT + IKE_AUTH + one
 * Child SA, PSK, Curve25519, AES-GCM-256; two IkeV2Services in one process over an in-memory
 * datagram pipe, SAs installed in real SoftwareEspEngines), next to the crypto-only cost of the
 * same handshake (the same key exchanges, key derivations, AUTH computations and SK
 * encryptions, without messages, state or I/O); and the full handshake once more with the
 * service's protect filters turned off (`installFilters: false`: SAs only, the filters left to
 * the distribution processor).
 *
 * The machine is shared and its load drifts, so the three measures are interleaved: every round
 * runs one batch of each, the crypto-only batch always in the middle and the two full ones in
 * alternating order (full, crypto, SAs only; then SAs only, crypto, full), after a full GC each;
 * a ratio is taken within a round, and the figures are the medians over the rounds (after two
 * warm-up rounds), printed with their spread (lowest, quartiles, highest). Each batch is timed
 * both on the wall clock and in process CPU time (all threads: V8's GC helpers included): the
 * CPU-time ratio is the one that load from other processes disturbs least. Prints a table and one
 * JSON line. Run: npm run bench:ike (IKE_BENCH_ROUNDS, IKE_BENCH_HANDSHAKES,
 * IKE_BENCH_CONCURRENCY change the defaults)
 *
 * Then the reference method, the one that gave the 0.55 the goal is set against: 9 rounds of
 * 500 full handshakes followed by 500 crypto-only ones, back to back, without a GC in between,
 * on the wall clock only (so V8's GC threads on the other core help it); its median ratio is
 * printed and in the JSON line as `ratioReference`, so that the goal compares like with like.
 *
 * Last, the JavaScript heap allocated per full handshake, over ALLOC_HANDSHAKES more of them:
 * what the heap held before each garbage collection minus what it held after the one before
 * (V8's GC profiler reports both), summed, plus the growth since the last one. Buffers' backing
 * stores outside the heap are not in it.
 */
import { GCProfiler, getHeapStatistics, setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { loadavg } from 'node:os'
import { CryptoRandomSource } from '@vipsec/random'
import { cryptoHandshake, handshakePair } from './handshakes.js'

const ROUNDS = Number(process.env.IKE_BENCH_ROUNDS ?? 15)
const WARMUP_ROUNDS = 2
const HANDSHAKES = Number(process.env.IKE_BENCH_HANDSHAKES ?? 300)
const CONCURRENCY = Number(process.env.IKE_BENCH_CONCURRENCY ?? 32)

/** The rates of one batch: per wall-clock second and per second of process CPU time. */
interface Rate {
  wall: number
  cpu: number
}

/** A stopwatch of wall-clock and process CPU time. */
function stopwatch(): () => { wall: number; cpu: number } {
  const t0 = process.hrtime.bigint()
  const c0 = process.cpuUsage()
  return () => {
    const c = process.cpuUsage(c0)
    return { wall: Number(process.hrtime.bigint() - t0) / 1e9, cpu: (c.user + c.system) / 1e6 }
  }
}

function rate(n: number, t: { wall: number; cpu: number }): Rate {
  return { wall: n / t.wall, cpu: n / t.cpu }
}

async function fullHandshakes(n: number, installFilters = true): Promise<Rate> {
  const pair = await handshakePair(installFilters)
  const elapsed = stopwatch()
  await pair.run(n, CONCURRENCY)
  const t = elapsed()
  await pair.stop()
  return rate(n, t)
}

function cryptoOnly(n: number): Rate {
  const random = new CryptoRandomSource()
  const elapsed = stopwatch()
  for (let i = 0; i < n; i++) cryptoHandshake(random)
  return rate(n, elapsed())
}

/** The q-quantile of `xs` (nearest rank). */
function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((x, y) => x - y)
  return s[Math.min(s.length - 1, Math.max(0, Math.round(q * (s.length - 1))))]
}

/** Median and spread of a series. */
interface Summary {
  median: number
  min: number
  p25: number
  p75: number
  max: number
}

function summary(xs: number[]): Summary {
  return {
    median: quantile(xs, 0.5),
    min: quantile(xs, 0),
    p25: quantile(xs, 0.25),
    p75: quantile(xs, 0.75),
    max: quantile(xs, 1)
  }
}

// a full GC before each batch, so that no batch pays for the garbage of the one before it
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

type Measure = 'full' | 'crypto' | 'bare'
const samples: Record<Measure, Rate[]> = { full: [], crypto: [], bare: [] }
const run = async (m: Measure): Promise<Rate> => {
  gc()
  return m === 'full'
    ? fullHandshakes(HANDSHAKES)
    : m === 'bare'
      ? fullHandshakes(HANDSHAKES, false)
      : cryptoOnly(HANDSHAKES)
}
const loadBefore = loadavg()
for (let r = 0; r < WARMUP_ROUNDS + ROUNDS; r++) {
  const order: Measure[] = r % 2 === 0 ? ['full', 'crypto', 'bare'] : ['bare', 'crypto', 'full']
  const got: Partial<Record<Measure, Rate>> = {}
  for (const m of order) got[m] = await run(m)
  if (r < WARMUP_ROUNDS) continue
  for (const m of order) samples[m].push(got[m]!)
}
const loadAfter = loadavg()

// the reference method (see the head of this file)
const REFERENCE_ROUNDS = 9
const REFERENCE_HANDSHAKES = 500
const reference: { full: number; crypto: number; ratio: number }[] = []
for (let r = 0; r < REFERENCE_ROUNDS; r++) {
  const full = (await fullHandshakes(REFERENCE_HANDSHAKES)).wall
  const crypto = cryptoOnly(REFERENCE_HANDSHAKES).wall
  reference.push({ full, crypto, ratio: full / crypto })
}
const referenceRatio = summary(reference.map((x) => x.ratio))

/** JavaScript heap bytes allocated per full handshake (see the head of this file). */
const ALLOC_HANDSHAKES = 3000
async function allocatedPerHandshake(): Promise<number> {
  const pair = await handshakePair(true)
  await pair.run(300, CONCURRENCY)
  gc()
  const profiler = new GCProfiler()
  const start = getHeapStatistics().used_heap_size
  profiler.start()
  await pair.run(ALLOC_HANDSHAKES, CONCURRENCY)
  const end = getHeapStatistics().used_heap_size
  const { statistics } = profiler.stop()
  await pair.stop()
  let allocated = 0
  let after = start
  for (const s of statistics) {
    allocated += s.beforeGC.heapStatistics.usedHeapSize - after
    after = s.afterGC.heapStatistics.usedHeapSize
  }
  allocated += end - after
  return allocated / ALLOC_HANDSHAKES
}
const allocated = await allocatedPerHandshake()

const series = (m: Measure, k: keyof Rate): number[] => samples[m].map((x) => x[k])
const ratio = (m: Measure, k: keyof Rate): number[] =>
  samples[m].map((x, i) => x[k] / samples.crypto[i][k])
const rows: [string, number[], number][] = [
  ['full (IkeV2Service pair), wall', series('full', 'wall'), 0],
  ['full, SAs only (no filters), wall', series('bare', 'wall'), 0],
  ['crypto only (same operations), wall', series('crypto', 'wall'), 0],
  ['ratio full / crypto-only, wall', ratio('full', 'wall'), 2],
  ['ratio SAs only / crypto-only, wall', ratio('bare', 'wall'), 2],
  ['full, per CPU second', series('full', 'cpu'), 0],
  ['crypto only, per CPU second', series('crypto', 'cpu'), 0],
  ['ratio full / crypto-only, CPU', ratio('full', 'cpu'), 2],
  ['ratio SAs only / crypto-only, CPU', ratio('bare', 'cpu'), 2]
]
const fmt = (x: number, d: number): string => x.toFixed(d)
console.log('IKEv2 handshakes on one core (PSK, Curve25519, AES-GCM-256, one Child SA)')
console.log(
  `${ROUNDS} rounds (after ${WARMUP_ROUNDS} warm-up) x ${HANDSHAKES} handshakes per measure, ` +
    `${CONCURRENCY} in flight; measures interleaved; load average ` +
    `${loadBefore.map((x) => x.toFixed(2)).join(' ')} before, ` +
    `${loadAfter.map((x) => x.toFixed(2)).join(' ')} after`
)
console.log('')
console.log(
  '| measure                             |  median |     min |     p25 |     p75 |     max |'
)
console.log(
  '|-------------------------------------|--------:|--------:|--------:|--------:|--------:|'
)
for (const [name, xs, d] of rows) {
  const s = summary(xs)
  const cells = [s.median, s.min, s.p25, s.p75, s.max].map((x) => fmt(x, d).padStart(7))
  console.log(`| ${name.padEnd(35)} | ${cells.join(' | ')} |`)
}
console.log('')
console.log(
  `heap allocated per full handshake: ${(allocated / 1024).toFixed(1)} KB (over ${ALLOC_HANDSHAKES})`
)
console.log(
  `ratios per round, wall: ${ratio('full', 'wall')
    .map((x) => fmt(x, 2))
    .join(' ')}`
)
console.log(
  `ratios per round, CPU:  ${ratio('full', 'cpu')
    .map((x) => fmt(x, 2))
    .join(' ')}`
)
console.log(
  `reference method (${REFERENCE_ROUNDS} rounds of ${REFERENCE_HANDSHAKES} full then ${REFERENCE_HANDSHAKES} crypto-only, no GC between, wall): ` +
    `${Math.round(summary(reference.map((x) => x.full)).median)} full/s, ` +
    `${Math.round(summary(reference.map((x) => x.crypto)).median)} crypto-only/s, ` +
    `ratio ${fmt(referenceRatio.median, 2)} (${fmt(referenceRatio.min, 2)} to ${fmt(referenceRatio.max, 2)}; goal 0.55)`
)
console.log('')
const wallRatio = summary(ratio('full', 'wall'))
const cpuRatio = summary(ratio('full', 'cpu'))
console.log(
  JSON.stringify({
    bench: 'ike',
    handshakesPerSecond: Math.round(summary(series('full', 'wall')).median),
    cryptoOnlyPerSecond: Math.round(summary(series('crypto', 'wall')).median),
    ratio: Number(wallRatio.median.toFixed(3)),
    ratioSpread: [wallRatio.min, wallRatio.p25, wallRatio.p75, wallRatio.max].map((x) =>
      Number(x.toFixed(3))
    ),
    ratioCpu: Number(cpuRatio.median.toFixed(3)),
    ratioCpuSpread: [cpuRatio.min, cpuRatio.p25, cpuRatio.p75, cpuRatio.max].map((x) =>
      Number(x.toFixed(3))
    ),
    handshakesPerSecondWithoutFilters: Math.round(summary(series('bare', 'wall')).median),
    ratioWithoutFilters: Number(summary(ratio('bare', 'wall')).median.toFixed(3)),
    ratioReference: Number(referenceRatio.median.toFixed(3)),
    ratioReferenceSpread: [referenceRatio.min, referenceRatio.max].map((x) => Number(x.toFixed(3))),
    allocatedBytesPerHandshake: Math.round(allocated),
    goal: 0.55,
    rounds: ROUNDS,
    handshakes: HANDSHAKES,
    concurrency: CONCURRENCY,
    loadAverage: [loadBefore[0], loadAfter[0]].map((x) => Number(x.toFixed(2)))
  })
)
