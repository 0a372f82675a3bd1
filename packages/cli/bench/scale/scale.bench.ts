/**
 * npm run bench:scale — a takeover at scale with real processes: two distribution processors
 * (`vipsec node`, dp-1 the owner, dp-2 its heir) and one target in network namespaces, Redis as
 * the coupling store (the cluster fixture of the system tests), and N remote peers, vipsec's own
 * IKEv2 initiators (bench/scale/peers.ts, up to 2,000 peers per process, each peer with its own
 * outer address, ESP engine and one Child SA), each sending a request through its tunnel every
 * `--interval` ms to the target's request-response app. For each N:
 *
 * - the owner's RSS per tunnel (after every peer answered, less before the first connected) and
 *   the store's size (Redis `used_memory` and keys, the same way);
 * - after `kill -9` of the owner: the time until the first and until every peer answers again
 *   (counting only answers to requests sent after the kill), in each mode of `--mode`:
 *   `renegotiation` (the heir renegotiates every IKE and Child SA from the store's records) and
 *   `warm` (the DVIPA has `warm: true`: the heir adopts the sealed IKE SAs, same SPIs and keys,
 *   and syncs the message IDs with each peer by RFC 6311; what it cannot adopt it renegotiates);
 * - in both modes, how many IKE SAs the heir adopted and how many fell back (its takeover
 *   report), how many peers' IKE SAs changed across the takeover (their SPIs before the kill and
 *   after every peer answered) and the peers' ESP drops meanwhile (replay, ICV, window);
 * - the heir's CPU during the recovery (kill to every peer answering, from /proc), its takeover
 *   report's steps, and what it logged meanwhile.
 *
 * Prints a table (one row per N and mode, beside the failure detection time of the heartbeats,
 * 100 ms x 3) and one JSON line. Needs root (namespaces) and redis-server. The peers announce
 * RFC 6311 support in both modes (`peers.ts --warm`), so the two modes differ only by the
 * DVIPA's `warm`.
 *
 * Options: `--peers 100,1000` (default; 10000 also works: about 10 minutes, most of it the peers
 * connecting), `--mode renegotiation,warm` (default both; each N is run in each mode, in that
 * order), `--interval 500` (ms between a peer's requests), `--concurrency 64` (handshakes
 * the peers run at once while connecting), `--heir-concurrency N` (the DPs'
 * `takeover.renegotiation_concurrency`; the product's default, 64, when not given),
 * `--profile` (run the heir under `node --cpu-prof` and print where its CPU went from the kill
 * until every peer answered), `--keep` (keep the folder with the logs and profiles).
 */
