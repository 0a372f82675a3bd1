import { chmodSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { get, request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { SystemClock } from '@vipsec/clock'
import type { DefaultDistributionProcessor } from '@vipsec/core'
import { TOKENS } from '@vipsec/interface'
import { VirtualNetwork } from '@vipsec/network-virtual'
import { fromThisHost } from '../src/metrics.js'
import { adminUrl, runReload } from '../src/operator-commands.js'
import { canonical, planReload } from '../src/reload.js'
import { loadConfig, startNode, type LoadedConfig, type RunningNode } from '../src/index.js'

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url))

function fetchText(
  port: number,
  path: string,
  method = 'GET'
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = (method === 'GET' ? get : request)(
      { host: '127.0.0.1', port, path, method },
      (res) => {
        let body = ''
        res.on('data', (c) => (body += c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      }
    )
    req.on('error', reject)
    if (method !== 'GET') req.end()
  })
}

const CLUSTER = readFileSync(join(fixtures, 'cluster.yaml'), 'utf8')
const SECRETS = readFileSync(join(fixtures, 'secrets.yaml'), 'utf8')

/** The fixture cluster with a second target, target-2, known to the cluster file. */
const withTarget2 = (text: string): string =>
  text
    .replace('  target-1: 10.9.1.1\n', '  target-1: 10.9.1.1\n  target-2: 10.9.1.2\n')
    .replace('targets: [target-1]', 'targets: [target-1, target-2]')

/** The secrets with a PSK for peer-2 too. */
const withPeer2Psk = (text: string): string =>
  text.replace('ike:\n', "ike:\n  peer-2: { id: peer-2.example.test, secret: 'second secret' }\n")

const SECOND_PEER = `  peer-2:
    proposals: aes128gcm16-prfsha256-ecp256
    local: { id: vpn.cluster.test }
    remote: { id: peer-2.example.test }
    children:
      net: { local_ts: 10.77.0.0/24, remote_ts: 172.16.3.0/24 }
`

