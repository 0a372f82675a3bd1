import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { get } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { SystemClock } from '@vipsec/clock'
import { generateClusterKey } from '@vipsec/cluster-link-udp'
import { TOKENS } from '@vipsec/interface'
import { VirtualNetwork } from '@vipsec/network-virtual'
import {
  checkNodeFile,
  readNodeFile,
  startNode,
  toNodeConfig,
  type NodeFile,
  type RunningNode
} from '../src/index.js'

const clusterKey = generateClusterKey()
const primary: NodeFile = {
  role: 'primary',
  nodeId: 'dp-1',
  store: { type: 'memory' },
  network: { type: 'linux', init: { interface: 'eth0' } },
  ike: { psks: [{ remote: { type: 'fqdn', value: 'peer.example' }, secret: 'test secret' }] },
  detector: { local: { address: '10.9.0.1', port: 7500 }, worker: false },
  link: {
    local: { address: '10.9.0.1', port: 7400 },
    peers: { 'target-1': { address: '10.9.1.1', port: 7400 } }
  },
  processor: {
    dvipas: [{ dvipa: '10.0.0.100', ranks: ['dp-1', 'dp-2'], targets: [{ node: 'target-1' }] }],
    heartbeats: {
      'dp-1': { address: '10.9.0.1', port: 7500 },
      'dp-2': { address: '10.9.0.2', port: 7500 }
    }
  },
  clusterKeys: [{ id: clusterKey.id, secret: Buffer.from(clusterKey.secret).toString('hex') }],
  metrics: { address: '127.0.0.1', port: 0 }
}

function fetchText(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path }, (res) => {
      let body = ''
      res.on('data', (c) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    }).on('error', reject)
  })
}

function fieldOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    return (err as { field?: string }).field
  }
  return undefined
}

describe('vipsec node', function () {
  this.timeout(30_000)
  let dir: string
  let running: RunningNode | undefined

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vipsec-node-'))
  })

  afterEach(async () => {
    await running?.stop()
    running = undefined
    rmSync(dir, { recursive: true, force: true })
  })

  describe('checkNodeFile', () => {
    it('should name the first bad field', () => {
      expect(fieldOf(() => checkNodeFile({ ...primary, role: 'leader' }))).to.equal('role')
      expect(fieldOf(() => checkNodeFile({ ...primary, network: { type: 'dummy' } }))).to.equal(
        'network.type'
      )
      expect(
        fieldOf(() =>
          checkNodeFile({ ...primary, link: { ...primary.link, local: { address: 'x' } } })
        )
      ).to.equal('link.local')
      expect(fieldOf(() => checkNodeFile({ ...primary, clusterKeys: [{ id: 1 }] }))).to.equal(
        'clusterKeys[0]'
      )
      expect(fieldOf(() => checkNodeFile({ ...primary, processor: undefined }))).to.equal(
        'processor'
      )
      expect(fieldOf(() => checkNodeFile({ ...primary, ike: undefined }))).to.equal('ike')
      expect(fieldOf(() => checkNodeFile({ ...primary, store: { type: 'zookeeper' } }))).to.equal(
        'store.type'
      )
      expect(
        fieldOf(() => checkNodeFile({ ...primary, apps: [{ port: 7, app: 'chat' }] }))
      ).to.equal('apps[0]')
    })
  })

  describe('a lease detector', () => {
    const leased: NodeFile = {
      ...primary,
      detector: { type: 'lease', intervalMs: 50, ttlMs: 150 },
      processor: { ...primary.processor!, selfFenceMs: 100, ownershipCheckMs: 40 }
    }

    it('should be accepted without a heartbeat endpoint and reject an unknown type', () => {
      expect(checkNodeFile(leased).detector?.type).to.equal('lease')
      expect(fieldOf(() => checkNodeFile({ ...primary, detector: { type: 'gossip' } }))).to.equal(
        'detector.type'
      )
    })

    it('should become the lease detector with the self-fence and read-back settings', async () => {
      const network = new VirtualNetwork({ clock: new SystemClock() }).attach('dp-1')
      const config = await toNodeConfig(leased, join(dir, 'dp-1.json'), network)
      expect(config.components?.failureDetector).to.deep.equal({
        type: 'lease',
        init: { intervalMs: 50, ttlMs: 150 }
      })
      const dp = config.components?.distributionProcessor as { init: Record<string, unknown> }
      expect(dp.init).to.include({ selfFenceMs: 100, ownershipCheckMs: 40 })
    })
  })

  describe('readNodeFile', () => {
    it('should report a JSON syntax error with the file', async () => {
      const path = join(dir, 'bad.json')
      writeFileSync(path, '{ "role": "primary", ')
      const err = await readNodeFile(path).then(
        () => undefined,
        (e: Error & { field?: string }) => e
      )
      expect(err?.name).to.equal('InvalidConfigError')
      expect(err?.message).to.include('bad.json is not valid JSON')
    })
  })

  describe('startNode', () => {
    it('should build the node from its file, claim the DVIPA, log JSON lines and serve /metrics', async () => {
      const path = join(dir, 'dp-1.json')
      writeFileSync(path, JSON.stringify(primary))
      const network = new VirtualNetwork({ clock: new SystemClock() }).attach('dp-1')
      await network.start()
      await network.acquireAddress('10.9.0.1')
      const lines: string[] = []
      running = await startNode(path, { network, write: (l) => lines.push(l) })
      const store = running.node.get(TOKENS.CouplingStore)
      expect(await store.getOwnership('10.0.0.100')).to.include({ owner: 'dp-1', epoch: 1 })
      const logged = lines.map(
        (l) => JSON.parse(l) as { type: string; node: string; level: string }
      )
      expect(logged.map((l) => l.type)).to.include.members(['ownership:claimed', 'node:started'])
      expect(logged.every((l) => l.node === 'dp-1' && typeof l.level === 'string')).to.equal(true)
      const metrics = await fetchText(running.metricsPort!, '/metrics')
      expect(metrics.status).to.equal(200)
      expect(metrics.body).to.match(/^vipsec_dvipa_owned\{node="dp-1",dvipa="10\.0\.0\.100"\} 1$/m)
      expect(metrics.body).to.match(/^vipsec_dvipa_epoch\{node="dp-1",dvipa="10\.0\.0\.100"\} 1$/m)
      expect(metrics.body).to.match(/^# TYPE vipsec_esp_dropped_total counter$/m)
      expect((await fetchText(running.metricsPort!, '/nope')).status).to.equal(404)
    })

    describe('when an adapter option is bad', () => {
      it('should name it', async () => {
        const path = join(dir, 'dp-1.json')
        writeFileSync(
          path,
          JSON.stringify({
            ...primary,
            detector: { local: primary.detector!.local, multiplier: 1 }
          })
        )
        const network = new VirtualNetwork({ clock: new SystemClock() }).attach('dp-1')
        const err = await startNode(path, { network }).then(
          () => undefined,
          (e: Error & { argument?: string }) => e
        )
        expect(err?.name).to.equal('InvalidParametersError')
        expect(err?.argument).to.equal('init.multiplier')
      })
    })
  })
})