import { randomBytes } from 'node:crypto'
import { readFileSync, readdirSync, rmSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import type { ChildProcess } from 'node:child_process'
import {
  ADDR,
  ClusterFixture,
  DVIPA,
  root,
  sh,
  waitFor,
  type ClusterFixtureOptions
} from '../../test/helpers/cluster-fixture.js'
import { INNER_NET, MAX_PEERS, PEER_NET } from './topology.js'

/** The profile reader of bench:dataplane (adapters/target-tun/bench/cpu-profile.ts), as used here. */
interface ProfileReader {
  summarizeProfile(
    file: string,
    fromUs: number,
    toUs: number
  ): {
    totalUs: number
    idleUs: number
    stages: Map<string, number>
    functions: Map<string, number>
  }
  formatSummary(title: string, summary: unknown, packets: number, top?: number): string
}

const { values } = parseArgs({
  options: {
    peers: { type: 'string' },
    mode: { type: 'string' },
    interval: { type: 'string' },
    concurrency: { type: 'string' },
    'heir-concurrency': { type: 'string' },
    profile: { type: 'boolean' },
    keep: { type: 'boolean' }
  }
})
const SIZES = (values.peers ?? '100,1000').split(',').map(Number)
const INTERVAL_MS = Number(values.interval ?? 500)
const CONCURRENCY = Number(values.concurrency ?? 64)
const HEIR_CONCURRENCY =
  values['heir-concurrency'] === undefined ? undefined : Number(values['heir-concurrency'])
const PROFILE = values.profile === true
const PER_PROCESS = 2000
const TICKS = 100 // USER_HZ: /proc/<pid>/stat times are in 1/100 s
const CLUSTER_ID = 'vpn.cluster.test'
/** The heartbeat detector's default (docs/node.md): a failure is declared after 100 ms x 3. */
const DETECTION_MS = 100 * 3
type Mode = 'renegotiation' | 'warm'
const MODES = (values.mode ?? 'renegotiation,warm').split(',') as Mode[]
for (const m of MODES)
  if (m !== 'renegotiation' && m !== 'warm')
    throw new Error(`--mode: ${String(m)} is not renegotiation or warm`)

for (const n of SIZES)
  if (!Number.isInteger(n) || n < 1 || n > MAX_PEERS)
    throw new Error(`--peers: ${n} is not 1 to ${MAX_PEERS}`)

/** The cluster fixture with one connection for every peer (identities peerK.scale.test). */
class ScaleCluster extends ClusterFixture {
  constructor(
    options: ClusterFixtureOptions,
    readonly peers: number
  ) {
    super(options)
  }

  override clusterYaml(): string {
    return `store: { type: redis, address: ${ADDR.store}:6379, prefix: "${this.prefix}" }
nodes:
${[...this.dps, ...this.targets].map((n) => `  ${n}: ${ADDR[n]}`).join('\n')}
dvipas:
  ${DVIPA}: { ranks: [${this.dps.join(', ')}], targets: [${this.targets.join(', ')}]${this.options.dvipaExtra ?? ''} }
takeover: { renegotiation_deadline: 600s${HEIR_CONCURRENCY === undefined ? '' : `, renegotiation_concurrency: ${HEIR_CONCURRENCY}`} }
connections:
  peers:
    proposals: aes256gcm16-prfsha256-x25519
    rekey_time: 0
    local: { id: ${CLUSTER_ID} }
    remote: { auth: psk }
    children:
      net: { local_ts: 10.77.0.0/24, remote_ts: ${INNER_NET}, esp_proposals: aes256gcm16, rekey_time: 0 }
`
  }

  override secretsYaml(): string {
    const ids = Array.from({ length: this.peers }, (_, i) => `peer${i + 1}.scale.test`)
    return `ike:\n  peers: { id: [${ids.join(', ')}], secret: "${this.psk}" }\nstore: { password: "${this.redisPassword}" }\n${this.options.secretsExtra ?? ''}`
  }
}

/** One load-generator process and its answers, line by line. */
class Generator {
  private readonly waiting: ((line: Record<string, unknown>) => void)[] = []
  readonly stderr: string[] = []

  constructor(readonly proc: ChildProcess) {
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      const parsed = JSON.parse(line) as Record<string, unknown>
      this.waiting.shift()?.(parsed)
    })
    createInterface({ input: proc.stderr! }).on('line', (line) => {
      this.stderr.push(line)
      if (this.stderr.length > 20) this.stderr.shift()
    })
  }

  /** The next line it prints. */
  next(): Promise<Record<string, unknown>> {
    return new Promise((resolve) => this.waiting.push(resolve))
  }

  /** Sends a command and waits for its answer. */
  ask(command: string): Promise<Record<string, unknown>> {
    const answer = this.next()
    this.proc.stdin!.write(`${command}\n`)
    return answer
  }
}

