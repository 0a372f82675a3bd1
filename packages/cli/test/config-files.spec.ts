import { chmodSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { SystemClock } from '@vipsec/clock'
import { VirtualNetwork } from '@vipsec/network-virtual'
import { checkConfig, loadConfig, main, startNode, toNodeConfig } from '../src/index.js'

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url))
/** The host of the fixtures: eth0 on the cluster network, holding dp-1's address. */
const host = {
  interfaces: {
    lo: [
      {
        address: '127.0.0.1',
        netmask: '255.0.0.0',
        family: 'IPv4',
        mac: '',
        internal: true,
        cidr: '127.0.0.1/8'
      }
    ],
    eth0: [
      {
        address: '10.9.0.1',
        netmask: '255.255.255.0',
        family: 'IPv4',
        mac: '',
        internal: false,
        cidr: '10.9.0.1/24'
      }
    ]
  } as never
}

/** Copies the fixtures into a fresh folder, applies `edit` to a file's text, returns the node file. */
function variant(dir: string, file: string, edit: (text: string) => string): string {
  cpSync(fixtures, dir, { recursive: true })
  chmodSync(join(dir, 'secrets.yaml'), 0o600)
  const path = join(dir, file)
  writeFileSync(path, edit(readFileSync(path, 'utf8')))
  return join(dir, 'dp-1.yaml')
}

/** The thirteen broken configurations: what is changed, and the field the error must name. */
const BROKEN: {
  name: string
  file: string
  edit: (t: string) => string
  field: string
  says: RegExp
}[] = [
  {
    name: 'a DP without a store',
    file: 'cluster.yaml',
    edit: (t) => t.replace('store: { type: memory }\n', ''),
    field: 'store',
    says: /required/
  },
  {
    name: 'a misspelt key',
    file: 'cluster.yaml',
    edit: (t) => t.replace('detector:', 'detecter:'),
    field: 'detecter',
    says: /unknown field 'detecter'; did you mean 'detector'\?/
  },
  {
    name: 'an interface that does not exist',
    file: 'dp-1.yaml',
    edit: (t) => t.replace('eth0', 'eth9'),
    field: 'interface',
    says: /no interface 'eth9'.*did you mean 'eth0'/
  },
  {
    name: 'a DVIPA outside the interface’s subnet',
    file: 'cluster.yaml',
    edit: (t) => t.replace('10.9.0.100:', '10.8.0.100:'),
    field: 'dvipas.10.8.0.100',
    says: /not inside a subnet of eth0/
  },
  {
    name: 'the node missing from its own ranks',
    file: 'cluster.yaml',
    edit: (t) => t.replace('ranks: [dp-1, dp-2]', 'ranks: [dp-2]'),
    field: 'node',
    says: /in no DVIPA's ranks or targets/
  },
  {
    name: 'a backup watching nobody',
    file: 'cluster.yaml',
    edit: (t) => t.replace('ranks: [dp-1, dp-2]', 'ranks: [dp-0, dp-1]'),
    field: 'dvipas.10.9.0.100.ranks[0]',
    says: /'dp-0' is not in nodes.*dp-1 would watch nobody/
  },
  {
    name: 'a target missing from the link',
    file: 'cluster.yaml',
    edit: (t) => t.replace('targets: [target-1]', 'targets: [target-2]'),
    field: 'dvipas.10.9.0.100.targets[0]',
    says: /did you mean 'target-1'.*not be on the cluster link/
  },
  {
    name: 'a misspelt strongSwan algorithm',
    file: 'cluster.yaml',
    edit: (t) => t.replace('esp_proposals: aes256gcm16', 'esp_proposals: aes256gmc16'),
    field: 'connections.peer.children.net.esp_proposals',
    says: /unknown algorithm 'aes256gmc16'; did you mean 'aes256gcm16'\?/
  },
  {
    name: 'an algorithm the engine cannot do',
    file: 'cluster.yaml',
    edit: (t) => t.replace('esp_proposals: aes256gcm16', 'esp_proposals: aes256ctr'),
    field: 'connections.peer.children.net.esp_proposals',
    says: /the ESP engine cannot do encryption 'aes256ctr'; it does/
  },
  {
    name: 'a selector that is not a CIDR',
    file: 'cluster.yaml',
    edit: (t) => t.replace('local_ts: 10.77.0.0/24', 'local_ts: 10.77.0/24'),
    field: 'connections.peer.children.net.local_ts',
    says: /not a selector: expected a prefix/
  },
  {
    name: 'a malformed connection',
    file: 'cluster.yaml',
    edit: (t) => t.replace(/ {2}peer:\n[\s\S]*$/, '  peer: 42\n'),
    field: 'connections.peer',
    says: /expected an object, got number 42/
  },
  {
    name: 'a secrets file others can read',
    file: 'dp-1.yaml',
    edit: (t) => {
      return t
    },
    field: '',
    says: /readable by group or others \(mode 0644\)/
  },
  {
    name: 'a peer without its PSK',
    file: 'secrets.yaml',
    edit: (t) => t.replace('peer.example.test', 'other.example.test'),
    field: 'ike',
    says: /no PSK for peer.example.test/
  }
]

