/**
 * Test helper: runs real `etcd` members on free loopback ports, each with its own temporary data
 * directory, and stops them by pid. One member or a cluster of several; members can be killed
 * (SIGKILL), paused (SIGSTOP, which cuts a member off from its peers and its clients alike, as a
 * partition would, and lets it come back with what it believed before), resumed and restarted.
 * System tests, the history checker and the bench reuse it.
 *
 * @module
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { request as requestTls } from 'node:https'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** Finds a free TCP port on 127.0.0.1 by binding port 0 and closing again. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

const sleep = async (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** GETs a member's /health (or another path) and resolves with the body ('' on error). */
async function get(
  host: string,
  port: number,
  path: string,
  netns?: string,
  tls = false
): Promise<string> {
  if (netns !== undefined) {
    // the member is reachable only inside its namespace
    return new Promise((resolve) => {
      execFile(
        'ip',
        ['netns', 'exec', netns, 'curl', '-s', '-m', '1', `http://${host}:${port}${path}`],
        (err, stdout) => resolve(err === null ? stdout : '')
      )
    })
  }
  return new Promise((resolve) => {
    const options = { host, port, path, timeout: 1000, rejectUnauthorized: false }
    const req = (tls ? requestTls : request)(options, (res) => {
      let body = ''
      res.on('data', (d: Buffer) => (body += d.toString('utf8')))
      res.on('end', () => resolve(body))
    })
    req.on('error', () => resolve(''))
    req.on('timeout', () => req.destroy())
    req.end()
  })
}

/** One `etcd` member started by a test. */
export class EtcdMember {
  private child: ChildProcess | undefined
  private exited: Promise<void> = Promise.resolve()
  private output = ''
  /** Whether it was paused by {@link EtcdMember.pause}. */
  paused = false

  /**
   * @param name - the member's name
   * @param clientPort - its client port
   * @param peerPort - its peer port
   * @param dir - its data directory
   * @param args - the arguments it is started with
   */
  constructor(
    readonly name: string,
    readonly clientPort: number,
    readonly peerPort: number,
    readonly dir: string,
    private readonly args: string[],
    /** The address it listens on. */
    readonly host = '127.0.0.1',
    /** The network namespace it runs in, if not this one. */
    readonly netns?: string,
    /** Whether clients talk TLS to it. */
    readonly tls = false
  ) {}

  /** The client URL. */
  get url(): string {
    return `${this.tls ? 'https' : 'http'}://${this.host}:${this.clientPort}`
  }

  /** The pid of the running process, if any. */
  get pid(): number | undefined {
    const child = this.child
    return child !== undefined && child.exitCode === null && child.signalCode === null
      ? child.pid
      : undefined
  }

  /** What the member printed (its last 20 kB), for failure messages. */
  get log(): string {
    return this.output.slice(-20_000)
  }

  /** Starts the process (again, with the same directory and ports). */
  launch(): void {
    if (this.pid !== undefined) throw new Error(`etcd ${this.name} is already running`)
    // `ip netns exec` execs etcd, so the pid is etcd's
    const child =
      this.netns === undefined
        ? spawn('etcd', this.args, { stdio: ['ignore', 'pipe', 'pipe'] })
        : spawn('ip', ['netns', 'exec', this.netns, 'etcd', ...this.args], {
            stdio: ['ignore', 'pipe', 'pipe']
          })
    this.child = child
    this.paused = false
    const keep = (d: Buffer): void => {
      this.output = (this.output + d.toString('utf8')).slice(-100_000)
    }
    child.stdout?.on('data', keep)
    child.stderr?.on('data', keep)
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()))
  }

  /** Whether the member answers /health with `"health":"true"` (it has a leader). */
  async healthy(): Promise<boolean> {
    return (await get(this.host, this.clientPort, '/health', this.netns, this.tls)).includes(
      '"health":"true"'
    )
  }

  /** Whether this member is the Raft leader now (from its /metrics). */
  async isLeader(): Promise<boolean> {
    return /^etcd_server_is_leader 1$/m.test(
      await get(this.host, this.clientPort, '/metrics', this.netns, this.tls)
    )
  }

  /** Kills the process at once (SIGKILL), as a crash would, and waits for it to exit. */
  async kill(): Promise<void> {
    const pid = this.pid
    if (pid === undefined) return
    if (this.paused) process.kill(pid, 'SIGCONT')
    process.kill(pid, 'SIGKILL')
    await this.exited
    this.paused = false
  }

  /** Stops the process (SIGSTOP): it neither answers nor sends, and keeps its state. */
  pause(): void {
    const pid = this.pid
    if (pid === undefined || this.paused) return
    process.kill(pid, 'SIGSTOP')
    this.paused = true
  }

  /** Lets a paused process go on (SIGCONT). */
  resume(): void {
    const pid = this.pid
    if (pid === undefined || !this.paused) return
    process.kill(pid, 'SIGCONT')
    this.paused = false
  }

  /** Stops the process: SIGTERM, then SIGKILL after 5 s. */
  async stop(): Promise<void> {
    const pid = this.pid
    if (pid === undefined) return
    if (this.paused) this.resume()
    process.kill(pid, 'SIGTERM')
    const timeout = sleep(5000).then(() => 'timeout' as const)
    if ((await Promise.race([this.exited.then(() => 'exited' as const), timeout])) === 'timeout') {
      if (this.pid !== undefined) process.kill(pid, 'SIGKILL')
      await this.exited
    }
  }
}

