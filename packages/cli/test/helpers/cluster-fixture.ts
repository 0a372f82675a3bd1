/**
 * The one real-cluster fixture of the system tests: `vipsec node` processes in network namespaces
 * (scripts/cluster-netns.sh: up to three distribution processors, two targets, the store and the
 * peer on one bridge), the coupling store, strongSwan charon as the remote IPsec peer and a UDP
 * client behind it. {@link ClusterFixture.up} builds all of it, {@link ClusterFixture.down} removes
 * everything it started, by pid, and its namespaces, even after a failure half way.
 *
 * - The store ({@link ClusterFixtureOptions.store}): `redis` (default; redis-server with its
 *   append-only file and a password, optionally behind a {@link StoreProxy}), `etcd` (a
 *   three-member etcd cluster, all three in the store's namespace on ports 2379/2381/2383) or
 *   `memory` (no store process: one DP only).
 * - The nodes: `dps` and `targets` say how many, `start` which of them `up()` starts (the others
 *   get their node file, for the test to start later), `dpFile` / `targetFile` more lines of a
 *   node file (kernel delivery, apps), `admin` the `/metrics` endpoint, `nodeArgs` options for
 *   node itself (`--cpu-prof`). dp-1 starts first and claims the DVIPA.
 * - The cluster file: `clusterExtra` (detector, takeover ...), `dvipaExtra`, `dvipaTargets`;
 *   {@link ClusterFixture.clusterYaml} renders it with other targets or sections, for a reload.
 * - The peer: charon with the tunnel loaded (`charon: false` for none), `psk`, `peerTs`,
 *   `charonExtra`, `charonConnections`; {@link ClusterFixture.initiate} brings it up and
 *   {@link ClusterFixture.startClient} starts the client on the flows asked for.
 *
 * Used by test/system (cluster, cluster-attack, kernel-delivery, ownership-faults, through
 * test/system/helpers/cluster-fixture.ts) and packages/cli/test/lifecycle.system.spec.ts; exported
 * as `@vipsec/cli/test/cluster-fixture`.
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { ClusterKey } from '@vipsec/cluster-link-udp'
import {
  Charon,
  sh,
  waitFor,
  type CharonOptions
} from '../../../../adapters/ike-v2/test/helpers/netns.js'
import { EtcdCluster } from '../../../../adapters/store-etcd/test/etcd-cluster.js'
import { writeKeyFile } from '../../src/index.js'
import { VipsecProcess } from './vipsec-process.js'
import { StoreProxy } from './store-proxy.js'

export { Charon, sh, waitFor }

/** The repository's root. */
export const root = fileURLToPath(new URL('../../../..', import.meta.url))
/** The DVIPA every cluster serves (the owning DP adds it to its eth0). */
export const DVIPA = '10.88.0.50'
/** The service address behind the DVIPA (inside the tunnel). */
export const SERVICE = '10.77.0.10'
/** The client's first inner address (on the peer's lo, inside the tunnel). */
export const INNER = '172.16.2.1'
/** Every node's address on the cluster network, as scripts/cluster-netns.sh sets them. */
export const ADDR: Readonly<Record<string, string>> = {
  'dp-1': '10.88.0.1',
  'dp-2': '10.88.0.2',
  'dp-3': '10.88.0.3',
  'target-1': '10.88.0.11',
  'target-2': '10.88.0.12',
  store: '10.88.0.20',
  peer: '10.88.0.100'
}
/** The identities of the tunnel. */
export const IDS = { cluster: 'vpn.cluster.test', peer: 'peer.example.test' } as const

