/**
 * A history checker for coupling stores: records every store call with its invocation and
 * completion times and its outcome, then checks that the history of each DVIPA's ownership
 * register is linearizable (a Wing–Gong search with memoised states, as in Lowe's and Knossos's
 * checkers) and that no acknowledged record write was lost by a later take.
 *
 * The register's state is `{ epoch, owner }`. A claim is a compare-and-set on the epoch; a read
 * (`getOwnership`) and every fenced call (put, take, settle) observe it: a fenced call that
 * succeeded saw exactly its fence, one rejected as stale saw something else. A call whose outcome
 * is unknown (a timeout, a lost connection) may take effect at any time after its invocation, or
 * never.
 *
 * @module
 */
import type { CouplingStore, Dvipa, DvipaRecord, Fence, OwnershipClaim } from '@vipsec/interface'

/** The register's state. */
export interface RegisterState {
  /** 0 before the first claim. */
  epoch: number
  /** The owner, null before the first claim. */
  owner: string | null
}

/** What a claim came to. */
export type ClaimOutcome =
  | {
      /** It won: the epoch became expected + 1. */
      type: 'ok'
    }
  | {
      /** It lost: the epoch was not the expected one. */
      type: 'conflict'
      /** The epoch the store reported instead (-1 when it did not say). */
      current: number
    }
  | {
      /** Timed out or lost its connection: it may or may not have taken effect. */
      type: 'unknown'
    }

/** What an operation did or saw, by kind. */
export type HistoryOp =
  | {
      /** A claim: `claimOwnership(dvipa, { owner, expectedEpoch })`. */
      kind: 'claim'
      /** The claimer. */
      owner: string
      /** The epoch it expected. */
      expected: number
      /** ok: the epoch became expected + 1; conflict: the epoch was `current` instead; unknown. */
      outcome: ClaimOutcome
    }
  | {
      /** A read of the ownership; `epoch` 0 and owner null for never claimed. */
      kind: 'read'
      /** What was read, or undefined when the read failed (then it says nothing). */
      seen: RegisterState | undefined
    }
  | {
      /** A fenced call (put, take, settle). */
      kind: 'fenced'
      /** Which call. */
      call: 'put' | 'take' | 'settle'
      /** The fence presented. */
      fence: Fence
      /** ok: the state was the fence; stale: it was not; unknown. */
      outcome: 'ok' | 'stale' | 'unknown'
    }

/** One recorded call. */
export type HistoryEntry = HistoryOp & {
  /** The register (DVIPA) it concerns. */
  dvipa: Dvipa
  /** The client that made it. */
  client: string
  /** When it was invoked (ms, any monotonic clock). */
  invokedAt: number
  /** When it completed; `Infinity` for an outcome that is unknown. */
  completedAt: number
}

/** The checker's verdict on one register. */
export interface RegisterVerdict {
  /** The register. */
  dvipa: Dvipa
  /** Whether some order of the calls, consistent with real time, explains every outcome. */
  linearizable: boolean
  /** How many calls its history has. */
  ops: number
  /** How many states the search visited. */
  explored: number
  /** When the search gave up (too many states): the verdict is then `linearizable: false`. */
  exhausted?: boolean
}

const observes = (op: HistoryOp, s: RegisterState): RegisterState | undefined => {
  // returns the state after op, or undefined when op cannot take effect in state s
  switch (op.kind) {
    case 'claim':
      if (op.outcome.type === 'conflict') {
        // the store reports the epoch it compared against, read in the same atomic step
        const current = op.outcome.current
        return s.epoch !== op.expected && (current < 0 || s.epoch === current) ? s : undefined
      }
      if (s.epoch !== op.expected) return undefined
      return { epoch: op.expected + 1, owner: op.owner }
    case 'read':
      if (op.seen === undefined) return s
      return op.seen.epoch === s.epoch && op.seen.owner === s.owner ? s : undefined
    case 'fenced': {
      const current = s.owner === op.fence.owner && s.epoch === op.fence.epoch
      if (op.outcome === 'ok') return current ? s : undefined
      if (op.outcome === 'stale') return current ? undefined : s
      return s
    }
  }
}

/**
 * Checks one register's history for linearizability: searches for an order of the calls that
 * respects real time (a call that completed before another was invoked comes first) and explains
 * each outcome, starting from `{ epoch: 0, owner: null }`. Calls with an unknown outcome may be
 * left out. Memoises (set of calls done, state) pairs, so histories of a few hundred calls check
 * in well under a second.
 *
 * @param entries - the calls on one register
 * @param maxStates - give up after visiting this many states (default 2,000,000)
 */
