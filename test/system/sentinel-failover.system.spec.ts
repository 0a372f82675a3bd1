// Fault 7 of issue 10, second half, with real processes: a Sentinel failover to a replica that
// missed the latest ownership claim. `vipsec node` processes in network namespaces (three DPs, a
// target), strongSwan charon as the peer with a client probing through the tunnel every 10 ms,
// a Redis master (port 6379) and a Sentinel (26379) in the store's namespace, and the master's
// replica (6381) in a namespace of its own (the unused second target's); the cluster file names
// the Sentinel, not the master. Before the owner is killed, the master's replication stream to
// the replica is cut (a blackhole rule), so the backup's claim reaches the master only; then the
// master is killed and the Sentinel promotes the replica: the stale replica becomes the store.
// (A replica stopped with SIGSTOP would not do: the kernel keeps what the master sent, and the
// replica reads it when it resumes.)
//   - default mode: the claim was acknowledged by the master alone and the failover lost it. The
//     nodes see the store below the highest epoch seen: an alarm (`ownership:epoch-regressed`),
//     and the cluster recovers above that epoch; each epoch has one owner all along.
//   - replicated mode (`wait_for_replicas: 1`, the master at `min-replicas-to-write 1`): while the
//     replica is stopped, no claim is acknowledged and nobody serves; after the failover (and the
//     old master back as a replica) the cluster serves again, each epoch with one owner.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ChildProcess } from 'node:child_process'
import { expect } from 'chai'
import { ADDR, ClusterFixture, DVIPA, sh, waitFor } from './helpers/cluster-fixture.js'
import { Faults, type Cut } from './helpers/faults.js'