/** How a {@link ClusterFixture} is built. */
export interface ClusterFixtureOptions {
  /** The namespace tag (1 to 8 letters or digits), unique to the test run. */
  tag: string
  /** How many distribution processors (dp-1..), 1 to 3. Default 3. */
  dps?: number
  /** How many targets (target-1..), 1 or 2. Default 2. */
  targets?: number
  /**
   * The coupling store: `redis` (redis-server with its append-only file), `etcd` (three members
   * in the store's namespace) or `memory` (no store process; for one DP). Default `redis`.
   */
  store?: 'redis' | 'etcd' | 'memory'
  /** More `etcd` arguments for every member (e.g. `--election-timeout 1000`). */
  etcdArgs?: string[]
  /** The nodes `up()` starts, in this order after dp-1. Default: every DP and target. */
  start?: string[]
  /** The targets of the DVIPA in the cluster file. Default: every target. */
  dvipaTargets?: string[]
  /** The PSK of the tunnel. Default: one made of the tag. */
  psk?: string
  /** More sections of the cluster file (YAML at top level: `detector`, `takeover`, ...). */
  clusterExtra?: string
  /** More sections of the secrets file (YAML at top level, e.g. `warm_keys`). */
  secretsExtra?: string
  /** More fields of the DVIPA's entry in the cluster file, e.g. `, policy: source-hash`. */
  dvipaExtra?: string
  /** The client's side of the tunnel (charon's `local_ts`). Default `INNER/32`. */
  peerTs?: string
  /** More inner addresses for the peer's lo (beside {@link INNER}). */
  extraInner?: string[]
  /** More lines of charon's connection (e.g. `dpd_delay = 0`). */
  charonExtra?: string
  /** More connections for charon's `connections` section (whole swanctl.conf blocks). */
  charonConnections?: string
  /**
   * Serve `/metrics` (and `vipsec reload`, `switchover`) on every node: `true` on a free port
   * (`admin: 127.0.0.1:0`), a number on that port. Default false.
   */
  admin?: boolean | number
  /** Extra options for node itself per node (e.g. `{ 'dp-1': ['--cpu-prof'] }`). */
  nodeArgs?: Record<string, string[]>
  /** Options of charon's strongswan.conf (e.g. `flushLine` for tests that wait on its log). */
  charonOptions?: CharonOptions
  /** Start charon with the tunnel loaded in `up()`. Default true. */
  charon?: boolean
  /** More lines of a target's node file. Default: the `request-response` app on port 7. */
  targetFile?: (name: string) => string
  /** More lines of a DP's node file. */
  dpFile?: (name: string) => string
  /**
   * Put a {@link StoreProxy} on port 6380 in front of Redis and name it in the cluster file, so
   * that a test can lose a claim's reply. Default false.
   */
  storeProxy?: boolean
}

/** How {@link ClusterFixture.clusterYaml} may differ from the options. */
export interface ClusterYamlChanges {
  /** The targets of the DVIPA. */
  dvipaTargets?: string[]
  /** More sections (replacing `clusterExtra`). */
  clusterExtra?: string
  /** The store's key prefix. */
  prefix?: string
}

/** One answer the UDP client got: its flow, the target that answered, its text and time. */
export interface Answer {
  flow: number
  target: string
  text: string
  at: number
}

/**
 * A test cluster: {@link up} builds it, {@link down} removes everything it started (by pid) and
 * its namespaces, even after a failure half way.
 */
export class ClusterFixture {
  /** The temporary folder with the node, cluster and secrets files, Redis' files and logs. */
  readonly dir: string
  /** Every node process by name (the current one after a restart). */
  readonly nodes = new Map<string, VipsecProcess>()
  /** Every node process ever started, in order (killed and restarted ones too). */
  readonly history: VipsecProcess[] = []
  /** The distribution processors' names, best rank first. */
  readonly dps: string[]
  /** The targets' names. */
  readonly targets: string[]
  /** The Redis password (in the secrets file). */
  readonly redisPassword: string
  /** The PSK of the tunnel. */
  readonly psk: string
  /** The cluster key, once {@link up} wrote it. */
  key!: ClusterKey
  /** The peer, once {@link startCharon} ran. */
  charon?: Charon
  /** The UDP client {@link startClient} started last. */
  client?: UdpClient
  /** Every UDP client {@link startClient} started. */
  readonly clients: UdpClient[] = []
  /** The proxy in front of Redis, with `storeProxy`. */
  proxy?: StoreProxy
  /** The etcd members, with `store: etcd`. */
  etcd?: EtcdCluster
  private redis?: ChildProcess
  private readonly extra: ChildProcess[] = []