export function checkRegister(
  entries: HistoryEntry[],
  maxStates = 2_000_000
): Omit<RegisterVerdict, 'dvipa'> {
  // reads and fenced calls with an unknown outcome constrain nothing: leave them out
  const ops = entries
    .filter(
      (e) =>
        !(
          e.completedAt === Infinity &&
          (e.kind === 'read' || (e.kind === 'fenced' && e.outcome === 'unknown'))
        )
    )
    .sort((a, b) => a.invokedAt - b.invokedAt)
  const n = ops.length
  const required = ops.map((op) => op.completedAt !== Infinity)
  const done = new Uint8Array(n)
  const seen = new Set<string>()
  let explored = 0
  let exhausted = false
  let remainingRequired = required.filter(Boolean).length

  const search = (state: RegisterState): boolean => {
    if (remainingRequired === 0) return true
    if (++explored > maxStates) {
      exhausted = true
      return false
    }
    const key = `${state.epoch}|${state.owner ?? ''}|${Buffer.from(done).toString('base64')}`
    if (seen.has(key)) return false
    seen.add(key)
    // a call may go next only if it was invoked before every pending call completed
    let horizon = Infinity
    for (let i = 0; i < n; i++) if (done[i] === 0) horizon = Math.min(horizon, ops[i]!.completedAt)
    for (let i = 0; i < n && ops[i]!.invokedAt <= horizon; i++) {
      if (done[i] !== 0) continue
      const next = observes(ops[i]!, state)
      if (next === undefined) continue
      done[i] = 1
      if (required[i]) remainingRequired--
      const ok = search(next)
      done[i] = 0
      if (required[i]) remainingRequired++
      if (ok) return true
      if (exhausted) return false
    }
    return false
  }

  const linearizable = search({ epoch: 0, owner: null })
  return { linearizable, ops: n, explored, ...(exhausted ? { exhausted } : {}) }
}

/**
 * Checks every register of a history (each DVIPA on its own: linearizability is compositional).
 *
 * @param entries - the whole history
 */
export function checkHistory(entries: HistoryEntry[]): RegisterVerdict[] {
  const byDvipa = new Map<Dvipa, HistoryEntry[]>()
  for (const e of entries) byDvipa.set(e.dvipa, [...(byDvipa.get(e.dvipa) ?? []), e])
  return [...byDvipa].map(([dvipa, list]) => ({ dvipa, ...checkRegister(list) }))
}

/** An acknowledged put, for the lost-write check. */
export interface AckedPut {
  /** The DVIPA. */
  dvipa: Dvipa
  /** The writer's epoch. */
  epoch: number
  /** `kind/id` of each record written. */
  records: string[]
}

/** A take that succeeded, for the lost-write check. */
export interface SuccessfulTake {
  /** The DVIPA. */
  dvipa: Dvipa
  /** The taker's epoch. */
  epoch: number
  /** `kind/id` of each record it returned. */
  records: string[]
}

/**
 * Finds acknowledged writes that a take lost: a put acknowledged at epoch E must be returned by
 * the successful take(s) of the lowest epoch above E (every such take comes after the put, since
 * the put saw E current), unless no take above E succeeded.
 *
 * @param puts - acknowledged puts
 * @param takes - successful takes
 * @returns one line per lost record
 */
export function findLostWrites(puts: AckedPut[], takes: SuccessfulTake[]): string[] {
  const lost: string[] = []
  for (const put of puts) {
    const later = takes.filter((t) => t.dvipa === put.dvipa && t.epoch > put.epoch)
    if (later.length === 0) continue
    const lowest = Math.min(...later.map((t) => t.epoch))
    const returned = new Set(later.filter((t) => t.epoch === lowest).flatMap((t) => t.records))
    for (const record of put.records) {
      if (!returned.has(record)) {
        lost.push(`${put.dvipa}: ${record} put at epoch ${put.epoch}, not taken at epoch ${lowest}`)
      }
    }
  }
  return lost
}

/** Options of {@link HistoryRecorder}. */
export interface HistoryRecorderOptions {
  /** The clock of invocation and completion times. Default: `performance.now()`. */
  now?: () => number
}

/**
 * Wraps store calls and records them as {@link HistoryEntry}s, with the acknowledged puts and the
 * successful takes for {@link findLostWrites}. Errors named `OwnershipConflictError` and
 * `StaleEpochError` are definite outcomes; any other error is an unknown outcome.
 */
export class HistoryRecorder {
  /** The calls recorded so far. */
  readonly entries: HistoryEntry[] = []
  /** Acknowledged puts. */
  readonly puts: AckedPut[] = []
  /** Successful takes. */
  readonly takes: SuccessfulTake[] = []
  private readonly now: () => number

  /** @param options - the clock */
  constructor(options: HistoryRecorderOptions = {}) {
    this.now = options.now ?? (() => performance.now())
  }

