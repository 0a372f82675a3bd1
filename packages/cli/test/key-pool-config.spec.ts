import { chmodSync, cpSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { SystemClock } from '@vipsec/clock'
import { createNode } from '@vipsec/container'
import type { IkeV2Service } from '@vipsec/ike-v2'
import { TOKENS } from '@vipsec/interface'
import { VirtualNetwork } from '@vipsec/network-virtual'
import { loadConfig, toNodeConfig } from '../src/index.js'

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url))

describe('the key-exchange pool of a distribution processor', () => {
  let dir: string

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vipsec-key-pool-'))
    cpSync(fixtures, dir, { recursive: true })
    chmodSync(join(dir, 'secrets.yaml'), 0o600)
  })

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true })
  })

  it("should make values of the peers' first IKE group ahead of time, for every DVIPA's service", async () => {
    const result = await loadConfig(join(dir, 'dp-1.yaml'), { host: false })
    if (!result.ok) throw new Error(JSON.stringify(result.issues))
    const network = new VirtualNetwork({ clock: new SystemClock() })
    const c = toNodeConfig(result.config, network.attach('dp-1'))
    // the fixture's peer proposes aes256gcm16-prfsha256-x25519
    expect(
      (c.components?.ikeServiceFactory as { init: { keyExchangePool?: unknown } }).init
        .keyExchangePool
    ).to.deep.equal({ groups: ['curve25519'] })
    const factory = createNode(c).get(TOKENS.IkeServiceFactory)
    // sockets as the constructor reads them (nothing is bound: the services are not started)
    const sockets = (address: string) =>
      ({
        udp500: { local: { address, port: 500 } },
        udp4500: { local: { address, port: 4500 } }
      }) as never
    const a = factory(sockets('10.9.0.1')) as IkeV2Service
    const b = factory(sockets('10.9.0.2')) as IkeV2Service
    expect(a.keyExchanges).to.not.equal(undefined)
    expect(b.keyExchanges).to.equal(a.keyExchanges)
    a.keyExchanges!.stop()
  })
})