  constructor(readonly options: ClusterFixtureOptions) {
    this.dir = mkdtempSync(join(tmpdir(), `vipsec-${options.tag}-`))
    this.dps = ['dp-1', 'dp-2', 'dp-3'].slice(0, options.dps ?? 3)
    this.targets = ['target-1', 'target-2'].slice(0, options.targets ?? 2)
    this.redisPassword = `${options.tag} system test password`
    this.psk = options.psk ?? `${options.tag} system test key`
  }

  /** The full name of the namespace of `name` (`dp-1`, `store`, `peer`, `sw`, ...). */
  ns(name: string): string {
    return `${this.options.tag}-${name}`
  }

  /** The cluster file's store key prefix. */
  get prefix(): string {
    return this.options.store === 'etcd' ? `${this.options.tag}/` : `${this.options.tag}:`
  }

  /** The store's type, as the cluster file names it. */
  get store(): 'redis' | 'etcd' | 'memory' {
    return this.options.store ?? 'redis'
  }

  /**
   * Builds the network, starts the store, writes the files and starts the nodes (dp-1 first,
   * until it claimed the DVIPA, then the others), then charon with the tunnel loaded (not
   * initiated).
   */
  async up(): Promise<void> {
    sh('bash', [join(root, 'scripts/cluster-netns.sh'), 'up', this.options.tag])
    for (const a of this.options.extraInner ?? [])
      sh('ip', ['-n', this.ns('peer'), 'addr', 'add', `${a}/32`, 'dev', 'lo'])
    if (this.store === 'redis') await this.startRedis()
    if (this.store === 'etcd')
      this.etcd = await EtcdCluster.start({
        size: 3,
        netns: this.ns('store'),
        host: ADDR.store!,
        args: this.options.etcdArgs ?? []
      })
    if (this.options.storeProxy === true) {
      this.proxy = new StoreProxy(
        (cmd, args) => this.spawnIn('store', cmd, args, 'pipe'),
        { host: ADDR.store!, port: 6380 },
        { host: ADDR.store!, port: 6379 }
      )
      await this.proxy.start()
    }
    this.writeClusterFile()
    this.key = await writeKeyFile(join(this.dir, 'cluster.key'))
    this.writeSecretsFile()
    const all = [...this.dps, ...this.targets]
    for (const name of all) this.writeNodeFile(name)
    const start = this.options.start ?? all
    for (const name of all.filter((n) => start.includes(n))) {
      const node = this.startNode(name)
      if (name === this.dps[0])
        await waitFor(() => node.has('ownership:claimed'), 60_000, `${name} to claim`).catch(
          (err: Error) => {
            throw new Error(`${err.message}: ${JSON.stringify(node.lines.slice(-5))}`)
          }
        )
    }
    await waitFor(
      () => [...this.nodes.values()].every((n) => n.has('node:started')),
      60_000,
      'every node to start'
    )
    if (this.options.charon !== false) await this.startCharon()
  }

  /** The secrets file's text: the tunnel's PSK (`psk`, default the fixture's) and the store's password. */
  secretsYaml(psk = this.psk): string {
    const store = this.store === 'redis' ? `store: { password: "${this.redisPassword}" }\n` : ''
    return `ike:\n  peer: { id: ${IDS.peer}, secret: "${psk}" }\n${store}${this.options.secretsExtra ?? ''}`
  }

  /** Writes the secrets file (again), with `psk` if given. */
  writeSecretsFile(psk = this.psk): void {
    writeFileSync(join(this.dir, 'secrets.yaml'), this.secretsYaml(psk), { mode: 0o600 })
  }

