/**
 * Where the time of a full IKEv2 handshake goes: the workload of `npm run bench:ike` (two
 * IkeV2Services, PSK, Curve25519, AES-GCM-256, one Child SA, 32 in flight), warmed up with 1,000
 * handshakes, then IKE_PROFILE_HANDSHAKES (2,000) of them under the V8 CPU profiler. Writes the
 * profile (for Chrome DevTools or speedscope) to IKE_PROFILE_OUT (default: a file in the temp
 * directory) and prints the self time by source file and the functions with the most self time.
 *
 * Run: node --import tsx --conditions=vipsec-source adapters/ike-v2/bench/ike-profile.bench.ts
 */
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { handshakePair } from './handshakes.js'

const N = Number(process.env.IKE_PROFILE_HANDSHAKES ?? 2000)
const OUT = process.env.IKE_PROFILE_OUT ?? join(tmpdir(), `ike-handshake-${process.pid}.cpuprofile`)

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string }
  children?: number[]
}
interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

/** A source file's short name: its package and path, or the node-internal module. */
function fileOf(url: string): string {
  const m = /\/((?:adapters|packages)\/.*)$/.exec(url) ?? /node_modules\/(.*)$/.exec(url)
  return m?.[1] ?? url
}

function report(profile: Profile): void {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const self = new Map<number, number>()
  let total = 0
  profile.samples.forEach((id, i) => {
    self.set(id, (self.get(id) ?? 0) + profile.timeDeltas[i])
    total += profile.timeDeltas[i]
  })
  const byFile = new Map<string, number>()
  const byFunction = new Map<string, number>()
  for (const [id, t] of self) {
    const n = byId.get(id)!
    const name = n.callFrame.functionName
    // native frames (no url) are charged to the nearest caller with a source file
    let at: ProfileNode | undefined = n
    while (at !== undefined && at.callFrame.url === '' && parent.has(at.id)) {
      at = byId.get(parent.get(at.id)!)
    }
    const file = name.startsWith('(') ? name : fileOf(at?.callFrame.url ?? '')
    byFile.set(file, (byFile.get(file) ?? 0) + t)
    const fn = `${name || '(anonymous)'} ${fileOf(n.callFrame.url)}`
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + t)
  }
  const top = (m: Map<string, number>, k: number): string =>
    [...m]
      .sort((x, y) => y[1] - x[1])
      .slice(0, k)
      .map(([name, t]) => `${((100 * t) / total).toFixed(1).padStart(6)}%  ${name}`)
      .join('\n')
  console.log(`self time by source file (${(total / 1e6).toFixed(2)} s sampled):`)
  console.log(top(byFile, 25))
  console.log('')
  console.log('functions with the most self time:')
  console.log(top(byFunction, 30))
}

const pair = await handshakePair()
await pair.run(1000, 32)
const session = new Session()
session.connect()
await session.post('Profiler.enable')
await session.post('Profiler.setSamplingInterval', { interval: 200 })
await session.post('Profiler.start')
const t0 = process.hrtime.bigint()
await pair.run(N, 32)
const seconds = Number(process.hrtime.bigint() - t0) / 1e9
const { profile } = await session.post('Profiler.stop')
session.disconnect()
await pair.stop()
writeFileSync(OUT, JSON.stringify(profile))
console.log(
  `${N} handshakes profiled at ${(N / seconds).toFixed(0)}/s (the profiler slows them); profile: ${OUT}`
)
console.log('')
report(profile as unknown as Profile)
