// A real vipsec cluster: separate `vipsec node` processes in network namespaces (three
// distribution processors, two targets), Redis as the coupling store in its own namespace, and
// strongSwan charon as the remote IPsec peer, all joined by a bridge. Traffic from a client
// behind charon goes through IPsec to the service behind the DVIPA; the owner is killed with
// SIGKILL and the first backup takes over.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { Charon, sh, waitFor } from '../../adapters/ike-v2/test/helpers/netns.js'
import { writeKeyFile } from '../../packages/cli/src/index.js'
import { NodeProcess } from './helpers/node-process.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const tag = `v${process.pid % 10000}`
const ns = (name: string): string => `${tag}-${name}`
const PSK = 'cluster system test key'
const REDIS_PASSWORD = 'cluster system test password'
const DVIPA = '10.88.0.50'
const SERVICE = '10.77.0.10'
const INNER = '172.16.2.1'
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
/** The client behind charon: sends requests on four flows, logs each answer with its time. */
function startClient(): {
  proc: ChildProcess
  answers: { flow: number; target: string; at: number }[]
} {
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
}, 20)
setTimeout(() => { clearInterval(timer); process.exit(0) }, 120000)
`
  const proc = spawn('ip', ['netns', 'exec', ns('peer'), process.execPath, '-e', code], {
    stdio: ['ignore', 'pipe', 'ignore']
  })
  const answers: { flow: number; target: string; at: number }[] = []
  createInterface({ input: proc.stdout! }).on('line', (line) =>
    answers.push(JSON.parse(line) as never)
  )
  return { proc, answers }
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
    id-1 = ${ids.peer.value}
    id-2 = ${ids.cluster.value}
    secret = "${PSK}"
  }
}
`
}

/** The cluster file every node reads: the same tunnel as swanctlConf(), from the cluster's side. */
function clusterYaml(): string {
  return `store: { type: redis, address: ${addr.store}:6379, prefix: "${tag}:" }
nodes:
${[...dps, ...targets].map((n) => `  ${n}: ${addr[n]}`).join('\n')}
dvipas:
  ${DVIPA}: { ranks: [${dps.join(', ')}], targets: [${targets.join(', ')}] }
ike: { retransmit_timeout: 500ms, retransmit_base: 2, retransmit_tries: 4 }
connections:
  peer:
    proposals: aes256gcm16-prfsha256-x25519
    rekey_time: 0
    local: { id: ${ids.cluster.value} }
    remote: { id: ${ids.peer.value} }
    children:
      net: { local_ts: 10.77.0.0/24, remote_ts: ${INNER}/32, esp_proposals: aes256gcm16, rekey_time: 0 }
`
}

/** redis-server in the store namespace, with a password and an append-only file in `dir`. */
function startRedis(dir: string): ChildProcess {
  const args = ['--bind', addr.store!, '--port', '6379', '--requirepass', REDIS_PASSWORD]
  args.push('--dir', dir, '--appendonly', 'yes', '--save', '')
  return spawn('ip', ['netns', 'exec', ns('store'), 'redis-server', ...args], { stdio: 'ignore' })
}

/** The longest time without an answer in `answers`, from `from` on. */
function longestGap(answers: { at: number }[], from: number): number {
  const times = answers
    .map((a) => a.at)
    .filter((t) => t >= from - 100)
    .sort((x, y) => x - y)
  let gap = 0
  for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i]! - times[i - 1]!)
  return gap
}

