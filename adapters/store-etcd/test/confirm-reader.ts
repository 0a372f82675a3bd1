/**
 * An owner's confirmation loop, alone, as a child process in a namespace of its own (for the
 * partition test): `node --import tsx --conditions=vipsec-source confirm-reader.ts CONFIG-JSON`.
 * It starts its store on the members in the order given, claims a DVIPA, reads the ownership a
 * few times, prints `ready` on stderr, waits for a line on stdin, then reads the ownership every
 * `everyMs` (as an owner confirms its epoch) for `durationMs`, one read at a time, and prints how
 * long each read took (ms, `null` for a read that failed) as one JSON line on stdout.
 *
 * @module
 */
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { EtcdCouplingStore } from '../src/index.js'

/** What the parent passes. */
export interface ConfirmReaderConfig {
  /** Member URLs, in the order the store is given them. */
  hosts: string[]
  /** Key prefix of the run. */
  keyPrefix: string
  /** How long one attempt may take, in ms. */
  attemptTimeoutMs: number
  /** Time between the end of one read and the next, in ms. */
  everyMs: number
  /** How long to read after the go line, in ms. */
  durationMs: number
}

const sleep = async (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as ConfirmReaderConfig
  const store = new EtcdCouplingStore(
    {},
    {
      hosts: config.hosts,
      keyPrefix: config.keyPrefix,
      attemptTimeoutMs: config.attemptTimeoutMs
    }
  )
  await store.start()
  const dvipa = '10.9.0.9'
  await store.claimOwnership(dvipa, { owner: 'reader', ranks: [], expectedEpoch: 0 })
  for (let i = 0; i < 5; i++) await store.getOwnership(dvipa)
  process.stderr.write('ready\n')
  const lines = createInterface({ input: process.stdin })
  await new Promise<void>((resolve) => lines.once('line', () => resolve()))
  lines.close()
  const took: (number | null)[] = []
  const until = performance.now() + config.durationMs
  while (performance.now() < until) {
    const sentAt = performance.now()
    try {
      await store.getOwnership(dvipa)
      took.push(Math.round(performance.now() - sentAt))
    } catch {
      took.push(null)
    }
    await sleep(config.everyMs)
  }
  process.stdout.write(JSON.stringify(took) + '\n')
  void store.stop().catch(() => undefined)
  setTimeout(() => process.exit(0), 200).unref()
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
