/**
 * The interop matrix's takeover cells: real `vipsec node` processes (two distribution
 * processors and a target, Redis as the coupling store) in the namespaces of
 * scripts/cluster-netns.sh, strongSwan's charon as the remote peer, one cell per IKE proposal
 * family. charon connects to the DVIPA, a client behind it sends requests through the tunnel,
 * the owner is killed with SIGKILL, the backup renegotiates from the records with
 * INITIAL_CONTACT, and charon must end with exactly one IKE SA (a new one) while the answers
 * resume. One charon and one Redis for all cells; the nodes are started per cell with the
 * family's proposals (a fresh key prefix in Redis each time).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { Charon, killProcess, requireStrongSwan, sh, waitFor } from '../helpers/netns.js'
import { swanctlConf } from '../helpers/swanctl.js'
import { cell, registerTable } from './table.js'

registerTable()

/** What this file uses of test/system/helpers/node-process.ts's NodeProcess. */
interface NodeLike {
  readonly lines: Record<string, unknown>[]
  has(type: string): boolean
  kill(signal?: NodeJS.Signals): void
  stop(): Promise<void>
}
// imported at run time: that helper is outside this package's TypeScript project (and the CLI,
// which depends on this package, cannot be one of its references)
const { NodeProcess } = (await import(
  new URL('../../../../test/system/helpers/node-process.ts', import.meta.url).href
)) as { NodeProcess: new (name: string, config: string, ns: string) => NodeLike }

const root = fileURLToPath(new URL('../../../..', import.meta.url))
const tag = `vi${process.pid % 100000}`
const ns = (name: string): string => `${tag}-${name}`
const PSK = 'interop takeover key'
const REDIS_PASSWORD = 'interop takeover password'
const DVIPA = '10.88.0.50'
const SERVICE = '10.77.0.10'
const INNER = '172.16.2.1'
const addr: Record<string, string> = {
  'dp-1': '10.88.0.1',
  'dp-2': '10.88.0.2',
  'target-1': '10.88.0.11',
  store: '10.88.0.20',
  peer: '10.88.0.100'
}
const CLUSTER_ID = 'vpn.cluster.test'
const PEER_ID = 'peer.example.test'

/** One family: the IKE and ESP proposals both ends are configured with. */
interface Family {
  /** The family's name in the table. */
  name: string
  /** The cluster's IKE proposals (its `connections.peer.proposals`). */
  ike: string
  /** charon's, when they differ (to make the heir's renegotiation land on a later proposal). */
  charonIke?: string
  /** Both ends' ESP proposals. */
  esp: string
}

const FAMILIES: Family[] = [
  {
    name: 'AES-GCM / PRF-SHA2',
    ike: 'aes256gcm16-prfsha384-ecp384,aes128gcm16-prfsha256-x25519',
    charonIke: 'aes128gcm16-prfsha256-x25519',
    esp: 'aes256gcm16'
  },
  { name: 'AES-CBC / HMAC-SHA2', ike: 'aes256-sha256-ecp256', esp: 'aes128-sha256' },
  {
    name: 'ChaCha20-Poly1305',
    ike: 'chacha20poly1305-prfsha256-x25519',
    esp: 'chacha20poly1305'
  }
]

/** The client behind charon: a request every 20 ms, each answer logged with its time. */
function startClient(): { proc: ChildProcess; answers: { target: string; at: number }[] } {
  const code = `
const s = require('node:dgram').createSocket('udp4')
s.on('message', (m) => process.stdout.write(JSON.stringify({ target: m.toString().split(' ')[0], at: Date.now() }) + '\\n'))
s.bind(41000, '${INNER}')
let seq = 0
const timer = setInterval(() => s.send('req 0 ' + seq++, 7, '${SERVICE}'), 20)
setTimeout(() => { clearInterval(timer); process.exit(0) }, 60000)
`
  const proc = spawn('ip', ['netns', 'exec', ns('peer'), process.execPath, '-e', code], {
    stdio: ['ignore', 'pipe', 'ignore']
  })
  const answers: { target: string; at: number }[] = []
  createInterface({ input: proc.stdout! }).on('line', (line) =>
    answers.push(JSON.parse(line) as never)
  )
  return { proc, answers }
}

function charonConf(f: Family): string {
  return swanctlConf([
    {
      name: 'dvipa',
      localAddrs: addr.peer!,
      remoteAddrs: DVIPA,
      proposals: f.charonIke ?? f.ike,
      espProposals: f.esp,
      localId: PEER_ID,
      remoteId: CLUSTER_ID,
      auth: { kind: 'psk', secret: PSK },
      localTs: `${INNER}/32`,
      remoteTs: '10.77.0.0/24'
    }
  ])
}

function clusterYaml(f: Family, prefix: string): string {
  return `store: { type: redis, address: ${addr.store}:6379, prefix: "${prefix}:" }
nodes:
  dp-1: ${addr['dp-1']}
  dp-2: ${addr['dp-2']}
  target-1: ${addr['target-1']}
dvipas:
  ${DVIPA}: { ranks: [dp-1, dp-2], targets: [target-1] }
ike: { retransmit_timeout: 500ms, retransmit_base: 2, retransmit_tries: 4 }
connections:
  peer:
    proposals: ${f.ike}
    rekey_time: 0
    local: { id: ${CLUSTER_ID} }
    remote: { id: ${PEER_ID} }
    children:
      net: { local_ts: 10.77.0.0/24, remote_ts: ${INNER}/32, esp_proposals: ${f.esp}, rekey_time: 0 }
`
}

