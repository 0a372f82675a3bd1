import {
  appendFileSync,
  chmodSync,
  cpSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync
} from 'node:fs'
import { get } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { SystemClock } from '@vipsec/clock'
import { TOKENS, type NetworkAdapter } from '@vipsec/interface'
import { VirtualNetwork } from '@vipsec/network-virtual'
import { EventEmitter } from 'node:events'
import { runUntilSignalled } from '../src/node-command.js'
import { main, startNode, version, writeKeyFile, type RunningNode } from '../src/index.js'

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url))

function fetchText(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path }, (res) => {
      let body = ''
      res.on('data', (c) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    }).on('error', reject)
  })
}

/**
 * Writes the node file of dp-2, a backup of dp-1 with heartbeats every 10 s (so it does not take
 * over during a test, and its start lasts a 30 s join window), and gives it a virtual network.
 */
async function slowBackup(dir: string): Promise<NetworkAdapter> {
  writeFileSync(
    join(dir, 'dp-2.yaml'),
    readFileSync(join(dir, 'dp-1.yaml'), 'utf8').replace('node: dp-1', 'node: dp-2')
  )
  const cluster = join(dir, 'cluster.yaml')
  writeFileSync(
    cluster,
    readFileSync(cluster, 'utf8').replace('worker: false', 'worker: false, interval: 10s')
  )
  const network = new VirtualNetwork({ clock: new SystemClock() }).attach('dp-2')
  await network.start()
  await network.acquireAddress('10.9.0.2')
  return network
}