  /** The store section of the cluster file. */
  private storeYaml(prefix: string): string {
    if (this.store === 'memory') return '{ type: memory }'
    if (this.store === 'etcd')
      return `{ type: etcd, endpoints: [${this.etcd!.hosts.join(', ')}], prefix: "${prefix}" }`
    const port = this.options.storeProxy === true ? 6380 : 6379
    return `{ type: redis, address: ${ADDR.store}:${port}, prefix: "${prefix}" }`
  }

  /** Writes the cluster file (again), with `clusterExtra` replaced if given. */
  writeClusterFile(clusterExtra = this.options.clusterExtra ?? ''): void {
    writeFileSync(join(this.dir, 'cluster.yaml'), this.clusterYaml({ clusterExtra }))
  }

  /** The cluster file's text, as the options say or with `changes`. */
  clusterYaml(changes: ClusterYamlChanges = {}): string {
    const o = this.options
    const peerTs = o.peerTs ?? `${INNER}/32`
    const targets = changes.dvipaTargets ?? o.dvipaTargets ?? this.targets
    return `store: ${this.storeYaml(changes.prefix ?? this.prefix)}
nodes:
${[...this.dps, ...this.targets].map((n) => `  ${n}: ${ADDR[n]}`).join('\n')}
dvipas:
  ${DVIPA}: { ranks: [${this.dps.join(', ')}], targets: [${targets.join(', ')}]${o.dvipaExtra ?? ''} }
ike: { retransmit_timeout: 500ms, retransmit_base: 2, retransmit_tries: 4 }
connections:
  peer:
    proposals: aes256gcm16-prfsha256-x25519
    rekey_time: 0
    local: { id: ${IDS.cluster} }
    remote: { id: ${IDS.peer} }
    children:
      net: { local_ts: 10.77.0.0/24, remote_ts: ${peerTs}, esp_proposals: aes256gcm16, rekey_time: 0 }
${changes.clusterExtra ?? o.clusterExtra ?? ''}
`
  }

  /** Writes the node file of `name` (again); `extra` replaces the default extra lines. */
  writeNodeFile(name: string, extra?: string): string {
    const o = this.options
    const file = join(this.dir, `${name}.yaml`)
    const more =
      extra ??
      (this.targets.includes(name)
        ? (o.targetFile?.(name) ?? 'apps: [{ app: request-response, port: 7 }]\n')
        : (o.dpFile?.(name) ?? ''))
    writeFileSync(
      file,
      `node: ${name}\ncluster: cluster.yaml\nsecrets: secrets.yaml\ninterface: eth0\n` +
        `${this.adminLine()}cluster_key_files: [cluster.key]\n${more}`
    )
    return file
  }

  /** The node file's `admin` line, if the options ask for one. */
  private adminLine(): string {
    const admin = this.options.admin
    if (admin === undefined || admin === false) return ''
    return `admin: 127.0.0.1:${admin === true ? 0 : admin}\n`
  }

  /** Starts `vipsec node` for `name` in its namespace from its node file (or `file`). */
  startNode(name: string, file = join(this.dir, `${name}.yaml`)): VipsecProcess {
    const node = new VipsecProcess(name, file, this.ns(name), this.options.nodeArgs?.[name])
    this.nodes.set(name, node)
    this.history.push(node)
    return node
  }

  /** Stops a (killed) node and starts it again, as its init system would. */
  async restart(name: string): Promise<VipsecProcess> {
    const old = this.nodes.get(name)!
    await old.stop()
    const again = this.startNode(name, old.config)
    await waitFor(() => again.has('node:started'), 60_000, `${name} to start again`)
    return again
  }

  /** A node by name. */
  node(name: string): VipsecProcess {
    const n = this.nodes.get(name)
    if (n === undefined) throw new Error(`no node ${name}`)
    return n
  }

  /** How many lines of `type` every node logged, summed. */
  count(type: string): number {
    return [...this.nodes.values()].reduce((n, node) => n + node.count(type), 0)
  }

  /** How many takeovers started, on every node. */
  takeovers(): number {
    return this.count('takeover:started')
  }

