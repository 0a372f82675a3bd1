// Forgeries on the cluster LAN against a real cluster: separate `vipsec node` processes in
// network namespaces (three distribution processors, two targets) with one cluster key, Redis,
// and strongSwan as the remote peer with a client behind it. An attacker namespace on the same
// bridge, which floods every frame to every port (a hub, or a mirror port), records what it sees
// and sends datagrams with any source address. Each attack of issue 11 (points 4 and 5) is sent
// in turn: a heartbeat with a huge incarnation, a forged `ownership:notice` with epoch 999, a
// forged `packet:inbound`, a replay of captured authenticated frames, and heartbeats that
// impersonate a killed owner. After each, the tunnel is up, traffic flows with no duplicate
// answers, nothing changed owner, and the nodes' /metrics count the drops by reason.
import { execFileSync, spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { expect } from 'chai'
import { encodeMessage, FrameGuard, LINK_MAGIC, type ClusterKey } from '@vipsec/cluster-link-udp'
import { heartbeatGuard } from '@vipsec/detector-heartbeat'
import { buildIpPacket, buildUdp } from '@vipsec/esp-software'
import type { ClusterMessage, Endpoint } from '@vipsec/interface'
import {
  ADDR as addr,
  ClusterFixture,
  DVIPA,
  INNER,
  root,
  SERVICE,
  sh,
  waitFor,
  type UdpClient
} from './helpers/cluster-fixture.js'

const tag = `lnk${process.pid % 10000}`
const ns = (name: string): string => `${tag}-${name}`
const ATTACKER = '10.88.0.66'
const dps = ['dp-1', 'dp-2', 'dp-3']
const targets = ['target-1', 'target-2']
const link = (node: string): Endpoint => ({ address: addr[node]!, port: 7400 })
const beat = (node: string): Endpoint => ({ address: addr[node]!, port: 7500 })

/** A datagram the attacker sends: any source, any destination. */
interface Spoofed {
  from: Endpoint
  to: Endpoint
  data: Uint8Array
}

/**
 * Sends datagrams from the attacker's namespace with the source addresses and ports they name
 * (a raw socket: `helpers/spoof-udp.py`), `gapMs` apart.
 */
function spoof(datagrams: Spoofed[], gapMs = 0): Promise<void> {
  const file = join(dir, `spoof-${Math.random().toString(36).slice(2)}.json`)
  writeFileSync(
    file,
    JSON.stringify(
      datagrams.map((d) => ({ from: d.from, to: d.to, hex: Buffer.from(d.data).toString('hex') }))
    )
  )
  const script = join(root, 'test/system/helpers/spoof-udp.py')
  return new Promise((resolve, reject) => {
    const proc = spawn('ip', ['netns', 'exec', ns('atk'), 'python3', script, file, String(gapMs)], {
      stdio: ['ignore', 'ignore', 'inherit']
    })
    proc.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`spoof: exit ${code}`))))
  })
}

/** Records the cluster's link and heartbeat datagrams the attacker sees for `seconds`. */
function capture(seconds: number): Spoofed[] {
  const file = join(dir, `capture-${Date.now()}.pcap`)
  execFileSync(
    'ip',
    [
      'netns',
      'exec',
      ns('atk'),
      'tshark',
      '-q',
      '-i',
      'eth0',
      '-a',
      `duration:${seconds}`,
      '-f',
      'udp and (port 7400 or port 7500) and not host 10.88.0.66',
      '-w',
      file
    ],
    { stdio: 'ignore' }
  )
  const fields = execFileSync(
    'tshark',
    [
      '-r',
      file,
      '-T',
      'fields',
      '-e',
      'ip.src',
      '-e',
      'udp.srcport',
      '-e',
      'ip.dst',
      '-e',
      'udp.dstport',
      '-e',
      'udp.payload'
    ],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }
  )
  return fields
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const [src, sport, dst, dport, hex] = l.split('\t')
      return {
        from: { address: src!, port: Number(sport) },
        to: { address: dst!, port: Number(dport) },
        data: new Uint8Array(Buffer.from(hex!.replace(/:/g, ''), 'hex'))
      }
    })
}

