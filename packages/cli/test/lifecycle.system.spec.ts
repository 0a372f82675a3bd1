// The lifecycle of real `vipsec node` processes in network namespaces (three distribution
// processors, two targets, Redis with its append-only file, strongSwan charon as the peer, as in
// test/system/cluster.system.spec.ts): a reload that changes the PSK and adds a target without
// a failover; a planned switchover on SIGTERM against a `kill -9`, five each, outages printed;
// `vipsec switchover --to`; the live status page in headless Chromium.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { chromium, type BrowserContext } from 'playwright-core'
import {
  ClusterFixture,
  DVIPA,
  IDS as ids,
  INNER,
  longestGap,
  root,
  waitFor,
  type UdpClient
} from './helpers/cluster-fixture.js'

const bin = join(root, 'packages/cli/src/bin.ts')
const tag = `vo${process.pid % 10000}`
const NEW_PSK = 'lifecycle test key, rotated'
const ADMIN = 9100
// heartbeats of 100 ms x 6: on a loaded shared test machine, 100 ms x 3 fails live nodes
const HEARTBEAT_MS = 100
const MULTIPLIER = 6
/**
 * Three DPs, two targets (target-2 known to the cluster but not a target of the DVIPA, and not
 * started, until the reload test adds it), Redis, charon; every node's admin endpoint on ADMIN.
 */
const fixture = new ClusterFixture({
  tag,
  admin: ADMIN,
  start: ['dp-1', 'dp-2', 'dp-3', 'target-1'],
  dvipaTargets: ['target-1'],
  psk: 'lifecycle test key',
  clusterExtra: `detector: { type: heartbeat, interval: ${HEARTBEAT_MS}ms, multiplier: ${MULTIPLIER} }\n`
})
const ns = (name: string): string => fixture.ns(name)
const dps = fixture.dps

/** The cluster file with these targets of the DVIPA. */
const clusterYaml = (targets: string[]): string => fixture.clusterYaml({ dvipaTargets: targets })

