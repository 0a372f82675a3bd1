import { chmodSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { sampleRecords } from '@vipsec/compliance/coupling-store'
import { RedisCouplingStore } from '@vipsec/store-redis'
import { RedisServer } from '@vipsec/store-redis/test/redis-server'
import { main, type DvipaReport } from '../src/index.js'

describe('vipsec status', function () {
  this.timeout(60_000)
  let server: RedisServer

  before(async () => {
    server = await RedisServer.start()
    const store = new RedisCouplingStore({}, { port: server.port, keyPrefix: 'status-test:' })
    await store.start()
    const { epoch } = await store.claimOwnership('10.0.0.100', {
      owner: 'dp-1',
      ranks: ['dp-2', 'dp-3'],
      expectedEpoch: 0
    })
    await store.putRecords(
      '10.0.0.100',
      [...sampleRecords('10.0.0.100', 1), ...sampleRecords('10.0.0.100', 2)],
      {
        owner: 'dp-1',
        epoch
      }
    )
    await store.stop()
  })

  after(async () => {
    await server.stop()
    await server.remove()
  })

  it('should print owner, epoch, backups and record counts from the Redis store', async () => {
    const lines: string[] = []
    const url = `redis://127.0.0.1:${server.port}`
    const code = await main(
      [
        'status',
        '--redis',
        url,
        '--prefix',
        'status-test:',
        '--dvipa',
        '10.0.0.100',
        '--dvipa',
        '10.0.0.200'
      ],
      (l) => lines.push(l)
    )
    expect(code).to.equal(0)
    expect(lines[0]).to.match(
      /^DVIPA\s+owner\s+epoch\s+backups\s+IKE SAs\s+Child SAs\s+connections\s+filters\s+corrupt$/
    )
    expect(lines[1]).to.match(/^10\.0\.0\.100\s+dp-1\s+1\s+dp-2,dp-3\s+2\s+2\s+2\s+2\s+0$/)
    expect(lines[2]).to.match(/^10\.0\.0\.200\s+-\s+0\s+-\s+0\s+0\s+0\s+0\s+0$/)
  })

  it('should print one JSON line with --json', async () => {
    const lines: string[] = []
    await main(
      [
        'status',
        '--redis',
        `redis://127.0.0.1:${server.port}`,
        '--prefix',
        'status-test:',
        '--dvipa',
        '10.0.0.100',
        '--json'
      ],
      (l) => lines.push(l)
    )
    const [report] = JSON.parse(lines[0]!) as DvipaReport[]
    expect(report).to.include({ dvipa: '10.0.0.100', ikeSas: 2, connections: 2, records: 10 })
    expect(report!.ownership).to.include({ owner: 'dp-1', epoch: 1 })
  })

  it('should list each IKE SA with its Child SAs in swanctl’s words', async () => {
    const lines: string[] = []
    await main(
      [
        'status',
        '--redis',
        `redis://127.0.0.1:${server.port}`,
        '--prefix',
        'status-test:',
        '--dvipa',
        '10.0.0.100'
      ],
      (l) => lines.push(l)
    )
    const ike = lines.find((l) => l.includes('peer1@example.test'))
    expect(ike).to.match(
      /^10\.0\.0\.100: vpn\.example\.test === peer1@example\.test at 192\.0\.2\.2:4500, IKE 0*1001_i 0*2001_r, aes256gcm16-prfsha256-x25519-ecp256, \d+s$/
    )
    const child = lines[lines.indexOf(ike!) + 1]
    expect(child).to.match(/^ {2}ESP \w+_i \w+_o tunnel \S+: \S+ === \S+, \d+s$/)
  })

  it('should say so, and exit 1, when nothing is under the prefix', async () => {
    const lines: string[] = []
    const code = await main(
      [
        'status',
        '--redis',
        `redis://127.0.0.1:${server.port}`,
        '--prefix',
        'status-tset:',
        '--dvipa',
        '10.0.0.100'
      ],
      (l) => lines.push(l)
    )
    expect(code).to.equal(1)
    expect(lines.join('\n')).to.include("nothing under prefix 'status-tset:'")
  })

  it('should take the store, its password and the DVIPAs from a node file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vipsec-ops-status-'))
    try {
      const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url))
      cpSync(fixtures, dir, { recursive: true })
      chmodSync(join(dir, 'secrets.yaml'), 0o600)
      const cluster = readFileSync(join(dir, 'cluster.yaml'), 'utf8')
        .replace(
          'store: { type: memory }',
          `store: { type: redis, address: 127.0.0.1:${server.port}, prefix: "status-test:" }`
        )
        .replace('10.9.0.100:', '10.0.0.100:')
      writeFileSync(join(dir, 'cluster.yaml'), cluster)
      const lines: string[] = []
      const code = await main(['status', '--config', join(dir, 'dp-1.yaml'), '--json'], (l) =>
        lines.push(l)
      )
      expect(code, lines.join('\n')).to.equal(0)
      const [report] = JSON.parse(lines[0]!) as DvipaReport[]
      expect(report).to.include({ dvipa: '10.0.0.100', ikeSas: 2 })
      expect(report!.peers[0]!.children[0]!.proposals).to.have.length(1)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  describe('when the store cannot be reached', () => {
    it('should exit 2 with the store error', async () => {
      const lines: string[] = []
      const code = await main(
        ['status', '--redis', 'redis://127.0.0.1:1', '--dvipa', '10.0.0.100'],
        (l) => lines.push(l)
      )
      expect(code).to.equal(2)
      expect(lines.join('\n')).to.match(/StoreUnavailableError/)
    })
  })
})
