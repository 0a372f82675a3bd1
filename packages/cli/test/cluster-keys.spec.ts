import {
  chmodSync,
  cpSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { SystemClock } from '@vipsec/clock'
import { decodeKeyFile, type UdpClusterLink } from '@vipsec/cluster-link-udp'
import { TOKENS } from '@vipsec/interface'
import { VirtualNetwork } from '@vipsec/network-virtual'
import {
  loadConfig,
  main,
  startNode,
  toNodeConfig,
  writeKeyFile,
  type FileIssue,
  type RunningNode
} from '../src/index.js'

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url))
const KEY_LINE = /^cluster_key: .*\n/m

describe('cluster keys', function () {
  this.timeout(30_000)
  let dir: string
  let running: RunningNode | undefined

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vipsec-ops2-keys-'))
    cpSync(fixtures, dir, { recursive: true })
    chmodSync(join(dir, 'secrets.yaml'), 0o600)
  })

  afterEach(async () => {
    await running?.stop()
    running = undefined
    rmSync(dir, { recursive: true, force: true })
  })

  const edit = (file: string, change: (t: string) => string): void => {
    const path = join(dir, file)
    writeFileSync(path, change(readFileSync(path, 'utf8')))
  }
  const issues = async (): Promise<FileIssue[]> => {
    const result = await loadConfig(join(dir, 'dp-1.yaml'), { host: false })
    return result.ok ? [] : result.issues
  }
  const loaded = async () => {
    const result = await loadConfig(join(dir, 'dp-1.yaml'), { host: false })
    if (!result.ok) throw new Error(JSON.stringify(result.issues))
    return result.config
  }
  const keysOf = async () => {
    const c = toNodeConfig(
      await loaded(),
      new VirtualNetwork({ clock: new SystemClock() }).attach('dp-1')
    )
    const link = c.components?.clusterLink as { init: { keys?: unknown; insecure?: boolean } }
    const detector = c.components?.failureDetector as { init: { keys?: unknown } }
    return { link: link.init, detector: detector.init }
  }

  describe('writeKeyFile', () => {
    it('should write a key only its owner can read, and never overwrite one without force', async () => {
      const path = join(dir, 'cluster.key')
      const key = await writeKeyFile(path, { id: 7 })
      expect(statSync(path).mode & 0o777).to.equal(0o600)
      expect(decodeKeyFile(readFileSync(path, 'utf8'))).to.deep.equal(key)
      expect(key.secret).to.have.length(32)
      const err = await writeKeyFile(path).then(
        () => undefined,
        (e: Error) => e
      )
      expect(err?.name).to.equal('InvalidParametersError')
      expect(decodeKeyFile(readFileSync(path, 'utf8')).id).to.equal(7)
      writeFileSync(join(dir, 'loose.key'), 'x', { mode: 0o644 })
      await writeKeyFile(join(dir, 'loose.key'), { force: true })
      expect(statSync(join(dir, 'loose.key')).mode & 0o777).to.equal(0o600)
    })
  })

  describe('vipsec keygen', () => {
    it('should write the key file given with --out, and refuse without --out', async () => {
      const out: string[] = []
      const path = join(dir, 'k')
      expect(await main(['keygen', '--out', path, '--id', '3'], (l) => out.push(l))).to.equal(0)
      expect(out[0]).to.equal(`wrote cluster key 3 to ${path}`)
      expect(decodeKeyFile(readFileSync(path, 'utf8')).id).to.equal(3)
      expect(await main(['keygen'], (l) => out.push(l))).to.equal(2)
      expect(await main(['keygen', '--out', path], (l) => out.push(l))).to.equal(2)
    })
  })

  describe('the files', () => {
    it('should refuse a node without a cluster key unless the cluster file says insecure', async () => {
      edit('secrets.yaml', (t) => t.replace(KEY_LINE, ''))
      expect(await issues()).to.deep.include({
        file: 'secrets.yaml',
        path: 'cluster_key',
        message:
          "a cluster key is required: the secrets file's cluster_key or the node file's cluster_key_files (make one with `vipsec keygen`), or link.insecure: true in the cluster file"
      })
      edit('cluster.yaml', (t) => `${t}link: { insecure: true }\n`)
      const { link, detector } = await keysOf()
      expect(link.insecure).to.equal(true)
      expect(link.keys).to.equal(undefined)
      expect((detector as { insecure?: boolean }).insecure).to.equal(true)
    })

    it('should refuse insecure beside a key, and a key that is not 64 hex digits', async () => {
      edit('cluster.yaml', (t) => `${t}link: { insecure: true }\n`)
      expect((await issues()).map((i) => `${i.file}: ${i.path}`)).to.deep.equal([
        'cluster.yaml: link.insecure'
      ])
      edit('cluster.yaml', (t) => t.replace('link: { insecure: true }\n', ''))
      edit('secrets.yaml', (t) => t.replace(KEY_LINE, "cluster_key: 'abcd'\n"))
      const [issue] = await issues()
      expect(issue).to.include({ file: 'secrets.yaml', path: 'cluster_key' })
    })

    it('should name the nearest field for a misspelt link option, and encrypt when asked', async () => {
      edit('cluster.yaml', (t) => `${t}link: { encrypted: true }\n`)
      const [issue] = await issues()
      expect(issue?.path).to.equal('link.encrypted')
      expect(issue?.message).to.match(/did you mean 'encrypt'\?/)
      edit('cluster.yaml', (t) => t.replace('encrypted', 'encrypt'))
      expect((await keysOf()).link).to.include({ encrypt: true })
    })

    it('should take two inline keys while rotating, the first sending', async () => {
      const a = 'aa'.repeat(32)
      const b = 'bb'.repeat(32)
      edit('secrets.yaml', (t) =>
        t.replace(KEY_LINE, `cluster_key:\n  - { id: 9, secret: '${b}' }\n  - '${a}'\n`)
      )
      const { link, detector } = await keysOf()
      const expected = [
        { id: 9, secret: new Uint8Array(Buffer.from(b, 'hex')) },
        { id: 1, secret: new Uint8Array(Buffer.from(a, 'hex')) }
      ]
      expect(link.keys).to.deep.equal(expected)
      expect(detector.keys).to.deep.equal(expected)
    })

    it('should give the link and the heartbeats the keys of the node file’s key files', async () => {
      const a = await writeKeyFile(join(dir, 'a.key'))
      const b = await writeKeyFile(join(dir, 'b.key'))
      edit('secrets.yaml', (t) => t.replace(KEY_LINE, ''))
      edit('dp-1.yaml', (t) => `${t}cluster_key_files: [b.key, a.key]\n`)
      const { link, detector } = await keysOf()
      expect(link.keys).to.deep.equal([b, a])
      expect(detector.keys).to.deep.equal([b, a])
    })

    it('should refuse a key file others can read, one that is not a key file, and a third key', async () => {
      await writeKeyFile(join(dir, 'open.key'))
      chmodSync(join(dir, 'open.key'), 0o640)
      writeFileSync(join(dir, 'bad.key'), 'not a key', { mode: 0o600 })
      edit('secrets.yaml', (t) => t.replace(KEY_LINE, ''))
      edit('dp-1.yaml', (t) => `${t}cluster_key_files: [open.key, bad.key]\n`)
      const found = await issues()
      expect(found.map((i) => i.path)).to.deep.equal([
        'cluster_key_files[0]',
        'cluster_key_files[1]'
      ])
      expect(found[0]?.message).to.include('chmod 600')
      expect(found[1]?.message).to.include('not a vipsec cluster key file')
      edit('dp-1.yaml', (t) => t.replace('[open.key, bad.key]', '[a.key, b.key, c.key]'))
      expect((await issues())[0]).to.include({ file: 'dp-1.yaml', path: 'cluster_key_files' })
    })

    it('should warn in the log at start when insecure', async () => {
      edit('secrets.yaml', (t) => t.replace(KEY_LINE, ''))
      edit('cluster.yaml', (t) => `${t}link: { insecure: true }\n`)
      const network = new VirtualNetwork({ clock: new SystemClock() }).attach('dp-1')
      await network.start()
      await network.acquireAddress('10.9.0.1')
      const lines: { type?: string; level?: string }[] = []
      running = await startNode(join(dir, 'dp-1.yaml'), {
        host: false,
        network,
        destination: { write: (l: string) => void lines.push(JSON.parse(l) as never) }
      })
      expect(lines.find((l) => l.type === 'node:insecure')?.level).to.equal('warn')
      expect((running.node.get(TOKENS.ClusterLink) as UdpClusterLink).insecure).to.equal(true)
    })
  })
})
