import { chmodSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { SystemClock } from '@vipsec/clock'
import { VirtualNetwork } from '@vipsec/network-virtual'
import { loadConfig, prefixOf, statusTarget, toNodeConfig } from '../src/index.js'

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url))
const ETCD =
  'store: { type: etcd, endpoints: [http://10.9.0.21:2379, http://10.9.0.22:2379], prefix: c1/, username: vip }\n'

describe('the cluster file’s etcd store', function () {
  this.timeout(30_000)
  let dir: string

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vipsec-ops2-store-'))
    cpSync(fixtures, dir, { recursive: true })
    chmodSync(join(dir, 'secrets.yaml'), 0o600)
  })

  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  const edit = (file: string, change: (t: string) => string): void => {
    const path = join(dir, file)
    writeFileSync(path, change(readFileSync(path, 'utf8')))
  }

  it('should give the node an etcd store with the members, prefix, user and the secrets’ password', async () => {
    edit('cluster.yaml', (t) => t.replace('store: { type: memory }\n', ETCD))
    edit('secrets.yaml', (t) => `${t}store: { password: pw }\n`)
    const result = await loadConfig(join(dir, 'dp-1.yaml'), { host: false })
    if (!result.ok) throw new Error(JSON.stringify(result.issues))
    const c = toNodeConfig(
      result.config,
      new VirtualNetwork({ clock: new SystemClock() }).attach('dp-1')
    )
    const hosts = ['http://10.9.0.21:2379', 'http://10.9.0.22:2379']
    expect(c.store).to.deep.equal({
      type: 'etcd',
      init: { hosts, keyPrefix: 'c1/', username: 'vip', password: 'pw' }
    })
    const target = await statusTarget(join(dir, 'dp-1.yaml'))
    expect(target.init).to.deep.equal({
      etcd: { hosts, keyPrefix: 'c1/', username: 'vip', password: 'pw' }
    })
    expect(target.where).to.equal(hosts.join(','))
    expect(prefixOf(target.init)).to.equal('c1/')
    expect(prefixOf({ etcd: {} })).to.equal('vipsec/')
    expect(prefixOf({})).to.equal('vipsec:')
  })

  it('should refuse an etcd store without members, with a bad URL, or a misspelt field', async () => {
    const issuesOf = async (store: string) => {
      edit('cluster.yaml', (t) => t.replace(/^store: .*\n/m, store))
      const r = await loadConfig(join(dir, 'dp-1.yaml'), { host: false })
      return r.ok ? [] : r.issues.map((i) => `${i.file}: ${i.path}: ${i.message}`)
    }
    expect((await issuesOf('store: { type: etcd, endpoints: [] }\n'))[0]).to.match(
      /^cluster\.yaml: store\.endpoints: /
    )
    expect((await issuesOf('store: { type: etcd, endpoints: [10.9.0.21] }\n'))[0]).to.match(
      /^cluster\.yaml: store\.endpoints\[0\]: expected a URL/
    )
    expect(
      (await issuesOf('store: { type: etcd, endpoints: [http://10.9.0.21:2379], prefx: a/ }\n'))[0]
    ).to.match(/store\.prefx: unknown field 'prefx'; did you mean 'prefix'\?/)
  })
})

describe('the cluster file’s Redis store with Sentinel', function () {
  this.timeout(30_000)
  let dir: string

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vipsec-st-store-'))
    cpSync(fixtures, dir, { recursive: true })
    chmodSync(join(dir, 'secrets.yaml'), 0o600)
  })

  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  const setStore = (store: string): void => {
    const path = join(dir, 'cluster.yaml')
    writeFileSync(path, readFileSync(path, 'utf8').replace(/^store: .*\n/m, store))
  }

  it('should give the node the Sentinels, the group name and the replicated mode', async () => {
    setStore(
      'store: { type: redis, sentinels: [10.9.0.20:26379, 10.9.0.21:26379], name: vip, wait_for_replicas: 1, wait_timeout: 300ms, prefix: "c1:" }\n'
    )
    const result = await loadConfig(join(dir, 'dp-1.yaml'), { host: false })
    if (!result.ok) throw new Error(JSON.stringify(result.issues))
    const c = toNodeConfig(
      result.config,
      new VirtualNetwork({ clock: new SystemClock() }).attach('dp-1')
    )
    const sentinels = [
      { host: '10.9.0.20', port: 26379 },
      { host: '10.9.0.21', port: 26379 }
    ]
    expect(c.store).to.deep.equal({
      type: 'redis',
      init: { sentinels, name: 'vip', waitForReplicas: 1, waitTimeoutMs: 300, keyPrefix: 'c1:' }
    })
    const target = await statusTarget(join(dir, 'dp-1.yaml'))
    expect(target.init).to.deep.include({ sentinels, name: 'vip', keyPrefix: 'c1:' })
    expect(target.where).to.equal('Sentinel vip at 10.9.0.20:26379,10.9.0.21:26379')
  })

  it('should refuse a Redis store with neither address nor Sentinels, or Sentinels without a name', async () => {
    const issuesOf = async (store: string) => {
      setStore(store)
      const r = await loadConfig(join(dir, 'dp-1.yaml'), { host: false })
      return r.ok ? [] : r.issues.map((i) => `${i.file}: ${i.path}: ${i.message}`)
    }
    expect(await issuesOf('store: { type: redis }\n')).to.deep.equal([
      'cluster.yaml: store: a Redis store needs address or sentinels'
    ])
    expect(await issuesOf('store: { type: redis, sentinels: [10.9.0.20:26379] }\n')).to.deep.equal([
      'cluster.yaml: store.name: the master group name is required with sentinels'
    ])
  })
})
