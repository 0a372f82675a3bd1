/**
 * The history checker against Redis with one replica and three Sentinels: four clients race for
 * two DVIPAs while the replica falls behind (paused, its link cut), the master is killed (kill -9) and the
 * Sentinels promote the replica. Run in the default mode (the master acknowledges what it has) and
 * in the replicated mode (`waitForReplicas: 1` with `min-replicas-to-write 1`). Prints one verdict
 * line per schedule; the default mode is expected to lose acknowledged claims in such a failover,
 * the replicated mode must stay linearizable.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { Redis } from 'ioredis'
import { runWorkload, type WorkloadVerdict } from '@vipsec/compliance/coupling-store'
import { RedisCouplingStore } from '../src/index.js'
import { RedisServer } from './redis-server.js'

const SCHEDULES = Number(process.env.VIPSEC_REDIS_HISTORY_SCHEDULES ?? 5)
const NAME = 'vipsec-history'
const sleep = async (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** A master, a replica and three Sentinels on loopback. */
class Deployment {
  private constructor(
    readonly master: RedisServer,
    readonly replica: RedisServer,
    readonly sentinels: RedisServer[],
    private readonly dirs: string[]
  ) {}

  static async start(modeArgs: string[]): Promise<Deployment> {
    // the replica syncs at once (not after the default 5 s of diskless sync delay)
    const serverArgs = [...modeArgs, '--repl-diskless-sync-delay', '0']
    const master = await RedisServer.start({ args: serverArgs })
    const replica = await RedisServer.start({
      args: [...serverArgs, '--replicaof', '127.0.0.1', String(master.port)]
    })
    const admin = new Redis({ host: '127.0.0.1', port: master.port })
    try {
      for (let i = 0; i < 100; i++) {
        if (/^slave0:.*state=online/m.test(await admin.info('replication'))) break
        await sleep(50)
      }
    } finally {
      admin.disconnect()
    }
    const sentinels: RedisServer[] = []
    const dirs: string[] = []
    for (let i = 0; i < 3; i++) {
      // Sentinel rewrites its configuration file: each lives in its own directory
      const dir = await mkdtemp(join(tmpdir(), 'vipsec-sentinel-'))
      dirs.push(dir)
      const config = join(dir, 'sentinel.conf')
      await writeFile(
        config,
        [
          `sentinel monitor ${NAME} 127.0.0.1 ${master.port} 2`,
          `sentinel down-after-milliseconds ${NAME} 800`,
          `sentinel failover-timeout ${NAME} 4000`,
          ''
        ].join('\n')
      )
      sentinels.push(await RedisServer.start({ dir, configFile: config, args: ['--sentinel'] }))
    }
    return new Deployment(master, replica, sentinels, dirs)
  }

  async remove(): Promise<void> {
    for (const s of this.sentinels) await s.remove().catch(() => undefined)
    for (const dir of this.dirs) await rm(dir, { recursive: true, force: true })
    await this.replica.remove().catch(() => undefined)
    await this.master.remove().catch(() => undefined)
  }
}

/** Sends SIGSTOP or SIGCONT to a server. */
function signal(server: RedisServer, sig: 'SIGSTOP' | 'SIGCONT'): void {
  if (server.pid !== undefined) process.kill(server.pid, sig)
}

for (const mode of ['default', 'replicated'] as const) {
  describe(`RedisCouplingStore with Sentinel under failover, ${mode} mode: history checker`, function () {
    this.timeout(600_000)
    const verdicts: Array<{ seed: number; verdict: WorkloadVerdict }> = []

    after(() => {
      for (const { seed, verdict } of verdicts) {
        console.log(
          `redis+sentinel (${mode} mode) schedule ${seed}: ${verdict.ok ? 'LINEARIZABLE' : 'NOT LINEARIZABLE'}` +
            ` (${verdict.calls} calls, ${verdict.unknown} unknown, ${verdict.claims} claims won,` +
            ` registers not linearizable ${verdict.registers.filter((r) => !r.linearizable).length},` +
            ` lost writes ${verdict.lostWrites.length})`
        )
      }
      if (mode === 'default') {
        const bad = verdicts.filter((v) => !v.verdict.ok).length
        console.log(
          `redis+sentinel (default mode): ${bad} of ${verdicts.length} failover schedules broke linearizability`
        )
      }
    })

    for (let seed = 1; seed <= SCHEDULES; seed++) {
      it(`should ${mode === 'replicated' ? 'stay linearizable' : 'be checked'} through failover schedule ${seed}`, async () => {
        const deployment = await Deployment.start(
          mode === 'replicated'
            ? ['--min-replicas-to-write', '1', '--min-replicas-max-lag', '2']
            : []
        )
        const stores = Array.from(
          { length: 4 },
          () =>
            new RedisCouplingStore(
              {},
              {
                sentinels: deployment.sentinels.map((s) => ({ host: '127.0.0.1', port: s.port })),
                name: NAME,
                keyPrefix: `history-${seed}:`,
                operationTimeoutMs: 3000,
                ...(mode === 'replicated' ? { waitForReplicas: 1, waitTimeoutMs: 500 } : {})
              }
            )
        )
        try {
          await Promise.all(stores.map(async (s) => s.start()))
          const work = runWorkload(stores, { durationMs: 9000 })
          // the replica falls behind, the master dies, the Sentinels promote the replica
          await sleep(1000 + seed * 100)
          // (a stopped process still receives into its socket buffer: cut the link as well)
          signal(deployment.replica, 'SIGSTOP')
          const admin = new Redis({ host: '127.0.0.1', port: deployment.master.port })
          await admin.call('CLIENT', 'KILL', 'TYPE', 'replica').catch(() => undefined)
          admin.disconnect()
          await sleep(700)
          await deployment.master.kill()
          signal(deployment.replica, 'SIGCONT')
          await sleep(3000)
          // the old master comes back on its own data; the Sentinels make it a replica
          await deployment.master.launch()
          const verdict = await work
          verdicts.push({ seed, verdict })
          expect(verdict.claims).to.be.greaterThan(0)
          if (mode === 'replicated') {
            expect(verdict.lostWrites).to.deep.equal([])
            expect(verdict.registers.every((r) => r.linearizable)).to.equal(true)
          }
        } finally {
          signal(deployment.replica, 'SIGCONT')
          await Promise.all(stores.map(async (s) => s.stop()))
          await deployment.remove()
        }
      })
    }

    if (mode === 'default') {
      it('should have found a failover that lost acknowledged calls', () => {
        // what the checker is for: this deployment acknowledges what a failover can lose
        expect(verdicts.some((v) => !v.verdict.ok)).to.equal(true)
      })
    }
  })
}