const sleep = async (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
/** A Redis server: its namespace, address and port. */
interface Server {
  ns: string
  host: string
  port: number
}
const MASTER: Server = { ns: 'store', host: ADDR.store!, port: 6379 }
const REPLICA: Server = { ns: 'target-2', host: ADDR['target-2']!, port: 6381 }
const SENTINEL: Server = { ns: 'store', host: ADDR.store!, port: 26379 }
const GROUP = 'vipsec'
const at = (s: Server): string => `${s.host}:${s.port}`

/** The epoch a log line names, if it names one. */
function epochOf(l: Record<string, unknown>): number | undefined {
  const e =
    (l as { epoch?: unknown }).epoch ?? (l as { report?: { epoch?: unknown } }).report?.epoch
  return typeof e === 'number' ? e : undefined
}

/** The cluster of the other system tests with a replica and a Sentinel beside its Redis. */
class SentinelCluster extends ClusterFixture {
  replica?: ChildProcess
  readonly faults = new Faults(this)
  constructor(
    tag: string,
    readonly replicated: boolean
  ) {
    super({
      tag,
      targets: 1,
      clusterExtra: 'detector: { type: heartbeat, interval: 100ms, multiplier: 5 }\n'
    })
  }

  /** The cluster file of the fixture, with the store reached through the Sentinel. */
  override writeClusterFile(clusterExtra?: string): void {
    super.writeClusterFile(clusterExtra)
    const file = join(this.dir, 'cluster.yaml')
    const mode = this.replicated ? ', wait_for_replicas: 1, wait_timeout: 300ms' : ''
    const store = `store: { type: redis, sentinels: [${at(SENTINEL)}], name: ${GROUP}${mode}, prefix: "${this.prefix}" }`
    writeFileSync(file, readFileSync(file, 'utf8').replace(/^store: .*$/m, store))
  }

  /** The master (the fixture's Redis), then the replica and the Sentinel; waits for both. */
  override async startRedis(aof = true): Promise<void> {
    await super.startRedis(aof)
    if (this.replicated) this.cli(MASTER, 'config', 'set', 'min-replicas-to-write', '1')
    this.replica = this.startServer(REPLICA, MASTER)
    await waitFor(
      () => this.cli(MASTER, 'info', 'replication').includes('connected_slaves:1'),
      15_000,
      'the replica to connect'
    )
    const dir = join(this.dir, 'sentinel')
    mkdirSync(dir, { recursive: true })
    const conf = join(dir, 'sentinel.conf')
    writeFileSync(
      conf,
      [
        `bind ${SENTINEL.host}`,
        `port ${SENTINEL.port}`,
        `sentinel monitor ${GROUP} ${MASTER.host} ${MASTER.port} 1`,
        `sentinel auth-pass ${GROUP} "${this.redisPassword}"`,
        `sentinel down-after-milliseconds ${GROUP} 1000`,
        `sentinel failover-timeout ${GROUP} 5000`,
        ''
      ].join('\n')
    )
    this.spawnIn('store', 'redis-server', [conf, '--sentinel'])
    await waitFor(
      // a Sentinel finds replicas in the master's INFO, which it reads every 10 s
      () => this.sentinelMaster() === at(MASTER) && this.sentinelReplicas() === 1,
      30_000,
      'the Sentinel to see the master and its replica'
    )
  }

  /** Starts Redis as `server`, a replica of `of` (with its append-only file, in a folder of its own). */
  startServer(server: Server, of: Server): ChildProcess {
    const dir = join(this.dir, `redis-${server.ns}-${server.port}`)
    mkdirSync(dir, { recursive: true })
    return this.spawnIn(server.ns, 'redis-server', [
      ...['--bind', server.host, '--port', String(server.port), '--dir', dir],
      ...['--requirepass', this.redisPassword, '--masterauth', this.redisPassword],
      ...['--appendonly', 'yes', '--save', '', '--replicaof', of.host, String(of.port)]
    ])
  }

  /** `redis-cli` against `server` ('' when it does not answer). */
  cli(server: Server, ...args: string[]): string {
    try {
      return sh('ip', [
        ...['netns', 'exec', this.ns(server.ns), 'redis-cli'],
        ...['-h', server.host, '-p', String(server.port)],
        ...(server === SENTINEL ? [] : ['-a', this.redisPassword, '--no-auth-warning']),
        ...args
      ])
    } catch {
      return ''
    }
  }

  /** The master, `host:port`, as the Sentinel names it. */
  sentinelMaster(): string | undefined {
    const out = this.cli(SENTINEL, 'sentinel', 'get-master-addr-by-name', GROUP).split('\n')
    return out[1] === undefined || out[1] === '' ? undefined : `${out[0]}:${out[1]}`
  }

  /** How many replicas the Sentinel knows of. */
  sentinelReplicas(): number {
    return this.cli(SENTINEL, 'sentinel', 'replicas', GROUP)
      .split('\n')
      .filter((l) => l === 'name').length
  }

  /** The ownership record on `server`. */
  ownershipAt(server: Server): { owner: string; epoch: number } | undefined {
    const [owner, epoch] = this.cli(
      server,
      'hmget',
      `${this.prefix}{${DVIPA}}:owner`,
      'owner',
      'epoch'
    ).split('\n')
    if (epoch === undefined || epoch === '') return undefined
    return { owner: owner ?? '', epoch: Number(epoch) }
  }

  /** Whether a DP's namespace holds the DVIPA on any interface. */
  override holds(dp: string): boolean {
    return sh('ip', ['-n', this.ns(dp), '-o', 'addr', 'show']).includes(`${DVIPA}/`)
  }

  /** The running DPs holding the DVIPA. */
  override holders(): string[] {
    return this.dps.filter((d) => this.node(d).running && this.holds(d))
  }

  /** Each epoch and the DPs that claimed it or took over under it, from every process's log. */
  owners(): Map<number, Set<string>> {
    const owners = new Map<number, Set<string>>()
    for (const p of this.history) {
      for (const l of p.lines) {
        const won =
          l.type === 'ownership:claimed' ||
          l.type === 'takeover:completed' ||
          (l.type === 'ownership:changed' && l.to === 'owner')
        const e = epochOf(l)
        if (!won || e === undefined) continue
        owners.set(e, new Set([...(owners.get(e) ?? []), p.name]))
      }
    }
    return owners
  }

  /** Asserts one owner per epoch, and that no node's epoch went down. */
  expectEpochs(): void {
    for (const [epoch, set] of this.owners())
      expect([...set], `the owners of epoch ${epoch}`).to.have.length(1)
    for (const p of this.history) {
      let last = 0
      for (const l of p.lines) {
        const e = epochOf(l)
        if (e === undefined || l.type !== 'ownership:changed') continue
        expect(e, `${p.name}: epoch ${e} after ${last}`).to.be.at.least(last)
        last = e
      }
    }
  }

  /** Lines of `type` logged by any DP after `at`. */
  linesAfter(type: string, at: number): { node: string; line: Record<string, unknown> }[] {
    return this.history.flatMap((p) =>
      p.lines
        .filter((l) => l.type === type && Date.parse(String(l.time)) >= at)
        .map((line) => ({ node: p.name, line }))
    )
  }
}

/**
 * Runs the fault against `cluster`: the replica stopped, the owner killed, (`during` checks what
 * happened meanwhile), the master killed and the replica resumed until the Sentinel promoted it.
 * Returns when the replica is the master, with the times of the kill and of the promotion.
 */
async function failoverToStaleReplica(
  cluster: SentinelCluster,
  during: (killedAt: number) => Promise<void>
): Promise<{
  killedAt: number
  promotedAt: number
  before: { owner: string; epoch: number }
  /** What the promoted replica held when it became the master: its ownership and key count. */
  promoted: string
}> {
  const before = cluster.ownershipAt(MASTER)!
  // the replica has what the master has, then misses everything after
  await waitFor(
    () => cluster.ownershipAt(REPLICA)?.epoch === before.epoch,
    10_000,
    'the replica to hold the current claim'
  )
  // what the master sends the replica is dropped from now on
  const cut: Cut = {
    from: MASTER.ns,
    to: REPLICA.host,
    protocol: 'tcp',
    port: { sport: MASTER.port }
  }
  cluster.faults.cut(cut)
  const killedAt = Date.now()
  cluster.node(before.owner).kill('SIGKILL')
  try {
    await during(killedAt)
  } finally {
    await cluster.killRedis()
  }
  await waitFor(() => cluster.sentinelMaster() === at(REPLICA), 30_000, 'the Sentinel to promote')
  const promotedAt = Date.now()
  const held = cluster.ownershipAt(REPLICA)
  const promoted = `epoch ${held?.epoch ?? 'none'} (${held?.owner ?? 'no owner'}), ${cluster.cli(REPLICA, 'dbsize')} keys`
  cluster.faults.heal(cut)
  return { killedAt, promotedAt, before, promoted }
}

/** Waits until the service answers again and charon holds one IKE SA. */
async function served(cluster: SentinelCluster, what: string, ms = 40_000): Promise<void> {
  try {
    await waitFor(
      () => cluster.client!.since(Date.now() - 300) >= 10 && cluster.charon!.ikeSas().length === 1,
      ms,
      what
    )
  } catch (err) {
    throw cluster.explained(err, 16)
  }
}

/**
 * A Sentinel cluster for the enclosing `describe`: up, the peer connected and a client served
 * before its tests; torn down after them.
 */
function servingCluster(tag: string, replicated: boolean): SentinelCluster {
  const cluster = new SentinelCluster(tag, replicated)
  before(async () => {
    await cluster.up()
    cluster.initiate()
    cluster.startClient(2, 10)
    await served(cluster, 'the first answers')
  })
  after(async function () {
    this.timeout(60_000)
    await cluster.down()
  })
  return cluster
}

describe('a Sentinel failover to a replica that missed the latest claim, with real processes', function () {
  this.timeout(240_000)
  const base = `st${(process.pid % 10000).toString(36)}`

  describe('default mode (the master acknowledges alone)', function () {
    const cluster = servingCluster(`${base}d`, false)

    it('should raise the alarm and recover above the highest epoch seen, one owner per epoch', async () => {
      let acked = { owner: '', epoch: 0 }
      const { promotedAt, before } = await failoverToStaleReplica(cluster, async (killedAt) => {
        // the heir's claim is acknowledged by the master alone, and it serves
        const heir = await waitFor(
          () =>
            cluster
              .linesAfter('takeover:completed', killedAt)
              .find((l) => cluster.dps.includes(l.node))?.node,
          30_000,
          'a backup to take over'
        )
        acked = cluster.ownershipAt(MASTER)!
        expect(acked.owner).to.equal(heir)
        await served(cluster, 'the heir to serve')
      })
      expect(acked.epoch, 'the acknowledged claim').to.be.above(before.epoch)
      // the promoted replica never got it
      const promoted = cluster.ownershipAt(REPLICA)
      expect(promoted?.epoch ?? 0, 'the new master’s epoch').to.be.below(acked.epoch)
      // the nodes notice the store went back and recover above what they had seen
      await waitFor(
        () => cluster.linesAfter('ownership:epoch-regressed', promotedAt - 1000).length > 0,
        30_000,
        'the alarm'
      ).catch((err: Error) => {
        throw cluster.explained(err, 16)
      })
      const recovered = await waitFor(
        () => {
          const o = cluster.ownershipAt(REPLICA)
          return o !== undefined && o.epoch > acked.epoch && o
        },
        30_000,
        'the cluster to claim above the highest epoch seen'
      )
      await served(cluster, 'the service after the failover')
      const alarm = cluster.linesAfter('ownership:epoch-regressed', promotedAt - 1000)[0]!
      console.log(
        `      ${acked.owner} owned epoch ${acked.epoch} (master only); the promoted replica held ${promoted?.epoch}; ` +
          `alarm from ${alarm.node} (store ${String(alarm.line.storeEpoch)}, seen ${String(alarm.line.highestSeen)}); ` +
          `now ${recovered.owner} at ${recovered.epoch}`
      )
      expect(cluster.dps).to.include(recovered.owner)
      expect(cluster.holders()).to.deep.equal([recovered.owner])
      cluster.expectEpochs()
    })
  })

  describe('replicated mode (wait_for_replicas: 1, min-replicas-to-write 1)', function () {
    const cluster = servingCluster(`${base}r`, true)

    it('should acknowledge no claim the replica lacks, and serve again after the failover', async () => {
      const { killedAt, promotedAt, before, promoted } = await failoverToStaleReplica(
        cluster,
        async () => {
          // long enough for the backups to detect the kill and try to claim, many times over
          await sleep(6000)
        }
      )
      const acked = cluster
        .linesAfter('ownership:claimed', killedAt)
        .filter((l) => Date.parse(String(l.line.time)) < promotedAt)
      expect(acked, 'claims acknowledged while the replica was cut off').to.deep.equal([])
      expect(
        cluster.linesAfter('takeover:started', killedAt).length,
        'takeovers tried meanwhile'
      ).to.be.above(0)
      // the new master has no replica: nothing is acknowledged until the old master is back as
      // one (as its init system would restart it; the Sentinel would also reconfigure it)
      cluster.cli(REPLICA, 'config', 'set', 'min-replicas-to-write', '1')
      cluster.startServer(MASTER, REPLICA)
      const now = await waitFor(
        () => {
          const o = cluster.ownershipAt(REPLICA)
          return o !== undefined && o.epoch > before.epoch && o.owner !== before.owner && o
        },
        40_000,
        'a backup to claim on the promoted replica'
      ).catch((err: Error) => {
        throw cluster.explained(err, 16)
      })
      await served(
        cluster,
        `the service after the failover (the promoted replica held ${promoted})`
      )
      console.log(
        `      ${before.owner} owned epoch ${before.epoch}; nothing acknowledged while the replica was cut off; ` +
          `the promoted replica held ${promoted}; after the failover ${now.owner} owns ${now.epoch}; outage ${cluster.client!.longestGap(killedAt)} ms`
      )
      expect(cluster.holders()).to.deep.equal([now.owner])
      cluster.expectEpochs()
    })
  })
})
