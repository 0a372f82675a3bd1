/**
 * Memory after a stateful fuzz (issue #11): 100,000 random and mutated IKE messages, made from a
 * corpus of real ones, delivered to a responder with a live IKE SA from 65,536 spoofed
 * addresses; prints the heap and RSS growth after a full GC, and what the service holds.
 *
 * Run: node --expose-gc --import tsx --conditions vipsec-source adapters/ike-v2/bench/fuzz-memory.bench.ts
 */
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

async function main(): Promise<void> {
  const N = Number(process.env.FUZZ_N ?? 100_000)
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
  for (let i = 0; i < 20; i++) await p.settle()
  gc()
  const before = process.memoryUsage()
  const next = prng(0x5eed)
  for (let i = 0; i < N; i++) {
    const m = mutate(next, corpus[next() % corpus.length])
    const from = { address: `10.9.${(i >> 8) & 0xff}.${i & 0xff}`, port: 500 }
    if (i % 3 === 0) b.udp4500.deliver({ data: wire.concat(wire.NON_ESP_MARKER, m), from })
    else b.udp500.deliver({ data: m, from })
    if (i % 1000 === 0) await p.settle()
  }
  for (let i = 0; i < 20; i++) await p.settle()
  gc()
  const after = process.memoryUsage()
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
    heapGrowthMB: Number(mb(after.heapUsed - before.heapUsed)),
    heapTotalGrowthMB: Number(mb(after.heapTotal - before.heapTotal)),
    rssGrowthMB: Number(mb(after.rss - before.rss)),
    externalGrowthMB: Number(
      mb(after.external + after.arrayBuffers - before.external - before.arrayBuffers)
    ),
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