describe('reload', function () {
  this.timeout(30_000)
  let dir: string

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vipsec-vo-reload-'))
    cpSync(fixtures, dir, { recursive: true })
    chmodSync(join(dir, 'secrets.yaml'), 0o600)
  })

  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  async function load(): Promise<LoadedConfig> {
    const result = await loadConfig(join(dir, 'dp-1.yaml'), { host: false })
    if (!result.ok) throw new Error(JSON.stringify(result.issues))
    return result.config
  }

  describe('planReload', () => {
    let base: LoadedConfig
    beforeEach(async () => {
      base = await load()
    })

    async function after(cluster: string, secrets = SECRETS) {
      writeFileSync(join(dir, 'cluster.yaml'), cluster)
      writeFileSync(join(dir, 'secrets.yaml'), secrets, { mode: 0o600 })
      return planReload(base, await load())
    }

    it('should find nothing when the files did not change', async () => {
      expect(await after(CLUSTER)).to.deep.equal({ changes: [], refused: [] })
    })

    it('should apply a changed PSK, an added, removed or changed connection, and an added target', async () => {
      const secrets = withPeer2Psk(SECRETS.replace("'test secret'", "'a new secret'"))
      const plan = await after(withTarget2(CLUSTER + SECOND_PEER), secrets)
      expect(plan.refused).to.deep.equal([])
      expect(plan.changes).to.deep.equal([
        { kind: 'peer:added', name: 'peer-2' },
        { kind: 'secrets:psk', name: 'peer,peer-2' },
        { kind: 'targets', name: '10.9.0.100', added: ['target-2'], removed: [] }
      ])
      const changed = await after(CLUSTER.replace('rekey_time: 4h', 'rekey_time: 2h'))
      expect(changed.changes).to.deep.equal([{ kind: 'peer:changed', name: 'peer' }])
      writeFileSync(join(dir, 'cluster.yaml'), CLUSTER + SECOND_PEER)
      writeFileSync(join(dir, 'secrets.yaml'), withPeer2Psk(SECRETS), { mode: 0o600 })
      base = await load()
      expect((await after(CLUSTER, withPeer2Psk(SECRETS))).changes).to.deep.equal([
        { kind: 'peer:removed', name: 'peer-2' }
      ])
    })

    it('should apply new cluster keys (a rotation)', async () => {
      const secrets = SECRETS.replace(/cluster_key: '(5a)+'/, `cluster_key: '${'6b'.repeat(32)}'`)
      expect((await after(CLUSTER, secrets)).changes).to.deep.equal([
        { kind: 'cluster-keys', name: 'cluster_key' }
      ])
    })

    const refusals: [string, (c: string) => string, string, string][] = [
      [
        'a DVIPA address',
        (c) => c.replace('10.9.0.100:', '10.9.0.101:'),
        'dvipa',
        'cluster: dvipas'
      ],
      [
        'the ranks',
        (c) => c.replace('ranks: [dp-1, dp-2]', 'ranks: [dp-2, dp-1]'),
        'dvipa',
        'cluster: dvipas'
      ],
      [
        "this node's address",
        (c) => c.replace('dp-1: 10.9.0.1', 'dp-1: 10.9.0.7'),
        'identity',
        'cluster: nodes'
      ],
      [
        'the store',
        (c) =>
          c.replace('store: { type: memory }', 'store: { type: redis, address: 127.0.0.1:6379 }'),
        'store',
        'cluster: store'
      ],
      [
        'the detector',
        (c) => c.replace('worker: false', 'worker: true'),
        'restart',
        'cluster: detector'
      ]
    ]
    for (const [what, edit, reason, path] of refusals) {
      it(`should refuse a change of ${what} (${reason}), naming ${path}`, async () => {
        const plan = await after(edit(CLUSTER))
        expect(plan.changes).to.deep.equal([])
        expect(plan.refused.map((r) => [r.reason, r.path])).to.deep.include([reason, path])
      })
    }

    it('should refuse a change of the store password, and the node id', async () => {
      const plan = await after(CLUSTER, `${SECRETS}store: { password: x }\n`)
      expect(plan.refused.map((r) => r.path)).to.deep.equal(['secrets: store'])
      const next = await load()
      const renamed = planReload(base, { ...next, node: { ...next.node, node: 'dp-9' } })
      expect(renamed.refused.map((r) => r.path)).to.include('node: node')
    })
  })

  describe('canonical', () => {
    it('should compare bytes by value and objects whatever their key order', () => {
      expect(canonical({ a: 1, b: new Uint8Array([1, 2]) })).to.equal(
        canonical({ b: Buffer.from([1, 2]), a: 1 })
      )
      expect(canonical(new Uint8Array([1]))).to.not.equal(canonical(new Uint8Array([2])))
    })
  })

  describe('fromThisHost', () => {
    it('should take loopback and the listening address, nothing else', () => {
      expect(fromThisHost('127.0.0.1', '127.0.0.1')).to.equal(true)
      expect(fromThisHost('::ffff:127.0.0.1', '::ffff:127.0.0.1')).to.equal(true)
      expect(fromThisHost('10.0.0.1', '10.0.0.1')).to.equal(true)
      expect(fromThisHost('10.0.0.2', '10.0.0.1')).to.equal(false)
      expect(fromThisHost(undefined, '10.0.0.1')).to.equal(false)
    })
  })

  describe('on a running node', () => {
    let running: RunningNode | undefined
    let lines: Record<string, unknown>[]

    beforeEach(async () => {
      const network = new VirtualNetwork({ clock: new SystemClock() }).attach('dp-1')
      await network.start()
      await network.acquireAddress('10.9.0.1')
      lines = []
      running = await startNode(join(dir, 'dp-1.yaml'), {
        host: false,
        network,
        destination: {
          write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>)
        }
      })
    })

    afterEach(async () => {
      await running?.stop()
      running = undefined
    })

    it('should apply a new PSK, connection and target in the services it runs, with no ownership change', async () => {
      const dp = running!.node.get(TOKENS.DistributionProcessor) as DefaultDistributionProcessor
      const ike = running!.config.ike!
      const epoch = dp.states.get('10.9.0.100')!.ownership.epoch
      // the parts that keep ownership: a reload must neither replace nor restart them
      const parts = [TOKENS.FailureDetector, TOKENS.ClusterLink, TOKENS.CouplingStore].map(
        (token) => running!.node.get(token as symbol) as { isStarted(): boolean }
      )
      const mark = lines.length
      writeFileSync(join(dir, 'cluster.yaml'), withTarget2(CLUSTER + SECOND_PEER))
      writeFileSync(
        join(dir, 'secrets.yaml'),
        withPeer2Psk(SECRETS.replace("'test secret'", "'a new secret'")),
        { mode: 0o600 }
      )
      const result = await running!.reload()
      expect(result.outcome).to.equal('applied')
      // the very arrays the IKE service factory was given now hold the new contents
      expect(running!.config.ike).to.equal(ike)
      expect(ike.psks!.map((p) => p.secret)).to.deep.equal(['second secret', 'a new secret'])
      expect(ike.peers!.map((p) => p.remoteIdentity?.value)).to.deep.equal([
        'peer.example.test',
        'peer-2.example.test'
      ])
      expect(dp.init.dvipas[0]!.targets.map((t) => t.node)).to.deep.equal(['target-1', 'target-2'])
      expect(dp.init.targetHeartbeats).to.have.property('target-2')
      const state = dp.states.get('10.9.0.100')!
      expect(state.ownership.current().role).to.equal('owner')
      expect(state.ownership.epoch).to.equal(epoch)
      expect(lines.find((l) => l.type === 'reload:applied')).to.include({ level: 'info' })
      for (const [i, token] of [
        TOKENS.FailureDetector,
        TOKENS.ClusterLink,
        TOKENS.CouplingStore
      ].entries()) {
        expect(running!.node.get(token as symbol), String(token)).to.equal(parts[i])
        expect(parts[i]!.isStarted(), String(token)).to.equal(true)
      }
      const moved = lines
        .slice(mark)
        .filter((l) => /^(ownership:|takeover:|node:(stopped|started))/.test(String(l.type)))
      expect(moved, 'ownership or lifecycle events during the reload').to.deep.equal([])
      // the same files again: nothing to do
      expect((await running!.reload()).outcome).to.equal('unchanged')
      const metrics = await fetchText(running!.adminPort!, '/metrics')
      expect(metrics.body).to.match(/^vipsec_reloads_total\{outcome="applied"\} 1$/m)
      expect(metrics.body).to.match(/^vipsec_reloads_total\{outcome="unchanged"\} 1$/m)
    })

    it('should refuse a store change over POST /reload and vipsec reload, change nothing, log and count it', async () => {
      const ike = running!.config.ike!
      writeFileSync(
        join(dir, 'cluster.yaml'),
        CLUSTER.replace(
          'store: { type: memory }',
          'store: { type: redis, address: 127.0.0.1:6379 }'
        )
      )
      writeFileSync(join(dir, 'secrets.yaml'), SECRETS.replace("'test secret'", "'a new secret'"), {
        mode: 0o600
      })
      const answer = await fetchText(running!.adminPort!, '/reload', 'POST')
      expect(answer.status).to.equal(200)
      const result = JSON.parse(answer.body) as { outcome: string; refused: { reason: string }[] }
      expect(result.outcome).to.equal('refused')
      expect(result.refused.map((r) => r.reason)).to.deep.equal(['store'])
      expect(ike.psks!.map((p) => p.secret)).to.deep.equal(['test secret'])
      expect(lines.find((l) => l.type === 'reload:refused')).to.include({
        level: 'warn',
        reason: 'store'
      })
      // the command line, from the node file's admin endpoint (port 0 in the fixture: give it the real one)
      writeFileSync(
        join(dir, 'dp-1.yaml'),
        readFileSync(join(dir, 'dp-1.yaml'), 'utf8').replace(
          'admin: 127.0.0.1:0',
          `admin: 127.0.0.1:${running!.adminPort!}`
        )
      )
      expect(await adminUrl(join(dir, 'dp-1.yaml'))).to.equal(
        `http://127.0.0.1:${running!.adminPort!}`
      )
      const printed: string[] = []
      expect(await runReload(join(dir, 'dp-1.yaml'), (l) => printed.push(l))).to.equal(1)
      expect(printed.join('\n')).to.match(/refused {2}cluster: store: .*\(store\)/)
      const metrics = await fetchText(running!.adminPort!, '/metrics')
      expect(metrics.body).to.match(/^vipsec_reloads_total\{outcome="refused"\} 2$/m)
    })

    it('should refuse files with errors, naming the field', async () => {
      writeFileSync(join(dir, 'cluster.yaml'), CLUSTER.replace('ranks:', 'rnaks:'))
      const result = await running!.reload()
      expect(result.outcome).to.equal('invalid')
      expect(result.issues!.join('\n')).to.match(/rnaks/)
      expect(lines.find((l) => l.type === 'reload:refused')).to.include({
        level: 'error',
        reason: 'invalid'
      })
    })
  })
})
