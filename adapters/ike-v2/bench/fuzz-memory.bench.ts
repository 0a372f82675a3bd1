/**
 * Memory after a stateful fuzz (issue #11): 100,000 random and mutated IKE messages, made from a
 * corpus of real ones (test/helpers/mutate.ts, as in test/fuzz.spec.ts), delivered to a responder
 * with a live IKE SA from 65,536 spoofed addresses; prints the heap and RSS growth after a full
 * GC, and what the service holds.
 *
 * The RSS growth is printed twice: from before any fuzzing, and from after a warm-up of
 * FUZZ_WARMUP (20,000) messages of the same kind (another seed), which pays the one-off costs:
 * the code V8 compiles for the drop paths, the pages of the node binary and of OpenSSL those
 * paths touch (file-backed, shared, counted in RSS), the heap's young generation and the
 * allocator's arenas reaching their working size. RSS is also split into anonymous and
 * file-backed pages (from /proc/self/status) and sampled every 20,000 messages, so that growth
 * that keeps going shows as such. The goal (< 10 MB) is on the growth after the warm-up.
 *
 * Run: node --expose-gc --import tsx --conditions vipsec-source adapters/ike-v2/bench/fuzz-memory.bench.ts
 */
import { readFileSync } from 'node:fs'
import { getHeapSpaceStatistics, getHeapStatistics } from 'node:v8'
import { wire } from '../src/index.js'
import { makePair } from '../test/helpers/pair.js'
import { mutate, prng } from '../test/helpers/mutate.js'
import type { MemoryUdpEndpoint } from '../test/helpers/network.js'

const maybeGc = (globalThis as { gc?: () => void }).gc
if (maybeGc === undefined) throw new Error('run with node --expose-gc')
const gc: () => void = maybeGc

function mb(n: number): string {
  return (n / 1048576).toFixed(1)
}

/** RSS split as the kernel counts it: anonymous (heap, malloc) and file-backed (code) pages. */
function rssParts(): { anon: number; file: number } {
  try {
    const status = readFileSync('/proc/self/status', 'utf8')
    const kb = (name: string): number =>
      Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0)
    return { anon: kb('RssAnon') * 1024, file: kb('RssFile') * 1024 }
  } catch {
    return { anon: 0, file: 0 }
  }
}

/** Memory after a full GC, with the V8 heap's committed spaces and V8's own malloc'd memory. */
function sample(): NodeJS.MemoryUsage & {
  anon: number
  file: number
  spaces: Record<string, number>
  v8Malloced: number
} {
  gc()
  const spaces: Record<string, number> = {}
  for (const s of getHeapSpaceStatistics()) spaces[s.space_name] = s.physical_space_size
  return {
    ...process.memoryUsage(),
    ...rssParts(),
    spaces,
    v8Malloced: getHeapStatistics().malloced_memory
  }
}

/** Which V8 heap spaces grew from `a` to `b`, in MB (those that moved by 0.1 MB or more). */
function spaceGrowth(a: ReturnType<typeof sample>, b: ReturnType<typeof sample>): string {
  return Object.keys(b.spaces)
    .map((k) => [k, Number(mb(b.spaces[k] - (a.spaces[k] ?? 0)))] as const)
    .filter(([, v]) => v !== 0)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')
}

async function main(): Promise<void> {
  const N = Number(process.env.FUZZ_N ?? 100_000)
  const WARMUP = Number(process.env.FUZZ_WARMUP ?? 20_000)
  const p = makePair()
  await p.start()
  const r = await p.drive(p.a.connect(p.request()))
  await p.drive(p.a.rekeyChildSa(r.phase2[0].id))
  await p.drive(p.a.checkLiveness(r.phase1.id))
  await p.settle()
  const corpus = p.net.log.map((x) =>
    x.data[0] === 0 && x.data.length > 4 && x.to.port === 4500 ? x.data.subarray(4) : x.data
  )
  p.net.logging = false
  p.net.log.length = 0
  const b = (
    p.b as unknown as { components: { udp500: MemoryUdpEndpoint; udp4500: MemoryUdpEndpoint } }
  ).components
  const fuzz = async (
    seed: number,
    count: number,
    each?: (done: number) => void
  ): Promise<void> => {
    const next = prng(seed)
    for (let i = 0; i < count; i++) {
      const m = mutate(next, corpus[next() % corpus.length])
      const from = { address: `10.9.${(i >> 8) & 0xff}.${i & 0xff}`, port: 500 }
      if (i % 3 === 0) b.udp4500.deliver({ data: wire.concat(wire.NON_ESP_MARKER, m), from })
      else b.udp500.deliver({ data: m, from })
      if (i % 1000 === 0) await p.settle()
      if (each !== undefined && (i + 1) % 20_000 === 0) each(i + 1)
    }
    for (let i = 0; i < 20; i++) await p.settle()
  }
  for (let i = 0; i < 20; i++) await p.settle()
  const start = sample()
  await fuzz(0xa11ce, WARMUP)
  const before = sample()
  const checkpoints: number[] = []
  await fuzz(0x5eed, N, () => checkpoints.push(Number(mb(sample().rss - before.rss))))
  const after = sample()
  const internals = p.b as unknown as {
    halfOpen: Record<string, unknown>
    table: Record<string, unknown>
  }
  const sizes: Record<string, number> = {}
  for (const [k, v] of Object.entries(internals.table)) {
    if (v instanceof Map || v instanceof Set) sizes[`table.${k}`] = v.size
  }
  for (const [k, v] of Object.entries(internals.halfOpen)) {
    if (v instanceof Map || v instanceof Set) sizes[`halfOpen.${k}`] = v.size
  }
  const result = {
    messages: N,
    warmupMessages: WARMUP,
    rssGrowthMB: Number(mb(after.rss - before.rss)),
    rssAnonGrowthMB: Number(mb(after.anon - before.anon)),
    rssFileGrowthMB: Number(mb(after.file - before.file)),
    rssGrowthEvery20kMB: checkpoints.join(' '),
    heapSpacesGrowthMB: spaceGrowth(before, after),
    rssGrowthWithWarmupMB: Number(mb(after.rss - start.rss)),
    rssAnonGrowthWithWarmupMB: Number(mb(after.anon - start.anon)),
    rssFileGrowthWithWarmupMB: Number(mb(after.file - start.file)),
    heapTotalGrowthWithWarmupMB: Number(mb(after.heapTotal - start.heapTotal)),
    heapSpacesGrowthWithWarmupMB: spaceGrowth(start, after),
    v8MallocedGrowthWithWarmupMB: Number(mb(after.v8Malloced - start.v8Malloced)),
    heapGrowthMB: Number(mb(after.heapUsed - before.heapUsed)),
    heapTotalGrowthMB: Number(mb(after.heapTotal - before.heapTotal)),
    v8MallocedGrowthMB: Number(mb(after.v8Malloced - before.v8Malloced)),
    externalGrowthMB: Number(
      mb(after.external + after.arrayBuffers - before.external - before.arrayBuffers)
    ),
    goalMB: 10,
    received: p.b.counters().received,
    dropped: JSON.stringify(p.b.counters().dropped),
    sas: p.b.list().length,
    ...sizes
  }
  console.table(result)
  console.log(JSON.stringify(result))
  await p.stop()
}

await main()
