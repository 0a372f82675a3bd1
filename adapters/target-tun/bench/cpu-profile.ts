/**
 * Reads a V8 `.cpuprofile` (from `node --cpu-prof`) and says where the CPU time of a time window
 * went: self time per stage of the data path and per function. Used by `npm run bench:dataplane
 * -- --profile`.
 */
import { readFileSync } from 'node:fs'

interface CallFrame {
  functionName: string
  url: string
  lineNumber: number
}

interface ProfileNode {
  id: number
  callFrame: CallFrame
  children?: number[]
}

interface CpuProfile {
  nodes: ProfileNode[]
  startTime: number
  samples: number[]
  timeDeltas: number[]
}

/** Self time in one window of a profile, in microseconds. */
export interface ProfileSummary {
  /** Sampled time in the window, idle included. */
  totalUs: number
  /** Time the thread was idle (waiting in epoll). */
  idleUs: number
  /** Busy time per stage. */
  stages: Map<string, number>
  /** Busy time per function (`name file:line`). */
  functions: Map<string, number>
}

/**
 * The stage of the data path a function belongs to, from its file and name. The order matters:
 * the first match wins.
 */
const STAGES: [string, (f: CallFrame) => boolean][] = [
  ['garbage collection', (f) => f.functionName === '(garbage collector)'],
  ['idle', (f) => f.functionName === '(idle)'],
  ['native / VM (program)', (f) => f.functionName === '(program)'],
  ['ESP engine (SAD, SPD, replay)', (f) => /esp-software\/src/.test(f.url)],
  ['cluster link: frame crypto', (f) => /cluster-link-udp\/src\/secure-frame/.test(f.url)],
  ['cluster link: codec', (f) => /cluster-link-udp\/src\/codec/.test(f.url)],
  ['cluster link: socket', (f) => /cluster-link-udp\/src/.test(f.url)],
  ['packet parsing (wire)', (f) => /packages\/wire\/src/.test(f.url)],
  ['DP routing (core)', (f) => /packages\/core\/src\/(distribution|connection)/.test(f.url)],
  ['target stack (core)', (f) => /packages\/core\/src\/target-stack/.test(f.url)],
  ['TUN device (koffi)', (f) => /target-tun\/src|koffi/.test(f.url)],
  ['IKE', (f) => /ike-v2\/src/.test(f.url)],
  ['heartbeats / detector', (f) => /detector-heartbeat/.test(f.url)],
  [
    'UDP sockets: sendmmsg / recvmmsg (koffi)',
    // the koffi-bound system calls are the unnamed functions of mmsg.ts and libc.ts
    (f) =>
      /network-linux\/src\/(mmsg|libc)/.test(f.url) &&
      (f.functionName === '' || f.functionName === '(anonymous)')
  ],
  ['UDP sockets: batching (JS)', (f) => /network-linux\/src/.test(f.url)],
  ['UDP sockets (node:dgram)', (f) => /node:(dgram|internal\/dgram|net)/.test(f.url)],
  ['RxJS events', (f) => /rxjs/.test(f.url)],
  ['buffers', (f) => /node:(buffer|internal\/buffer)/.test(f.url)],
  [
    'timers, event loop',
    (f) => /node:internal\/(timers|process|async_hooks)|node:timers/.test(f.url)
  ],
  ['node internals, other', (f) => f.url.startsWith('node:')],
  ['logging, metrics', (f) => /pino|prom-client|sonic-boom/.test(f.url)],
  ['other vipsec', (f) => /\/(packages|adapters)\//.test(f.url)],
  ['other', () => true]
]

function stageOf(frame: CallFrame): string {
  for (const [name, test] of STAGES) if (test(frame)) return name
  return 'other'
}

/**
 * The stage of a sample: the time of node:crypto and of `@vipsec/aead` (libcrypto through koffi)
 * goes to the vipsec code that called it (ESP or the cluster link), each as its own "crypto"
 * stage.
 */
function sampleStage(node: ProfileNode, parents: Map<number, ProfileNode>): string {
  const url = node.callFrame.url
  const library = /node:internal\/crypto/.test(url)
    ? 'node:crypto'
    : /packages\/aead\/src/.test(url)
      ? 'aead'
      : undefined
  if (library === undefined) return stageOf(node.callFrame)
  for (let p = parents.get(node.id); p !== undefined; p = parents.get(p.id)) {
    if (/esp-software\/src/.test(p.callFrame.url)) return `crypto: ESP (${library})`
    if (/cluster-link-udp|detector-heartbeat/.test(p.callFrame.url))
      return `crypto: cluster link (${library})`
    if (/ike-v2/.test(p.callFrame.url)) return 'IKE'
  }
  return `crypto: other (${library})`
}

/**
 * Sums self time per stage and per function over the samples taken in `[fromUs, toUs]` (the
 * V8 clock: CLOCK_MONOTONIC in microseconds, as `process.hrtime.bigint() / 1000n`).
 *
 * @param file - the `.cpuprofile`
 * @param fromUs - window start
 * @param toUs - window end
 */
export function summarizeProfile(file: string, fromUs: number, toUs: number): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parents = new Map<number, ProfileNode>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parents.set(c, n)
  const stages = new Map<string, number>()
  const functions = new Map<string, number>()
  let t = profile.startTime
  let totalUs = 0
  let idleUs = 0
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i] ?? 0
    t += delta
    if (t < fromUs || t > toUs) continue
    const node = byId.get(profile.samples[i]!)
    if (node === undefined) continue
    totalUs += delta
    const stage = sampleStage(node, parents)
    if (stage === 'idle') {
      idleUs += delta
      continue
    }
    stages.set(stage, (stages.get(stage) ?? 0) + delta)
    const f = node.callFrame
    const where =
      f.url === '' ? '' : ` ${f.url.replace(/^.*\/(packages|adapters)\//, '')}:${f.lineNumber + 1}`
    const name = `${f.functionName || '(anonymous)'}${where}`
    functions.set(name, (functions.get(name) ?? 0) + delta)
  }
  return { totalUs, idleUs, stages, functions }
}

/**
 * Formats a summary as two tables: stages and the top functions, in microseconds per packet.
 *
 * @param title - what was profiled
 * @param summary - from {@link summarizeProfile}
 * @param packets - packets that went through in the window
 * @param top - how many functions to list
 */
export function formatSummary(
  title: string,
  summary: ProfileSummary,
  packets: number,
  top = 15
): string {
  const per = (us: number): string => (us / Math.max(1, packets)).toFixed(2).padStart(8)
  const busy = summary.totalUs - summary.idleUs
  const lines = [
    `${title}: ${packets} packets, busy ${(busy / 1000).toFixed(0)} ms of ${(summary.totalUs / 1000).toFixed(0)} ms sampled, ${per(busy).trim()} us/packet`,
    `  ${'stage'.padEnd(34)} us/packet  share`
  ]
  const sorted = [...summary.stages].sort((a, b) => b[1] - a[1])
  for (const [name, us] of sorted) {
    lines.push(`  ${name.padEnd(34)} ${per(us)}  ${((100 * us) / busy).toFixed(1).padStart(5)}%`)
  }
  lines.push(`  top functions (self time)`)
  for (const [name, us] of [...summary.functions].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    lines.push(`  ${per(us)}  ${name}`)
  }
  return lines.join('\n')
}
