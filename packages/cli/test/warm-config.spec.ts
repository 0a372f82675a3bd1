import { chmodSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { SystemClock } from '@vipsec/clock'
import { createNode } from '@vipsec/container'
import { DefaultDistributionProcessor } from '@vipsec/core'
import { TOKENS } from '@vipsec/interface'
import { VirtualNetwork } from '@vipsec/network-virtual'
import {
  addPartMetrics,
  loadConfig,
  nodeRegistry,
  toNodeConfig,
  type FileIssue
} from '../src/index.js'

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url))
const A = 'a1'.repeat(32)
const B = 'b2'.repeat(32)

describe('warm takeover configuration', () => {
  let dir: string

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vipsec-warm-config-'))
    cpSync(fixtures, dir, { recursive: true })
    chmodSync(join(dir, 'secrets.yaml'), 0o600)
  })

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true })
  })

  const edit = (file: string, change: (t: string) => string): void => {
    const path = join(dir, file)
    writeFileSync(path, change(readFileSync(path, 'utf8')))
  }
  const warmDvipa = (): void =>
    edit('cluster.yaml', (t) =>
      t.replace('    targets: [target-1]\n', '    targets: [target-1]\n    warm: true\n')
    )
  const issues = async (): Promise<FileIssue[]> => {
    const result = await loadConfig(join(dir, 'dp-1.yaml'), { host: false })
    return result.ok ? [] : result.issues
  }
  const nodeConfig = async () => {
    const result = await loadConfig(join(dir, 'dp-1.yaml'), { host: false })
    if (!result.ok) throw new Error(JSON.stringify(result.issues))
    return toNodeConfig(
      result.config,
      new VirtualNetwork({ clock: new SystemClock() }).attach('dp-1')
    )
  }

  it('should pass the keys, block size and low water to the node', async () => {
    warmDvipa()
    edit('cluster.yaml', (t) => `${t}warm: { block_size: 4096 }\n`)
    edit(
      'secrets.yaml',
      (t) => `${t}warm_keys:\n  current: k2\n  keys: { k1: '${A}', k2: '${B}' }\n`
    )
    const c = await nodeConfig()
    const dp = c.components?.distributionProcessor as {
      init: {
        dvipas: { warm?: boolean }[]
        warm: { keys: { current: string; keys: Record<string, Uint8Array> }; blockSize: number }
      }
    }
    expect(dp.init.dvipas[0]!.warm).to.equal(true)
    expect(dp.init.warm.blockSize).to.equal(4096)
    expect(dp.init.warm.keys.current).to.equal('k2')
    expect(Buffer.from(dp.init.warm.keys.keys.k1!).toString('hex')).to.equal(A)
    expect(c.components?.espEngine).to.deep.equal({
      type: 'software',
      init: { sequenceLowWater: 2048 }
    })
    // the IKE engine announces RFC 6311 and keeps what an heir adopts
    expect(c.components?.ikeServiceFactory).to.deep.include({ type: 'ike-v2' })
    expect(
      (c.components?.ikeServiceFactory as { init: { warm?: unknown } }).init.warm
    ).to.deep.equal({ enabled: true })
    // the node builds, its processor has the key set, and /metrics shows its counters
    const registry = nodeRegistry()
    const node = createNode(c)
    addPartMetrics(registry, node)
    const text = await registry.metrics()
    expect(text).to.include('vipsec_warm_total{event="sealed"} 0')
    expect(text).to.include('vipsec_esp_dropped_total{reason="sequence-unreserved"} 0')
    const processor = node.get(TOKENS.DistributionProcessor)
    expect(processor).to.be.instanceOf(DefaultDistributionProcessor)
    expect((processor as DefaultDistributionProcessor).warmCounters()).to.include({ sealed: 0 })
  })

  it('should leave warm mode off by default', async () => {
    const c = await nodeConfig()
    const dp = c.components?.distributionProcessor as { init: { warm?: unknown } }
    expect(dp.init.warm).to.equal(undefined)
    expect(c.components?.espEngine).to.deep.equal({ type: 'software' })
    expect((c.components?.ikeServiceFactory as { init: { warm?: unknown } }).init.warm).to.equal(
      undefined
    )
    const registry = nodeRegistry()
    addPartMetrics(registry, createNode(c))
    expect(await registry.metrics()).not.to.include('vipsec_warm_total')
  })

  it('should refuse a warm DVIPA without warm keys, naming the field', async () => {
    warmDvipa()
    expect(await issues()).to.deep.include({
      file: 'secrets.yaml',
      path: 'warm_keys',
      message:
        "the cluster file's dvipas.10.9.0.100.warm is true: warm takeover needs warm_keys (current and keys) in the secrets file"
    })
  })

  it('should refuse bad warm keys and a bad block size, naming each field', async () => {
    warmDvipa()
    edit('secrets.yaml', (t) => `${t}warm_keys:\n  current: k3\n  keys: { k1: 'abcd' }\n`)
    edit('cluster.yaml', (t) => `${t}warm: { block_size: 1 }\n`)
    const found = (await issues()).map((i) => `${i.file}: ${i.path}`)
    expect(found).to.include.members([
      'secrets.yaml: warm_keys.keys.k1',
      'cluster.yaml: warm.block_size'
    ])
    edit('secrets.yaml', (t) => t.replace("k1: 'abcd'", `k1: '${A}'`))
    expect((await issues()).map((i) => `${i.file}: ${i.path}`)).to.include(
      'secrets.yaml: warm_keys.current'
    )
  })
})