  /** The running DP that owns the DVIPA by its logs: the highest epoch claimed or taken over. */
  owner(): string {
    let best: string | undefined
    let epoch = -1
    for (const name of this.dps) {
      const node = this.nodes.get(name)
      if (node === undefined || !node.running) continue
      for (const l of node.lines) {
        const e = Number(
          (l as { epoch?: number }).epoch ?? (l as { report?: { epoch?: number } }).report?.epoch
        )
        if ((l.type === 'ownership:claimed' || l.type === 'takeover:completed') && e > epoch) {
          epoch = e
          best = name
        }
      }
    }
    if (best === undefined) throw new Error('no owner')
    return best
  }

  /** Whether the namespace of `dp` holds the DVIPA, on any of its devices. */
  holds(dp: string): boolean {
    return sh('ip', ['-n', this.ns(dp), '-o', 'addr', 'show']).includes(` ${DVIPA}/`)
  }

  /**
   * The DPs whose hosts hold the DVIPA right now, killed DPs' hosts included: `vipsec node` holds
   * it on a device that dies with the process (`hold_addresses: process`, the default), so a
   * killed DP's host must not keep it.
   */
  holders(): string[] {
    return this.dps.filter((d) => this.holds(d))
  }

  /** Runs `redis-cli` against the store; its output. */
  redisCli(...args: string[]): string {
    return sh('ip', [
      ...['netns', 'exec', this.ns('store'), 'redis-cli', '-h', ADDR.store!],
      ...['-a', this.redisPassword, '--no-auth-warning', ...args]
    ])
  }

  /** The store's ownership record of the DVIPA (`owner`, `epoch`), or undefined if none. */
  storeOwnership(): { owner: string; epoch: number } | undefined {
    if (this.store === 'memory') throw new Error('a memory store has no record to read')
    if (this.store === 'etcd') {
      const out = sh('ip', [
        ...[
          'netns',
          'exec',
          this.ns('store'),
          'etcdctl',
          '--endpoints',
          this.etcd!.hosts.join(',')
        ],
        ...['get', `${this.prefix}d/${DVIPA}/owner`, '--print-value-only']
      ]).trim()
      if (out === '') return undefined
      const record = JSON.parse(out) as { owner: string | null; epoch: number }
      return { owner: record.owner ?? '', epoch: record.epoch }
    }
    const out = this.redisCli('hmget', `${this.prefix}{${DVIPA}}:owner`, 'owner', 'epoch')
    const [owner, epoch] = out.split('\n')
    if (epoch === undefined || epoch === '') return undefined
    return { owner: owner ?? '', epoch: Number(epoch) }
  }

  /**
   * Starts redis-server in the store namespace with a password, in {@link dir}; with the
   * append-only file unless `aof` is false. Waits until it answers.
   */
  async startRedis(aof = true): Promise<void> {
    const args = ['--bind', ADDR.store!, '--port', '6379', '--requirepass', this.redisPassword]
    args.push('--dir', this.dir, '--appendonly', aof ? 'yes' : 'no', '--save', '')
    this.redis = this.spawnIn('store', 'redis-server', args)
    await waitFor(
      () => {
        try {
          return this.redisCli('ping').includes('PONG')
        } catch {
          return false
        }
      },
      10_000,
      'redis'
    )
  }

  /** Kills redis-server with SIGKILL and waits for it to exit. */
  async killRedis(): Promise<void> {
    const r = this.redis
    if (r?.pid === undefined || r.exitCode !== null || r.signalCode !== null) return
    const gone = new Promise((resolve) => r.once('exit', resolve))
    process.kill(r.pid, 'SIGKILL')
    await gone
  }

  /** Starts charon in the peer namespace with the tunnel loaded. */
  async startCharon(): Promise<Charon> {
    this.charon = new Charon(this.ns('peer'), this.options.charonOptions)
    await this.charon.start(this.swanctlConf())
    return this.charon
  }

  /** Asks charon to bring the tunnel up. */
  initiate(): void {
    this.charon!.swanctl(['--initiate', '--child', 'net'])
  }

