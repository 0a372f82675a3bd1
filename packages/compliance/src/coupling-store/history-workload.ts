/**
 * A racing workload for the history checker: several clients, each with its own store, contend
 * for a few DVIPAs the way distribution processors do in takeovers (read the ownership, claim the
 * next epoch, take and settle, write records under the new fence, keep writing with a fence that
 * may have gone stale), recording every call.
 *
 * @module
 */
import type { CouplingStore, Fence } from '@vipsec/interface'
import { samplePhase1 } from './fixtures.js'
import { checkHistory, findLostWrites, HistoryRecorder, type RegisterVerdict } from './history.js'

/** Options of {@link runWorkload}. */
export interface WorkloadOptions {
  /** The DVIPAs contended for. Default: two. */
  dvipas?: string[]
  /** How long the clients run, in ms. */
  durationMs: number
  /** Stops the clients early. */
  signal?: AbortSignal
}

/** What {@link runWorkload} found. */
export interface WorkloadVerdict {
  /** One verdict per DVIPA. */
  registers: RegisterVerdict[]
  /** Acknowledged record writes that a later take did not return. */
  lostWrites: string[]
  /** How many calls were recorded, and how many of them had an unknown outcome. */
  calls: number
  /** Calls whose outcome is unknown (timeouts, lost connections). */
  unknown: number
  /** Successful claims. */
  claims: number
  /** Whether every register is linearizable and no acknowledged write was lost. */
  ok: boolean
  /** The recorded history, for a closer look at a failed run. */
  history: HistoryRecorder
}

const sleep = async (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Options of {@link runWorkloadClient}. */
export interface WorkloadClientOptions {
  /** The DVIPAs contended for, in turn. */
  dvipas: string[]
  /** Whether to go on: asked before every round. */
  running: () => boolean
  /** The next record serial (share one between the clients of a process). Default: a counter of its own. */
  serial?: () => number
}

/**
 * One racing client of the workload, as a distribution processor behaves in takeovers: in turn
 * for each DVIPA, reads the ownership; with a fence that may have gone stale, writes under it
 * once (it must be refused) and forgets it; as the owner, writes a record; otherwise claims the
 * next epoch, takes, writes and settles. Every call goes through `history`. Runs until
 * `running()` is false; in-process (see {@link runWorkload}) or alone in a process of its own.
 *
 * @param client - the client's name, the owner of its claims
 * @param store - its store, started
 * @param history - where the calls are recorded
 * @param options - DVIPAs, when to stop, record serials
 */
export async function runWorkloadClient(
  client: string,
  store: CouplingStore,
  history: HistoryRecorder,
  options: WorkloadClientOptions
): Promise<void> {
  const { dvipas, running } = options
  let own = 0
  const serial = options.serial ?? ((): number => ++own)
  const fences = new Map<string, Fence>()
  let round = 0
  while (running()) {
    const dvipa = dvipas[round++ % dvipas.length]!
    const seen = await history.read(client, store, dvipa)
    if (seen === undefined) {
      await sleep(20)
      continue
    }
    const mine = fences.get(dvipa)
    if (mine !== undefined && (seen.owner !== client || seen.epoch !== mine.epoch)) {
      // a write with a fence that has (probably) gone stale: it must be refused
      await history.put(client, store, dvipa, [samplePhase1(dvipa, serial())], mine)
      fences.delete(dvipa)
    }
    if (seen.owner === client && mine !== undefined) {
      // still the owner: write a record or two under the fence
      await history.put(client, store, dvipa, [samplePhase1(dvipa, serial())], mine)
      await sleep(Math.random() * 10)
      continue
    }
    // take the DVIPA over, as a backup that decided its owner failed
    const epoch = await history.claim(client, store, dvipa, {
      owner: client,
      ranks: [],
      expectedEpoch: seen.epoch
    })
    if (epoch === undefined) continue
    const fence = { owner: client, epoch }
    fences.set(dvipa, fence)
    if ((await history.take(client, store, dvipa, fence)) === undefined) continue
    await history.put(client, store, dvipa, [samplePhase1(dvipa, serial())], fence)
    await history.settle(client, store, dvipa, fence)
    await sleep(Math.random() * 20)
  }
}

/**
 * Runs one client per store against the same DVIPAs for `durationMs`, then checks the history.
 * The stores must be started; they are not stopped.
 *
 * @param stores - one per client (connect each to the store under test on its own)
 * @param options - DVIPAs and duration
 */
export async function runWorkload(
  stores: CouplingStore[],
  options: WorkloadOptions
): Promise<WorkloadVerdict> {
  const dvipas = options.dvipas ?? ['10.9.0.1', '10.9.0.2']
  const history = new HistoryRecorder()
  const until = performance.now() + options.durationMs
  let serial = 0
  const running = (): boolean => performance.now() < until && options.signal?.aborted !== true

  const next = (): number => ++serial
  await Promise.all(
    stores.map(async (store, c) =>
      runWorkloadClient(`dp-${c + 1}`, store, history, { dvipas, running, serial: next })
    )
  )
  const registers = checkHistory(history.entries)
  const lostWrites = findLostWrites(history.puts, history.takes)
  const unknown = history.entries.filter((e) => e.completedAt === Infinity).length
  const claims = history.entries.filter((e) => e.kind === 'claim' && e.outcome.type === 'ok').length
  return {
    registers,
    lostWrites,
    calls: history.entries.length,
    unknown,
    claims,
    ok: registers.every((r) => r.linearizable) && lostWrites.length === 0,
    history
  }
}