/** Options of {@link EtcdCluster.start}. */
export interface EtcdClusterOptions {
  /** How many members: 1 or more. Default: 1. */
  size?: number
  /** Extra `etcd` arguments given to every member. Default: none. */
  args?: string[]
  /**
   * Run the members in this network namespace, on `host`, with client ports 2379, 2381, ... and
   * peer ports 2380, 2382, ... Default: this namespace, 127.0.0.1, free ports.
   */
  netns?: string
  /** The address the members listen on. Default: `127.0.0.1`. */
  host?: string
  /** Serve clients TLS only, with this certificate and key (PEM files). Default: plain HTTP. */
  tls?: { certFile: string; keyFile: string }
  /**
   * Run each member in a namespace of its own, on its own address (one entry per member, in
   * order; `size` defaults to its length), with client port 2379 and peer port 2380. Overrides
   * `netns` and `host`. Default: as `netns` and `host` say.
   */
  placement?: Array<{ netns: string; host: string }>
}

/** A cluster of `etcd` members on loopback, started by a test. */
export class EtcdCluster {
  private constructor(
    /** The members, in the order of `--initial-cluster`. */
    readonly members: EtcdMember[],
    private readonly root: string
  ) {}

  /**
   * Starts the members and waits until every one reports a leader.
   *
   * @param options - size and extra arguments
   */
  static async start(options: EtcdClusterOptions = {}): Promise<EtcdCluster> {
    const placement = options.placement
    const size = options.size ?? placement?.length ?? 1
    const root = await mkdtemp(join(tmpdir(), 'vipsec-etcd-'))
    const hostOf = (i: number): string => placement?.[i]?.host ?? options.host ?? '127.0.0.1'
    const netnsOf = (i: number): string | undefined => placement?.[i]?.netns ?? options.netns
    const ports: Array<[number, number]> = []
    for (let i = 0; i < size; i++) {
      ports.push(
        placement !== undefined
          ? [2379, 2380]
          : options.netns === undefined
            ? [await freePort(), await freePort()]
            : [2379 + 2 * i, 2380 + 2 * i]
      )
    }
    const scheme = options.tls === undefined ? 'http' : 'https'
    const initial = ports.map(([, peer], i) => `m${i}=http://${hostOf(i)}:${peer}`).join(',')
    const token = `vipsec-${process.pid}-${Date.now()}`
    const members = ports.map(([client, peer], i) => {
      const dir = join(root, `m${i}`)
      const host = hostOf(i)
      const args = [
        '--name',
        `m${i}`,
        '--data-dir',
        dir,
        '--listen-client-urls',
        `${scheme}://${host}:${client}`,
        '--advertise-client-urls',
        `${scheme}://${host}:${client}`,
        ...(options.tls === undefined
          ? []
          : ['--cert-file', options.tls.certFile, '--key-file', options.tls.keyFile]),
        '--listen-peer-urls',
        `http://${host}:${peer}`,
        '--initial-advertise-peer-urls',
        `http://${host}:${peer}`,
        '--initial-cluster',
        initial,
        '--initial-cluster-state',
        'new',
        '--initial-cluster-token',
        token,
        '--logger',
        'zap',
        '--log-level',
        'warn',
        ...(options.args ?? [])
      ]
      return new EtcdMember(
        `m${i}`,
        client,
        peer,
        dir,
        args,
        host,
        netnsOf(i),
        options.tls !== undefined
      )
    })
    const cluster = new EtcdCluster(members, root)
    for (const member of members) member.launch()
    try {
      await cluster.waitHealthy(members)
    } catch (err) {
      await cluster.remove()
      throw err
    }
    return cluster
  }

  /** The client URLs of every member. */
  get hosts(): string[] {
    return this.members.map((m) => m.url)
  }

  /**
   * Waits until each of `members` reports a leader.
   *
   * @param members - default: every running, unpaused member
   * @param ms - at most this long (default 20 s)
   */
  async waitHealthy(
    members = this.members.filter((m) => m.pid !== undefined && !m.paused),
    ms = 20_000
  ): Promise<void> {
    const until = Date.now() + ms
    for (const member of members) {
      while (!(await member.healthy())) {
        if (member.pid === undefined || Date.now() > until) {
          throw new Error(`etcd ${member.name} did not become healthy:\n${member.log}`)
        }
        await sleep(50)
      }
    }
  }

  /** The current leader, if a running member says it is one. */
  async leader(): Promise<EtcdMember | undefined> {
    for (const member of this.members) {
      if (member.pid !== undefined && !member.paused && (await member.isLeader())) return member
    }
    return undefined
  }

  /** Kills every member (SIGKILL) and starts them all again on their data. */
  async restartAll(): Promise<void> {
    for (const member of this.members) await member.kill()
    for (const member of this.members) member.launch()
    await this.waitHealthy(this.members)
  }

  /** Stops every member and removes their data directories. */
  async remove(): Promise<void> {
    for (const member of this.members) await member.stop().catch(() => undefined)
    await rm(this.root, { recursive: true, force: true })
  }
}
