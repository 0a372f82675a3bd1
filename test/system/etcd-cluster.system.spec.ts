// A real vipsec cluster on a real three-member etcd cluster: three `vipsec node` distribution
// processors and two targets, each etcd member, and strongSwan charon as the remote peer, every
// one in a network namespace of its own, joined by a switch namespace whose links the test cuts
// (adapters/store-etcd/test/partition-net.ts). A client behind charon sends on four flows every
// 10 ms through the tunnel to the service behind the DVIPA. Under that traffic:
//   (a) the owner is killed with SIGKILL, and the etcd leader is killed as a backup claims;
//   (b) the owner is cut off together with one etcd member (a minority) from the other two
//       members, the other DPs, the targets and the peer;
//   (c) every etcd member is killed and started again.
// Each time: nothing the store acknowledged is lost (the records read before the fault are
// renegotiated or still there), no two DPs serve at once (one claimer per epoch, serving
// intervals that do not overlap, one DP owning in the nodes' /metrics and in the store, one MAC
// answering ARP for the DVIPA), and traffic comes back through the tunnel.
// Last, five SIGKILL failovers on etcd and five on Redis (the same cluster on one redis-server)
// print the outage the client saw, side by side; only the return of service is asserted.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { Charon, sh } from '../../adapters/ike-v2/test/helpers/netns.js'
import { EtcdCluster } from '../../adapters/store-etcd/test/etcd-cluster.js'
import { PartitionNet } from '../../adapters/store-etcd/test/partition-net.js'
import { writeKeyFile } from '../../packages/cli/src/index.js'
import { NodeProcess } from './helpers/node-process.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const PSK = 'etcd cluster system test key'
const REDIS_PASSWORD = 'etcd cluster system test password'
const SERVICE = '10.77.0.10'
const INNER = '172.16.2.1'
const DPS = ['dp-1', 'dp-2', 'dp-3']
const TARGETS = ['target-1', 'target-2']
const MEMBERS = ['m0', 'm1', 'm2']
/** Namespace names (letters and digits) of the vipsec nodes. */
const NET_NAME: Record<string, string> = {
  'dp-1': 'dp1',
  'dp-2': 'dp2',
  'dp-3': 'dp3',
  'target-1': 't1',
  'target-2': 't2'
}
const ids = { cluster: 'vpn.cluster.test', peer: 'peer.example.test' }
const sleep = async (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Polls `fn` every `every` ms until it returns something other than undefined or false. */
async function until<T>(
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  ms: number,
  what: string,
  every = 100
): Promise<T> {
  const end = Date.now() + ms
  for (;;) {
    const v = await fn()
    if (v !== undefined && v !== false) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(every)
  }
}

/** Runs a command and resolves with its stdout ('' when it fails), at most `ms`. */
async function run(cmd: string, args: string[], ms = 15_000): Promise<string> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: ms, cwd: root }, (err, stdout) =>
      resolve(err === null ? stdout : '')
    )
  })
}

/** One answer the client received. */
interface Answer {
  flow: number
  target: string
  at: number
}

/** The longest time without an answer, from `from` on. */
function longestGap(answers: Answer[], from: number): number {
  const times = answers
    .map((a) => a.at)
    .filter((t) => t >= from - 50)
    .sort((x, y) => x - y)
  let gap = 0
  for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i]! - times[i - 1]!)
  return gap
}

/** What `vipsec status --json` reports for the DVIPA. */
interface StoreView {
  ownership: { owner: string | null; epoch: number } | undefined
  ikeSas: number
  childSas: number
  connections: number
  records: number
  peers: { remoteId: string; children: { localTs: string[]; remoteTs: string[] }[] }[]
}

/** When a DP held the DVIPA, from its log: claimed until lost, fenced or killed. */
interface Serving {
  node: string
  epoch: number
  from: number
  to: number
}

