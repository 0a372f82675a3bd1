/**
 * Memory after a stateful fuzz (issue #11): 100,000 random and mutated IKE messages, made from a
 * corpus of real ones, delivered to a responder with a live IKE SA from 65,536 spoofed
 * addresses; prints the heap and RSS growth after a full GC, and what the service holds.
 *
 * Run: node --expose-gc --import tsx --conditions vipsec-source adapters/ike-v2/bench/fuzz-memory.bench.ts
 */
import { wire } from '../src/index.js'
import { makePair } from '../test/helpers/pair.js'
import type { MemoryUdpEndpoint } from '../test/helpers/network.js'

/** A small fast PRNG (xorshift32) so that the fuzz corpus is the same on every run. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1
  return () => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x
  }
}

function mutate(next: () => number, base: Uint8Array): Uint8Array {
  const b = base.slice()
  switch (next() % 8) {
    case 0: // flip a few bits
      for (let i = 1 + (next() % 4); i > 0; i--) b[next() % b.length] ^= 1 << (next() % 8)
      return b
    case 1: // set a byte to an edge value
      b[next() % b.length] = [0, 1, 0x7f, 0x80, 0xff][next() % 5]
      return b
    case 2: // truncate
      return b.subarray(0, next() % b.length)
    case 3: // extend with junk
      return wire.concat(
        b,
        Uint8Array.from({ length: 1 + (next() % 64) }, () => next() & 0xff)
      )
    case 4: {
      // corrupt a length field of the header or of a payload, keeping the header length consistent
      const o = 28 + (next() % Math.max(1, b.length - 28))
      if (o + 3 < b.length) {
        b[o + 2] = next() & 0xff
        b[o + 3] = next() & 0xff
      }
      return b
    }
    case 5: {
      // change the next-payload chain or the exchange type
      const o = [16, 18, 19, 28][next() % 4]
      if (o < b.length) b[o] = next() & 0xff
      return b
    }
    case 6: {
      // fix the header length after a random cut, so the payload parser is exercised
      const cut = b.subarray(0, 28 + (next() % Math.max(1, b.length - 27)))
      const c = cut.slice()
      if (c.length >= 28) {
        c[24] = (c.length >>> 24) & 0xff
        c[25] = (c.length >>> 16) & 0xff
        c[26] = (c.length >>> 8) & 0xff
        c[27] = c.length & 0xff
      }
      return c
    }
    default: // random bytes
      return Uint8Array.from({ length: next() % 600 }, () => next() & 0xff)
  }
}

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
