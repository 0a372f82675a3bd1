import { Observable, type Subscription } from 'rxjs'
import {
  AbortError,
  encodeOwnership,
  OwnershipConflictError,
  StaleEpochError,
  StoreUnavailableError,
  throwIfAborted,
  type AbortOptions,
  type Clock,
  type CouplingStore,
  type CouplingStoreEvent,
  type DeleteMessage,
  type Dvipa,
  type DvipaRecord,
  type DvipaRecordSet,
  type Fence,
  type ListRecordsOptions,
  type NodeId,
  type Ownership,
  type OwnershipClaim,
  type RecordByKind,
  type RecordKind
} from '@vipsec/interface'
import type { MemoryCouplingFacility } from '@vipsec/store-memory'

/** What happens to a store call's reply while a reply fault is on. */
export type ReplyFault = 'lose' | 'duplicate' | 'delay'

/** A reply fault as it is switched on: what happens, to which share of calls, with what delay. */
export interface ReplyFaultSetting {
  /** What happens to a reply. */
  mode: ReplyFault
  /** The fraction of calls it happens to, 0 to 1. */
  rate: number
  /** The delay of a delayed reply or of the duplicate, ms. */
  delayMs: number
}

/** What a {@link FaultyCouplingStore} did. */
export interface FaultyStoreStats {
  /** Calls made. */
  calls: number
  /** Calls that timed out (cut off, or reply lost). */
  timedOut: number
  /** Replies lost. */
  lost: number
  /** Calls applied twice. */
  duplicated: number
  /** Replies delayed. */
  delayed: number
}

/**
 * Deliberate defects, for proving that the chaos checker catches a broken cluster. Never on in a
 * real schedule.
 */
export interface StoreDefects {
  /**
   * Claims read the epoch, wait this long (virtual ms), then write without checking again: two
   * claims in that window both win the same epoch. 0: atomic, as the contract says.
   */
  nonAtomicClaimMs?: number
  /**
   * Fences are not enforced for this node: its stale writes are dropped but reported as done,
   * its reads of the ownership show the first ownership it ever read, and it sees no changes.
   */
  ignoreFencing?: boolean
}

/** Options of a {@link FaultyCouplingStore}. */
export interface FaultyCouplingStoreInit {
  /** The node whose client this is (for the trace). */
  node: NodeId
  /**
   * The client's call timeout, ms: a call that gets no reply (cut off, reply lost) rejects
   * with `StoreUnavailableError` this long after it was made, as the Redis client does after
   * `operationTimeoutMs`.
   */
  callTimeoutMs: number
  /** Deliberate defects (for the checker's own tests). Default none. */
  defects?: StoreDefects
}

/** The parts of a {@link FaultyCouplingStore}. */
export interface FaultyCouplingStoreComponents {
  /** The real client it wraps. */
  inner: CouplingStore
  /** The facility behind `inner` (read only by the deliberate defects). */
  facility: MemoryCouplingFacility
  /** The node's clock (timeouts and delays). */
  clock: Clock
}

interface Held {
  run: () => void
}

/**
 * A coupling store client with faults on demand, wrapping a real one: cut off (calls time out
 * and are not applied, changes are not seen), replies lost (the call is applied but the caller
 * times out), duplicated (applied once more later, the second result dropped) or delayed
 * (applied at once, answered later), and paused (the process is stopped: replies and changes
 * wait until it resumes). Faults are switched by the chaos runner.
 */
export class FaultyCouplingStore implements CouplingStore {
  /** Whether the path to the store is cut. */
  cut = false
  /** The reply fault on, if any, with its rate (0 to 1) and delay. */
  replies: ReplyFaultSetting | undefined
  /** Calls made, and how many of them a fault touched, by fault. */
  readonly stats: FaultyStoreStats = { calls: 0, timedOut: 0, lost: 0, duplicated: 0, delayed: 0 }
  private paused = false
  private dead = false
  private held: Held[] = []
  private readonly chance: () => number
  private firstOwnership: Ownership | undefined