describe('a vipsec cluster of separate processes, with Redis and strongSwan', function () {
  this.timeout(240_000)
  const dir = mkdtempSync(join(tmpdir(), 'vipsec-cluster-'))
  const nodes = new Map<string, NodeProcess>()
  let redis: ChildProcess | undefined
  let charon: Charon
  let client: ReturnType<typeof startClient> | undefined

  before(async () => {
    // the network: scripts/cluster-netns.sh (a bridge in its own namespace, one veth per node)
    sh('bash', [join(root, 'scripts/cluster-netns.sh'), 'up', tag])

    // the coupling store
    redis = startRedis(dir)
    await waitFor(
      () => {
        try {
          return sh('ip', [
            'netns',
            'exec',
            ns('store'),
            'redis-cli',
            '-h',
            addr.store!,
            '-a',
            REDIS_PASSWORD,
            '--no-auth-warning',
            'ping'
          ]).includes('PONG')
        } catch {
          return false
        }
      },
      10_000,
      'redis'
    )

    // the nodes: one cluster file, a node file each, the secrets and a cluster key file made as
    // `vipsec keygen` makes it beside them
    writeFileSync(join(dir, 'cluster.yaml'), clusterYaml())
    await writeKeyFile(join(dir, 'cluster.key'))
    writeFileSync(
      join(dir, 'secrets.yaml'),
      `ike:\n  peer: { id: ${ids.peer.value}, secret: "${PSK}" }\nstore: { password: "${REDIS_PASSWORD}" }\n`,
      { mode: 0o600 }
    )
    for (const name of [...dps, ...targets]) {
      const file = join(dir, `${name}.yaml`)
      const apps = targets.includes(name) ? 'apps: [{ app: request-response, port: 7 }]\n' : ''
      writeFileSync(
        file,
        `node: ${name}\ncluster: cluster.yaml\nsecrets: secrets.yaml\ninterface: eth0\ncluster_key_files: [cluster.key]\n${apps}`
      )
      nodes.set(name, new NodeProcess(name, file, ns(name)))
      if (name === 'dp-1')
        await waitFor(
          () => nodes.get('dp-1')!.has('ownership:claimed'),
          60_000,
          'dp-1 to claim the DVIPA'
        )
    }
    await waitFor(
      () => [...nodes.values()].every((n) => n.has('node:started')),
      60_000,
      'every node to start'
    )

    // the peer
    charon = new Charon(ns('peer'))
    await charon.start(swanctlConf())
    charon.swanctl(['--initiate', '--child', 'net'])
  })

  after(async () => {
    client?.proc.kill('SIGKILL')
    await charon?.stop()
    for (const node of nodes.values()) await node.stop()
    if (redis?.pid !== undefined && redis.exitCode === null) process.kill(redis.pid, 'SIGKILL')
    sh('bash', [join(root, 'scripts/cluster-netns.sh'), 'down', tag])
    rmSync(dir, { recursive: true, force: true })
  })

  it('should carry the peer client’s traffic through IPsec to both targets, and answer it', async () => {
    client = startClient()
    const answers = client.answers
    await waitFor(
      () => new Set(answers.map((a) => a.flow)).size === 4,
      20_000,
      'answers on all four flows'
    )
    const served = new Set(answers.map((a) => a.target))
    expect([...served].sort()).to.deep.equal(['target-1', 'target-2'])
    expect(charon.ikeSas()).to.have.length(1)
  })

  const outages: number[] = []
  const byFlow = new Map<number, string>()

  /** Kills `victim` with SIGKILL and waits until `heir` took over and answers flow again. */
  async function failover(victim: string, heir: string): Promise<void> {
    const answers = client!.answers
    for (const a of answers) byFlow.set(a.flow, a.target)
    const before = charon.ikeSas()[0]!
    const completed = nodes.get(heir)!.lines.filter((l) => l.type === 'takeover:completed').length
    nodes.get(victim)!.kill('SIGKILL')
    const killedAt = Date.now()
    try {
      await waitFor(
        () =>
          nodes.get(heir)!.lines.filter((l) => l.type === 'takeover:completed').length > completed,
        30_000,
        `${heir} to take over from ${victim}`
      )
    } catch (err) {
      // what each node said last, to see why
      for (const [name, node] of nodes) {
        const tail = node.lines.filter((l) => !String(l.type).startsWith('connection:')).slice(-12)
        console.log(
          `      --- ${name}\n${tail.map((l) => `      ${JSON.stringify(l)}`).join('\n')}`
        )
      }
      throw err
    }
    await waitFor(
      () => answers.some((a) => a.at > killedAt + 50),
      30_000,
      'answers after the failover'
    )
    await new Promise((resolve) => setTimeout(resolve, 500))
    const outage = longestGap(answers, killedAt)
    outages.push(outage)
    if (outage > 800) {
      // a slow one: show where the heir's time went
      const steps = nodes
        .get(heir)!
        .lines.filter((l) => l.type === 'takeover:step' || l.type === 'takeover:started')
        .slice(-12)
      console.log(
        `      slow failover (${outage} ms) to ${heir}:\n${steps.map((l) => `        ${JSON.stringify(l)}`).join('\n')}`
      )
    }
    const sas = charon.ikeSas()
    expect(sas, 'charon holds exactly one IKE SA').to.have.length(1)
    expect(sas[0], 'and it is a new one').to.not.equal(before)
    const resumed = Math.min(...answers.filter((a) => a.at > killedAt + 50).map((a) => a.at))
    for (const a of answers.filter((x) => x.at > resumed)) {
      expect(a.target, `flow ${a.flow} keeps its target`).to.equal(byFlow.get(a.flow))
    }
  }

  /** Starts a killed node again, as its init system would. */
  async function restart(name: string): Promise<void> {
    const old = nodes.get(name)!
    await old.stop()
    const again = new NodeProcess(name, join(dir, `${name}.yaml`), ns(name))
    nodes.set(name, again)
    await waitFor(() => again.has('node:started'), 60_000, `${name} to start again`)
  }

  it('should fail over to dp-2 when dp-1 is killed with SIGKILL: one new IKE SA at charon, traffic on the same targets', async () => {
    await failover('dp-1', 'dp-2')
  })

  it('should fail over again to dp-3 when dp-2 is killed (a chain, from what dp-2 wrote)', async () => {
    await failover('dp-2', 'dp-3')
  })

  it('should keep a restarted dp-1 from serving (stale epoch) and have it apply the deletes in its mailbox', async () => {
    await restart('dp-1')
    await waitFor(
      () => nodes.get('dp-1')!.has('deletes:applied'),
      10_000,
      'dp-1 to apply its mailbox'
    )
    await new Promise((resolve) => setTimeout(resolve, 1000))
    expect(nodes.get('dp-1')!.has('ownership:claimed')).to.equal(false)
    expect(nodes.get('dp-1')!.has('takeover:started')).to.equal(false)
    const routes = sh('ip', ['-n', ns('dp-1'), 'addr', 'show', 'dev', 'eth0'])
    expect(routes).to.not.include(DVIPA)
    expect(charon.ikeSas()).to.have.length(1)
  })

  it('should measure the outage the client sees over five failovers', async () => {
    await restart('dp-2')
    // dp-3 owns; each round kills the owner, the best live backup takes over, the victim restarts
    let owner = 'dp-3'
    while (outages.length < 5) {
      const live = dps.filter((d) => d !== owner)
      const heir = live[0]!
      await failover(owner, heir)
      await restart(owner)
      owner = heir
    }
    const sorted = [...outages].sort((a, b) => a - b)
    const median = sorted[Math.floor(sorted.length / 2)]!
    console.log(
      `      outage over ${outages.length} SIGKILL failovers: median ${median} ms, max ${sorted.at(-1)} ms (${outages.join(', ')})`
    )
    expect(outages).to.have.length.at.least(5)
  })

  it('should reload its files on SIGHUP (unchanged here), and keep serving without a takeover', async () => {
    const owner = [...nodes.entries()].find(([, n]) =>
      n.lines.some((l) => l.type === 'takeover:completed' || l.type === 'ownership:claimed')
    )![1]
    const takeovers = owner.lines.filter((l) => l.type === 'takeover:started').length
    owner.kill('SIGHUP')
    await waitFor(() => owner.has('reload:unchanged'), 10_000, 'the owner to answer SIGHUP')
    expect(owner.lines.find((l) => l.type === 'reload:unchanged')).to.include({ level: 'info' })
    expect(owner.proc.exitCode).to.equal(null)
    const at = Date.now()
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(client!.answers.filter((a) => a.at > at).length).to.be.greaterThan(20)
    expect(owner.lines.filter((l) => l.type === 'takeover:started').length).to.equal(takeovers)
  })

  it('should ride out a Redis kill and restart: no takeover, nothing lost', async () => {
    const owner = dps.find((d) =>
      nodes
        .get(d)!
        .lines.some((l) => l.type === 'takeover:completed' || l.type === 'ownership:claimed')
    )
    const count = (): string =>
      sh('ip', [
        'netns',
        'exec',
        ns('store'),
        'redis-cli',
        '-h',
        addr.store!,
        '-a',
        REDIS_PASSWORD,
        '--no-auth-warning',
        'hlen',
        `${tag}:{${DVIPA}}:records`
      ]).trim()
    const records = count()
    const takeovers = [...nodes.values()].reduce(
      (n, node) => n + node.lines.filter((l) => l.type === 'takeover:started').length,
      0
    )
    process.kill(redis!.pid!, 'SIGKILL')
    await new Promise((resolve) => setTimeout(resolve, 3000))
    redis = startRedis(dir)
    await waitFor(
      () => {
        try {
          return count() === records
        } catch {
          return false
        }
      },
      20_000,
      'Redis back with every record'
    )
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const after = [...nodes.values()].reduce(
      (n, node) => n + node.lines.filter((l) => l.type === 'takeover:started').length,
      0
    )
    expect(after, 'no takeover started').to.equal(takeovers)
    expect(count()).to.equal(records)
    expect(owner).to.not.equal(undefined)
    const at = Date.now()
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(client!.answers.filter((a) => a.at > at).length).to.be.greaterThan(20)
  })
})