/** Link frames sealed as `sender` by someone without the cluster secret (right key id, wrong secret). */
function linkForger(key: ClusterKey, sender: string): (m: ClusterMessage) => Uint8Array {
  const guard = new FrameGuard({
    magic: LINK_MAGIC,
    purpose: 'cluster link',
    keys: [{ id: key.id, secret: new Uint8Array(32).fill(0x42) }],
    windowSize: 64
  })
  guard.startSending(sender, Number.MAX_SAFE_INTEGER - 10)
  return (m) => guard.seal(encodeMessage(m))
}

/** The same frames with no tag at all, as an insecure node would send them. */
function untagged(sender: string): (m: ClusterMessage) => Uint8Array {
  const guard = new FrameGuard({
    magic: LINK_MAGIC,
    purpose: 'cluster link',
    keys: [],
    windowSize: 64
  })
  guard.startSending(sender, Number.MAX_SAFE_INTEGER - 10)
  return (m) => guard.seal(encodeMessage(m))
}

/** Heartbeats of `node` made without the secret, with the highest incarnation there is. */
function heartbeatForger(key: ClusterKey, node: string): () => Uint8Array {
  const guard = heartbeatGuard([{ id: key.id, secret: new Uint8Array(32).fill(0x42) }])
  guard.startSending(node, Number.MAX_SAFE_INTEGER)
  return () => guard.seal(new Uint8Array(0))
}

const cluster = new ClusterFixture({ tag, admin: true })
const dir = cluster.dir