  /**
   * @param components - the real client, its facility and the clock
   * @param init - node, call timeout, defects
   * @param chance - the source of randomness for reply faults (seeded by the runner)
   */
  constructor(
    private readonly components: FaultyCouplingStoreComponents,
    private readonly init: FaultyCouplingStoreInit,
    chance: () => number
  ) {
    this.chance = chance
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.events$} */
  get events$(): Observable<CouplingStoreEvent> {
    return new Observable<CouplingStoreEvent>((subscriber) => {
      const sub: Subscription = this.components.inner.events$.subscribe({
        next: (event) => {
          if (this.cut) return
          if (this.init.defects?.ignoreFencing === true) return
          this.deliver(() => subscriber.next(event))
        },
        error: (e: unknown) => subscriber.error(e),
        complete: () => subscriber.complete()
      })
      return () => sub.unsubscribe()
    })
  }

  /** Stops delivering replies and changes (the process is stopped) until {@link resume}. */
  pause(): void {
    this.paused = true
  }

  /**
   * The process died: what was held is dropped, and every call from now on (the dying node's
   * shutdown) fails at once without reaching the store.
   */
  kill(): void {
    this.dead = true
    this.paused = false
    this.held = []
  }

  /** Delivers what was held while paused, in order, and goes on normally. */
  resume(): void {
    this.paused = false
    const held = this.held
    this.held = []
    for (const h of held) h.run()
  }

  /** {@inheritDoc @vipsec/interface!Startable.start} */
  async start(): Promise<void> {
    await this.components.inner.start()
  }

  /** {@inheritDoc @vipsec/interface!Startable.stop} */
  async stop(): Promise<void> {
    this.held = []
    await this.components.inner.stop()
  }

  /** {@inheritDoc @vipsec/interface!Startable.isStarted} */
  isStarted(): boolean {
    return this.components.inner.isStarted()
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.getOwnership} */
  getOwnership(dvipa: Dvipa, options?: AbortOptions): Promise<Ownership> {
    return this.call(
      async () => {
        const o = await this.components.inner.getOwnership(dvipa, options)
        if (this.init.defects?.ignoreFencing !== true) return o
        this.firstOwnership ??= o
        return this.firstOwnership
      },
      options,
      false
    )
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.claimOwnership} */
  claimOwnership(dvipa: Dvipa, claim: OwnershipClaim, options?: AbortOptions): Promise<Ownership> {
    // (Not the first claim: that one is made while the cluster starts, before time runs.)
    const window = claim.expectedEpoch > 0 ? (this.init.defects?.nonAtomicClaimMs ?? 0) : 0
    if (window > 0) return this.call(() => this.nonAtomicClaim(dvipa, claim, window), options, true)
    return this.call(
      () => this.components.inner.claimOwnership(dvipa, claim, options),
      options,
      true
    )
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.releaseOwnership} */
  releaseOwnership(dvipa: Dvipa, fence: Fence, options?: AbortOptions): Promise<void> {
    return this.call(
      () => this.unfenced(this.components.inner.releaseOwnership(dvipa, fence, options)),
      options,
      true
    )
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.putRecords} */
  putRecords(
    dvipa: Dvipa,
    records: DvipaRecord[],
    fence: Fence,
    options?: AbortOptions
  ): Promise<void> {
    return this.call(
      () => this.unfenced(this.components.inner.putRecords(dvipa, records, fence, options)),
      options,
      true
    )
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.deleteRecords} */
  deleteRecords(
    dvipa: Dvipa,
    keys: { kind: RecordKind; id: string }[],
    fence: Fence,
    options?: AbortOptions
  ): Promise<void> {
    return this.call(
      () => this.unfenced(this.components.inner.deleteRecords(dvipa, keys, fence, options)),
      options,
      true
    )
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.getRecord} */
  getRecord<K extends RecordKind>(
    dvipa: Dvipa,
    kind: K,
    id: string,
    options?: AbortOptions
  ): Promise<RecordByKind[K]> {
    return this.call(
      () => this.components.inner.getRecord(dvipa, kind, id, options),
      options,
      false
    )
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.listRecords} */
  listRecords(dvipa: Dvipa, options?: ListRecordsOptions): Promise<DvipaRecordSet> {
    return this.call(() => this.components.inner.listRecords(dvipa, options), options, false)
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.takeRecords} */
  takeRecords(dvipa: Dvipa, fence: Fence, options?: AbortOptions): Promise<DvipaRecordSet> {
    return this.call(() => this.components.inner.takeRecords(dvipa, fence, options), options, true)
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.settleTakeover} */
  settleTakeover(dvipa: Dvipa, fence: Fence, options?: AbortOptions): Promise<void> {
    return this.call(
      () => this.unfenced(this.components.inner.settleTakeover(dvipa, fence, options)),
      options,
      true
    )
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.postMessage} */
  postMessage(message: DeleteMessage, options?: AbortOptions): Promise<void> {
    return this.call(() => this.components.inner.postMessage(message, options), options, true)
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.takeMessages} */
  takeMessages(node: NodeId, options?: AbortOptions): Promise<DeleteMessage[]> {
    return this.call(() => this.components.inner.takeMessages(node, options), options, true)
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.renewLease} */
  renewLease(node: NodeId, ttlMs: number, options?: AbortOptions): Promise<void> {
    return this.call(() => this.components.inner.renewLease(node, ttlMs, options), options, true)
  }