/** The cluster: network, store, nodes, peer and client, for one store type. */
class Fixture {
  private built: Promise<PartitionNet> | undefined
  readonly dir = mkdtempSync(join(tmpdir(), 'vipsec-etcd-cluster-'))
  /** Every node process, the ones killed included (their logs count for "no two serve"). */
  readonly history: { proc: NodeProcess; killedAt?: number }[] = []
  readonly nodes = new Map<string, NodeProcess>()
  etcd: EtcdCluster | undefined
  redis: ChildProcess | undefined
  charon: Charon | undefined
  client: ChildProcess | undefined
  readonly answers: Answer[] = []
  private status: { proc: ChildProcess; waiting: ((line: string) => void)[] } | undefined
  readonly dvipa: string
  private network: PartitionNet | undefined

  constructor(
    readonly store: 'etcd' | 'redis',
    readonly tag: string,
    private readonly octet: number
  ) {
    this.dvipa = `10.${octet}.0.50`
  }

  /** The network, once {@link Fixture.up} built it. */
  get net(): Promise<PartitionNet> {
    if (this.built === undefined) throw new Error('the network is not up')
    return this.built
  }

  /** The network namespace of a vipsec node or a member. */
  ns(node: string): string {
    return this.network!.ns(NET_NAME[node] ?? node)
  }

  /** The address of a vipsec node or a member. */
  addr(node: string): string {
    return this.network!.address(NET_NAME[node] ?? node)
  }

  private clusterYaml(): string {
    const store =
      this.store === 'etcd'
        ? `{ type: etcd, endpoints: [${this.etcd!.hosts.join(', ')}], prefix: "${this.tag}/" }`
        : `{ type: redis, address: ${this.addr('rs')}:6379, prefix: "${this.tag}:" }`
    return `store: ${store}
nodes:
${[...DPS, ...TARGETS].map((n) => `  ${n}: ${this.addr(n)}`).join('\n')}
dvipas:
  ${this.dvipa}: { ranks: [${DPS.join(', ')}], targets: [${TARGETS.join(', ')}] }
detector: { type: heartbeat, interval: 100ms, multiplier: 10 }
takeover: { self_fence: 800ms }
ike: { retransmit_timeout: 500ms, retransmit_base: 2, retransmit_tries: 4 }
connections:
  peer:
    proposals: aes256gcm16-prfsha256-x25519
    rekey_time: 0
    local: { id: ${ids.cluster} }
    remote: { id: ${ids.peer} }
    children:
      net: { local_ts: 10.77.0.0/24, remote_ts: ${INNER}/32, esp_proposals: aes256gcm16, rekey_time: 0 }
`
  }

  private swanctlConf(): string {
    return `connections {
  dvipa {
    version = 2
    local_addrs = ${this.addr('peer')}
    remote_addrs = ${this.dvipa}
    proposals = aes256gcm16-prfsha256-x25519
    encap = yes
    rekey_time = 0
    local {
      auth = psk
      id = ${ids.peer}
    }
    remote {
      auth = psk
      id = ${ids.cluster}
    }
    children {
      net {
        local_ts = ${INNER}/32
        remote_ts = 10.77.0.0/24
        esp_proposals = aes256gcm16
        mode = tunnel
        rekey_time = 0
        start_action = none
      }
    }
  }
}
secrets {
  ike-cluster {
    id-1 = ${ids.peer}
    id-2 = ${ids.cluster}
    secret = "${PSK}"
  }
}
`
  }

  private startRedis(): void {
    const args = ['--bind', this.addr('rs'), '--port', '6379', '--requirepass', REDIS_PASSWORD]
    args.push('--dir', this.dir, '--appendonly', 'yes', '--save', '')
    this.redis = spawn('ip', ['netns', 'exec', this.ns('rs'), 'redis-server', ...args], {
      stdio: 'ignore'
    })
  }

  /** Starts one vipsec node (again) and waits until it logged `node:started`. */
  async startNode(name: string): Promise<NodeProcess> {
    const old = this.nodes.get(name)
    if (old !== undefined) await old.stop()
    const node = new NodeProcess(name, join(this.dir, `${name}.yaml`), this.ns(name))
    this.nodes.set(name, node)
    this.history.push({ proc: node })
    await until(() => node.has('node:started') || !node.running, 60_000, `${name} to start`)
    if (!node.running) throw new Error(`${name} exited: ${JSON.stringify(node.lines.slice(-5))}`)
    return node
  }

