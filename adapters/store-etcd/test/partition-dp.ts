/**
 * One racing store client ("DP") of the partition test, run as a child process in a namespace of
 * its own: `node --import tsx --conditions=vipsec-source partition-dp.ts CONFIG-JSON`. It starts
 * its store, prints `ready` on stderr, waits for a line on stdin, then runs one client of the
 * history workload (`runWorkloadClient` of `@vipsec/compliance`: read the ownership, claim the
 * next epoch, take, put, settle, keep writing under a fence that may have gone stale) for
 * `durationMs` and prints what it recorded as one JSON line on stdout. Every time is one of
 * {@link sharedNow}, so that the histories of several processes can be merged and compared with
 * the parent's times; the times at which it said `ready` and read the go line let the parent
 * check that.
 *
 * With `staleFrom`, ownership reads are serializable reads from that one member: a deliberately
 * broken store, for showing that the checker notices.
 *
 * @module
 */
import { createInterface } from 'node:readline'
import { Etcd3 } from 'etcd3'
import {
  decodeOwnership,
  NotFoundError,
  type CouplingStore,
  type Dvipa,
  type Ownership
} from '@vipsec/interface'
import { HistoryRecorder, runWorkloadClient } from '@vipsec/compliance/coupling-store'
import { EtcdCouplingStore } from '../src/index.js'
import { etcdKeys } from '../src/keys.js'
import { sharedNow } from './shared-clock.js'

/** What the parent passes. */
export interface DpConfig {
  /** The client's name, used as the owner of its claims. */
  client: string
  /** Member URLs. */
  hosts: string[]
  /** Key prefix of the run. */
  keyPrefix: string
  /** DVIPAs contended for. */
  dvipas: string[]
  /** How long to run after the go line, in ms. */
  durationMs: number
  /** Read the ownership serializably from this member (broken on purpose). */
  staleFrom?: string
}

/** What the child prints: the recorder's lists, `Infinity` as null. */
export interface DpResult {
  /** The recorder's entries. */
  entries: HistoryRecorder['entries']
  /** Acknowledged puts. */
  puts: HistoryRecorder['puts']
  /** Successful takes. */
  takes: HistoryRecorder['takes']
  /** When the client wrote `ready` ({@link sharedNow}). */
  readyAt: number
  /** When it read the go line. */
  goAt: number
}

/** A store whose ownership reads are serializable reads from one member (may be stale). */
function staleReads(store: CouplingStore, url: string, keyPrefix: string): CouplingStore {
  const client = new Etcd3({ hosts: [url], dialTimeout: 1000 })
  const keys = etcdKeys(keyPrefix)
  const getOwnership = async (dvipa: Dvipa): Promise<Ownership> => {
    const res = await client.kv.range(
      { key: Buffer.from(keys.owner(dvipa)), serializable: true },
      { deadline: new Date(Date.now() + 1000) }
    )
    const kv = res.kvs[0]
    if (kv === undefined) throw new NotFoundError(`${dvipa} has never been claimed`)
    const value = JSON.parse(kv.value.toString('utf8')) as { record: string }
    return decodeOwnership(Buffer.from(value.record, 'base64'))
  }
  return new Proxy(store, {
    get: (target, prop, receiver) =>
      prop === 'getOwnership' ? getOwnership : Reflect.get(target, prop, receiver)
  })
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as DpConfig
  const inner = new EtcdCouplingStore(
    {},
    {
      hosts: config.hosts,
      keyPrefix: config.keyPrefix,
      operationTimeoutMs: 2500,
      attemptTimeoutMs: 800
    }
  )
  await inner.start()
  const store =
    config.staleFrom === undefined ? inner : staleReads(inner, config.staleFrom, config.keyPrefix)
  const history = new HistoryRecorder({ now: sharedNow })
  const readyAt = sharedNow()
  process.stderr.write('ready\n')
  const lines = createInterface({ input: process.stdin })
  await new Promise<void>((resolve) => lines.once('line', () => resolve()))
  const goAt = sharedNow()
  lines.close()

  const until = goAt + config.durationMs
  await runWorkloadClient(config.client, store, history, {
    dvipas: config.dvipas,
    running: () => sharedNow() < until
  })
  const result: DpResult = {
    entries: history.entries,
    puts: history.puts,
    takes: history.takes,
    readyAt,
    goAt
  }
  process.stdout.write(
    JSON.stringify(result, (_k, v: unknown) => (v === Infinity ? null : v)) + '\n'
  )
  // do not wait for the store to close cleanly across a partition
  void inner.stop().catch(() => undefined)
  setTimeout(() => process.exit(0), 200).unref()
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
