/**
 * Starts stores one after another, as a child process in a network namespace of its own (for the
 * partition test): `node --import tsx --conditions=vipsec-source start-probe.ts CONFIG-JSON`.
 * Each store is started on the members in the order given, claims a DVIPA of its own and waits
 * for that claim on its change stream; a step that has not ended within the store's own
 * `operationTimeoutMs` (the bound `start()` documents) is given up. Prints one JSON line on
 * stdout: per store, whether it started and whether its change stream delivered the claim.
 *
 * With `afterCutMs`, the last store is kept: the probe prints `ready` on stderr, waits for a line
 * on stdin (the parent cuts the watch's member off meanwhile), claims one more DVIPA and waits at
 * most `afterCutMs` for that claim on the change stream; the last line of the output says whether
 * it came (`{"afterCut": true}`).
 *
 * @module
 */
import { createInterface } from 'node:readline'
import { firstValueFrom, filter } from 'rxjs'
import { EtcdCouplingStore } from '../src/index.js'

/** What the parent passes. */
export interface StartProbeConfig {
  /** Member URLs, in the order the store is given them. */
  hosts: string[]
  /** Key prefix of the run. */
  keyPrefix: string
  /** How many stores to start, one after another. */
  stores: number
  /** The stores' `operationTimeoutMs`. */
  operationTimeoutMs: number
  /** How long to wait for a claim made after the cut, in ms; default: no such step. */
  afterCutMs?: number
}

/** What one store did. */
export interface StartProbeResult {
  started: boolean
  sawClaim: boolean
}

/** Resolves with what `work` resolved to, or `undefined` once `ms` passed without it. */
async function within<T>(work: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<undefined>(
    (resolve) => (timer = setTimeout(() => resolve(undefined), ms))
  )
  try {
    return await Promise.race([work, late])
  } finally {
    clearTimeout(timer)
  }
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as StartProbeConfig
  const results: StartProbeResult[] = []
  for (let i = 0; i < config.stores; i++) {
    const store = new EtcdCouplingStore(
      {},
      {
        hosts: config.hosts,
        keyPrefix: config.keyPrefix,
        operationTimeoutMs: config.operationTimeoutMs
      }
    )
    const started = await within(
      store.start().then(() => true),
      config.operationTimeoutMs
    )
    let sawClaim = false
    if (started === true) {
      const dvipa = `10.9.1.${i + 1}`
      const seen = firstValueFrom(
        store.events$.pipe(
          filter((e) => e.type === 'ownership:claimed' && e.ownership.dvipa === dvipa)
        )
      ).then(() => true)
      seen.catch(() => undefined)
      await store.claimOwnership(dvipa, { owner: `probe-${i}`, ranks: [], expectedEpoch: 0 })
      sawClaim = (await within(seen, config.operationTimeoutMs)) === true
    }
    results.push({ started: started === true, sawClaim })
    if (config.afterCutMs !== undefined && i === config.stores - 1) {
      process.stderr.write('ready\n')
      const lines = createInterface({ input: process.stdin })
      await new Promise<void>((resolve) => lines.once('line', () => resolve()))
      lines.close()
      const dvipa = '10.9.2.1'
      const seen = firstValueFrom(
        store.events$.pipe(
          filter((e) => e.type === 'ownership:claimed' && e.ownership.dvipa === dvipa)
        )
      ).then(() => true)
      seen.catch(() => undefined)
      await store.claimOwnership(dvipa, { owner: 'probe-cut', ranks: [], expectedEpoch: 0 })
      const afterCut = (await within(seen, config.afterCutMs)) === true
      process.stdout.write(JSON.stringify(results) + '\n' + JSON.stringify({ afterCut }) + '\n')
      setTimeout(() => process.exit(0), 200).unref()
      return
    }
    void store.stop().catch(() => undefined)
  }
  process.stdout.write(JSON.stringify(results) + '\n')
  setTimeout(() => process.exit(0), 200).unref()
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