  /** Kills a node with SIGKILL and notes when. */
  kill(name: string): number {
    const node = this.nodes.get(name)!
    const at = Date.now()
    node.kill('SIGKILL')
    const entry = this.history.find((h) => h.proc === node)
    if (entry !== undefined) entry.killedAt = at
    return at
  }

  async up(): Promise<void> {
    // built here, not when the suite is defined: a run that skips these tests builds nothing
    const names = [...DPS, ...TARGETS].map((n) => NET_NAME[n]!)
    this.built = PartitionNet.up(this.tag, this.octet, [...names, ...MEMBERS, 'rs', 'peer'])
    this.network = await this.built
    if (this.store === 'etcd') {
      this.etcd = await EtcdCluster.start({
        placement: MEMBERS.map((m) => ({ netns: this.ns(m), host: this.addr(m) })),
        args: ['--heartbeat-interval', '100', '--election-timeout', '1000']
      })
    } else {
      this.startRedis()
      await until(
        async () =>
          (
            await run('ip', [
              ...['netns', 'exec', this.ns('rs'), 'redis-cli', '-h', this.addr('rs')],
              ...['-a', REDIS_PASSWORD, '--no-auth-warning', 'ping']
            ])
          ).includes('PONG'),
        10_000,
        'redis'
      )
    }
    sh('ip', ['-n', this.ns('peer'), 'addr', 'add', `${INNER}/32`, 'dev', 'lo'])
    writeFileSync(join(this.dir, 'cluster.yaml'), this.clusterYaml())
    await writeKeyFile(join(this.dir, 'cluster.key'))
    const store = this.store === 'redis' ? `store: { password: "${REDIS_PASSWORD}" }\n` : ''
    writeFileSync(
      join(this.dir, 'secrets.yaml'),
      `ike:\n  peer: { id: ${ids.peer}, secret: "${PSK}" }\n${store}`,
      { mode: 0o600 }
    )
    for (const name of [...DPS, ...TARGETS]) {
      const apps = TARGETS.includes(name) ? 'apps: [{ app: request-response, port: 7 }]\n' : ''
      writeFileSync(
        join(this.dir, `${name}.yaml`),
        `node: ${name}\ncluster: cluster.yaml\nsecrets: secrets.yaml\ninterface: eth0\nadmin: 127.0.0.1:0\ncluster_key_files: [cluster.key]\n${apps}`
      )
    }
    // dp-1 first, so that it is the one that claims
    const first = await this.startNode('dp-1')
    await until(() => first.has('ownership:claimed'), 60_000, 'dp-1 to claim the DVIPA')
    await Promise.all([...DPS.slice(1), ...TARGETS].map(async (n) => this.startNode(n)))
    this.charon = new Charon(this.ns('peer'))
    await this.charon.start(this.swanctlConf())
    this.charon.swanctl(['--initiate', '--child', 'net'])
    this.startClient()
    await until(
      () =>
        new Set(this.answers.map((a) => a.flow)).size === 4 &&
        new Set(this.answers.map((a) => a.target)).size === 2,
      30_000,
      'answers on all four flows from both targets'
    )
  }

  /** The client behind charon: four flows, a request on each every 10 ms; logs each answer. */
  private startClient(): void {
    const code = `
const dgram = require('node:dgram')
const sockets = [0, 1, 2, 3].map((flow) => {
  const s = dgram.createSocket('udp4')
  s.on('message', (m) => {
    const [target] = m.toString().split(' ')
    process.stdout.write(JSON.stringify({ flow, target, at: Date.now() }) + '\\n')
  })
  s.bind(41000 + flow, '${INNER}')
  return s
})
let seq = 0
const timer = setInterval(() => {
  for (const [flow, s] of sockets.entries()) s.send('req ' + flow + ' ' + seq, 7, '${SERVICE}')
  seq++
}, 10)
setTimeout(() => { clearInterval(timer); process.exit(0) }, 600000)
`
    this.client = spawn('ip', ['netns', 'exec', this.ns('peer'), process.execPath, '-e', code], {
      stdio: ['ignore', 'pipe', 'ignore']
    })
    createInterface({ input: this.client.stdout! }).on('line', (line) =>
      this.answers.push(JSON.parse(line) as Answer)
    )
  }

