import { chmodSync, cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { SystemClock } from '@vipsec/clock'
import { VirtualNetwork } from '@vipsec/network-virtual'
import { KernelDelivery } from '@vipsec/target-tun'
import { loadConfig, toNodeConfig, type FileIssue } from '../src/index.js'

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url))

describe('a target’s deliver and kernel options', function () {
  this.timeout(30_000)
  let dir: string

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vipsec-ops2-deliver-'))
    cpSync(fixtures, dir, { recursive: true })
    chmodSync(join(dir, 'secrets.yaml'), 0o600)
  })

  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  /** Loads a target-1 node file with these extra lines. */
  async function load(extra: string, node = 'target-1') {
    const path = join(dir, `${node}.yaml`)
    writeFileSync(
      path,
      `node: ${node}\ncluster: cluster.yaml\nsecrets: secrets.yaml\ninterface: eth0\n${extra}`
    )
    return loadConfig(path, { host: false })
  }
  const issuesOf = async (extra: string, node?: string): Promise<string[]> => {
    const r = await load(extra, node)
    return r.ok ? [] : r.issues.map((i: FileIssue) => `${i.path}: ${i.message}`)
  }
  async function stackOf(extra: string) {
    const r = await load(extra)
    if (!r.ok) throw new Error(JSON.stringify(r.issues))
    const network = new VirtualNetwork({ clock: new SystemClock() }).attach('target-1')
    const c = toNodeConfig(r.config, network)
    return c.components!.targetStack as { apps?: unknown[]; delivery?: unknown }
  }

  it('should want the service addresses when a target delivers to the kernel (the default)', async () => {
    expect(await issuesOf('')).to.deep.equal([
      'kernel: expected the service addresses for kernel delivery (or deliver: apps)'
    ])
    expect((await issuesOf('kernel: { addresses: [] }\n'))[0]).to.match(/^kernel\.addresses: /)
    expect((await issuesOf("kernel: { addresses: ['not-an-ip'] }\n"))[0]).to.match(
      /^kernel\.addresses\[0\]: expected an IP address/
    )
    expect((await issuesOf('deliver: tun\n'))[0]).to.match(/^deliver: /)
    expect((await issuesOf('kernel: { addresses: [10.77.0.10], metrics: 7 }\n'))[0]).to.match(
      /^kernel\.metrics: .*did you mean 'metric'\?/
    )
  })

  it('should refuse deliver and kernel on a distribution processor', async () => {
    expect(await issuesOf('deliver: apps\n', 'dp-2')).to.deep.equal([
      'deliver: only for a target, not a backup'
    ])
  })

  it('should give a target kernel delivery of its service addresses, beside its apps', async () => {
    const stack = await stackOf(
      'kernel: { addresses: [10.77.0.10], device: vipsec7, mtu: 1300, table: 7701, routes: [172.16.2.0/24], metric: 9 }\napps: [{ app: echo, port: 7 }]\n'
    )
    expect(stack.delivery).to.be.instanceOf(KernelDelivery)
    expect(stack.apps).to.have.length(1)
  })

  it('should give a target with only apps no delivery, and one with deliver: apps none either', async () => {
    expect((await stackOf('apps: [{ app: echo, port: 7 }]\n')).delivery).to.equal(undefined)
    expect(
      (await stackOf('deliver: apps\nkernel: { addresses: [10.77.0.10] }\n')).delivery
    ).to.equal(undefined)
  })
})