/** Runs the vipsec command line in a namespace; returns its exit code and output. */
function vipsec(name: string, args: string[]): { code: number; out: string } {
  const r = spawnSync(
    'ip',
    [
      'netns',
      'exec',
      ns(name),
      process.execPath,
      '--import',
      'tsx',
      '--conditions=vipsec-source',
      bin,
      ...args
    ],
    { cwd: root, encoding: 'utf8', timeout: 60_000 }
  )
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` }
}

/**
 * A TCP port on this namespace's loopback that leads to a port on a node namespace's loopback:
 * each connection is piped through a small `node` run in that namespace (the test binds only
 * to loopback and to its own namespaces).
 */
function forwarder(name: () => string, port: number): Promise<{ server: Server; port: number }> {
  const code = `const s=require('node:net').connect(${port},'127.0.0.1');process.stdin.pipe(s);s.pipe(process.stdout);s.on('close',()=>process.exit(0));s.on('error',()=>process.exit(1))`
  const server = createServer((socket) => {
    const child = spawn('ip', ['netns', 'exec', ns(name()), process.execPath, '-e', code], {
      stdio: ['pipe', 'pipe', 'ignore']
    })
    // either side may go first: a write to the other then fails, which only ends the pair
    child.stdin!.on('error', () => socket.destroy())
    child.stdout!.on('error', () => socket.destroy())
    child.on('error', () => socket.destroy())
    socket.pipe(child.stdin!)
    child.stdout!.pipe(socket)
    socket.on('error', () => child.kill())
    socket.on('close', () => child.kill())
    child.on('exit', () => socket.destroy())
  })
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, port: (server.address() as { port: number }).port })
    )
  )
}

describe('the lifecycle of vipsec node processes: reload, switchover, status page', function () {
  this.timeout(600_000)
  const dir = fixture.dir
  const nodes = fixture.nodes
  let charon: NonNullable<ClusterFixture['charon']>
  let client: UdpClient | undefined
  let later: UdpClient | undefined

  /** The ownership as the store holds it (`<prefix>{<dvipa>}:owner`). */
  const ownership = (): { owner: string | null; epoch: number } => {
    const o = fixture.storeOwnership()
    return { owner: o?.owner || null, epoch: o?.epoch ?? 0 }
  }
  const start = (name: string) => fixture.startNode(name)
  const count = (name: string, type: string): number => nodes.get(name)!.count(type)
  /** charon's established IKE SAs. */
  const established = (): number =>
    charon.ikeSas().filter((l) => l.includes('state=ESTABLISHED')).length
  /** The owners the running DPs report (`vipsec_dvipa_owned`). */
  const owners = (): string[] =>
    dps.filter(
      (d) => nodes.get(d)!.running && nodes.get(d)!.metric('vipsec_dvipa_owned', { dvipa: DVIPA })
    )

  /** The lines of `type` that `name` logged, from line `from` on. */
  const linesOf = (name: string, type: string, from = 0): Record<string, unknown>[] =>
    nodes
      .get(name)!
      .lines.slice(from)
      .filter((l) => l.type === type)
  /**
   * Checks the takeover `heir` completed after line `from` of its log: its report names `owner`
   * as the previous owner, its deletes for the old SAs went to `owner`'s mailbox, and charon is
   * left with one IKE SA.
   */
  async function tookOverFrom(heir: string, owner: string, from: number): Promise<void> {
    const report = linesOf(heir, 'takeover:completed', from).at(-1)?.report as
      { previousOwner?: string } | undefined
    expect(report?.previousOwner, `${heir}'s takeover report`).to.equal(owner)
    const deletes = linesOf(heir, 'deletes:sent', from)
    expect(
      deletes.map((l) => l.to),
      `${heir} sends the deletes of the old SAs`
    ).to.deep.equal([owner])
    expect(deletes[0]!.ikeSas, 'IKE SAs in the deletes').to.be.at.least(1)
    await waitFor(() => established() === 1, 10_000, 'charon to hold one established IKE SA')
  }

  before(async () => {
    await fixture.up()
    charon = fixture.charon!
    fixture.initiate()
    client = fixture.startClient([0, 1, 2, 3])
    await waitFor(
      () => new Set(client!.answers.map((a) => a.flow)).size === 4,
      20_000,
      'answers on all four flows'
    )
  })

  after(async () => {
    await fixture.down()
  })

  /** What the detectors and ownership units said, when the owner moved where it should not. */
  function explain(): void {
    for (const d of dps) {
      const said = nodes
        .get(d)!
        .lines.filter((l) =>
          /^(node:|ownership:|takeover:started|reload:|stderr)/.test(String(l.type))
        )
        .slice(-30)
      console.log(`      --- ${d}\n${said.map((l) => `      ${JSON.stringify(l)}`).join('\n')}`)
    }
  }

  it('should apply a new PSK and an added target on every DP (vipsec reload and SIGHUP) with no ownership change', async () => {
    const before = ownership()
    const takeovers = dps.map((d) => count(d, 'takeover:started'))
    const epochs = (): number[] =>
      dps.map((d) => nodes.get(d)!.metric('vipsec_dvipa_epoch', { dvipa: DVIPA }))
    const epochsBefore = epochs()
    expect(epochsBefore, 'every DP knows the epoch of the store').to.deep.equal(
      dps.map(() => before.epoch)
    )
    const marks = dps.map((d) => nodes.get(d)!.lines.length)
    fixture.writeSecretsFile(NEW_PSK)
    writeFileSync(join(dir, 'cluster.yaml'), clusterYaml(['target-1', 'target-2']))
    const target2 = start('target-2')
    await waitFor(() => target2.has('node:started'), 60_000, 'target-2 to start')
    // dp-1 through the command line (its admin endpoint), the others by SIGHUP
    const reload = vipsec('dp-1', ['reload', '--config', join(dir, 'dp-1.yaml')])
    expect(reload.out).to.match(/applied {2}secrets:psk peer/)
    expect(reload.out).to.match(/applied {2}targets 10\.88\.0\.50 \+target-2/)
    expect(reload.code).to.equal(0)
    for (const d of ['dp-2', 'dp-3']) nodes.get(d)!.kill('SIGHUP')
    for (const d of dps)
      await waitFor(() => nodes.get(d)!.has('reload:applied'), 20_000, `${d} to reload`)
    for (const d of dps) {
      const line = nodes.get(d)!.lines.find((l) => l.type === 'reload:applied')!
      const kinds = (line.changes as { kind: string }[]).map((c) => c.kind)
      expect(kinds, d).to.include.members(['secrets:psk', 'targets'])
      expect(nodes.get(d)!.metric('vipsec_reloads_total', { outcome: 'applied' }), d).to.equal(1)
    }
    // charon gets the new key too: the next negotiation (the switchovers below) uses it
    writeFileSync(join(charon.run, 'swanctl.conf'), fixture.swanctlConf(NEW_PSK))
    charon.swanctl(['--load-creds', '--clear', '--file', join(charon.run, 'swanctl.conf')])
    // new flows reach the added target; the old ones keep theirs
    const at = Date.now()
    later = fixture.startClient([4, 5, 6, 7])
    await waitFor(
      () => later!.answers.some((a) => a.target === 'target-2'),
      20_000,
      'an answer from target-2'
    )
    expect(new Set(client!.answers.filter((a) => a.at > at).map((a) => a.target))).to.deep.equal(
      new Set(['target-1'])
    )
    // no failover
    const now = ownership()
    if (now.epoch !== before.epoch) explain()
    expect(now).to.deep.include({ owner: before.owner, epoch: before.epoch })
    expect(dps.map((d) => count(d, 'takeover:started'))).to.deep.equal(takeovers)
    // the epoch does not move across the reloads, at any DP, and no DP changed its role
    expect(epochs(), 'the epoch at each DP across the reloads').to.deep.equal(epochsBefore)
    expect(
      dps.flatMap((d, i) =>
        linesOf(d, 'ownership:changed', marks[i]).map(
          (l) => `${d}: ${l.from} -> ${l.to} (${l.cause})`
        )
      ),
      'ownership transitions during the reloads'
    ).to.deep.equal([])
    expect(longestGap(client!.answers, at - 2000)).to.be.below(500)
    // a change that needs a failover is refused, with the reason, and nothing changes
    writeFileSync(
      join(dir, 'cluster.yaml'),
      clusterYaml(['target-1', 'target-2']).replace(`"${tag}:"`, '"other:"')
    )
    const refused = vipsec('dp-1', ['reload', '--config', join(dir, 'dp-1.yaml')])
    expect(refused.code).to.equal(1)
    expect(refused.out).to.match(/refused {2}cluster: store: .*\(store\)/)
    writeFileSync(join(dir, 'cluster.yaml'), clusterYaml(['target-1', 'target-2']))
    if (ownership().epoch !== before.epoch) explain()
    expect(ownership()).to.deep.include({ owner: before.owner, epoch: before.epoch })
    expect(epochs(), 'the epoch at each DP after the refused reload').to.deep.equal(epochsBefore)
  })

  const planned: number[] = []
  const crashes: number[] = []

  /** What the DPs said about nodes, ownership and takeovers, to see why a check failed. */
  function dump(): void {
    for (const d of dps) {
      const said = nodes
        .get(d)!
        .lines.filter((l) =>
          /^(node:|ownership:claimed|ownership:lost|takeover:|switchover:|stderr)/.test(
            String(l.type)
          )
        )
        .slice(-20)
      console.log(`      --- ${d}\n${said.map((l) => `      ${JSON.stringify(l)}`).join('\n')}`)
    }
  }

  /** Stops the owner (SIGTERM: planned, SIGKILL: a crash) and measures the client's outage. */
  async function handOver(signal: 'SIGTERM' | 'SIGKILL', outages: number[]): Promise<void> {
    const answers = client!.answers
    const from = ownership().owner!
    // whichever live DP the ranks and the detectors' timing make the heir: a backup restarted
    // just before may still distrust its own detector, and the next one claims first
    const live = dps.filter((d) => d !== from)
    let heir = live.join(' or ')
    const victim = nodes.get(from)!
    const completed = new Map(live.map((d) => [d, count(d, 'takeover:completed')]))
    const marks = new Map(live.map((d) => [d, nodes.get(d)!.lines.length]))
    const at = Date.now()
    victim.kill(signal)
    try {
      heir = await waitFor(
        () => live.find((d) => count(d, 'takeover:completed') > completed.get(d)!),
        30_000,
        `${heir} to take over from ${from} (${signal})`
      )
      const mark = marks.get(heir)!
      const code = await victim.exited
      if (signal === 'SIGTERM') {
        expect(code, `${from} exits 0 after SIGTERM`).to.equal(0)
        expect(victim.has('switchover:released')).to.equal(true)
      }
      await waitFor(() => answers.some((a) => a.at > at + 50), 30_000, 'answers after it')
      await new Promise((resolve) => setTimeout(resolve, 500))
      outages.push(longestGap(answers, at))
      expect(ownership().owner).to.equal(heir)
      expect(owners(), 'one owner').to.deep.equal([heir])
      // charon drops the old IKE SA on the new one's INITIAL_CONTACT (a half-open one from a
      // lost IKE_SA_INIT answer may linger until charon's half-open timeout: not counted)
      await tookOverFrom(heir, from, mark)
    } catch (err) {
      console.log(`      ${signal} of ${from}, heir ${heir}: ${(err as Error).message}`)
      try {
        console.log(charon.swanctl(['--list-sas']))
      } catch (e) {
        console.log(`      charon does not answer: ${(e as Error).message.split('\n')[0]}`)
      }
      dump()
      throw err
    }
    // the stopped node comes back as a backup, as its init system would start it
    const again = start(from)
    await waitFor(() => again.has('node:started'), 60_000, `${from} to start again`)
    // it reads its mailbox at start: the deletes for its old SAs, from the heir
    const applied = linesOf(from, 'deletes:applied')
    expect(
      applied.map((l) => l.from),
      `${from} applies the deletes at start`
    ).to.deep.equal([heir])
    await new Promise((resolve) => setTimeout(resolve, 1000))
  }

  it('should hand the DVIPA over on SIGTERM faster than after kill -9, five each, with service back and one owner', async () => {
    while (planned.length < 5) await handOver('SIGTERM', planned)
    while (crashes.length < 5) await handOver('SIGKILL', crashes)
    const summary = (xs: number[]): string => {
      const sorted = [...xs].sort((a, b) => a - b)
      return `median ${sorted[Math.floor(sorted.length / 2)]} ms, max ${sorted.at(-1)} ms (${xs.join(', ')})`
    }
    console.log(`      heartbeats ${HEARTBEAT_MS} ms x ${MULTIPLIER}, rank delay 200 ms`)
    console.log(`      outage, planned switchover (SIGTERM): ${summary(planned)}`)
    console.log(`      outage, crash (kill -9):              ${summary(crashes)}`)
    expect(planned).to.have.length(5)
    expect(crashes).to.have.length(5)
  })

  let context: BrowserContext | undefined
  let proxy: { server: Server; port: number } | undefined
  after(async () => {
    await context?.close()
    proxy?.server.close()
  })

  it('should show the cluster, the peer and the last takeover live on the status page, in headless Chromium', async () => {
    const from = ownership().owner!
    const heir = dps.find((d) => d !== from && nodes.get(d)!.running)!
    // the page of the node that is about to take over, open before the switchover
    proxy = await forwarder(() => heir, ADMIN)
    const profile = mkdtempSync(join(tmpdir(), 'vipsec-vo-chromium-'))
    context = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync'
      ]
    })
    const page = await context.newPage()
    await page.goto(`http://127.0.0.1:${proxy.port}/`)
    await page.locator(`#dvipas tr[data-dvipa="${DVIPA}"]`).waitFor({ timeout: 30_000 })
    const row = page.locator(`#dvipas tr[data-dvipa="${DVIPA}"]`)
    expect(await row.getAttribute('data-owner')).to.equal(from)
    expect(await page.locator('h1').textContent()).to.include(heir)
    const mark = nodes.get(heir)!.lines.length
    const fromMark = nodes.get(from)!.lines.length
    const completed = count(heir, 'takeover:completed')
    // on demand, through the store: `vipsec switchover --to`
    const result = vipsec(from, [
      'switchover',
      '--config',
      join(dir, `${from}.yaml`),
      '--dvipa',
      DVIPA,
      '--to',
      heir
    ])
    expect(result.out).to.match(new RegExp(`${DVIPA}: ${from} \\(epoch \\d+\\) -> ${heir}`))
    expect(result.code).to.equal(0)
    // the named node takes the DVIPA over from the old owner (not from itself), whose SAs it
    // deletes: the old owner, alive as a backup, applies them at once
    await waitFor(() => count(heir, 'takeover:completed') > completed, 30_000, 'the takeover')
    await tookOverFrom(heir, from, mark)
    await waitFor(
      () => linesOf(from, 'deletes:applied', fromMark).length > 0,
      10_000,
      `${from} to apply the deletes`
    )
    expect(linesOf(from, 'deletes:applied', fromMark).map((l) => l.from)).to.deep.equal([heir])
    // the page updates by itself
    await page
      .locator(`#dvipas tr[data-dvipa="${DVIPA}"][data-owner="${heir}"]`)
      .waitFor({ timeout: 30_000 })
    await page.locator('#peers tr.peer').first().waitFor({ timeout: 30_000 })
    await page.locator('#timeline .step').first().waitFor({ timeout: 30_000 })
    expect(await page.locator('#peers tr.peer').count()).to.equal(1)
    expect(await row.locator('td').nth(1).textContent()).to.equal('owner')
    const peer = await page.locator('#peers tr.peer').textContent()
    expect(peer).to.include(ids.peer)
    expect(peer).to.match(/aes256gcm16/)
    expect(peer).to.include(`${INNER}/32`)
    const bars = page.locator('#timeline .step')
    const steps: (string | null)[] = []
    for (let i = 0; i < (await bars.count()); i++)
      steps.push(await bars.nth(i).getAttribute('data-step'))
    expect(steps).to.include.members(['claim', 'renegotiate', 'notify-targets'])
    expect(await page.locator('#takeover').textContent()).to.match(
      new RegExp(`${heir} took over from ${from} at epoch \\d+`)
    )
    expect(await page.locator('#events').textContent()).to.include('takeover:completed')
    const shot = join(profile, 'status-page.png')
    await page.screenshot({ path: shot, fullPage: true })
    console.log(`      status page screenshot: ${shot}`)
    // and the service is back, with one owner
    const at = Date.now()
    await waitFor(() => client!.answers.some((a) => a.at > at + 200), 30_000, 'answers')
    expect(owners()).to.deep.equal([heir])
  })
})