  async down(): Promise<void> {
    for (const child of [this.client, this.status?.proc])
      if (child?.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL')
    await this.charon?.stop()
    for (const node of this.nodes.values()) await node.stop()
    await this.etcd?.remove()
    if (this.redis?.pid !== undefined && this.redis.exitCode === null)
      process.kill(this.redis.pid, 'SIGKILL')
    await (await this.built?.catch(() => undefined))?.down()
    rmSync(this.dir, { recursive: true, force: true })
  }

  /**
   * What the store holds for the DVIPA, as `vipsec status` reads it (its `readStatus`, with a
   * DP's node file), from one process in target-1's namespace, which every fault leaves on the
   * majority side: a line on its stdin asks, a JSON line answers.
   */
  async storeView(): Promise<StoreView> {
    if (this.status === undefined) {
      const code = `
import { createInterface } from 'node:readline'
import { readStatus, statusTarget } from '@vipsec/cli'
const target = await statusTarget(${JSON.stringify(join(this.dir, 'dp-1.yaml'))})
for await (const _ of createInterface({ input: process.stdin })) {
  try {
    const [view] = await readStatus(target.init, target.dvipas)
    process.stdout.write(JSON.stringify({ view }) + '\\n')
  } catch (err) {
    process.stdout.write(JSON.stringify({ error: String(err) }) + '\\n')
  }
}
`
      const proc = spawn(
        'ip',
        [
          ...['netns', 'exec', this.ns('target-1'), process.execPath, '--import', 'tsx'],
          ...['--conditions=vipsec-source', '--input-type=module', '-e', code]
        ],
        { cwd: root, stdio: ['pipe', 'pipe', 'inherit'] }
      )
      const waiting: ((line: string) => void)[] = []
      createInterface({ input: proc.stdout! }).on('line', (line) => waiting.shift()?.(line))
      this.status = { proc, waiting }
    }
    const { proc, waiting } = this.status
    return until(
      async () => {
        const line = await new Promise<string>((resolve) => {
          waiting.push(resolve)
          proc.stdin!.write('status\n')
        })
        return (JSON.parse(line) as { view?: StoreView }).view
      },
      30_000,
      'the store to answer'
    )
  }

  /** The serving intervals of every DP process so far, from their logs. */
  servings(): Serving[] {
    const out: Serving[] = []
    for (const { proc, killedAt } of this.history) {
      if (!DPS.includes(proc.name)) continue
      let open: { epoch: number; from: number } | undefined
      for (const line of proc.lines) {
        if (line.dvipa !== undefined && line.dvipa !== this.dvipa) continue
        // pino writes ISO times
        const time = typeof line.time === 'string' ? Date.parse(line.time) : NaN
        if (Number.isNaN(time)) continue
        if (line.type === 'ownership:claimed' && typeof line.epoch === 'number') {
          if (open !== undefined) out.push({ node: proc.name, ...open, to: time })
          open = { epoch: line.epoch, from: time }
        } else if (
          open !== undefined &&
          (line.type === 'ownership:lost' ||
            line.type === 'ownership:fenced' ||
            line.type === 'takeover:failed')
        ) {
          out.push({ node: proc.name, ...open, to: time })
          open = undefined
        }
      }
      if (open !== undefined) out.push({ node: proc.name, ...open, to: killedAt ?? Infinity })
    }
    return out
  }

  /** The MACs that answer ARP for the DVIPA, as the peer sees them. */
  async arpAnswers(): Promise<Set<string>> {
    const out = await run('ip', [
      ...['netns', 'exec', this.ns('peer'), 'arping', '-c', '3', '-w', '4'],
      ...['-I', 'eth0', this.dvipa]
    ])
    return new Set([...out.matchAll(/reply from \S+ \[([0-9A-Fa-f:]+)\]/g)].map((m) => m[1]!))
  }

  /** A node's eth0 MAC. */
  mac(name: string): string {
    const out = sh('ip', ['-n', this.ns(name), '-o', 'link', 'show', 'eth0'])
    return /link\/ether ([0-9a-f:]+)/.exec(out)![1]!.toUpperCase()
  }

  /**
   * Whether a node's host has the DVIPA on any device (on eth0, or on the device of a node that
   * holds its addresses for as long as its process lives).
   */
  holdsAddress(name: string): boolean {
    return sh('ip', ['-n', this.ns(name), '-o', 'addr', 'show']).includes(` ${this.dvipa}/`)
  }

  /** Takeovers completed by `name`'s current process. */
  completed(name: string): number {
    return this.nodes.get(name)!.count('takeover:completed')
  }

  /** The last completed takeover report of `name`. */
  lastReport(name: string): {
    epoch: number
    renegotiated: number
    failed: unknown[]
    connections: number
  } {
    const line = this.nodes
      .get(name)!
      .lines.filter((l) => l.type === 'takeover:completed')
      .at(-1)
    return line!.report as never
  }

  /** Writes every node process's log to `dir` (one JSON line file each), for a failed run. */
  saveLogs(dir: string): void {
    mkdirSync(dir, { recursive: true })
    this.history.forEach(({ proc }, i) =>
      writeFileSync(
        join(dir, `${this.store}-${proc.name}-${i}.jsonl`),
        proc.lines.map((l) => JSON.stringify(l)).join('\n') + '\n'
      )
    )
  }

  /**
   * `err` with what each node said last appended to its message, so that the failure summary
   * (what a CI log keeps when its middle is cut) says why something failed.
   */
  explained(err: unknown): Error {
    const error = err instanceof Error ? err : new Error(String(err))
    for (const [name, node] of this.nodes) {
      const tail = node.lines.filter((l) => !String(l.type).startsWith('connection:')).slice(-12)
      error.message += `\n      --- ${name}\n${tail.map((l) => `      ${JSON.stringify(l)}`).join('\n')}`
    }
    return error
  }
}

/**
 * Asserts that no two DPs served at once, now and so far: one claimer per epoch; serving intervals
 * of different DPs do not overlap; exactly one live DP owns the DVIPA in its /metrics, at the
 * store's epoch, and it is the store's owner; it alone holds the address and answers ARP.
 */
async function expectOneServer(f: Fixture): Promise<string> {
  const servings = f.servings()
  expect(servings.length, "serving intervals read from the DPs' logs").to.be.greaterThan(0)
  const byEpoch = new Map<number, Set<string>>()
  for (const s of servings) byEpoch.set(s.epoch, new Set([...(byEpoch.get(s.epoch) ?? []), s.node]))
  for (const [epoch, owners] of byEpoch)
    expect([...owners], `claimers of epoch ${epoch}`).to.have.length(1)
  for (const a of servings)
    for (const b of servings) {
      if (a.node === b.node || a.epoch >= b.epoch) continue
      expect(
        a.to <= b.from,
        `${a.node} served epoch ${a.epoch} until ${a.to}, ${b.node} claimed epoch ${b.epoch} at ${b.from}`
      ).to.equal(true)
    }
  // The store and every live DP's /metrics agree: one owner, at the store's epoch. A takeover
  // that is still completing, or an owner that fenced itself on this loaded host and serves
  // again under a new epoch, are passing states: look again until a quiet moment (20 s).
  const labels = { dvipa: f.dvipa }
  let seen = ''
  const owner = await until(
    async () => {
      const view = await f.storeView()
      const owning = DPS.filter(
        (d) => f.nodes.get(d)!.running && f.nodes.get(d)!.metric('vipsec_dvipa_owned', labels) === 1
      )
      const o = view.ownership?.owner
      const epochs = owning.map((d) => f.nodes.get(d)!.metric('vipsec_dvipa_epoch', labels))
      seen = `store: ${o} at ${view.ownership?.epoch}; /metrics: ${owning.map((d, i) => `${d} at ${epochs[i]}`).join(', ')}`
      expect(owning.length, `DPs owning the DVIPA in /metrics (${seen})`).to.be.at.most(1)
      return (
        typeof o === 'string' &&
        owning.length === 1 &&
        owning[0] === o &&
        epochs[0] === view.ownership!.epoch &&
        o
      )
    },
    20_000,
    'the store and one DP to agree on the owner'
  ).catch((err: Error) => {
    throw new Error(`${err.message} (last seen: ${seen})`)
  })
  expect(
    DPS.filter((d) => f.holdsAddress(d)),
    'DPs holding the DVIPA'
  ).to.deep.equal([owner])
  const macs = await until(
    async () => {
      const m = await f.arpAnswers()
      return m.size > 0 && m
    },
    15_000,
    'an ARP answer for the DVIPA'
  )
  expect([...macs], 'MACs answering ARP for the DVIPA').to.deep.equal([f.mac(owner!)])
  return owner!
}

/** Waits for answers after `since`, and that each flow kept its target. */
async function expectTrafficBack(f: Fixture, since: number, byFlow: Map<number, string>) {
  await until(
    () => new Set(f.answers.filter((a) => a.at > since).map((a) => a.flow)).size === 4,
    30_000,
    'answers on every flow through the tunnel'
  )
  await sleep(300)
  const resumed = Math.min(...f.answers.filter((a) => a.at > since).map((a) => a.at))
  for (const a of f.answers.filter((x) => x.at > resumed))
    expect(a.target, `flow ${a.flow} keeps its target`).to.equal(byFlow.get(a.flow))
  expect(f.charon!.ikeSas(), 'charon holds exactly one IKE SA').to.have.length(1)
}

/** Each flow's target so far. */
function targets(f: Fixture): Map<number, string> {
  return new Map(f.answers.map((a) => [a.flow, a.target]))
}

/**
 * Asserts that what the store acknowledged before a takeover was taken over: every IKE SA
 * renegotiated, none failed, every connection re-routed, and the store holds as many again.
 */
async function expectNothingLost(f: Fixture, before: StoreView, heir: string): Promise<void> {
  const report = f.lastReport(heir)
  expect(report.failed, 'IKE SAs that failed to renegotiate').to.deep.equal([])
  expect(report.renegotiated, 'IKE SAs renegotiated').to.equal(before.ikeSas)
  expect(report.connections, 'connections re-routed').to.be.at.least(before.connections)
  const after = await until(
    async () => {
      const v = await f.storeView()
      return v.ikeSas === before.ikeSas && v.childSas === before.childSas && v
    },
    20_000,
    'the heir to write its records'
  )
  expect(after.connections).to.be.at.least(before.connections)
  const selectors = (v: StoreView): string[] =>
    v.peers.flatMap((p) =>
      p.children.map((c) => `${p.remoteId} ${c.localTs.join(',')} ${c.remoteTs.join(',')}`)
    )
  expect(selectors(after).sort()).to.deep.equal(selectors(before).sort())
}

/**
 * Kills the owner with SIGKILL and waits until a backup took over and the client is answered
 * again; returns the outage (the longest gap between answers) and the heir.
 */
async function failover(f: Fixture, victim: string): Promise<{ outage: number; heir: string }> {
  const backups = DPS.filter((d) => d !== victim)
  const done = new Map(backups.map((d) => [d, f.completed(d)]))
  const killedAt = f.kill(victim)
  let heir: string
  try {
    heir = await until(
      () => backups.find((d) => f.completed(d) > done.get(d)!),
      30_000,
      `a backup to take over from ${victim}`,
      20
    )
  } catch (err) {
    throw f.explained(err)
  }
  await until(() => f.answers.some((a) => a.at > killedAt + 50), 30_000, 'answers again')
  await sleep(500)
  return { outage: longestGap(f.answers, killedAt), heir }
}

const outages: Record<'etcd' | 'redis', number[]> = { etcd: [], redis: [] }
const base = (process.pid % 1296).toString(36)
/** Where the nodes' logs go when a test fails. */
const LOGS = join(tmpdir(), `vipsec-etcd-cluster-logs-${process.pid}`)

describe('a vipsec cluster on a real three-member etcd cluster, members in namespaces', function () {
  this.timeout(180_000)

  after(function () {
    const row = (name: string, list: number[]): string => {
      const sorted = [...list].sort((a, b) => a - b)
      const median = sorted[Math.floor(sorted.length / 2)]
      return `      ${name.padEnd(16)} median ${String(median ?? '-').padStart(5)} ms   max ${String(sorted.at(-1) ?? '-').padStart(5)} ms   (${list.join(', ')} ms)`
    }
    console.log('      outage the client saw over five SIGKILL failovers (probe every 10 ms):')
    console.log(row('etcd, 3 members', outages.etcd))
    console.log(row('Redis', outages.redis))
  })

  describe('etcd', function () {
    const f = new Fixture('etcd', `ve${base}e`, 61)
    before(async function () {
      this.timeout(240_000)
      await f.up()
    })
    afterEach(function () {
      if (this.currentTest?.state === 'failed' || process.env.VIPSEC_KEEP_LOGS !== undefined) {
        f.saveLogs(LOGS)
        console.log(`      the nodes' logs are in ${LOGS}`)
      }
    })
    after(async function () {
      this.timeout(60_000)
      await f.down()
    })

    it('should carry the client’s traffic through IPsec to both targets, one server', async () => {
      expect(await expectOneServer(f)).to.equal('dp-1')
      expect(f.charon!.ikeSas()).to.have.length(1)
    })

    it('(a) should take over when the owner is killed and the etcd leader dies as a backup claims', async () => {
      const before = await f.storeView()
      const victim = before.ownership!.owner!
      const byFlow = targets(f)
      const leader = await f.etcd!.leader()
      expect(leader, 'an etcd leader').to.not.equal(undefined)
      const backups = DPS.filter((d) => d !== victim)
      const started = new Map(backups.map((d) => [d, f.nodes.get(d)!.count('takeover:started')]))
      const done = new Map(backups.map((d) => [d, f.completed(d)]))
      const killedAt = f.kill(victim)
      // the moment a backup starts its takeover (its claim goes out), the leader dies
      const claimer = await until(
        () => backups.find((d) => f.nodes.get(d)!.count('takeover:started') > started.get(d)!),
        30_000,
        'a backup to start its takeover',
        5
      )
      await leader!.kill()
      const leaderKilledAt = Date.now()
      try {
        // while etcd elects a leader the claims wait, so either backup may win; exactly one does
        const heir = await until(
          () => backups.find((d) => f.completed(d) > done.get(d)!),
          30_000,
          'a backup to take over',
          20
        )
        console.log(
          `      (a) ${claimer} started claiming ${leaderKilledAt - killedAt} ms after the kill; leader ${leader!.name} killed; ${heir} took over, epoch ${f.lastReport(heir).epoch}`
        )
        await expectTrafficBack(f, killedAt, byFlow)
        await expectNothingLost(f, before, heir)
        expect(f.lastReport(heir).epoch).to.be.greaterThan(before.ownership!.epoch)
      } catch (err) {
        throw f.explained(err)
      } finally {
        leader!.launch()
        await f.etcd!.waitHealthy(f.etcd!.members, 20_000)
        // the killed DP left the DVIPA on its interface (its kernel answers ARP for it) until it
        // starts again, as a host's init system would restart it
        await f.startNode(victim)
      }
      // the restarted victim stays a backup, and only the heir serves
      await sleep(1000)
      expect(f.nodes.get(victim)!.has('ownership:claimed')).to.equal(false)
      expect(await expectOneServer(f)).to.be.oneOf(backups)
    })

    it('(b) should take over when the owner is cut off with a minority member; the owner fences itself', async () => {
      const net = await f.net
      const before = await f.storeView()
      const victim = before.ownership!.owner!
      const byFlow = targets(f)
      const leader = await f.etcd!.leader()
      const minority = f.etcd!.members.find((m) => m !== leader)!
      const backups = DPS.filter((d) => d !== victim)
      const done = new Map(backups.map((d) => [d, f.completed(d)]))
      const claims = f.nodes.get(victim)!.count('ownership:claimed')
      const cutAt = Date.now()
      await net.split([NET_NAME[victim]!, minority.name])
      try {
        const heir = await until(
          () => backups.find((d) => f.completed(d) > done.get(d)!),
          30_000,
          'a backup to take over',
          20
        )
        const old = f.nodes.get(victim)!
        await until(() => old.has('ownership:fenced'), 10_000, `${victim} to fence itself`)
        const fenced = old.lines.filter((l) => l.type === 'ownership:fenced').at(-1)!
        const claimed = f.nodes
          .get(heir)!
          .lines.filter((l) => l.type === 'ownership:claimed')
          .at(-1)!
        console.log(
          `      (b) ${victim} cut off with ${minority.name}: fenced itself after ${String(fenced.silentMs)} ms without confirmation, ${Date.parse(String(claimed.time)) - Date.parse(String(fenced.time))} ms before ${heir} claimed epoch ${String(claimed.epoch)}`
        )
        expect(
          Date.parse(String(fenced.time)),
          'the cut-off owner stopped before the heir claimed'
        ).to.be.at.most(Date.parse(String(claimed.time)))
        // while cut off: the old owner owns nothing in its /metrics and holds no address
        expect(old.metric('vipsec_dvipa_owned', { dvipa: f.dvipa })).to.equal(0)
        expect(f.holdsAddress(victim)).to.equal(false)
        await expectTrafficBack(f, cutAt, byFlow)
        await expectNothingLost(f, before, heir)
        expect(await expectOneServer(f)).to.equal(heir)
        await net.heal()
        await f.etcd!.waitHealthy(f.etcd!.members, 20_000)
        // healed: the old owner learns the higher epoch and stays down
        await until(() => old.has('ownership:lost'), 15_000, `${victim} to see the higher epoch`)
        await sleep(1000)
        expect(old.count('ownership:claimed'), `${victim} claims after the cut`).to.equal(claims)
        expect(await expectOneServer(f)).to.equal(heir)
        const at = Date.now()
        await sleep(500)
        expect(f.answers.filter((a) => a.at > at).length).to.be.greaterThan(50)
      } catch (err) {
        throw f.explained(err)
      } finally {
        await net.heal()
      }
    })

    it('(c) should come back after every etcd member is killed and restarted: nothing lost, one server', async () => {
      const before = await f.storeView()
      const byFlow = targets(f)
      const at = Date.now()
      await f.etcd!.restartAll()
      try {
        await expectTrafficBack(f, at + 100, byFlow)
        // the owner fences itself while no member answers (longer than self_fence), then serves
        // again under a new epoch, or a backup does: either way, one at a time
        const owner = await expectOneServer(f)
        const after = await until(
          async () => {
            const v = await f.storeView()
            return v.ikeSas === before.ikeSas && v.childSas === before.childSas && v
          },
          20_000,
          'the store to hold every SA'
        )
        expect(after.connections).to.be.at.least(before.connections)
        expect(after.ownership!.epoch).to.be.at.least(before.ownership!.epoch)
        console.log(
          `      (c) all members restarted: the longest gap was ${longestGap(f.answers, at)} ms; ${before.ownership!.owner} at epoch ${before.ownership!.epoch} -> ${owner} at ${after.ownership!.epoch}`
        )
      } catch (err) {
        throw f.explained(err)
      }
    })

    it('should fail over five times with SIGKILL on etcd, service back each time', async () => {
      for (let i = 0; i < 5; i++) {
        const owner = (await f.storeView()).ownership!.owner!
        const { outage, heir } = await failover(f, owner)
        outages.etcd.push(outage)
        expect(heir).to.not.equal(owner)
        await f.startNode(owner)
      }
      await expectOneServer(f)
    })
  })

  describe('Redis, for comparison', function () {
    const f = new Fixture('redis', `ve${base}r`, 62)
    before(async function () {
      this.timeout(240_000)
      await f.up()
    })
    afterEach(function () {
      if (this.currentTest?.state === 'failed' || process.env.VIPSEC_KEEP_LOGS !== undefined) {
        f.saveLogs(LOGS)
        console.log(`      the nodes' logs are in ${LOGS}`)
      }
    })
    after(async function () {
      this.timeout(60_000)
      await f.down()
    })

    it('should fail over five times with SIGKILL on Redis, service back each time', async () => {
      for (let i = 0; i < 5; i++) {
        const owner = (await f.storeView()).ownership!.owner!
        const { outage, heir } = await failover(f, owner)
        outages.redis.push(outage)
        expect(heir).to.not.equal(owner)
        await f.startNode(owner)
      }
      await expectOneServer(f)
    })
  })
})
