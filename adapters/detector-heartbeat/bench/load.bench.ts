/**
 * npm run bench:detector — false failures of the heartbeat detector under data-plane load.
 * Two nodes watch each other over loopback with a 300 ms detection time (100 ms x 3), once with
 * the detectors on the main thread and once on worker threads, while the main thread runs
 * AES-256-GCM bursts of a given length (the data plane at full load) with a short pause between
 * them. Counts the `node:failed` events: every one is a false failover. Prints a table and one
 * JSON line.
 *
 * Options: --seconds S per run (default 6), --bursts 7,50,200,400 (ms).
 */
import { createCipheriv, randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'
import { SystemClock } from '@vipsec/clock'
import { generateClusterKey } from '@vipsec/cluster-link-udp'
import type { FailureDetector } from '@vipsec/interface'
import {
  DgramNetwork,
  HeartbeatFailureDetector,
  ThreadedHeartbeatFailureDetector
} from '../src/index.js'
import { freePort } from '../test/helpers/free-port.js'

const { values } = parseArgs({
  options: { seconds: { type: 'string' }, bursts: { type: 'string' } }
})
const seconds = Number(values.seconds ?? 6)
const bursts = (values.bursts ?? '7,50,200,400').split(',').map(Number)

async function pair(threaded: boolean): Promise<[FailureDetector, FailureDetector]> {
  const [pa, pb] = [await freePort(), await freePort()]
  // heartbeats as a node sends them: authenticated under a cluster key
  const timing = { intervalMs: 100, multiplier: 3, keys: [generateClusterKey()] }
  const make = (node: string, port: number): FailureDetector =>
    threaded
      ? new ThreadedHeartbeatFailureDetector({
          node,
          local: { address: '127.0.0.1', port },
          ...timing
        })
      : new HeartbeatFailureDetector(
          { network: new DgramNetwork(), clock: new SystemClock() },
          { node, local: { address: '127.0.0.1', port }, ...timing }
        )
  const a = make('a', pa)
  const b = make('b', pb)
  a.watch({ node: 'b', endpoint: { address: '127.0.0.1', port: pb } })
  b.watch({ node: 'a', endpoint: { address: '127.0.0.1', port: pa } })
  return [a, b]
}

const key = randomBytes(32)
const packet = randomBytes(1400)
let iv = 0
function burn(ms: number): number {
  const end = performance.now() + ms
  let n = 0
  while (performance.now() < end) {
    const nonce = Buffer.alloc(12)
    nonce.writeUInt32BE(iv++, 8)
    const c = createCipheriv('aes-256-gcm', key, nonce)
    c.update(packet)
    c.final()
    c.getAuthTag()
    n++
  }
  return n
}

async function run(
  threaded: boolean,
  burstMs: number
): Promise<{ falseFailures: number; packets: number }> {
  const [a, b] = await pair(threaded)
  let falseFailures = 0
  for (const d of [a, b])
    d.events$.subscribe((e) => void (e.type === 'node:failed' && falseFailures++))
  await a.start()
  await b.start()
  // both sides up and hearing each other; failures before this are start-up, not load
  await new Promise((resolve) => setTimeout(resolve, 1000))
  falseFailures = 0
  let packets = 0
  const end = Date.now() + seconds * 1000
  while (Date.now() < end) {
    packets += burn(burstMs)
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
  await a.stop()
  await b.stop()
  return { falseFailures, packets }
}

const rows: { burstMs: number; thread: string; falseFailures: number; packetsPerSecond: number }[] =
  []
for (const burstMs of bursts) {
  for (const threaded of [false, true]) {
    const r = await run(threaded, burstMs)
    rows.push({
      burstMs,
      thread: threaded ? 'worker' : 'main',
      falseFailures: r.falseFailures,
      packetsPerSecond: Math.round(r.packets / seconds)
    })
  }
}
console.log(
  `heartbeat detection 100 ms x 3 (300 ms) under AES-GCM bursts on the main thread, ${seconds} s per run`
)
console.log('burst ms | detector on | false failures | AES-GCM 1400 B packets/s on the main thread')
for (const r of rows) {
  console.log(
    `${String(r.burstMs).padStart(8)} | ${r.thread.padEnd(11)} | ${String(r.falseFailures).padStart(14)} | ${r.packetsPerSecond}`
  )
}
console.log(JSON.stringify({ bench: 'detector', seconds, rows }))
