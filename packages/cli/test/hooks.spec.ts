import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { Subject } from 'rxjs'
import type { VipsecNode } from '@vipsec/container'
import {
  TOKENS,
  type EspEvent,
  type Logger,
  type Phase1Record,
  type Phase2Record
} from '@vipsec/interface'
import { runHooks } from '../src/index.js'

/** The fields of a Child SA's records that the hook reads; the rest is not looked at. */
function records(): { phase1: Phase1Record; phase2: Phase2Record } {
  const phase1 = {
    id: 'p1',
    peer: { address: '192.0.2.9', port: 4500 },
    localIdentity: { type: 'fqdn', value: 'vpn.cluster.test' },
    remoteIdentity: { type: 'fqdn', value: 'peer.example.test' }
  } as unknown as Phase1Record
  const any = { protocol: 0, startPort: 0, endPort: 65535 }
  const phase2 = {
    id: 'c1',
    inboundSpi: 'c0ffee01',
    outboundSpi: '0badcafe',
    mode: 'tunnel',
    selectors: {
      local: [{ startAddress: '10.77.0.0', endAddress: '10.77.0.255', ...any }],
      remote: [
        { startAddress: '172.16.2.1', endAddress: '172.16.2.1', ...any },
        { startAddress: '172.16.3.1', endAddress: '172.16.3.9', ...any }
      ]
    }
  } as unknown as Phase2Record
  return { phase1, phase2 }
}

/**
 * A node with the two parts the hooks watch: an ESP engine's events, and a processor that
 * learns of a Child SA right after its ESP SAs are installed (as the IKE service reports it) and
 * forgets it right after they are removed.
 */
function node() {
  const esp = new Subject<EspEvent>()
  const dpEvents = new Subject<{ type: string }>()
  const sas = new Map<string, { phase1: Phase1Record; phase2: Map<string, Phase2Record> }>()
  const states = new Map([['10.9.0.100', { sas }]])
  const parts = new Map<symbol, unknown>([
    [TOKENS.EspEngine, { events$: esp.asObservable() }],
    [TOKENS.DistributionProcessor, { events$: dpEvents.asObservable(), states }]
  ])
  const vipsec = {
    nodeId: 'dp-1',
    has: (token: symbol) => parts.has(token),
    get: (token: symbol) => parts.get(token)
  } as unknown as VipsecNode
  const { phase1, phase2 } = records()
  return {
    vipsec,
    up(): void {
      esp.next({ type: 'sa:installed', spi: 0xc0ffee01, direction: 'inbound' })
      esp.next({ type: 'sa:installed', spi: 0x0badcafe, direction: 'outbound' })
      sas.set(phase1.id, { phase1, phase2: new Map([[phase2.id, phase2]]) })
    },
    down(): void {
      esp.next({ type: 'sa:removed', spi: 0xc0ffee01, direction: 'inbound', reason: 'deleted' })
      esp.next({ type: 'sa:removed', spi: 0x0badcafe, direction: 'outbound', reason: 'deleted' })
      sas.clear()
    }
  }
}

const silent = { error: () => undefined } as unknown as Logger

describe('hooks', () => {
  let dir: string
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'vipsec-cl-hooks-'))))
  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  it('should give each ESP SA of a Child SA its selectors, peer and identities, as updown does', async () => {
    const out = join(dir, 'hook.out')
    const hook = join(dir, 'hook.sh')
    writeFileSync(
      hook,
      `#!/bin/sh\necho "$VIPSEC_EVENT $VIPSEC_DIRECTION $VIPSEC_SPI $VIPSEC_DVIPA|$VIPSEC_LOCAL_TS|$VIPSEC_REMOTE_TS|$VIPSEC_MODE $VIPSEC_PEER:$VIPSEC_PEER_PORT $VIPSEC_LOCAL_ID $VIPSEC_REMOTE_ID $VIPSEC_REASON" >> ${out}\n`,
      { mode: 0o755 }
    )
    const n = node()
    const settled = runHooks(n.vipsec, { command: hook, log: silent })
    n.up()
    await new Promise((resolve) => setImmediate(resolve)) // the tunnel is up for a while
    n.down()
    await settled()
    const child =
      '10.9.0.100|10.77.0.0/24|172.16.2.1/32 172.16.3.1-172.16.3.9|tunnel 192.0.2.9:4500 vpn.cluster.test peer.example.test'
    expect(readFileSync(out, 'utf8').trimEnd().split('\n')).to.deep.equal([
      `sa:installed inbound c0ffee01 ${child} `,
      `sa:installed outbound 0badcafe ${child} `,
      `sa:removed inbound c0ffee01 ${child} deleted`,
      `sa:removed outbound 0badcafe ${child} deleted`
    ])
  })
})