  /** charon's side of the tunnel, the cluster file's from the other end (with `psk` if given). */
  swanctlConf(psk = this.psk): string {
    const o = this.options
    return `connections {
  dvipa {
    version = 2
    local_addrs = ${ADDR.peer}
    remote_addrs = ${DVIPA}
    proposals = aes256gcm16-prfsha256-x25519
    encap = yes
    rekey_time = 0
${o.charonExtra ?? ''}
    local {
      auth = psk
      id = ${IDS.peer}
    }
    remote {
      auth = psk
      id = ${IDS.cluster}
    }
    children {
      net {
        local_ts = ${o.peerTs ?? `${INNER}/32`}
        remote_ts = 10.77.0.0/24
        esp_proposals = aes256gcm16
        mode = tunnel
        rekey_time = 0
        start_action = none
      }
    }
  }
${o.charonConnections ?? ''}
}
secrets {
  ike-cluster {
    id-1 = ${IDS.peer}
    id-2 = ${IDS.cluster}
    secret = "${psk}"
  }
}
`
  }

  /**
   * Starts a UDP client behind charon: a request on each flow every `everyMs`, each answer logged
   * with its time. `flows`: how many (flows 0..n-1) or which. Several clients may run, on other
   * flows.
   */
  startClient(flows: number | number[] = 4, everyMs = 20): UdpClient {
    const list = typeof flows === 'number' ? Array.from({ length: flows }, (_, i) => i) : flows
    this.client = new UdpClient(this, list, everyMs)
    this.clients.push(this.client)
    return this.client
  }

  /** Spawns a process in a namespace; {@link down} kills it by pid. */
  spawnIn(name: string, cmd: string, args: string[], stdio: 'pipe' | 'ignore' = 'ignore') {
    const proc = spawn('ip', ['netns', 'exec', this.ns(name), cmd, ...args], {
      cwd: root,
      stdio: ['pipe', stdio, stdio]
    })
    this.extra.push(proc)
    return proc
  }

  /**
   * Waits until the service answers again (the last client took at least 10 answers in the last
   * 300 ms) and charon holds one IKE SA; on a timeout, dumps the nodes' last lines and charon's
   * SAs first.
   */
  async served(what: string, ms = 30_000): Promise<void> {
    try {
      await waitFor(
        () => this.client!.since(Date.now() - 300) >= 10 && this.charon!.ikeSas().length === 1,
        ms,
        what
      )
    } catch (err) {
      throw this.explained(err, 16)
    }
  }

  /** Prints the last lines of every node (ownership, takeovers, errors), to see why a wait failed. */
  dump(lines = 12): void {
    console.log(this.tails(lines))
  }

  /** The last lines of every node, but those of its connections, one block per node. */
  tails(lines = 12): string {
    return [...this.nodes]
      .map(([name, node]) => {
        const tail = node.lines
          .filter((l) => !String(l.type).startsWith('connection:'))
          .slice(-lines)
        return `      --- ${name}\n${tail.map((l) => `      ${JSON.stringify(l)}`).join('\n')}`
      })
      .join('\n')
  }

  /**
   * `err` with the nodes' last lines (and charon's SAs, when there is a charon) appended to its
   * message, so that a failed wait says why in the failure summary too, which is what a CI log
   * keeps when its middle is cut.
   */
  explained(err: unknown, lines = 16): Error {
    const error = err instanceof Error ? err : new Error(String(err))
    let charon = ''
    try {
      if (this.charon !== undefined)
        charon = `\n      charon: ${this.charon.swanctl(['--list-sas'])}`
    } catch (e) {
      charon = `\n      charon: (no answer: ${(e as Error).message})`
    }
    error.message += `\n${this.tails(lines)}${charon}`
    return error
  }

