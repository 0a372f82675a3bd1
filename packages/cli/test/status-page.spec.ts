import { chmodSync, cpSync, mkdtempSync, rmSync } from 'node:fs'
import { get } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { SystemClock } from '@vipsec/clock'
import { VirtualNetwork } from '@vipsec/network-virtual'
import { DVIPA, SimulatedCluster } from '@vipsec/simulation'
import { startNode, type RunningNode } from '../src/index.js'
import { StatusTracker, type NodeView } from '../src/status-page.js'

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url))

function fetchText(
  port: number,
  path: string
): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path }, (res) => {
      let body = ''
      res.on('data', (c) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }))
    }).on('error', reject)
  })
}

describe('the status page', function () {
  this.timeout(60_000)

  describe('on the admin endpoint', () => {
    let dir: string
    let running: RunningNode | undefined

    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'vipsec-vo-page-'))
      cpSync(fixtures, dir, { recursive: true })
      chmodSync(join(dir, 'secrets.yaml'), 0o600)
    })

    afterEach(async () => {
      await running?.stop()
      running = undefined
      rmSync(dir, { recursive: true, force: true })
    })

    it('should serve the page with a strict policy, and the node view at /status', async () => {
      const network = new VirtualNetwork({ clock: new SystemClock() }).attach('dp-1')
      await network.start()
      await network.acquireAddress('10.9.0.1')
      running = await startNode(join(dir, 'dp-1.yaml'), {
        host: false,
        network,
        destination: { write: () => undefined }
      })
      const page = await fetchText(running.adminPort!, '/')
      expect(page.status).to.equal(200)
      expect(page.headers['content-security-policy']).to.include("default-src 'none'")
      expect(page.body).to.include('<table id="dvipas"')
      expect(page.body).to.not.include('innerHTML')
      const status = await fetchText(running.adminPort!, '/status')
      const view = JSON.parse(status.body) as NodeView
      expect(view).to.include({ node: 'dp-1', role: 'primary' })
      expect(view.dvipas).to.have.length(1)
      expect(view.dvipas[0]).to.include({
        dvipa: '10.9.0.100',
        role: 'owner',
        owner: 'dp-1',
        epoch: 1
      })
      // dp-2 never runs: unknown, or failed once the detector gave up on it during the join window
      expect(view.dvipas[0]!.ranks.map((r) => r.node)).to.deep.equal(['dp-1', 'dp-2'])
      expect(view.dvipas[0]!.ranks[0]!.health).to.equal('self')
      expect(['unknown', 'failed']).to.include(view.dvipas[0]!.ranks[1]!.health)
      expect(view.dvipas[0]!.targets.map((t) => t.node)).to.deep.equal(['target-1'])
      expect(view.peers).to.deep.equal([])
      expect(view.lastTakeover).to.equal(undefined)
      expect(view.events.map((e) => e.type)).to.include('ownership:claimed')
    })
  })

  describe('StatusTracker', () => {
    it('should show the peers and SAs of the owner and the last takeover with its steps', async () => {
      const cluster = new SimulatedCluster({ peers: 2, seed: 'page' })
      await cluster.start()
      try {
        cluster.startTraffic()
        await cluster.advance(500)
        const dp2 = cluster.dps.get('dp-2')!
        const tracker = new StatusTracker(dp2.vipsecNode, () => ({ role: 'backup' }) as never)
        await cluster.crash('dp-1')
        await cluster.advance(1500)
        const view = tracker.view()
        expect(view.dvipas[0]).to.include({ dvipa: DVIPA, role: 'owner', owner: 'dp-2', epoch: 2 })
        expect(view.dvipas[0]!.ranks.find((r) => r.node === 'dp-1')!.health).to.equal('failed')
        expect(view.peers).to.have.length(2)
        const child = view.peers[0]!.children[0]!
        expect(child.inboundSpi).to.match(/^[0-9a-f]{8}$/)
        expect(child.packets.in).to.be.greaterThan(0)
        expect(child.bytes.out).to.be.greaterThan(0)
        expect(view.lastTakeover?.report).to.include({ previousOwner: 'dp-1', epoch: 2 })
        expect(view.lastTakeover!.report.steps.map((s) => s.step)).to.include.members([
          'detect',
          'claim',
          'renegotiate'
        ])
        expect(view.events.find((e) => e.type === 'takeover:completed')?.dvipa).to.equal(DVIPA)
      } finally {
        await cluster.stop()
      }
    })
  })
})