interface Row {
  peers: number
  mode: Mode
  /** Heartbeat interval x multiplier: the part of the recovery spent noticing the failure. */
  detectionMs: number
  connectSeconds: number
  connectFailed: number
  ownerRssMb: { before: number; after: number; perTunnelKb: number }
  /** The owner's CPU from the first connect until the store held every IKE SA, per tunnel. */
  ownerSetupCpuMsPerTunnel: number
  /** From every peer connected until the store held the records of every IKE SA. */
  storeSettleMs: number
  /** IKE SAs (phase 1 records) in the store at the kill. */
  storedIkeSas: number
  store: { keys: number; usedMb: number; perTunnelBytes: number }
  recovery: {
    firstAnswerMs: number
    allAnswerMs: number
    answered: number
    heirCpuMs: number
    heirCpuMsPerTunnel: number
    heirCpuToCompletedMs: number
    takeoverMs: number
    steps: Record<string, number>
    renegotiated: number
    failed: number
    failedReasons: string[]
    /** IKE SAs the heir adopted (warm mode; 0 in renegotiation mode). */
    adopted: number
    /** IKE SAs that went to renegotiation in warm mode, and why (reason: count). */
    fellBack: number
    fellBackReasons: Record<string, number>
    /** Peers whose only IKE SA before the kill was still their only one after (same SPIs). */
    ikeSaKept: number
    /** Peers whose IKE SA changed (renegotiated, or none or several after). */
    ikeSaChanged: number
    /** The peers' ESP drops by reason from the kill until every peer answered. */
    peerEspDropped: Record<string, number>
    heirLogLines: number
  }
  load: number[]
}

function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS // utime + stime
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m === null ? NaN : Number(m[1]) / 1024
}

function storeSize(cluster: ClusterFixture): { keys: number; used: number } {
  const info = cluster.redisCli('info', 'memory')
  const used = Number(/used_memory:(\d+)/.exec(info)?.[1] ?? NaN)
  return { keys: Number(cluster.redisCli('dbsize').trim()), used }
}

/** Counts the phase 1 fields of a hash, in the store (listing them overflows the pipe at 10,000). */
const COUNT_PHASE1 = `local n = 0
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, 7) == 'phase1/' then n = n + 1 end
end
return n`

/** Phase 1 records in the store's records hash of the DVIPA. */
function storedPhase1(cluster: ClusterFixture): number {
  const out = cluster.redisCli('eval', COUNT_PHASE1, '1', `${cluster.prefix}{${DVIPA}}:records`)
  return Number(out.trim())
}

/**
 * Waits until the store holds a phase 1 record for each of `n` IKE SAs (or `timeoutMs` passed):
 * how long that took and how many it held.
 */
async function storeSettled(
  cluster: ClusterFixture,
  n: number,
  since: number,
  timeoutMs: number
): Promise<{ ms: number; phase1: number }> {
  const t0 = Date.now()
  let phase1 = 0
  while (Date.now() - t0 < timeoutMs) {
    phase1 = storedPhase1(cluster)
    if (phase1 >= n) break
    await new Promise((r) => setTimeout(r, 200))
  }
  return { ms: Date.now() - since, phase1 }
}

/** The peers' ESP drops summed over the generators. */
function sumDrops(reports: Record<string, unknown>[]): Record<string, number> {
  const sum: Record<string, number> = {}
  for (const r of reports)
    for (const [reason, count] of Object.entries(r.espDropped as Record<string, number>))
      sum[reason] = (sum[reason] ?? 0) + count
  return sum
}

/** `after` less `before`, reasons without a change left out. */
function dropsSince(
  before: Record<string, number>,
  after: Record<string, number>
): Record<string, number> {
  return Object.fromEntries(
    Object.entries(after)
      .map(([reason, count]) => [reason, count - (before[reason] ?? 0)] as const)
      .filter(([, d]) => d !== 0)
  )
}

/** Every peer's IKE SA SPIs, by peer number. */
async function peerSpis(generators: Generator[]): Promise<Map<string, string[]>> {
  const answers = await Promise.all(generators.map((g) => g.ask('spis')))
  return new Map(answers.flatMap((a) => Object.entries(a.spis as Record<string, string[]>)))
}

