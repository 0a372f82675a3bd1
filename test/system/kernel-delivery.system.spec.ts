// Real applications behind the DVIPA. A cluster of `vipsec node` processes in network
// namespaces (three distribution processors, two targets with kernel delivery: a TUN device
// holding the service address 10.77.0.10), Redis as the coupling store, strongSwan charon as
// the remote peer and unmodified clients behind it (curl, iperf3, a Node TCP client). The
// targets run unmodified servers (python3 -m http.server, iperf3 -s, a Node TCP server) that
// know nothing of vipsec. The owner and a target are killed with SIGKILL on the way.
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { Charon, sh, waitFor } from '../../adapters/ike-v2/test/helpers/netns.js'
import { writeKeyFile } from '../../packages/cli/src/index.js'
import { NodeProcess } from './helpers/node-process.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const fixtures = join(root, 'test/system/fixtures')
const tag = `tun${process.pid % 10000}`
const ns = (name: string): string => `${tag}-${name}`
const PSK = 'kernel delivery system test key'
const REDIS_PASSWORD = 'kernel delivery system test password'
const DVIPA = '10.88.0.50'
const SERVICE = '10.77.0.10'
/** The client's inner addresses (on the peer's lo), inside the tunnel. */
const INNER = Array.from({ length: 8 }, (_, i) => `172.16.2.${i + 1}`)
const DOWNLOAD_MB = Number(process.env.VIPSEC_DOWNLOAD_MB ?? 200)
const addr: Record<string, string> = {
  'dp-1': '10.88.0.1',
  'dp-2': '10.88.0.2',
  'dp-3': '10.88.0.3',
  'target-1': '10.88.0.11',
  'target-2': '10.88.0.12',
  store: '10.88.0.20',
  peer: '10.88.0.100'
}
const dps = ['dp-1', 'dp-2', 'dp-3']
const targets = ['target-1', 'target-2']
const ids = {
  cluster: { type: 'fqdn', value: 'vpn.cluster.test' },
  peer: { type: 'fqdn', value: 'peer.example.test' }
}

function swanctlConf(): string {
  return `connections {
  dvipa {
    version = 2
    local_addrs = ${addr.peer}
    remote_addrs = ${DVIPA}
    proposals = aes256gcm16-prfsha256-x25519
    encap = yes
    rekey_time = 0
    dpd_delay = 0
    local {
      auth = psk
      id = ${ids.peer.value}
    }
    remote {
      auth = psk
      id = ${ids.cluster.value}
    }
    children {
      net {
        local_ts = 172.16.2.0/28
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
    id-1 = ${ids.peer.value}
    id-2 = ${ids.cluster.value}
    secret = "${PSK}"
  }
}
`
}

/** A process in a namespace, killed by pid on clean-up. */
function inNs(name: string, cmd: string, args: string[], stdio: 'pipe' | 'ignore' = 'ignore') {
  return spawn('ip', ['netns', 'exec', ns(name), cmd, ...args], {
    cwd: root,
    stdio: ['pipe', stdio, stdio]
  })
}

function killProc(proc: ChildProcess | undefined): void {
  if (proc?.pid === undefined || proc.exitCode !== null || proc.signalCode !== null) return
  try {
    process.kill(proc.pid, 'SIGKILL')
  } catch {
    // gone
  }
}

/** Waits for a child process to exit; resolves with its exit code. */
function exited(proc: ChildProcess): Promise<number | null> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode)
  return new Promise((resolve) => proc.once('exit', (code) => resolve(code)))
}

/** What the counter client reports for one connection. */
interface ConnectionReport {
  id: number
  local: string
  targets: string[]
  sent: number
  answered: number
  lost: number
  dup: number
  maxWaitMs: number
  open: boolean
  closed: string | null
}

/** The Node TCP client behind charon: opens counter connections, reports on them. */
class CounterClient {
  readonly proc: ChildProcess
  private readonly reports: ((r: ConnectionReport[]) => void)[] = []