describe('vipsec node', function () {
  this.timeout(30_000)
  let dir: string
  let running: RunningNode | undefined

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vipsec-ops-node-'))
    cpSync(fixtures, dir, { recursive: true })
    chmodSync(join(dir, 'secrets.yaml'), 0o600)
  })

  afterEach(async () => {
    await running?.stop()
    running = undefined
    rmSync(dir, { recursive: true, force: true })
  })

  describe('startNode', () => {
    it('should claim the DVIPA, log pino lines with the writer apart from the subject, and serve /metrics, /healthz, /readyz', async () => {
      const network = new VirtualNetwork({ clock: new SystemClock() }).attach('dp-1')
      await network.start()
      await network.acquireAddress('10.9.0.1')
      const lines: Record<string, unknown>[] = []
      running = await startNode(join(dir, 'dp-1.yaml'), {
        host: false,
        network,
        destination: {
          write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>)
        }
      })
      const store = running.node.get(TOKENS.CouplingStore)
      expect(await store.getOwnership('10.9.0.100')).to.include({ owner: 'dp-1', epoch: 1 })
      const claimed = lines.find((l) => l.type === 'ownership:claimed')
      expect(claimed).to.include({ node: 'dp-1', component: 'processor', level: 'info' })
      expect(lines.find((l) => l.type === 'node:started')).to.include({
        role: 'primary',
        aead: 'libcrypto'
      })
      expect(lines.every((l) => l.node === 'dp-1' && typeof l.time === 'string')).to.equal(true)
      const port = running.adminPort!
      const metrics = await fetchText(port, '/metrics')
      expect(metrics.status).to.equal(200)
      expect(metrics.body).to.match(/^vipsec_dvipa_owned\{dvipa="10\.9\.0\.100"\} 1$/m)
      expect(metrics.body).to.match(/^vipsec_dvipa_epoch\{dvipa="10\.9\.0\.100"\} 1$/m)
      expect(metrics.body).to.match(/^# TYPE vipsec_takeover_duration_seconds histogram$/m)
      expect(metrics.body).to.match(/^# TYPE vipsec_ike_handshake_duration_seconds histogram$/m)
      expect(metrics.body).to.match(
        /^vipsec_ownership_transitions_total\{type="ownership:claimed"\} 1$/m
      )
      expect(metrics.body).to.match(/^vipsec_node_info\{node="dp-1",role="primary"\} 1$/m)
      expect(metrics.body).to.include('# TYPE nodejs_eventloop_lag_seconds gauge')
      expect(metrics.body).to.include('# TYPE process_cpu_seconds_total counter')
      const dashboard = readFileSync(
        new URL('../../../docs/grafana-dashboard.json', import.meta.url),
        'utf8'
      )
      const used = new Set(
        [...dashboard.matchAll(/vipsec_[a-z_]+/g)].map((m) =>
          m[0].replace(/_(bucket|count|sum)$/, '')
        )
      )
      for (const name of used)
        expect(metrics.body, `the dashboard's ${name}`).to.include(`# TYPE ${name} `)
      expect((await fetchText(port, '/healthz')).status).to.equal(200)
      expect((await fetchText(port, '/readyz')).status).to.equal(200)
      expect((await fetchText(port, '/nope')).status).to.equal(404)
    })

    it('should collect no process metrics without an admin endpoint, nothing scraping them', async () => {
      // their event-loop lag monitor alone would wake the data plane's loop every 10 ms
      const file = join(dir, 'dp-1.yaml')
      writeFileSync(file, readFileSync(file, 'utf8').replace(/^admin: .*$/m, ''))
      const network = new VirtualNetwork({ clock: new SystemClock() }).attach('dp-1')
      await network.start()
      await network.acquireAddress('10.9.0.1')
      running = await startNode(file, { host: false, network, destination: { write: () => {} } })
      expect(running.adminPort).to.equal(undefined)
      const registry = running.node.metrics!.registry
      expect(registry.getSingleMetric('vipsec_node_info')).to.not.equal(undefined)
      const names = (await registry.getMetricsAsJSON()).map((m) => m.name)
      expect(names.filter((n) => /^(process|nodejs)_/.test(n))).to.deep.equal([])
    })
  })

  describe('runUntilSignalled (the signals of vipsec node)', () => {
    /** A start the test finishes, and a node that records what it was asked. */
    function fakeStart(): {
      start: (signal: AbortSignal) => Promise<RunningNode>
      finish: () => void
      calls: string[]
      signal: () => AbortSignal | undefined
    } {
      const calls: string[] = []
      let finish!: () => void
      let given: AbortSignal | undefined
      const node = {
        reload: async () => {
          calls.push('reload')
          return { outcome: 'applied' }
        },
        stop: async (o?: { switchover?: boolean }) =>
          void calls.push(`stop switchover=${String(o?.switchover)}`)
      } as unknown as RunningNode
      const start = (signal: AbortSignal): Promise<RunningNode> => {
        given = signal
        return new Promise<RunningNode>((resolve, reject) => {
          finish = () => resolve(node)
          signal.addEventListener('abort', () => reject(signal.reason as Error))
        })
      }
      return { start, finish: () => finish(), calls, signal: () => given }
    }
    const tick = (): Promise<void> => new Promise((r) => setImmediate(r))
    const signalNames = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const

    for (const sig of ['SIGTERM', 'SIGINT'] as const)
      it(`should abort the start on ${sig} during it and exit 0, leaving no listener`, async () => {
        const signals = new EventEmitter()
        const f = fakeStart()
        const done = runUntilSignalled(f.start, signals)
        await tick()
        signals.emit(sig)
        expect(await done).to.equal(0)
        expect(f.signal()?.aborted).to.equal(true)
        expect(f.calls).to.deep.equal([])
        for (const name of signalNames) expect(signals.listenerCount(name), name).to.equal(0)
      })

    it('should reload once the start is over after a SIGHUP during it, then hand over on SIGTERM', async () => {
      const signals = new EventEmitter()
      const f = fakeStart()
      const done = runUntilSignalled(f.start, signals)
      await tick()
      signals.emit('SIGHUP')
      await tick()
      expect(f.calls, 'nothing reloads during the start').to.deep.equal([])
      f.finish()
      await tick()
      await tick()
      expect(f.calls).to.deep.equal(['reload'])
      signals.emit('SIGHUP')
      await tick()
      expect(f.calls).to.deep.equal(['reload', 'reload'])
      signals.emit('SIGTERM')
      expect(await done).to.equal(0)
      expect(f.calls).to.deep.equal(['reload', 'reload', 'stop switchover=true'])
      expect(f.signal()?.aborted).to.equal(false)
      for (const name of signalNames) expect(signals.listenerCount(name), name).to.equal(0)
    })

    it('should pass on a start that failed by itself', async () => {
      const signals = new EventEmitter()
      const failure = await runUntilSignalled(
        () => Promise.reject(new Error('bad file')),
        signals
      ).then(
        () => undefined,
        (err: Error) => err.message
      )
      expect(failure).to.equal('bad file')
      for (const name of signalNames) expect(signals.listenerCount(name), name).to.equal(0)
    })

    it('should stop a real node on SIGTERM during its join window, its admin endpoint closed', async () => {
      const network = await slowBackup(dir)
      const signals = new EventEmitter()
      let port: number | undefined
      const done = runUntilSignalled(
        (signal) =>
          startNode(join(dir, 'dp-2.yaml'), {
            host: false,
            network,
            destination: { write: () => undefined },
            onAdmin: (p) => (port = p),
            signal
          }),
        signals
      )
      for (let i = 0; i < 100 && port === undefined; i++)
        await new Promise((r) => setTimeout(r, 50))
      expect((await fetchText(port!, '/healthz')).status).to.equal(200)
      const at = Date.now()
      signals.emit('SIGTERM')
      expect(await done).to.equal(0)
      expect(Date.now() - at, 'stopped well before the 30 s window ends').to.be.below(10_000)
      const closed = await fetchText(port!, '/healthz').then(
        () => undefined,
        (err: NodeJS.ErrnoException) => err.code
      )
      expect(closed).to.be.oneOf(['ECONNREFUSED', 'ECONNRESET'])
    })
  })

  describe('/readyz', () => {
    it('should answer 503 while a backup has no confirmed epoch (its owner never heard), 200 on /healthz', async () => {
      const network = await slowBackup(dir)
      // its start lasts the join window (one detection time, 30 s here): the admin endpoint
      // answers during it, and aborting the start stops the node
      const abort = new AbortController()
      let port: number | undefined
      const starting = startNode(join(dir, 'dp-2.yaml'), {
        host: false,
        network,
        destination: { write: () => undefined },
        onAdmin: (p) => (port = p),
        signal: abort.signal
      })
      for (let i = 0; i < 100 && port === undefined; i++)
        await new Promise((r) => setTimeout(r, 50))
      expect(port).to.be.a('number')
      expect((await fetchText(port!, '/healthz')).status).to.equal(200)
      const ready = await fetchText(port!, '/readyz')
      expect(ready).to.deep.equal({ status: 503, body: 'not ready\n' })
      abort.abort(new Error('test over'))
      const failure = await starting.then(
        () => undefined,
        (err: Error) => err
      )
      expect(failure?.message).to.equal('test over')
      const closed = await fetchText(port!, '/healthz').then(
        () => undefined,
        (err: NodeJS.ErrnoException) => err.code
      )
      expect(closed).to.be.oneOf(['ECONNREFUSED', 'ECONNRESET'])
    })
  })

  describe('a target', () => {
    it('should start from its node file without secrets, with a key file, and serve its own metrics', async () => {
      await writeKeyFile(join(dir, 'cluster.key'))
      writeFileSync(
        join(dir, 'target-1.yaml'),
        'node: target-1\ncluster: cluster.yaml\ninterface: eth0\nadmin: 127.0.0.1:0\napps: [{ app: echo, port: 7 }]\ncluster_key_files: [cluster.key]\n'
      )
      const network = new VirtualNetwork({ clock: new SystemClock() }).attach('target-1')
      await network.start()
      await network.acquireAddress('10.9.1.1')
      running = await startNode(join(dir, 'target-1.yaml'), {
        host: false,
        network,
        destination: { write: () => undefined }
      })
      expect(running.config.role).to.equal('target')
      const metrics = await fetchText(running.adminPort!, '/metrics')
      expect(metrics.body).to.match(/^vipsec_node_info\{node="target-1",role="target"\} 1$/m)
      expect(metrics.body).to.match(/^vipsec_link_frames_total\{kind="sent"\} \d+$/m)
      expect(metrics.body).to.match(/^# TYPE vipsec_link_frames_dropped_total counter$/m)
      expect(metrics.body).to.match(/^# TYPE vipsec_heartbeats_total counter$/m)
      expect(metrics.body).to.match(/^# TYPE vipsec_target_packets_total counter$/m)
      expect((await fetchText(running.adminPort!, '/readyz')).status).to.equal(200)
    })
  })

  describe('a hook', () => {
    it('should run on the ownership claim and each ESP SA with the event in its environment', async () => {
      const out = join(dir, 'hook.out')
      writeFileSync(
        join(dir, 'hook.sh'),
        `#!/bin/sh\necho "$VIPSEC_EVENT $VIPSEC_NODE $VIPSEC_DVIPA $VIPSEC_EPOCH" >> ${out}\n`,
        { mode: 0o755 }
      )
      appendFileSync(join(dir, 'dp-1.yaml'), 'hook: { command: hook.sh, timeout: 5s }\n')
      const network = new VirtualNetwork({ clock: new SystemClock() }).attach('dp-1')
      await network.start()
      await network.acquireAddress('10.9.0.1')
      running = await startNode(join(dir, 'dp-1.yaml'), {
        host: false,
        network,
        destination: { write: () => undefined }
      })
      await running.stop()
      running = undefined
      expect(readFileSync(out, 'utf8').split('\n')).to.include(
        'ownership:claimed dp-1 10.9.0.100 1'
      )
    })

    it('should log a hook that fails, and keep the node running', async () => {
      appendFileSync(join(dir, 'dp-1.yaml'), 'hook: { command: no-such-hook }\n')
      const network = new VirtualNetwork({ clock: new SystemClock() }).attach('dp-1')
      await network.start()
      await network.acquireAddress('10.9.0.1')
      const lines: Record<string, unknown>[] = []
      running = await startNode(join(dir, 'dp-1.yaml'), {
        host: false,
        network,
        destination: {
          write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>)
        }
      })
      await new Promise((resolve) => setTimeout(resolve, 200))
      const started = running.node.isStarted()
      await running.stop()
      running = undefined
      expect(lines.find((l) => l.type === 'hook:failed')).to.include({
        component: 'hook',
        event: 'ownership:claimed'
      })
      expect(started).to.equal(true)
    })
  })

  describe('main', () => {
    it('should print --help and --version for every command', async () => {
      for (const command of ['demo', 'node', 'check', 'status', 'reload', 'switchover']) {
        const help: string[] = []
        expect(await main([command, '--help'], (l) => help.push(l))).to.equal(0)
        expect(help.join('\n')).to.include(`vipsec ${command}`)
        const v: string[] = []
        expect(await main([command, '--version'], (l) => v.push(l))).to.equal(0)
        expect(v).to.deep.equal([version()])
      }
      expect(version()).to.match(/^\d+\.\d+\.\d+/)
    })

    it('should exit non-zero naming the field when the node cannot start', async () => {
      const lines: string[] = []
      const code = await main(['node', '--config', join(dir, 'missing.yaml')], (l) => lines.push(l))
      expect(code).to.not.equal(0)
      expect(lines.join('\n')).to.include('missing.yaml')
    })
  })
})