async function measure(n: number, mode: Mode): Promise<Row> {
  const tag = `vsc${process.pid % 1000}`
  const warmKey = randomBytes(32).toString('hex')
  const cluster = new ScaleCluster(
    {
      tag,
      dps: 2,
      targets: 1,
      charon: false,
      ...(mode === 'warm'
        ? {
            dvipaExtra: ', warm: true',
            secretsExtra: `warm_keys:\n  current: w1\n  keys: { w1: "${warmKey}" }\n`
          }
        : {}),
      nodeArgs: PROFILE ? { 'dp-2': ['--cpu-prof', '--cpu-prof-interval=500'] } : {}
    },
    n
  )
  const generators: Generator[] = []
  const profileDir = join(cluster.dir, 'profile')
  if (PROFILE) cluster.options.nodeArgs!['dp-2']!.push(`--cpu-prof-dir=${profileDir}`)
  const window = { from: 0, to: 0 }
  try {
    await cluster.up()
    // the peers' outer addresses: any address of PEER_NET is local in the peer namespace, and
    // the DPs route PEER_NET to it
    sh('ip', ['-n', cluster.ns('peer'), 'route', 'add', 'local', PEER_NET, 'dev', 'lo'])
    for (const dp of cluster.dps)
      sh('ip', ['-n', cluster.ns(dp), 'route', 'add', PEER_NET, 'via', ADDR.peer!])
    const owner = cluster.node('dp-1')
    const heir = cluster.node('dp-2')
    const rssBefore = rssMb(owner.proc.pid!)
    const store0 = storeSize(cluster)
    for (let from = 1; from <= n; from += PER_PROCESS) {
      const count = Math.min(PER_PROCESS, n - from + 1)
      const proc = cluster.spawnIn(
        'peer',
        process.execPath,
        [
          ...['--import', 'tsx', '--conditions=vipsec-source'],
          join(root, 'packages/cli/bench/scale/peers.ts'),
          ...['--from', String(from), '--count', String(count), '--dvipa', DVIPA],
          ...['--psk', cluster.psk, '--cluster-id', CLUSTER_ID, '--warm']
        ],
        'pipe'
      )
      const g = new Generator(proc)
      const ready = await Promise.race([
        g.next(),
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 120_000))
      ])
      if (ready?.type !== 'ready') throw new Error(`peers: ${g.stderr.join('\n')}`)
      generators.push(g)
    }
    const t0 = Date.now()
    const ownerCpu0 = cpuMs(owner.proc.pid!)
    const per = Math.max(1, Math.floor(CONCURRENCY / generators.length))
    const connected = await Promise.all(generators.map((g) => g.ask(`connect ${per}`)))
    const connectSeconds = (Date.now() - t0) / 1000
    const connectFailed = connected.reduce((s, c) => s + Number(c.failed), 0)
    for (const g of generators) g.proc.stdin!.write(`traffic ${INTERVAL_MS}\n`)
    // every peer answers before the kill
    const answered = async (since: number, deadlineMs: number) => {
      const end = Date.now() + deadlineMs
      for (const g of generators) await g.ask(`mark ${since}`)
      for (;;) {
        const reports = await Promise.all(generators.map((g) => g.ask('report')))
        const firsts = reports.flatMap((r) => r.firsts as number[]).sort((a, b) => a - b)
        if (firsts.length >= n - connectFailed || Date.now() > end) return firsts
        await new Promise((r) => setTimeout(r, 100))
      }
    }
    const connectedAt = Date.now()
    const warm = await answered(Date.now(), 60_000)
    if (warm.length < n - connectFailed)
      console.error(`${n}: only ${warm.length} peers answered before the kill`)
    // the owner writes its records in the background: wait until the store holds them all
    const settled = await storeSettled(cluster, n - connectFailed, connectedAt, 60_000 + n * 20)
    const ownerCpuSetup = cpuMs(owner.proc.pid!) - ownerCpu0
    const rssAfter = rssMb(owner.proc.pid!)
    const store1 = storeSize(cluster)
    const heirPid = heir.proc.pid!
    const linesBefore = heir.lines.length
    const spisBefore = await peerSpis(generators)
    const dropsBefore = sumDrops(await Promise.all(generators.map((g) => g.ask('report'))))

    // the kill
    // the mark goes to the peers after the kill: marked before it, requests sent while the
    // generators took the mark were still answered by the old owner, a first answer at 3 ms
    const cpu0 = cpuMs(heirPid)
    window.from = Number(process.hrtime.bigint() / 1000n)
    const killAt = Date.now()
    owner.kill('SIGKILL')
    for (const g of generators) await g.ask(`mark ${killAt}`)
    let cpuAtCompleted = NaN
    const end = Date.now() + 120_000 + n * 50
    let firsts: number[] = []
    // the heir's CPU when the last peer so far answered: a peer that never answers (its
    // renegotiation failed) ends the wait 20 s after the takeover completed, and the CPU the
    // heir spent carrying the others' traffic meanwhile is not counted
    let heirCpu = 0
    let progressAt = Date.now()
    let dropsAfter = dropsBefore
    for (;;) {
      const cpu = cpuMs(heirPid) - cpu0
      if (Number.isNaN(cpuAtCompleted) && heir.has('takeover:completed')) cpuAtCompleted = cpu
      const reports = await Promise.all(generators.map((g) => g.ask('report')))
      const now = reports.flatMap((r) => r.firsts as number[]).sort((a, b) => a - b)
      dropsAfter = sumDrops(reports)
      if (now.length > firsts.length) {
        heirCpu = cpu
        progressAt = Date.now()
        window.to = Number(process.hrtime.bigint() / 1000n)
      }
      firsts = now
      if (firsts.length >= n - connectFailed || Date.now() > end) break
      if (!Number.isNaN(cpuAtCompleted) && Date.now() - progressAt > 20_000) break
      await new Promise((r) => setTimeout(r, 100))
    }
    await waitFor(() => heir.has('takeover:completed'), 30_000, 'takeover:completed').catch(
      () => undefined
    )
    if (Number.isNaN(cpuAtCompleted)) cpuAtCompleted = cpuMs(heirPid) - cpu0
    const completed = heir.lines.find((l) => l.type === 'takeover:completed') as
      | {
          report?: {
            durationMs: number
            steps: { step: string; durationMs: number }[]
            renegotiated: number
            failed: { reason: string }[]
            adopted?: string[]
            fellBack?: { phase1Id: string; reason: string }[]
          }
        }
      | undefined
    const report = completed?.report
    const spisAfter = await peerSpis(generators)
    let ikeSaKept = 0
    let ikeSaChanged = 0
    for (const [k, before] of spisBefore) {
      if (before.length !== 1) continue // its connect failed
      const after = spisAfter.get(k) ?? []
      if (after.length === 1 && after[0] === before[0]) ikeSaKept++
      else ikeSaChanged++
    }
    const fellBackReasons: Record<string, number> = {}
    for (const f of report?.fellBack ?? [])
      fellBackReasons[f.reason] = (fellBackReasons[f.reason] ?? 0) + 1
    return {
      peers: n,
      mode,
      detectionMs: DETECTION_MS,
      connectSeconds,
      connectFailed,
      ownerRssMb: {
        before: rssBefore,
        after: rssAfter,
        perTunnelKb: ((rssAfter - rssBefore) * 1024) / n
      },
      ownerSetupCpuMsPerTunnel: ownerCpuSetup / n,
      storeSettleMs: settled.ms,
      storedIkeSas: settled.phase1,
      store: {
        keys: store1.keys - store0.keys,
        usedMb: (store1.used - store0.used) / 2 ** 20,
        perTunnelBytes: (store1.used - store0.used) / n
      },
      recovery: {
        firstAnswerMs: (firsts[0] ?? NaN) - killAt,
        allAnswerMs: (firsts.at(-1) ?? NaN) - killAt,
        answered: firsts.length,
        heirCpuMs: heirCpu,
        heirCpuMsPerTunnel: heirCpu / n,
        heirCpuToCompletedMs: cpuAtCompleted,
        takeoverMs: report?.durationMs ?? NaN,
        steps: Object.fromEntries((report?.steps ?? []).map((s) => [s.step, s.durationMs])),
        renegotiated: report?.renegotiated ?? 0,
        failed: report?.failed.length ?? NaN,
        failedReasons: [...new Set(report?.failed.map((f) => f.reason) ?? [])],
        adopted: report?.adopted?.length ?? 0,
        fellBack: report?.fellBack?.length ?? 0,
        fellBackReasons,
        ikeSaKept,
        ikeSaChanged,
        peerEspDropped: dropsSince(dropsBefore, dropsAfter),
        heirLogLines: heir.lines.length - linesBefore
      },
      load: loadavg().map((l) => Number(l.toFixed(2)))
    }
  } finally {
    for (const g of generators) g.proc.stdin!.end('exit\n')
    await new Promise((r) => setTimeout(r, 500))
    // the heir writes its profile into the cluster's folder as it exits: keep the folder until
    // the profile is read
    if (values.keep === true || PROFILE) process.env.KEEP_CLUSTER_DIR = '1'
    await cluster.down().catch((err: Error) => console.error(`down: ${err.message}`))
    if (PROFILE) {
      const file = readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile'))
      if (file === undefined) console.error('no profile was written')
      else {
        const { summarizeProfile, formatSummary } = (await import(
          join(root, 'adapters/target-tun/bench/cpu-profile.ts')
        )) as ProfileReader
        const summary = summarizeProfile(join(profileDir, file), window.from, window.to)
        console.log(
          formatSummary(`heir (dp-2), ${n} peers, kill to all answering (per peer)`, summary, n, 25)
        )
        console.log(
          JSON.stringify({
            bench: 'scale-profile',
            peers: n,
            busyMs: (summary.totalUs - summary.idleUs) / 1000,
            stages: Object.fromEntries([...summary.stages].map(([k, v]) => [k, v / 1000])),
            top: [...summary.functions]
              .sort((a, b) => b[1] - a[1])
              .slice(0, 25)
              .map(([name, us]) => ({ name, ms: us / 1000 }))
          })
        )
      }
    }
    if (values.keep === true) console.error(`kept ${cluster.dir}`)
    else if (PROFILE) rmSync(cluster.dir, { recursive: true, force: true })
  }
}

