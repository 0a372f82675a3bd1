import { chmodSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { loadConfig, main } from '../src/index.js'
import {
  parseSwanctlConf,
  swanctlConnections,
  swanctlSecrets,
  SwanctlConfError
} from '../src/swanctl-conf.js'

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url))

/** The fixture cluster's tunnel, as the cluster side's swanctl.conf would write it. */
const SWANCTL = `# the cluster side of the tunnel
connections {
  peer {
    version = 2
    local_addrs = 10.9.0.100
    remote_addrs = %any
    proposals = aes256gcm16-prfsha256-x25519
    rekey_time = 4h
    local {
      auth = psk
      id = vpn.cluster.test
    }
    remote {
      auth = psk
      id = peer.example.test
    }
    children {
      net {
        local_ts = 10.77.0.0/24
        remote_ts = 172.16.2.1/32, 172.16.3.0/24
        esp_proposals = aes256gcm16
        rekey_time = 1h
        start_action = none
      }
    }
  }
}
secrets {
  ike-peer {
    id-1 = peer.example.test
    id-2 = vpn.cluster.test
    secret = "test secret # not a comment"
  }
}
`

describe('swanctl.conf', () => {
  describe('parseSwanctlConf', () => {
    it('should read sections, values, quotes and comments, with the line of each key', () => {
      const { root, lines } = parseSwanctlConf(SWANCTL)
      const peer = (root.connections as Record<string, Record<string, unknown>>).peer!
      expect(peer.proposals).to.equal('aes256gcm16-prfsha256-x25519')
      expect(lines.get('connections.peer.children.net.esp_proposals')).to.equal(21)
      const secret = (root.secrets as Record<string, Record<string, string>>)['ike-peer']!
      expect(secret.secret).to.equal('test secret # not a comment')
    })

    const broken: [string, string, number, RegExp][] = [
      ['an unclosed section', 'connections {\n  a {\n', 2, /not closed/],
      ['a stray brace', 'connections {\n}\n}\n', 3, /without its section/],
      ['a line that is neither', 'connections {\n  what is this\n}\n', 2, /expected 'name \{'/],
      ['a key set twice', 'a {\n x = 1\n x = 2\n}\n', 3, /set twice/],
      ['an include', 'include conf.d/*.conf\n', 1, /include is not supported/]
    ]
    for (const [what, text, line, message] of broken) {
      it(`should reject ${what}, naming line ${line}`, () => {
        const err = (() => {
          try {
            parseSwanctlConf(text)
          } catch (e) {
            return e as SwanctlConfError
          }
          return undefined
        })()
        expect(err).to.be.instanceOf(SwanctlConfError)
        expect(err!.line).to.equal(line)
        expect(err!.message).to.match(message)
      })
    }
  })

  describe('mapping', () => {
    it('should map connections onto the cluster file form, dropping the keys a responder ignores', () => {
      const { connections, lines } = swanctlConnections(parseSwanctlConf(SWANCTL))
      expect(connections).to.deep.equal({
        peer: {
          local_addrs: '10.9.0.100',
          proposals: 'aes256gcm16-prfsha256-x25519',
          rekey_time: '4h',
          local: { auth: 'psk', id: 'vpn.cluster.test' },
          remote: { auth: 'psk', id: 'peer.example.test' },
          children: {
            net: {
              local_ts: ['10.77.0.0/24'],
              remote_ts: ['172.16.2.1/32', '172.16.3.0/24'],
              esp_proposals: 'aes256gcm16',
              rekey_time: '1h'
            }
          }
        }
      })
      expect(lines.get('connections.peer.remote.id')).to.equal(15)
      expect(swanctlSecrets(parseSwanctlConf(SWANCTL)).ike).to.deep.equal({
        peer: {
          id: ['peer.example.test', 'vpn.cluster.test'],
          secret: 'test secret # not a comment'
        }
      })
    })

    it('should map fragmentation (RFC 7383) onto the connection', () => {
      const text = SWANCTL.replace(
        '    rekey_time = 4h\n',
        '    rekey_time = 4h\n    fragmentation = no\n'
      )
      const { connections } = swanctlConnections(parseSwanctlConf(text))
      expect((connections.peer as { fragmentation?: string }).fragmentation).to.equal('no')
    })

    it('should reject what vipsec cannot honour, naming the line', () => {
      const cases: [string, number, RegExp][] = [
        [SWANCTL.replace('rekey_time = 4h', 'pools = vips'), 8, /pools: not supported/],
        [SWANCTL.replace('version = 2', 'version = 1'), 4, /IKEv2 only/],
        [
          SWANCTL.replace('local_addrs = 10.9.0.100', 'local_addrs = 10.9.0.100, 10.9.0.101'),
          5,
          /one address/
        ],
        [SWANCTL.replace('secret = "test', 'secret = "0xtest'), 32, /not 0x or 0s/]
      ]
      for (const [text, line, message] of cases) {
        const run = (): unknown => {
          const parsed = parseSwanctlConf(text)
          swanctlConnections(parsed)
          return swanctlSecrets(parsed)
        }
        expect(run, String(message)).to.throw(SwanctlConfError, message)
        try {
          run()
        } catch (e) {
          expect((e as SwanctlConfError).line, String(message)).to.equal(line)
        }
      }
    })
  })

  describe('in the cluster and secrets files', () => {
    let dir: string
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'vipsec-vo-swanctl-'))
      cpSync(fixtures, dir, { recursive: true })
      const cluster = readFileSync(join(dir, 'cluster.yaml'), 'utf8')
      writeFileSync(
        join(dir, 'cluster.yaml'),
        `${cluster.slice(0, cluster.indexOf('connections:'))}swanctl: swanctl.conf\n`
      )
      writeFileSync(
        join(dir, 'secrets.yaml'),
        readFileSync(join(dir, 'secrets.yaml'), 'utf8').replace(
          /ike:\n.*\n/,
          'swanctl: swanctl.conf\n'
        ),
        { mode: 0o600 }
      )
      writeFileSync(join(dir, 'swanctl.conf'), SWANCTL, { mode: 0o600 })
      chmodSync(join(dir, 'secrets.yaml'), 0o600)
    })
    afterEach(() => rmSync(dir, { recursive: true, force: true }))

    it('should load the connections and PSKs from swanctl.conf, and vipsec check should accept it', async () => {
      const result = await loadConfig(join(dir, 'dp-1.yaml'), { host: false })
      if (!result.ok) throw new Error(JSON.stringify(result.issues))
      expect(Object.keys(result.config.cluster.connections)).to.deep.equal(['peer'])
      expect(result.config.ike!.peers![0]!.remoteIdentity).to.deep.equal({
        type: 'fqdn',
        value: 'peer.example.test'
      })
      expect(result.config.ike!.psks!.map((p) => p.secret)).to.include(
        'test secret # not a comment'
      )
      const out: string[] = []
      expect(
        await main(['check', '--config', join(dir, 'dp-1.yaml'), '--no-host'], (l) => out.push(l))
      ).to.equal(0)
    })

    it('should name the swanctl.conf line of a bad value, and refuse it readable by others', async () => {
      writeFileSync(
        join(dir, 'swanctl.conf'),
        SWANCTL.replace('esp_proposals = aes256gcm16', 'esp_proposals = aes256gcm17'),
        { mode: 0o644 }
      )
      chmodSync(join(dir, 'swanctl.conf'), 0o644)
      const out: string[] = []
      expect(
        await main(['check', '--config', join(dir, 'dp-1.yaml'), '--no-host'], (l) => out.push(l))
      ).to.equal(1)
      const text = out.join('\n')
      expect(text).to.match(
        /swanctl\.conf:21: connections\.peer\.children\.net\.esp_proposals: .*aes256gcm17/
      )
      expect(text).to.match(/swanctl\.conf: holds PSKs and is readable by group or others/)
    })

    it('should name the line of an unknown key, with the nearest known one', async () => {
      writeFileSync(
        join(dir, 'swanctl.conf'),
        SWANCTL.replace('rekey_time = 1h', 'rekey_tmie = 1h'),
        { mode: 0o600 }
      )
      const result = await loadConfig(join(dir, 'dp-1.yaml'), { host: false })
      expect(result.ok).to.equal(false)
      if (result.ok) return
      expect(result.issues[0]).to.include({ file: 'swanctl.conf:22' })
      expect(result.issues[0]!.message).to.match(
        /not supported by vipsec; did you mean 'rekey_time'\?/
      )
    })
  })
})