describe('the cluster, node and secrets files', function () {
  this.timeout(30_000)
  let dir: string

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vipsec-ops-cfg-'))
  })

  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  describe('loadConfig', () => {
    it('should read the fixture into the node’s role, IKE peers and DVIPAs', async () => {
      const result = await loadConfig(
        variant(dir, 'dp-1.yaml', (t) => t),
        host
      )
      if (!result.ok) throw new Error(JSON.stringify(result.issues))
      const { config } = result
      expect(config.role).to.equal('primary')
      expect(config.dvipas).to.deep.equal([
        { dvipa: '10.9.0.100', ranks: ['dp-1', 'dp-2'], targets: [{ node: 'target-1' }] }
      ])
      const peer = config.ike!.peers![0]!
      expect(peer.localIdentity).to.deep.equal({ type: 'fqdn', value: 'vpn.cluster.test' })
      expect(peer.phase1.proposals).to.deep.equal([
        {
          encryption: [{ algorithm: 'aes-gcm-16', keyBits: 256 }],
          integrity: ['none'],
          prf: ['hmac-sha2-256'],
          keyExchange: ['curve25519']
        }
      ])
      expect(peer.phase1.lifetime.rekeySeconds).to.equal(14400)
      expect(peer.children[0]!.local).to.deep.equal([
        {
          startAddress: '10.77.0.0',
          endAddress: '10.77.0.255',
          protocol: 0,
          startPort: 0,
          endPort: 65535
        }
      ])
      expect(peer.children[0]!.policy.lifetime).to.include({ softSeconds: 3600, hardSeconds: 3960 })
      expect(config.ike!.psks).to.deep.equal([
        { remote: { type: 'fqdn', value: 'peer.example.test' }, secret: 'test secret' }
      ])
    })

    it('should make a connection with start_action: start one the IKE service initiates', async () => {
      const result = await loadConfig(
        variant(dir, 'cluster.yaml', (t) =>
          t.replace(
            '    rekey_time: 4h\n',
            '    rekey_time: 4h\n    remote_addrs: 10.9.0.50\n    start_action: start\n'
          )
        ),
        host
      )
      if (!result.ok) throw new Error(JSON.stringify(result.issues))
      const [connection] = result.config.ike!.connections!
      expect(connection.name).to.equal('peer')
      expect(connection.startAction).to.equal('start')
      expect(connection.request.local).to.deep.equal({ address: '10.9.0.100', port: 500 })
      expect(connection.request.peer).to.deep.equal({ address: '10.9.0.50', port: 500 })
      expect(connection.request.remoteIdentity).to.deep.equal({
        type: 'fqdn',
        value: 'peer.example.test'
      })
      expect(connection.request.child).to.deep.equal(result.config.ike!.peers![0]!.children[0])
      const without = await loadConfig(
        variant(dir, 'cluster.yaml', (t) =>
          t.replace('    rekey_time: 4h\n', '    rekey_time: 4h\n    start_action: start\n')
        ),
        host
      )
      expect(without.ok).to.equal(false)
      if (!without.ok)
        expect(without.issues.map((i) => i.path)).to.include('connections.peer.remote_addrs')
    })

    it('should take fragmentation per connection and fragment_size from the ike section', async () => {
      const result = await loadConfig(
        variant(
          dir,
          'cluster.yaml',
          (t) =>
            `${t.replace('    rekey_time: 4h\n', '    rekey_time: 4h\n    fragmentation: no\n')}ike:\n  fragment_size: 1280\n`
        ),
        host
      )
      if (!result.ok) throw new Error(JSON.stringify(result.issues))
      expect(result.config.ike!.peers![0]!.fragmentation).to.equal(false)
      expect(result.config.ike!.fragmentation).to.deep.equal({ fragmentSize: 1280 })
      const bad = await loadConfig(
        variant(dir, 'cluster.yaml', (t) => `${t}ike:\n  fragment_size: 100\n`),
        host
      )
      expect(bad.ok).to.equal(false)
      if (!bad.ok) expect(bad.issues.map((i) => i.path)).to.include('ike.fragment_size')
    })

    it('should authenticate link frames and heartbeats with the cluster key of the secrets file', async () => {
      const key = '00112233445566778899aabbccddeeff'.repeat(2)
      const result = await loadConfig(
        variant(dir, 'secrets.yaml', (t) =>
          t.replace(/^cluster_key: .*$/m, `cluster_key: '${key}'`)
        ),
        host
      )
      if (!result.ok) throw new Error(JSON.stringify(result.issues))
      const network = new VirtualNetwork({ clock: new SystemClock() }).attach('dp-1')
      const c = toNodeConfig(result.config, network)
      const keys = [{ id: 1, secret: new Uint8Array(Buffer.from(key, 'hex')) }]
      expect((c.components?.clusterLink as { init: { keys: unknown } }).init.keys).to.deep.equal(
        keys
      )
      expect(
        (c.components?.failureDetector as { init: { keys: unknown } }).init.keys
      ).to.deep.equal(keys)
    })

    it('should give the processor a DVIPA’s policy, source-hash included, and refuse others', async () => {
      const withPolicy = (p: string) => (t: string) =>
        t.replace('    targets: [target-1]\n', `    targets: [target-1]\n    policy: ${p}\n`)
      const result = await loadConfig(variant(dir, 'cluster.yaml', withPolicy('source-hash')), host)
      if (!result.ok) throw new Error(JSON.stringify(result.issues))
      expect(result.config.dvipas[0]?.policy).to.equal('source-hash')
      const bad = await loadConfig(variant(dir, 'cluster.yaml', withPolicy('source-hsh')), host)
      expect(bad.ok ? [] : bad.issues.map((i) => i.path)).to.deep.equal([
        'dvipas.10.9.0.100.policy'
      ])
    })

    it('should wire the link and heartbeats to the other nodes from the cluster file', async () => {
      const result = await loadConfig(
        variant(dir, 'dp-1.yaml', (t) => t),
        host
      )
      if (!result.ok) throw new Error('invalid')
      const network = new VirtualNetwork({ clock: new SystemClock() }).attach('dp-1')
      const c = toNodeConfig(result.config, network)
      expect(c.components?.clusterLink).to.deep.equal({
        type: 'udp',
        init: {
          local: { address: '10.9.0.1', port: 7400 },
          peers: {
            'dp-2': { address: '10.9.0.2', port: 7400 },
            'target-1': { address: '10.9.1.1', port: 7400 }
          },
          keys: [{ id: 1, secret: new Uint8Array(32).fill(0x5a) }]
        }
      })
      const dp = c.components?.distributionProcessor as { init: Record<string, unknown> }
      expect(dp.init.heartbeats).to.deep.equal({
        'dp-1': { address: '10.9.0.1', port: 7500 },
        'dp-2': { address: '10.9.0.2', port: 7500 }
      })
      expect(dp.init.targetHeartbeats).to.deep.equal({
        'target-1': { address: '10.9.1.1', port: 7500 }
      })
    })
  })

  describe('vipsec check', () => {
    it('should pass the fixture and exit 0', async () => {
      const lines: string[] = []
      const path = variant(dir, 'dp-1.yaml', (t) => t)
      expect(await checkConfig(path, host)).to.deep.equal([])
      expect(await main(['check', '--config', path], (l) => lines.push(l), host)).to.equal(0)
      expect(await main(['check', '--config', path, '--no-host'], (l) => lines.push(l))).to.equal(0)
    })

    for (const c of BROKEN) {
      it(`should reject ${c.name}, naming the field, and exit 1`, async () => {
        const path = variant(dir, c.file, c.edit)
        if (c.name.startsWith('a secrets file')) chmodSync(join(dir, 'secrets.yaml'), 0o644)
        const issues = await checkConfig(path, host)
        expect(issues.map((i) => i.path)).to.include(c.field)
        expect(issues.find((i) => i.path === c.field)!.message).to.match(c.says)
        // the command line, on the fixtures' host: one line `file: field: message` names it
        const lines: string[] = []
        expect(await main(['check', '--config', path], (l) => lines.push(l), host)).to.equal(1)
        const line = lines.find((l) => c.says.test(l))
        // a file-wide problem (the secrets file's mode) names the file, the others the field
        if (c.field === '') expect(line, lines.join('\n')).to.match(/^secrets\.yaml: /)
        else expect(line, lines.join('\n')).to.include(`: ${c.field}: `)
      })

      it(`should refuse to start with ${c.name}, naming the field`, async () => {
        const path = variant(dir, c.file, c.edit)
        if (c.name.startsWith('a secrets file')) chmodSync(join(dir, 'secrets.yaml'), 0o644)
        const network = new VirtualNetwork({ clock: new SystemClock() }).attach('dp-1')
        const err = await startNode(path, { ...host, network }).then(
          (running) => running.stop().then(() => undefined),
          (e: Error & { field?: string }) => e
        )
        expect(err?.name).to.equal('InvalidConfigError')
        expect(err?.field).to.match(new RegExp(`: ${c.field.replace(/[.[\]]/g, '\\$&')}$`))
        expect(err?.message).to.match(c.says)
      })
    }
  })
})