  /**
   * A claim through `store`; resolves with the new epoch, or undefined when it did not win.
   *
   * @param client - who calls
   * @param store - its store
   * @param dvipa - the register
   * @param claim - the claim
   */
  async claim(
    client: string,
    store: CouplingStore,
    dvipa: Dvipa,
    claim: OwnershipClaim
  ): Promise<number | undefined> {
    const invokedAt = this.now()
    const base = { kind: 'claim' as const, dvipa, client, owner: claim.owner, invokedAt }
    try {
      const ownership = await store.claimOwnership(dvipa, claim)
      this.entries.push({
        ...base,
        expected: claim.expectedEpoch,
        outcome: { type: 'ok' },
        completedAt: this.now()
      })
      return ownership.epoch
    } catch (err) {
      const e = err as Error & { currentEpoch?: number }
      const completedAt = this.now()
      this.entries.push(
        e.name === 'OwnershipConflictError'
          ? {
              ...base,
              expected: claim.expectedEpoch,
              outcome: { type: 'conflict', current: e.currentEpoch ?? -1 },
              completedAt
            }
          : {
              ...base,
              expected: claim.expectedEpoch,
              outcome: { type: 'unknown' },
              completedAt: Infinity
            }
      )
      return undefined
    }
  }

  /**
   * A read of the ownership; resolves with what was read (epoch 0 for never claimed), or
   * undefined when it failed.
   *
   * @param client - who calls
   * @param store - its store
   * @param dvipa - the register
   */
  async read(
    client: string,
    store: CouplingStore,
    dvipa: Dvipa
  ): Promise<RegisterState | undefined> {
    const invokedAt = this.now()
    let seen: RegisterState | undefined
    try {
      const o = await store.getOwnership(dvipa)
      seen = { epoch: o.epoch, owner: o.owner }
    } catch (err) {
      if ((err as Error).name === 'NotFoundError') seen = { epoch: 0, owner: null }
    }
    const completedAt = seen === undefined ? Infinity : this.now()
    this.entries.push({ kind: 'read', dvipa, client, seen, invokedAt, completedAt })
    return seen
  }

  /**
   * A fenced put of `records`; resolves with whether it was acknowledged.
   *
   * @param client - who calls
   * @param store - its store
   * @param dvipa - the register
   * @param records - the batch
   * @param fence - the writer's fence
   */
  async put(
    client: string,
    store: CouplingStore,
    dvipa: Dvipa,
    records: DvipaRecord[],
    fence: Fence
  ): Promise<boolean> {
    const ok = await this.fenced(client, dvipa, 'put', fence, async () =>
      store.putRecords(dvipa, records, fence)
    )
    if (ok) {
      this.puts.push({
        dvipa,
        epoch: fence.epoch,
        records: records.map((r) => `${r.kind}/${r.id}`)
      })
    }
    return ok
  }

  /**
   * A fenced take; resolves with the `kind/id` of what it returned, or undefined.
   *
   * @param client - who calls
   * @param store - its store
   * @param dvipa - the register
   * @param fence - the taker's fence
   */
  async take(
    client: string,
    store: CouplingStore,
    dvipa: Dvipa,
    fence: Fence
  ): Promise<string[] | undefined> {
    let records: string[] | undefined
    await this.fenced(client, dvipa, 'take', fence, async () => {
      const set = await store.takeRecords(dvipa, fence)
      records = (['phase1', 'phase2', 'correlation', 'filter', 'connection'] as const).flatMap(
        (kind) => set[kind].map((r) => `${kind}/${r.id}`)
      )
    })
    if (records !== undefined) this.takes.push({ dvipa, epoch: fence.epoch, records })
    return records
  }

  /**
   * A fenced settle; resolves with whether it succeeded.
   *
   * @param client - who calls
   * @param store - its store
   * @param dvipa - the register
   * @param fence - the new owner's fence
   */
  async settle(client: string, store: CouplingStore, dvipa: Dvipa, fence: Fence): Promise<boolean> {
    return this.fenced(client, dvipa, 'settle', fence, async () =>
      store.settleTakeover(dvipa, fence)
    )
  }

  private async fenced(
    client: string,
    dvipa: Dvipa,
    call: 'put' | 'take' | 'settle',
    fence: Fence,
    run: () => Promise<void>
  ): Promise<boolean> {
    const invokedAt = this.now()
    const base = { kind: 'fenced' as const, dvipa, client, call, fence: { ...fence }, invokedAt }
    try {
      await run()
      this.entries.push({ ...base, outcome: 'ok', completedAt: this.now() })
      return true
    } catch (err) {
      if ((err as Error).name === 'StaleEpochError') {
        this.entries.push({ ...base, outcome: 'stale', completedAt: this.now() })
      } else {
        this.entries.push({ ...base, outcome: 'unknown', completedAt: Infinity })
      }
      return false
    }
  }
}