  /**
   * Stops everything it started, by pid, and deletes the namespaces and the folder (kept if
   * `KEEP_CLUSTER_DIR` is set). With `VIPSEC_SYSTEM_LOGS=DIR`, writes every process's log lines
   * to DIR first.
   */
  async down(): Promise<void> {
    for (const client of this.clients) client.stop()
    await this.charon?.stop()
    for (const node of this.nodes.values()) {
      node.kill('SIGCONT')
      await node.stop()
    }
    for (const p of this.extra) killProc(p)
    await this.etcd?.remove()
    sh('bash', [join(root, 'scripts/cluster-netns.sh'), 'down', this.options.tag])
    const logs = process.env.VIPSEC_SYSTEM_LOGS
    if (logs !== undefined) {
      // every process's log lines, one file each, to see afterwards what happened
      mkdirSync(logs, { recursive: true })
      for (const [i, p] of this.history.entries())
        writeFileSync(
          join(logs, `${this.options.tag}-${String(i).padStart(2, '0')}-${p.name}.jsonl`),
          p.lines.map((l) => JSON.stringify(l)).join('\n') + '\n'
        )
    }
    if (process.env.KEEP_CLUSTER_DIR === undefined)
      rmSync(this.dir, { recursive: true, force: true })
  }
}

/** Kills a child process by pid with SIGKILL, if it still runs. */
export function killProc(proc: ChildProcess | undefined): void {
  if (proc?.pid === undefined || proc.exitCode !== null || proc.signalCode !== null) return
  try {
    process.kill(proc.pid, 'SIGKILL')
  } catch {
    // gone
  }
}

/**
 * The client behind charon: sends `req <flow> <seq>` to the service's port 7 on each flow (source
 * ports 41000 + flow on {@link INNER}) every `everyMs`, and records each answer
 * (`<target> <n> req <flow> <seq>` from the request-response app) with the time it came.
 */
export class UdpClient {
  readonly answers: Answer[] = []
  readonly proc: ChildProcess

  /**
   * @param fixture - the cluster whose peer namespace it runs in
   * @param flows - the flows it sends on (source port 41000 + flow)
   * @param everyMs - how often it sends on each
   */
  constructor(fixture: ClusterFixture, flows: number[], everyMs: number) {
    const code = `
const dgram = require('node:dgram')
const sockets = ${JSON.stringify(flows)}.map((flow) => {
  const s = dgram.createSocket('udp4')
  s.on('message', (m) => process.stdout.write(JSON.stringify({ flow, text: m.toString(), at: Date.now() }) + '\\n'))
  s.bind(41000 + flow, '${INNER}')
  return [flow, s]
})
let seq = 0
const timer = setInterval(() => {
  for (const [flow, s] of sockets) s.send('req ' + flow + ' ' + seq, 7, '${SERVICE}')
  seq++
}, ${everyMs})
setTimeout(() => { clearInterval(timer); process.exit(0) }, 600000)
`
    this.proc = fixture.spawnIn('peer', process.execPath, ['-e', code], 'pipe')
    createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      const a = JSON.parse(line) as Omit<Answer, 'target'>
      this.answers.push({ ...a, target: a.text.split(' ')[0]! })
    })
  }

  /** How many answers came after `at`. */
  since(at: number): number {
    return this.answers.filter((a) => a.at > at).length
  }

  /** The longest time without an answer from `from` on (till the last answer). */
  longestGap(from: number): number {
    return longestGap(this.answers, from)
  }

  /** Requests answered more than once, counted once each. */
  duplicates(): number {
    const seen = new Map<string, number>()
    for (const a of this.answers) {
      const request = a.text.split(' ').slice(2).join(' ') // "<target> <n> req <flow> <seq>"
      seen.set(request, (seen.get(request) ?? 0) + 1)
    }
    return [...seen.values()].filter((n) => n > 1).length
  }

  /** Stops the client. */
  stop(): void {
    killProc(this.proc)
  }
}

/** The longest time without one of `answers` from `from` (less 100 ms) on, till the last one. */
export function longestGap(answers: readonly { at: number }[], from: number): number {
  const times = answers
    .map((a) => a.at)
    .filter((t) => t >= from - 100)
    .sort((x, y) => x - y)
  let gap = 0
  for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i]! - times[i - 1]!)
  return gap
}
