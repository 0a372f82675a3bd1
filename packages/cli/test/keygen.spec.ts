import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { SystemClock } from '@vipsec/clock'
import { decodeKeyFile, type UdpClusterLink } from '@vipsec/cluster-link-udp'
import { TOKENS } from '@vipsec/interface'
import { VirtualNetwork } from '@vipsec/network-virtual'
import {
  checkNodeFile,
  main,
  startNode,
  toNodeConfig,
  writeKeyFile,
  type NodeFile,
  type RunningNode
} from '../src/index.js'

const target: NodeFile = {
  role: 'target',
  nodeId: 'target-1',
  network: { type: 'linux' },
  link: {
    local: { address: '10.9.1.1', port: 7400 },
    peers: { 'dp-1': { address: '10.9.0.1', port: 7400 } }
  },
  apps: [{ port: 7, app: 'echo' }]
}

function fieldOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    return (err as { field?: string }).field
  }
  return undefined
}

describe('vipsec keygen', () => {
  let dir: string
  let running: RunningNode | undefined

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'lnk-keygen-'))
  })

  afterEach(async () => {
    await running?.stop()
    running = undefined
    rmSync(dir, { recursive: true, force: true })
  })

  describe('writeKeyFile', () => {
    it('should write a key only its owner can read, and never overwrite one without force', async () => {
      const path = join(dir, 'cluster.key')
      const key = await writeKeyFile(path, { id: 7 })
      expect(statSync(path).mode & 0o777).to.equal(0o600)
      expect(decodeKeyFile(readFileSync(path, 'utf8'))).to.deep.equal(key)
      expect(key.secret).to.have.length(32)
      const err = await writeKeyFile(path).then(
        () => undefined,
        (e: Error & { argument?: string }) => e
      )
      expect(err?.name).to.equal('InvalidParametersError')
      expect(decodeKeyFile(readFileSync(path, 'utf8')).id).to.equal(7)
      writeFileSync(join(dir, 'loose.key'), 'x', { mode: 0o644 })
      await writeKeyFile(join(dir, 'loose.key'), { force: true })
      expect(statSync(join(dir, 'loose.key')).mode & 0o777).to.equal(0o600)
    })
  })

  describe('main', () => {
    it('should run `vipsec keygen --out FILE` and refuse without --out', async () => {
      const out: string[] = []
      const path = join(dir, 'k')
      expect(await main(['keygen', '--out', path, '--id', '3'], (l) => out.push(l))).to.equal(0)
      expect(out[0]).to.equal(`wrote cluster key 3 to ${path}`)
      expect(await main(['keygen'], (l) => out.push(l))).to.equal(2)
    })
  })

  describe('a node file', () => {
    it('should be refused without cluster keys unless insecure is true', () => {
      expect(fieldOf(() => checkNodeFile(target))).to.equal('clusterKeys')
      expect(checkNodeFile({ ...target, insecure: true }).insecure).to.equal(true)
      expect(
        fieldOf(() => checkNodeFile({ ...target, insecure: true, clusterKeys: ['k'] }))
      ).to.equal('insecure')
      expect(fieldOf(() => checkNodeFile({ ...target, clusterKeys: ['a', 'b', 'c'] }))).to.equal(
        'clusterKeys'
      )
    })

    it('should give the link and the heartbeats the keys of its key files (two while rotating)', async () => {
      const a = await writeKeyFile(join(dir, 'a.key'))
      const b = await writeKeyFile(join(dir, 'b.key'))
      const file = checkNodeFile({
        ...target,
        detector: { local: { address: '10.9.1.1', port: 7500 } },
        clusterKeys: ['b.key', 'a.key']
      })
      const network = new VirtualNetwork({ clock: new SystemClock() }).attach('target-1')
      const config = await toNodeConfig(file, join(dir, 'target-1.json'), network)
      const link = config.components?.clusterLink as { init: { keys: unknown } }
      const detector = config.components?.failureDetector as { init: { keys: unknown } }
      expect(link.init.keys).to.deep.equal([b, a])
      expect(detector.init.keys).to.deep.equal([b, a])
    })

    it('should refuse a key file that every user can read', async () => {
      await writeKeyFile(join(dir, 'open.key'))
      chmodSync(join(dir, 'open.key'), 0o644)
      const file = checkNodeFile({ ...target, clusterKeys: ['open.key'] })
      const network = new VirtualNetwork({ clock: new SystemClock() }).attach('target-1')
      const err = await toNodeConfig(file, join(dir, 't.json'), network).then(
        () => undefined,
        (e: Error & { field?: string }) => e
      )
      expect(err?.name).to.equal('InvalidConfigError')
      expect(err?.message).to.include('chmod 600')
    })

    it('should name a key file that is not one', async () => {
      writeFileSync(join(dir, 'bad.key'), 'not a key', { mode: 0o600 })
      const file = checkNodeFile({ ...target, clusterKeys: ['bad.key'] })
      const network = new VirtualNetwork({ clock: new SystemClock() }).attach('target-1')
      const err = await toNodeConfig(file, join(dir, 't.json'), network).then(
        () => undefined,
        (e: Error & { field?: string }) => e
      )
      expect(err?.name).to.equal('InvalidConfigError')
      expect(err?.field).to.equal('clusterKeys[0]')
    })

    it('should warn in the log at start when insecure', async () => {
      const path = join(dir, 'target-1.json')
      writeFileSync(path, JSON.stringify({ ...target, insecure: true }))
      const network = new VirtualNetwork({ clock: new SystemClock() }).attach('target-1')
      await network.start()
      await network.acquireAddress('10.9.1.1')
      const lines: { type: string; level: string }[] = []
      running = await startNode(path, { network, write: (l) => lines.push(JSON.parse(l)) })
      expect(lines.find((l) => l.type === 'node:insecure')?.level).to.equal('warn')
      expect((running.node.get(TOKENS.ClusterLink) as UdpClusterLink).insecure).to.equal(true)
    })
  })
})
