/**
 * npm run bench:store — claim, put and take on the coupling stores against real servers that the
 * bench starts on free loopback ports and stops afterwards: Redis (append-only file on, fsync every
 * second), one etcd member, and a three-member etcd cluster (every write is fsynced by a majority
 * before it is acknowledged). Each operation runs serially (one call at a time: its p50 latency)
 * and concurrently (64 calls in flight); beside each, the store's plainest round trip in the same
 * mode (PING on a raw ioredis connection; a linearizable read of one key on a raw etcd3 client)
 * gives the ceiling of this machine, and the ratio says what the store reaches of it. Every figure
 * is the median of the rounds. Prints a table and one JSON line.
 *
 * Options: --ops N (per row and round, default 1000), --rounds R (default 3),
 * --stores redis,etcd,etcd3 (default all three).
 */
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { Etcd3 } from 'etcd3'
import { Redis } from 'ioredis'
import type { CouplingStore } from '@vipsec/interface'
import { samplePhase1, sampleRecords } from '@vipsec/compliance/coupling-store'
import { RedisCouplingStore } from '@vipsec/store-redis'
import { RedisServer } from '@vipsec/store-redis/test/redis-server'
import { EtcdCouplingStore } from '../src/index.js'
import { EtcdCluster } from '../test/etcd-cluster.js'

const { values } = parseArgs({
  options: { ops: { type: 'string' }, rounds: { type: 'string' }, stores: { type: 'string' } }
})
const OPS = Number(values.ops ?? 1000)
const ROUNDS = Number(values.rounds ?? 3)
const STORES = (values.stores ?? 'redis,etcd,etcd3').split(',')
const CONCURRENCY = 64

interface Row {
  store: string
  op: string
  mode: 'serial' | 'concurrent'
  opsPerSecond: number
  p50Ms: number | null
  pingOpsPerSecond: number
  ofPing: number
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

/** Runs `op(0..n-1)`, `width` at a time; the rate is of the wall time, p50 of each call. */
async function run(
  n: number,
  width: number,
  op: (i: number) => Promise<unknown>
): Promise<{ opsPerSecond: number; p50Ms: number }> {
  const times: number[] = []
  let next = 0
  const started = performance.now()
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) {
        const i = next++
        const t = performance.now()
        await op(i)
        times.push(performance.now() - t)
      }
    })
  )
  return { opsPerSecond: (n / (performance.now() - started)) * 1000, p50Ms: median(times) }
}

const dvipa = (i: number): string => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`

/** Per operation: untimed preparation, then the timed call for each i. */
type Make = (store: CouplingStore) => Promise<(i: number) => Promise<unknown>>
const ops: Record<string, Make> = {
  // claims of distinct DVIPAs (compare-and-set of epoch 0)
  claim: async (store) => async (i) =>
    store.claimOwnership(dvipa(i), { owner: 'dp-1', ranks: ['dp-2'], expectedEpoch: 0 }),
  // one phase 1 record per call under one DVIPA
  put: async (store) => {
    const { epoch } = await store.claimOwnership('10.0.0.1', {
      owner: 'dp-1',
      ranks: [],
      expectedEpoch: 0
    })
    return async (i) =>
      store.putRecords('10.0.0.1', [samplePhase1('10.0.0.1', i)], { owner: 'dp-1', epoch })
  },
  // a new owner takes 5 records (one of each kind) from each of OPS DVIPAs
  'take (5 records)': async (store) => {
    const epochs: number[] = []
    await run(OPS, CONCURRENCY, async (i) => {
      const d = dvipa(i)
      const { epoch } = await store.claimOwnership(d, {
        owner: 'dp-1',
        ranks: [],
        expectedEpoch: 0
      })
      await store.putRecords(d, sampleRecords(d, i), { owner: 'dp-1', epoch })
      epochs[i] = (
        await store.claimOwnership(d, { owner: 'dp-2', ranks: [], expectedEpoch: epoch })
      ).epoch
    })
    return async (i) => store.takeRecords(dvipa(i), { owner: 'dp-2', epoch: epochs[i]! })
  }
}

/** One store under test: how to make a fresh cluster's store, the raw round trip, clean-up. */
interface Target {
  name: string
  fresh: (cluster: number) => Promise<CouplingStore>
  ping: () => Promise<unknown>
  close: () => Promise<void>
}

async function redisTarget(): Promise<Target> {
  const server = await RedisServer.start()
  const raw = new Redis({ host: '127.0.0.1', port: server.port })
  return {
    name: 'redis',
    fresh: async (cluster) => {
      const store = new RedisCouplingStore(
        {},
        { port: server.port, keyPrefix: `bench-${cluster}:` }
      )
      await store.start()
      return store
    },
    ping: async () => raw.ping(),
    close: async () => {
      raw.disconnect()
      await server.remove()
    }
  }
}

async function etcdTarget(size: number): Promise<Target> {
  const cluster = await EtcdCluster.start({ size })
  const raw = new Etcd3({ hosts: cluster.hosts })
  return {
    name: size === 1 ? 'etcd (1 member)' : `etcd (${size} members)`,
    fresh: async (n) => {
      const store = new EtcdCouplingStore({}, { hosts: cluster.hosts, keyPrefix: `bench-${n}/` })
      await store.start()
      return store
    },
    ping: async () => raw.get('bench-ping'),
    close: async () => {
      raw.close()
      await cluster.remove()
    }
  }
}

const rows: Row[] = []
let cluster = 0
for (const which of STORES) {
  const target =
    which === 'redis' ? await redisTarget() : await etcdTarget(which === 'etcd3' ? 3 : 1)
  try {
    for (const [name, make] of Object.entries(ops)) {
      for (const mode of ['serial', 'concurrent'] as const) {
        const width = mode === 'serial' ? 1 : CONCURRENCY
        const rates: number[] = []
        const p50s: number[] = []
        const pings: number[] = []
        for (let r = 0; r < ROUNDS; r++) {
          const store = await target.fresh(++cluster)
          const result = await run(OPS, width, await make(store))
          await store.stop()
          rates.push(result.opsPerSecond)
          p50s.push(result.p50Ms)
          pings.push((await run(OPS, width, target.ping)).opsPerSecond)
        }
        rows.push({
          store: target.name,
          op: name,
          mode,
          opsPerSecond: Math.round(median(rates)),
          p50Ms: mode === 'serial' ? Number(median(p50s).toFixed(3)) : null,
          pingOpsPerSecond: Math.round(median(pings)),
          ofPing: Number(median(rates.map((rate, i) => rate / pings[i]!)).toFixed(2))
        })
      }
    }
  } finally {
    await target.close()
  }
}

const out = (line: string): void => console.log(line)
out(
  `Coupling stores: ${OPS} ops per row, median of ${ROUNDS} rounds, ${CONCURRENCY} in flight when concurrent`
)
out('')
out('| store | op | mode | ops/s | p50 ms | raw round trip ops/s | of raw |')
out('|---|---|---|---|---|---|---|')
for (const r of rows) {
  out(
    `| ${r.store} | ${r.op} | ${r.mode} | ${r.opsPerSecond} | ${r.p50Ms ?? '-'} | ${r.pingOpsPerSecond} | ${r.ofPing} |`
  )
}
out('')
out(JSON.stringify({ bench: 'store', ops: OPS, rounds: ROUNDS, concurrency: CONCURRENCY, rows }))