const rows: Row[] = []
for (const n of SIZES)
  for (const mode of MODES) {
    rows.push(await measure(n, mode))
    console.error(JSON.stringify(rows.at(-1)))
  }

const f = (x: number, d = 1): string => (Number.isFinite(x) ? x.toFixed(d) : '-')
console.log(
  `takeover at scale: 2 DPs + 1 target (vipsec node), Redis, N peers (vipsec IKEv2 initiators), ` +
    `a request every ${INTERVAL_MS} ms per peer; detection ${DETECTION_MS} ms (100 ms x 3); load ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`
)
console.log(
  'peers | mode          | connect s | owner RSS KB/tunnel | store B/tunnel | keys | first answer ms | all answer ms | heir CPU ms | CPU ms/tunnel | takeover ms | failed | adopted | fell back | IKE SA changed | peer replay/ICV drops | load 1m | log lines'
)
for (const r of rows) {
  const x = r.recovery
  const bad =
    (x.peerEspDropped.replay ?? 0) +
    (x.peerEspDropped['icv-failure'] ?? 0) +
    (x.peerEspDropped['outside-window'] ?? 0)
  console.log(
    [
      String(r.peers).padStart(5),
      r.mode.padEnd(13),
      f(r.connectSeconds).padStart(9),
      f(r.ownerRssMb.perTunnelKb).padStart(18),
      f(r.store.perTunnelBytes, 0).padStart(14),
      String(r.store.keys).padStart(4),
      f(x.firstAnswerMs, 0).padStart(15),
      f(x.allAnswerMs, 0).padStart(13),
      f(x.heirCpuMs, 0).padStart(11),
      f(x.heirCpuMsPerTunnel, 2).padStart(13),
      f(x.takeoverMs, 0).padStart(11),
      f(x.failed, 0).padStart(6),
      String(x.adopted).padStart(7),
      String(x.fellBack).padStart(9),
      String(x.ikeSaChanged).padStart(14),
      String(bad).padStart(21),
      f(r.load[0] ?? NaN, 2).padStart(7),
      String(x.heirLogLines).padStart(9)
    ].join(' | ')
  )
}
console.log(
  JSON.stringify({ bench: 'scale', intervalMs: INTERVAL_MS, detectionMs: DETECTION_MS, rows })
)