  /** {@inheritDoc @vipsec/interface!CouplingStore.readLeases} */
  readLeases(nodes: NodeId[], options?: AbortOptions): Promise<Record<NodeId, number>> {
    return this.call(() => this.components.inner.readLeases(nodes, options), options, false)
  }

  /** Runs `fn` now, or holds it until the process resumes. */
  private deliver(fn: () => void): void {
    if (this.dead) return
    if (this.paused) this.held.push({ run: fn })
    else fn()
  }

  /**
   * One call through the faults. `writes`: whether applying it twice could matter (only those
   * are duplicated).
   */
  private call<T>(
    op: () => Promise<T>,
    options: AbortOptions | undefined,
    writes: boolean
  ): Promise<T> {
    throwIfAborted(options?.signal)
    if (this.dead) return Promise.reject(new StoreUnavailableError(`${this.init.node} is dead`))
    this.stats.calls++
    const { clock } = this.components
    return new Promise<T>((resolve, reject) => {
      let done = false
      const signal = options?.signal
      const finish = (fn: () => void): void => {
        if (done) return
        done = true
        clock.clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        this.deliver(fn)
      }
      const timer = clock.setTimeout(() => {
        this.stats.timedOut++
        finish(() => reject(new StoreUnavailableError(`store call timed out (${this.init.node})`)))
      }, this.init.callTimeoutMs)
      const onAbort = (): void =>
        finish(() => reject(new AbortError(undefined, { cause: signal?.reason })))
      signal?.addEventListener('abort', onAbort, { once: true })
      if (this.cut) return // never applied; times out
      const fault =
        this.replies !== undefined && this.chance() < this.replies.rate ? this.replies : undefined
      const applied = op()
      applied.catch(() => undefined)
      if (fault?.mode === 'lose') {
        this.stats.lost++
        return // applied; the reply never comes, the timer rejects
      }
      if (fault?.mode === 'duplicate' && writes) {
        this.stats.duplicated++
        clock.setTimeout(() => {
          if (!this.cut) op().catch(() => undefined)
        }, fault.delayMs)
      }
      const reply = (): void => {
        applied.then(
          (value) => finish(() => resolve(value)),
          (e: unknown) => finish(() => reject(e as Error))
        )
      }
      if (fault?.mode === 'delay') {
        this.stats.delayed++
        clock.setTimeout(reply, fault.delayMs)
      } else reply()
    })
  }

  /** With the `ignoreFencing` defect, a stale write is reported as done. */
  private async unfenced(p: Promise<void>): Promise<void> {
    try {
      await p
    } catch (e) {
      if (this.init.defects?.ignoreFencing === true && e instanceof StaleEpochError) return
      throw e
    }
  }

  /** The `nonAtomicClaimMs` defect: read, wait, write without checking again. */
  private async nonAtomicClaim(
    dvipa: Dvipa,
    claim: OwnershipClaim,
    window: number
  ): Promise<Ownership> {
    const { facility, clock } = this.components
    const seen = facility.slot(dvipa)
    if (seen.epoch !== claim.expectedEpoch)
      throw new OwnershipConflictError(
        dvipa,
        claim.expectedEpoch,
        seen.epoch,
        seen.owner ?? undefined
      )
    await clock.sleep(window)
    const slot = facility.slot(dvipa)
    const ownership: Ownership = {
      v: 1,
      dvipa,
      owner: claim.owner,
      epoch: claim.expectedEpoch + 1,
      ranks: [...claim.ranks],
      claimedAt: clock.now()
    } as Ownership
    slot.ownership = encodeOwnership(ownership)
    slot.owner = ownership.owner
    slot.epoch = ownership.epoch
    facility.publish({ type: 'ownership:claimed', ownership })
    return ownership
  }
}