describe('interop matrix: kill -9 takeover against strongSwan charon, per proposal family', function () {
  this.timeout(180_000)
  const dir = mkdtempSync(join(tmpdir(), 'vipsec-interop-takeover-'))
  let redis: ChildProcess | undefined
  let charon: Charon
  let nodes: NodeLike[] = []
  let client: ReturnType<typeof startClient> | undefined

  before(async () => {
    requireStrongSwan()
    sh('bash', [join(root, 'scripts/cluster-netns.sh'), 'up', tag])
    redis = spawn(
      'ip',
      [
        'netns',
        'exec',
        ns('store'),
        'redis-server',
        '--bind',
        addr.store!,
        '--port',
        '6379',
        '--requirepass',
        REDIS_PASSWORD,
        '--dir',
        dir,
        '--appendonly',
        'yes',
        '--save',
        ''
      ],
      { stdio: 'ignore' }
    )
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
    // the cluster key file, made as an operator makes it
    sh(process.execPath, [
      '--import',
      'tsx',
      '--conditions=vipsec-source',
      join(root, 'packages/cli/src/bin.ts'),
      'keygen',
      '--out',
      join(dir, 'cluster.key')
    ])
    writeFileSync(
      join(dir, 'secrets.yaml'),
      `ike:\n  peer: { id: ${PEER_ID}, secret: "${PSK}" }\nstore: { password: "${REDIS_PASSWORD}" }\n`,
      { mode: 0o600 }
    )
    charon = new Charon(ns('peer'))
    await charon.start('connections {\n}\n')
  })

  afterEach(async () => {
    killProcess(client?.proc)
    client = undefined
    for (const n of nodes) await n.stop()
    nodes = []
    await charon.terminateAll()
    // a node killed with SIGKILL leaves the DVIPA on its interface
    for (const dp of ['dp-1', 'dp-2']) {
      try {
        sh('ip', ['-n', ns(dp), 'addr', 'del', `${DVIPA}/32`, 'dev', 'eth0'])
      } catch {
        // not there
      }
    }
  })

  after(async () => {
    await charon?.stop()
    killProcess(redis)
    sh('bash', [join(root, 'scripts/cluster-netns.sh'), 'down', tag])
    rmSync(dir, { recursive: true, force: true })
  })

  /** The family's cluster file, a node file each, and the three node processes started. */
  async function startNodes(f: Family, i: number): Promise<Map<string, NodeLike>> {
    const cluster = `cluster-${i}.yaml`
    writeFileSync(join(dir, cluster), clusterYaml(f, `${tag}-${i}`))
    const byName = new Map<string, NodeLike>()
    for (const name of ['dp-1', 'dp-2', 'target-1']) {
      const file = join(dir, `${name}-${i}.yaml`)
      const apps = name.startsWith('target') ? 'apps: [{ app: request-response, port: 7 }]\n' : ''
      writeFileSync(
        file,
        `node: ${name}\ncluster: ${cluster}\nsecrets: secrets.yaml\ninterface: eth0\ncluster_key_files: [cluster.key]\n${apps}`
      )
      const node = new NodeProcess(name, file, ns(name))
      nodes.push(node)
      byName.set(name, node)
      if (name === 'dp-1')
        await waitFor(() => node.has('ownership:claimed'), 60_000, 'dp-1 to claim the DVIPA')
    }
    await waitFor(
      () => [...byName.values()].every((n) => n.has('node:started')),
      60_000,
      'every node to start'
    )
    return byName
  }

  FAMILIES.forEach((f, i) => {
    it(`takeover: ${f.name} (${f.ike}, ESP ${f.esp}), kill -9 of the owner`, async () => {
      await cell(
        {
          group: 'kill -9 takeover',
          cell: `${f.name}: ${f.ike}${f.charonIke === undefined ? '' : ` (charon: ${f.charonIke})`}, ESP ${f.esp}`,
          direction: 'charon → DVIPA, then vipsec (heir) → charon'
        },
        async (set) => {
          const byName = await startNodes(f, i)
          charon.load(charonConf(f))
          const t0 = performance.now()
          charon.swanctl(['--initiate', '--child', 'net', '--ike', 'dvipa', '--timeout', '30'])
          const handshakeMs = performance.now() - t0
          client = startClient()
          const answers = client.answers
          await waitFor(() => answers.length > 10, 20_000, 'answers through the tunnel')
          const before = charon.ikeSas()
          expect(before, 'IKE SAs at charon before').to.have.length(1)
          byName.get('dp-1')!.kill('SIGKILL')
          const killedAt = Date.now()
          await waitFor(
            () => byName.get('dp-2')!.has('takeover:completed'),
            30_000,
            'dp-2 to take over'
          )
          await waitFor(
            () => answers.some((a) => a.at > killedAt + 50),
            30_000,
            'answers after the takeover'
          )
          // charon's older IKE SA goes on INITIAL_CONTACT; let it settle
          await waitFor(() => charon.ikeSas().length === 1, 10_000, 'one IKE SA at charon')
          const after = charon.ikeSas()
          expect(after, 'exactly one IKE SA at charon').to.have.length(1)
          expect(after[0], 'and a new one').to.not.equal(before[0])
          const gap =
            Math.min(...answers.filter((a) => a.at > killedAt).map((a) => a.at)) - killedAt
          const ike = /^ {2}([A-Z][A-Z0-9_]*(?:-\d+)?(?:\/[A-Z0-9_-]+)+)$/m.exec(
            charon.swanctl(['--list-sas'])
          )?.[1]
          set({
            handshakeMs,
            detail: `IKE ${ike ?? '?'}; first answer ${gap} ms after the kill; charon IKE SAs: 1`
          })
        }
      )
    })
  })
})