describe('a vipsec cluster under forgeries from its own LAN', function () {
  this.timeout(300_000)
  const nodes = cluster.nodes
  let client: UdpClient | undefined
  let key: ClusterKey
  let owner = 'dp-1'
  let killed: string | undefined

  const all = () => [...nodes.values()]
  const takeovers = (): number =>
    all().reduce((n, p) => n + p.lines.filter((l) => l.type === 'takeover:started').length, 0)
  const drops = (node: string, family: 'link_frames' | 'heartbeats', reason?: string): number =>
    nodes
      .get(node)!
      .metric(`vipsec_${family}_dropped_total`, reason === undefined ? {} : { reason })
  /** Requests answered more than once, and how many answers came in the last `ms`. */
  const traffic = (ms: number): { duplicates: number; recent: number } => ({
    duplicates: client!.duplicates(),
    recent: client!.since(Date.now() - ms)
  })
  /** Checks what must hold after every attack. */
  const intact = (takeoversBefore: number): void => {
    expect(takeovers(), 'no takeover started').to.equal(takeoversBefore)
    expect(cluster.charon!.ikeSas(), 'charon keeps one IKE SA').to.have.length(1)
    const t = traffic(500)
    expect(t.recent, 'answers in the last 500 ms').to.be.greaterThan(20)
    expect(t.duplicates, 'requests answered twice').to.equal(0)
    expect(nodes.get(owner)!.has('ownership:lost'), `${owner} still owns`).to.equal(false)
  }

  before(async () => {
    await cluster.up()
    key = cluster.key
    // the attacker: one more port on the bridge, which floods every frame to every port
    sh('ip', ['netns', 'add', ns('atk')])
    sh('ip', ['-n', ns('sw'), 'link', 'add', 'patk', 'type', 'veth', 'peer', 'name', 'iatk'])
    sh('ip', ['-n', ns('sw'), 'link', 'set', 'iatk', 'netns', ns('atk')])
    sh('ip', ['-n', ns('atk'), 'link', 'set', 'iatk', 'name', 'eth0'])
    sh('ip', ['-n', ns('sw'), 'link', 'set', 'patk', 'master', 'br0'])
    sh('ip', ['-n', ns('sw'), 'link', 'set', 'patk', 'up'])
    sh('ip', ['-n', ns('atk'), 'addr', 'add', `${ATTACKER}/24`, 'dev', 'eth0'])
    sh('ip', ['-n', ns('atk'), 'link', 'set', 'eth0', 'up'])
    sh('ip', ['-n', ns('atk'), 'link', 'set', 'lo', 'up'])
    sh('ip', ['-n', ns('sw'), 'link', 'set', 'br0', 'type', 'bridge', 'ageing_time', '0'])
    // its ARP requests name its own address, not the spoofed source of the datagram that
    // needed them: the test is about the cluster's frames, not about poisoning neighbour caches
    for (const conf of ['all', 'eth0']) {
      sh('ip', [
        'netns',
        'exec',
        ns('atk'),
        'sysctl',
        '-q',
        '-w',
        `net.ipv4.conf.${conf}.arp_announce=2`
      ])
    }

    cluster.initiate()
    client = cluster.startClient()
    await waitFor(
      () => new Set(client!.answers.map((a) => a.flow)).size === 4,
      30_000,
      'answers on all four flows'
    )
  })

  after(async () => {
    try {
      sh('ip', ['netns', 'del', ns('atk')])
    } catch {
      // not made
    }
    await cluster.down()
  })

  it('should ignore a forged heartbeat of the owner with a huge incarnation (point 4)', async () => {
    const before = takeovers()
    const failed = (): number =>
      all().reduce((n, p) => n + p.lines.filter((l) => l.type === 'node:failed').length, 0)
    const failedBefore = failed()
    const [d2, d3] = [drops('dp-2', 'heartbeats'), drops('dp-3', 'heartbeats')]
    const forge = heartbeatForger(key, owner)
    const datagrams = ['dp-2', 'dp-3'].map((d) => ({
      from: beat(owner),
      to: beat(d),
      data: forge()
    }))
    await spoof(datagrams)
    // three times the detection time (300 ms): time enough to fail over, were it believed
    await new Promise((resolve) => setTimeout(resolve, 1500))
    intact(before)
    expect(failed(), 'no node declared failed').to.equal(failedBefore)
    expect(
      drops('dp-2', 'heartbeats', 'unauthenticated') +
        drops('dp-3', 'heartbeats', 'unauthenticated')
    ).to.be.at.least(2)
    expect(drops('dp-2', 'heartbeats') - d2 + drops('dp-3', 'heartbeats') - d3).to.equal(2)
  })

  it('should ignore forged ownership notices with epoch 999, to targets and DPs (point 4)', async () => {
    const before = takeovers()
    const notice: ClusterMessage = {
      type: 'ownership:notice',
      dvipa: DVIPA,
      owner: 'dp-3',
      epoch: 999
    }
    const forged: Spoofed[] = []
    for (const [sender, makers] of [
      ['dp-3', [linkForger(key, 'dp-3'), untagged('dp-3')]],
      [owner === 'dp-2' ? 'dp-1' : 'dp-2', [linkForger(key, 'dp-2'), untagged('dp-2')]]
    ] as const) {
      for (const make of makers) {
        for (const to of [...targets, owner].filter((n) => n !== sender)) {
          forged.push({
            from: link(sender),
            to: link(to),
            data: make({ ...notice, owner: sender })
          })
        }
      }
    }
    const counted = (): number =>
      [...targets, owner].reduce(
        (n, node) =>
          n +
          drops(node, 'link_frames', 'unauthenticated') +
          drops(node, 'link_frames', 'unknown-key') +
          drops(node, 'link_frames', 'unknown-sender'),
        0
      )
    const countedBefore = counted()
    await spoof(forged)
    await new Promise((resolve) => setTimeout(resolve, 1000))
    intact(before)
    expect(counted() - countedBefore, 'every forged notice counted').to.equal(forged.length)
    for (const t of targets) expect(drops(t, 'link_frames', 'unauthenticated')).to.be.at.least(1)
    for (const t of targets) expect(drops(t, 'link_frames', 'unknown-key')).to.be.at.least(1)
  })

  it('should not deliver a forged packet:inbound to a target, nor answer it (point 4)', async () => {
    const before = takeovers()
    const payload = new TextEncoder().encode('req 9 forged')
    const udp = buildUdp({
      source: INNER,
      destination: SERVICE,
      sourcePort: 41003,
      destinationPort: 7,
      payload
    })
    const packet = buildIpPacket({
      source: INNER,
      destination: SERVICE,
      protocol: 17,
      payload: udp
    })
    const message: ClusterMessage = {
      type: 'packet:inbound',
      dvipa: DVIPA,
      epoch: 999,
      flow: {
        protocol: 17,
        sourceAddress: INNER,
        sourcePort: 41003,
        destinationAddress: SERVICE,
        destinationPort: 7
      },
      packet
    }
    const unauthenticated = targets.map((t) => drops(t, 'link_frames', 'unauthenticated'))
    await spoof(
      targets.flatMap((t) => [
        { from: link(owner), to: link(t), data: linkForger(key, owner)(message) },
        { from: link(owner), to: link(t), data: untagged(owner)(message) }
      ])
    )
    await new Promise((resolve) => setTimeout(resolve, 1000))
    intact(before)
    expect(
      client!.answers.some((a) => a.text.includes('forged')),
      'no answer to it'
    ).to.equal(false)
    for (const [i, t] of targets.entries())
      expect(drops(t, 'link_frames', 'unauthenticated') - unauthenticated[i]!).to.equal(1)
  })

  let captured: Spoofed[] = []

  it('should refuse a replay of captured authenticated frames: no request runs twice (point 5)', async () => {
    const before = takeovers()
    captured = capture(2)
    // requests to the targets and their answers to the owner, and whatever else the link carried
    const frames = captured.filter((d) => d.to.port === 7400)
    expect(
      frames.filter((d) => targets.includes(nameOf(d.to))).length,
      'frames captured towards the targets'
    ).to.be.greaterThan(50)
    const receivers = [...new Set(frames.map((d) => nameOf(d.to)))]
    const replayDrops = (): number =>
      receivers.reduce(
        (n, t) =>
          n +
          drops(t, 'link_frames', 'replayed') +
          drops(t, 'link_frames', 'too-old') +
          drops(t, 'link_frames', 'stale-incarnation'),
        0
      )
    const dropsBefore = replayDrops()
    await spoof(frames)
    await new Promise((resolve) => setTimeout(resolve, 1000))
    intact(before)
    expect(replayDrops() - dropsBefore, 'every replayed frame dropped and counted').to.equal(
      frames.length
    )
    console.log(
      `      replayed ${frames.length} captured link frames (to ${receivers.join(', ')}): 0 delivered, ${replayDrops() - dropsBefore} dropped as replayed or too old`
    )
  })

  it('should fail over from a killed owner although its heartbeats are forged and replayed (point 4)', async () => {
    const victim = owner
    const heir = dps.find((d) => d !== victim)!
    const recorded = captured.filter((d) => d.from.address === addr[victim] && d.from.port === 7500)
    expect(recorded.length, 'heartbeats of the owner captured').to.be.greaterThan(5)
    const forge = heartbeatForger(key, victim)
    const datagrams: Spoofed[] = []
    // 4 s of impersonation, every 50 ms: a forged heartbeat and a replayed one to every backup
    for (let i = 0; i < 80; i++) {
      for (const d of dps.filter((x) => x !== victim)) {
        datagrams.push({ from: beat(victim), to: beat(d), data: forge() })
        const r = recorded[i % recorded.length]!
        if (nameOf(r.to) === d) datagrams.push({ from: beat(victim), to: beat(d), data: r.data })
      }
    }
    const completed = nodes.get(heir)!.lines.filter((l) => l.type === 'takeover:completed').length
    const heirDrops = drops(heir, 'heartbeats')
    nodes.get(victim)!.kill('SIGKILL')
    killed = victim
    const killedAt = Date.now()
    const impersonation = spoof(datagrams, 25)
    await waitFor(
      () =>
        nodes.get(heir)!.lines.filter((l) => l.type === 'takeover:completed').length > completed,
      20_000,
      `${heir} to take over from ${victim}`
    )
    const tookMs = Date.now() - killedAt
    await impersonation
    owner = heir
    await new Promise((resolve) => setTimeout(resolve, 1000))
    expect(tookMs, 'takeover despite the impersonation').to.be.below(4000)
    expect(cluster.charon!.ikeSas()).to.have.length(1)
    expect(traffic(500).recent).to.be.greaterThan(20)
    expect(drops(heir, 'heartbeats', 'unauthenticated')).to.be.at.least(40)
    expect(
      drops(heir, 'heartbeats', 'replayed') +
        drops(heir, 'heartbeats', 'too-old') +
        drops(heir, 'heartbeats', 'stale-incarnation')
    ).to.be.at.least(1)
    console.log(
      `      ${victim} killed and impersonated: ${heir} took over in ${tookMs} ms; ${drops(heir, 'heartbeats') - heirDrops} heartbeats dropped`
    )
  })

  it('should accept the killed node again when it restarts (a new incarnation)', async () => {
    expect(killed, 'the previous test killed a node').to.not.equal(undefined)
    const name = killed!
    const again = await cluster.restart(name)
    const heir = nodes.get(owner)!
    await waitFor(
      () => heir.lines.some((l) => l.type === 'node:recovered' && l.subject === name),
      10_000,
      `${owner} to hear ${name} again`
    )
    expect(again.has('ownership:claimed')).to.equal(false)
  })
})

/** The node whose address an endpoint is. */
function nameOf(e: Endpoint): string {
  return Object.entries(addr).find(([, a]) => a === e.address)?.[0] ?? '?'
}