  constructor() {
    this.proc = inNs(
      'peer',
      process.execPath,
      [join(fixtures, 'counter-client.mjs'), SERVICE, '9000', ...INNER],
      'pipe'
    )
    createInterface({ input: this.proc.stdout! }).on('line', (line) =>
      this.reports.shift()?.(JSON.parse(line) as ConnectionReport[])
    )
  }

  open(n: number): void {
    this.proc.stdin!.write(`open ${n}\n`)
  }

  resetWaits(): void {
    this.proc.stdin!.write('reset-waits\n')
  }

  report(): Promise<ConnectionReport[]> {
    return new Promise((resolve) => {
      this.reports.push(resolve)
      this.proc.stdin!.write('report\n')
    })
  }
}

describe('real applications behind the DVIPA through kernel delivery', function () {
  this.timeout(180_000)
  const dir = mkdtempSync(join(tmpdir(), 'vipsec-tun-'))
  const nodes = new Map<string, NodeProcess>()
  const servers: ChildProcess[] = []
  let redis: ChildProcess | undefined
  let charon: Charon | undefined
  let counters: CounterClient | undefined

  /** Every takeover:completed line so far, on any node. */
  const takeovers = (): number =>
    [...nodes.values()].reduce((n, node) => n + node.count('takeover:completed'), 0)

  /** The DP that owns the DVIPA now: the last to claim it or complete a takeover. */
  function owner(): string {
    let best: string | undefined
    let epoch = -1
    for (const [name, node] of nodes) {
      if (!dps.includes(name) || !node.running) continue
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

  /** Kills the owner with SIGKILL and waits for a backup to complete the takeover. */
  async function killOwner(): Promise<{ victim: string; killedAt: number }> {
    const victim = owner()
    const before = takeovers()
    nodes.get(victim)!.kill('SIGKILL')
    const killedAt = Date.now()
    await waitFor(() => takeovers() > before, 30_000, `a takeover from ${victim}`)
    return { victim, killedAt }
  }

  /** Starts a killed node again, as its init system would. */
  async function restart(name: string): Promise<void> {
    const old = nodes.get(name)!
    await old.stop()
    const again = new NodeProcess(name, old.config, old.ns)
    nodes.set(name, again)
    await waitFor(() => again.has('node:started'), 60_000, `${name} to start again`)
  }

  before(async () => {
    sh('bash', [join(root, 'scripts/cluster-netns.sh'), 'up', tag])
    for (const a of INNER.slice(1))
      sh('ip', ['-n', ns('peer'), 'addr', 'add', `${a}/32`, 'dev', 'lo'])

    redis = inNs('store', 'redis-server', [
      ...['--bind', addr.store!, '--port', '6379', '--requirepass', REDIS_PASSWORD],
      ...['--dir', dir, '--appendonly', 'yes', '--save', '']
    ])
    await waitFor(
      () => {
        try {
          return sh('ip', [
            ...['netns', 'exec', ns('store'), 'redis-cli', '-h', addr.store!],
            ...['-a', REDIS_PASSWORD, '--no-auth-warning', 'ping']
          ]).includes('PONG')
        } catch {
          return false
        }
      },
      10_000,
      'redis'
    )

    // one cluster file, the secrets and a cluster key beside it, a node file each (docs/node.md)
    writeFileSync(
      join(dir, 'cluster.yaml'),
      `store: { type: redis, address: ${addr.store}:6379, prefix: "${tag}:" }
nodes:
${[...dps, ...targets].map((n) => `  ${n}: ${addr[n]}`).join('\n')}
dvipas:
  # a peer address stays on one target: iperf3's control and data connections
  ${DVIPA}: { ranks: [${dps.join(', ')}], targets: [${targets.join(', ')}], policy: source-hash }
ike: { retransmit_timeout: 500ms, retransmit_base: 2, retransmit_tries: 4 }
connections:
  peer:
    proposals: aes256gcm16-prfsha256-x25519
    rekey_time: 0
    local: { id: ${ids.cluster.value} }
    remote: { id: ${ids.peer.value} }
    children:
      net: { local_ts: 10.77.0.0/24, remote_ts: 172.16.2.0/28, esp_proposals: aes256gcm16, rekey_time: 0 }
`
    )
    writeFileSync(
      join(dir, 'secrets.yaml'),
      `ike:\n  peer: { id: ${ids.peer.value}, secret: "${PSK}" }\nstore: { password: "${REDIS_PASSWORD}" }\n`,
      { mode: 0o600 }
    )
    await writeKeyFile(join(dir, 'cluster.key'))
    const nodeFile = (name: string, extra = ''): string => {
      const file = join(dir, `${name}.yaml`)
      writeFileSync(
        file,
        `node: ${name}\ncluster: cluster.yaml\nsecrets: secrets.yaml\ninterface: eth0\ncluster_key_files: [cluster.key]\n${extra}`
      )
      return file
    }
    for (const dp of dps) {
      nodes.set(dp, new NodeProcess(dp, nodeFile(dp), ns(dp)))
      if (dp === 'dp-1')
        await waitFor(() => nodes.get('dp-1')!.has('ownership:claimed'), 60_000, 'dp-1 to claim')
    }
    for (const t of targets)
      nodes.set(
        t,
        new NodeProcess(
          t,
          nodeFile(t, `deliver: kernel\nkernel: { addresses: [${SERVICE}] }\n`),
          ns(t)
        )
      )
    await waitFor(
      () => [...nodes.values()].every((n) => n.has('node:started')),
      60_000,
      'every node to start'
    )
    for (const t of targets) {
      const show = sh('ip', ['-n', ns(t), 'addr', 'show', 'dev', 'vipsec0'])
      expect(show, `${t} holds the service address on its TUN device`).to.include(`${SERVICE}/32`)
    }

    // unmodified servers on the targets, listening on every address
    writeFileSync(join(dir, 'blob'), '')
    sh('dd', [
      'if=/dev/urandom',
      `of=${join(dir, 'blob')}`,
      'bs=1M',
      `count=${DOWNLOAD_MB}`,
      'status=none'
    ])
    for (const t of targets) {
      servers.push(inNs(t, 'python3', ['-m', 'http.server', '8080', '--directory', dir]))
      servers.push(inNs(t, process.execPath, [join(fixtures, 'counter-server.mjs'), t, '9000']))
      servers.push(inNs(t, 'iperf3', ['-s', '-p', '5201']))
    }

    for (const t of targets) {
      await waitFor(
        () => {
          const listening = sh('ip', ['netns', 'exec', ns(t), 'ss', '-Htln'])
          return [':8080', ':9000', ':5201'].every((p) => listening.includes(p))
        },
        20_000,
        `the servers on ${t}`
      )
    }

    charon = new Charon(ns('peer'))
    await charon.start(swanctlConf())
    charon.swanctl(['--initiate', '--child', 'net'])
  })

  after(async () => {
    for (const s of servers) killProc(s)
    killProc(counters?.proc)
    await charon?.stop()
    for (const node of nodes.values()) await node.stop()
    killProc(redis)
    sh('bash', [join(root, 'scripts/cluster-netns.sh'), 'down', tag])
    rmSync(dir, { recursive: true, force: true })
  })

  it(`should download ${DOWNLOAD_MB} MB over HTTP with curl across a SIGKILL of the owner: complete, the right SHA-256, no reset`, async () => {
    const out = join(dir, 'download')
    const curl = inNs(
      'peer',
      'curl',
      [
        ...['-sS', '--fail', '--interface', INNER[0]!, '--max-time', '150'],
        ...['-o', out, `http://${SERVICE}:8080/blob`]
      ],
      'pipe'
    )
    let stderr = ''
    curl.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
    const done = exited(curl)
    // the size of the file curl writes, every 20 ms: the longest stall is the outage TCP saw
    const sizes: { at: number; bytes: number }[] = []
    const sample = setInterval(() => {
      try {
        sizes.push({ at: Date.now(), bytes: statSync(out).size })
      } catch {
        // not created yet
      }
    }, 20)
    let killed: { victim: string; killedAt: number } | undefined
    try {
      const total = DOWNLOAD_MB * 1024 * 1024
      await waitFor(
        () => (sizes.at(-1)?.bytes ?? 0) > total * 0.3,
        90_000,
        'a third of the download'
      )
      killed = await killOwner()
      const code = await done
      expect(code, `curl: ${stderr}`).to.equal(0)
    } finally {
      clearInterval(sample)
    }
    expect(statSync(out).size).to.equal(DOWNLOAD_MB * 1024 * 1024)
    const digest = async (path: string) => {
      const hash = createHash('sha256')
      for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
      return hash.digest('hex')
    }
    expect(await digest(out)).to.equal(await digest(join(dir, 'blob')))
    // the longest time without a byte, from just before the kill on
    let stall = 0
    let stallAt = 0
    let since: { at: number; bytes: number } | undefined
    for (const s of sizes.filter((x) => x.at >= killed!.killedAt - 100)) {
      if (since === undefined || s.bytes !== since.bytes) since = s
      else if (s.at - since.at > stall) [stall, stallAt] = [s.at - since.at, since.at]
    }
    const first = sizes.find((s) => s.bytes > 0)!
    const seconds = (sizes.at(-1)!.at - first.at) / 1000
    console.log(
      `      download: ${DOWNLOAD_MB} MB in ${seconds.toFixed(1)} s (${((DOWNLOAD_MB * 8) / seconds).toFixed(0)} Mbit/s); ` +
        `the TCP connection stalled ${stall} ms, from ${stallAt - killed!.killedAt} ms after the SIGKILL of ${killed!.victim}`
    )
    await restart(killed!.victim)
    rmSync(out, { force: true })
  })

  /** Polls an async condition every 200 ms. */
  async function until<T>(
    fn: () => Promise<T | undefined | false>,
    ms: number,
    what: string
  ): Promise<T> {
    const end = Date.now() + ms
    for (;;) {
      const v = await fn()
      if (v !== undefined && v !== false) return v
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
      await new Promise((r) => setTimeout(r, 200))
    }
  }

  /** Waits until every listed connection has had `more` answers since `from`. */
  async function progressed(from: ConnectionReport[], more: number): Promise<ConnectionReport[]> {
    return until(
      async () => {
        const now = await counters!.report()
        return from.every((c) => now[c.id]!.answered >= c.answered + more) && now
      },
      20_000,
      'every connection to go on counting'
    )
  }

  const startTargets = new Map<number, string>()

  it('should keep 50 counter connections over both targets open, on their targets, across two successive takeovers: no value lost or duplicated', async () => {
    counters = new CounterClient()
    counters.open(50)
    let now = await until(
      async () => {
        const r = await counters!.report()
        return r.length === 50 && r.every((c) => c.answered >= 5) && r
      },
      30_000,
      '50 connections answering'
    )
    for (const c of now) startTargets.set(c.id, c.targets[0]!)
    expect(new Set(startTargets.values()), 'spread over both targets').to.have.property('size', 2)
    const outages: number[] = []
    for (let round = 0; round < 2; round++) {
      counters.resetWaits()
      const { victim } = await killOwner()
      now = await progressed(now, 10)
      outages.push(Math.max(...now.map((c) => c.maxWaitMs)))
      expect(nodes.get(victim)!.running).to.equal(false)
    }
    const waits = now.map((c) => c.maxWaitMs).sort((a, b) => a - b)
    console.log(
      `      50 connections (${[...startTargets.values()].filter((t) => t === 'target-1').length} on target-1): ` +
        `longest wait for an answer per takeover ${outages.join(' ms, ')} ms; after the second, median ${waits[25]} ms`
    )
    for (const c of now) {
      expect(c, `connection ${c.id}`).to.include({ open: true, closed: null, lost: 0, dup: 0 })
      expect(c.targets, `connection ${c.id} stays on its target`).to.deep.equal([
        startTargets.get(c.id)
      ])
      expect(c.sent - c.answered, `connection ${c.id} in flight`).to.be.at.most(10)
    }
  })

  /** Runs iperf3 behind charon against the service; its JSON result (one retry while the server is busy). */
  async function iperf3(args: string[]): Promise<Record<string, unknown>> {
    for (let attempt = 0; ; attempt++) {
      const proc = inNs('peer', 'iperf3', ['-c', SERVICE, '-p', '5201', '-J', ...args], 'pipe')
      let out = ''
      proc.stdout!.on('data', (d: Buffer) => (out += d.toString()))
      await exited(proc)
      const result = JSON.parse(out) as Record<string, unknown>
      if (result.error === undefined) return result
      if (attempt > 2 || !String(result.error).includes('busy'))
        throw new Error(`iperf3: ${String(result.error)}`)
      await new Promise((r) => setTimeout(r, 1000))
    }
  }

  it('should carry iperf3 TCP for 10 s', async () => {
    const { end } = (await iperf3(['-B', INNER[2]!, '-t', '10'])) as {
      end: { sum_received: { bits_per_second: number }; sum_sent: { retransmits: number } }
    }
    const mbits = end.sum_received.bits_per_second / 1e6
    console.log(
      `      iperf3 TCP: ${mbits.toFixed(1)} Mbit/s received, ${end.sum_sent.retransmits} retransmits`
    )
    expect(mbits).to.be.greaterThan(1)
  })

  it('should carry a UDP application (iperf3 -u) through kernel delivery', async () => {
    const { end } = (await iperf3([
      '-B',
      INNER[3]!,
      '-u',
      '-b',
      '8M',
      '-l',
      '1300',
      '-t',
      '5'
    ])) as {
      end: { sum: { packets: number; lost_percent: number; jitter_ms: number } }
    }
    const sum = end.sum
    console.log(
      `      iperf3 UDP 8 Mbit/s, 1300 B: ${sum.packets} datagrams, ${sum.lost_percent.toFixed(2)}% lost, jitter ${sum.jitter_ms.toFixed(2)} ms`
    )
    expect(sum.packets).to.be.greaterThan(1000)
    expect(sum.lost_percent).to.be.below(5)
  })

  it('should reset or stall the connections of a target killed with SIGKILL, leave the other target’s alone, and send new ones to the live target', async () => {
    const before = await counters!.report()
    nodes.get('target-1')!.kill('SIGKILL')
    const killedAt = Date.now()
    const dead = before.filter((c) => startTargets.get(c.id) === 'target-1')
    const live = before.filter((c) => startTargets.get(c.id) === 'target-2')
    expect(dead.length).to.be.greaterThan(0)
    // the DPs declare target-1 failed; its flows move to target-2, whose kernel resets them
    const after = await until(
      async () => {
        const r = await counters!.report()
        return dead.every((c) => !r[c.id]!.open) && r
      },
      20_000,
      'the connections of target-1 to end'
    )
    const endedAfter = Date.now() - killedAt
    const how = new Set(dead.map((c) => after[c.id]!.closed))
    counters!.open(10)
    const fresh = await until(
      async () => {
        const r = await counters!.report()
        return r.length === 60 && r.slice(50).every((c) => c.answered >= 3) && r
      },
      20_000,
      'new connections to answer'
    )
    console.log(
      `      target-1's ${dead.length} connections ended within ${endedAfter} ms (${[...how].join(', ')}); ` +
        `target-2's ${live.length} went on`
    )
    for (const c of fresh.slice(50))
      expect(c.targets, `new connection ${c.id}`).to.deep.equal(['target-2'])
    for (const c of live) {
      const now = fresh[c.id]!
      expect(now, `connection ${c.id} of target-2`).to.include({ open: true, lost: 0, dup: 0 })
      expect(now.answered).to.be.greaterThan(c.answered)
      expect(now.targets).to.deep.equal(['target-2'])
    }
  })
})
