import { performance } from 'node:perf_hooks'
import {
  AbortError,
  type Clock,
  type ConnectionRecord,
  type CouplingStore,
  type DeleteMessage,
  type DistributionEvent,
  type Dvipa,
  type DvipaRecord,
  type DvipaRecordSet,
  type EspEngine,
  type Fence,
  type FilterRecord,
  type IkeErrorKind,
  type IkeSaRecords,
  type IkeService,
  type NodeId,
  type Phase1Record,
  type Phase2Record,
  type RenegotiationOutcome,
  type StepTiming,
  type TakeoverReport,
  type TakeoverStep,
  type TimerHandle
} from '@vipsec/interface'
import type { ConnectionTable } from './connection-table.js'
import { planRenegotiation } from './records.js'
import type { WarmKeySet } from './warm.js'
import type { WarmRecorder } from './warm-recorder.js'
import { adoptWarm } from './warm-takeover.js'

/** Warm mode of one DVIPA, as the takeover uses it. */
export interface TakeoverWarm {
  /** The cluster key set. */
  readonly keys: WarmKeySet
  /** Sequence numbers per reservation. */
  readonly blockSize: bigint
  /** The DVIPA's recorder on this node. */
  readonly recorder: WarmRecorder
}

/** Retry timing of renegotiations that failed during a takeover, all fields set. */
export interface TakeoverRetry {
  /** First delay in ms. */
  initialMs: number
  /** Largest delay in ms. */
  maxMs: number
  /** Attempts after the first before giving up. */
  attempts: number
}

/**
 * What the takeover steps reach of the distribution processor: the parts of one DVIPA, declared
 * here so that the steps depend on exactly this and nothing else of their host.
 */
export interface TakeoverParts {
  /** This node. */
  readonly node: NodeId
  /** The DVIPA. */
  readonly dvipa: Dvipa
  /** Time. */
  readonly clock: Clock
  /** The coupling store. */
  readonly store: CouplingStore
  /** The node's ESP engine. */
  readonly esp: EspEngine
  /** The DVIPA's connection routing table. */
  readonly table: ConnectionTable
  /** How many IKE SAs are renegotiated at the same time. */
  readonly renegotiationConcurrency: number
  /** How long the takeover waits for its renegotiations, ms. */
  readonly renegotiationDeadlineMs: number
  /** Retry timing of failed renegotiations. */
  readonly retry: TakeoverRetry
  /** Emits a distribution event. */
  emit(event: DistributionEvent): void
  /** Publishes the status. */
  changed(): void
  /** Takes the DVIPA's address and opens its IKE service, not recording yet; returns the service. */
  open(): Promise<IkeService>
  /** Stops serving the DVIPA: IKE service, sockets, address (idempotent). */
  close(): Promise<void>
  /** Registers an IKE SA with its Child SAs in the DVIPA's bookkeeping. */
  track(phase1: Phase1Record, phase2: Phase2Record[]): void
  /** Every record this node holds for the DVIPA (SAs, correlations, filters, connections). */
  ownRecords(): DvipaRecord[]
  /** Turns on the recording of IKE events to the store. */
  startRecording(): void
  /** Sends the ownership notice at `epoch` to every target; returns the targets told. */
  notifyTargets(epoch: number): Promise<NodeId[]>
  /** Whether this node still serves the DVIPA under `fence` (retries stop when not). */
  serving(fence: Fence): boolean
  /** The DVIPA's IKE service while it is open. */
  ike(): IkeService | undefined
  /** Keeps a retry timer, so that it is cleared when the DVIPA is closed. */
  keepTimer(timer: TimerHandle): void
  /** Forgets a retry timer that fired. */
  forgetTimer(timer: TimerHandle): void
  /** Warm mode, when this DVIPA has it: adopt what can be adopted before renegotiating. */
  readonly warm?: TakeoverWarm
}

/** The takeover to run: from whom, under which fence, and how the failure and the claim went. */
export interface TakeoverPlan {
  /** The failed owner (this node for a takeover from itself). */
  previousOwner: NodeId
  /** The fence the claim won. */
  fence: Fence
  /** Aborted when a higher epoch is seen: the steps stop at once and give the address up. */
  signal: AbortSignal
  /** Monotonic ms at which the failure was declared. */
  detectedAt: number
  /** How long the owner had been silent when it was declared failed, if known. */
  silentMs: number | undefined
  /** Monotonic ms at which the claim was sent, and how long it took. */
  claim: {
    /** Monotonic ms at which the claim was sent. */
    startedAt: number
    /** How long until it was known to have won, ms. */
    durationMs: number
  }
}

/** Times one step and reports it. */
class StepClock {
  readonly steps: StepTiming[] = []
  constructor(
    private readonly clock: Clock,
    private readonly emit: (event: DistributionEvent) => void,
    private readonly dvipa: string,
    private readonly signal: AbortSignal
  ) {}

  async run<T>(step: TakeoverStep, work: () => Promise<T> | T): Promise<T> {
    if (this.signal.aborted)
      throw new AbortError(`takeover of ${this.dvipa} aborted before ${step}`)
    const startedAt = this.clock.monotonic()
    const wallStart = performance.now()
    const result = await work()
    this.record({
      step,
      startedAt,
      durationMs: this.clock.monotonic() - startedAt,
      wallMs: performance.now() - wallStart
    })
    if (this.signal.aborted) throw new AbortError(`takeover of ${this.dvipa} aborted after ${step}`)
    return result
  }

  record(timing: StepTiming): void {
    this.steps.push(timing)
    this.emit({ type: 'takeover:step', dvipa: this.dvipa, timing })
  }
}

/**
 * Runs the takeover of one DVIPA whose claim has won, steps 5 to 12 of the method, each step
 * timed and reported as a `takeover:step` event (the ownership unit ran steps 4, detect and
 * claim, and reports their timings here):
 *
 * 1. detect: the failure detector declared the owner failed (its silence is the step's time);
 * 2. claim: compare-and-set of the ownership record to a new epoch (by the ownership unit);
 * 3. read-and-clear: `takeRecords` (kept in the store's journal until settled);
 * 4. take-address: the DVIPA moves here and its IKE service opens on ports 500 and 4500;
 * 5. reroute-connections: every flow goes back in the table with its old target, now through
 *    this node, before any SA is renegotiated;
 * 6. renegotiate: every IKE SA with its Child SAs, with INITIAL_CONTACT, at most
 *    `renegotiationConcurrency` at a time and for at most `renegotiationDeadlineMs`; failures
 *    are reported and retried with backoff in the background, without holding the others up;
 * 7. install-filters: the old owner's bypass and discard filters; the ESP engine keeps one
 *    active filter per direction and selector, removing duplicates as they are installed;
 * 8. notify-targets: an ownership notice with the new epoch to every target;
 * 9. localize-connections: flows whose target is this node become non-distributed;
 * 10. write-records: this node's records under the new epoch, then the journal is settled;
 * 11. send-deletes: the old owner's SAs go to its mailbox.
 *
 * When `plan.signal` aborts (the ownership unit saw a higher epoch), the steps stop at the next
 * step boundary, the address is given up and the IKE service stopped (which ends its
 * renegotiations); the taken records stay in the store's journal for the next taker.
 *
 * @param parts - what the steps use of the distribution processor
 * @param plan - the failed owner, the fence and the timings so far
 */
export async function runTakeover(
  parts: TakeoverParts,
  plan: TakeoverPlan
): Promise<TakeoverReport> {
  const { clock, store, dvipa } = parts
  const { fence, previousOwner, signal } = plan
  const steps = new StepClock(clock, (e) => parts.emit(e), dvipa, signal)
  const startedAt = plan.detectedAt - (plan.silentMs ?? 0)
  steps.record({ step: 'detect', startedAt, durationMs: plan.silentMs ?? 0, wallMs: 0 })
  steps.record({
    step: 'claim',
    startedAt: plan.claim.startedAt,
    durationMs: plan.claim.durationMs,
    wallMs: 0
  })
  const onAbort = (): void => void parts.close().catch(() => undefined)
  signal.addEventListener('abort', onAbort)
  try {
    const taken = await steps.run('read-and-clear', async () => store.takeRecords(dvipa, fence))
    const ike = await steps.run('take-address', async () => parts.open())
    // The flows go back in the table before any SA is renegotiated, so that the first packet of
    // each finds its old target rather than being distributed anew.
    const connections = await steps.run('reroute-connections', () =>
      reroute(parts, taken.connection)
    )
    const renegotiation = planRenegotiation(taken)
    for (const merge of renegotiation.merged) {
      parts.emit({ type: 'takeover:merged', dvipa, ...merge })
    }
    const pending = new Set<string>()
    const warm = parts.warm
    const { adopted, fellBack, toRenegotiate, failedChildren } = await steps.run(
      'renegotiate',
      async () => {
        // warm mode: adopt first (same SAs, no handshake); the rest is renegotiated as before
        const adoption =
          warm === undefined
            ? undefined
            : await adoptWarm(ike, renegotiation.sas, taken, {
                dvipa,
                store,
                fence,
                keys: warm.keys,
                blockSize: warm.blockSize,
                recorder: warm.recorder,
                signal,
                clock,
                deadlineMs: parts.renegotiationDeadlineMs
              })
        for (const sa of adoption?.adopted ?? []) parts.track(sa.phase1, sa.phase2)
        const rest = adoption?.renegotiate ?? renegotiation.sas
        const outcomes = await renegotiate(parts, ike, fence, rest, pending, signal)
        return {
          adopted: adoption?.adopted ?? [],
          fellBack: adoption?.fellBack,
          toRenegotiate: outcomes,
          failedChildren: adoption?.failedChildren ?? []
        }
      }
    )
    const outcomes = toRenegotiate
    const renegotiated = outcomes.filter((o) => o.status === 'renegotiated')
    const failed = outcomes.filter((o) => o.status === 'failed')
    parts.emit({
      type: 'takeover:renegotiated',
      dvipa,
      renegotiated: renegotiated.length,
      failed: failed.length,
      ...(warm !== undefined ? { adopted: adopted.length } : {})
    })
    relink(parts.table, mapChildren(renegotiated))
    await steps.run('install-filters', () => installFilters(parts, taken.filter))
    await steps.run('notify-targets', async () => {
      const targets = await parts.notifyTargets(fence.epoch)
      parts.emit({ type: 'targets:notified', dvipa, targets, epoch: fence.epoch })
    })
    await steps.run('localize-connections', () => localize(parts))
    await steps.run('write-records', async () => {
      await store.putRecords(dvipa, parts.ownRecords(), fence)
      await store.settleTakeover(dvipa, fence)
      parts.startRecording()
    })
    // adopted SAs are this node's now (same SPIs and keys): no delete for them
    await steps.run('send-deletes', async () =>
      sendDeletes(parts, previousOwner, withoutAdopted(taken, adopted), fence)
    )
    for (const outcome of failed) {
      if (!pending.has(outcome.previous.phase1.id)) scheduleRetry(parts, fence, outcome.previous, 2)
    }

    const report: TakeoverReport = {
      dvipa,
      previousOwner,
      epoch: fence.epoch,
      steps: steps.steps,
      renegotiated: renegotiated.length,
      ...(warm !== undefined
        ? { adopted: adopted.map((sa) => sa.phase1.id), fellBack: fellBack ?? [] }
        : {}),
      failed: [
        ...failed.map((o) => ({ phase1Id: o.previous.phase1.id, reason: o.reason })),
        ...failedChildren.map((p) => ({
          phase1Id: p.id,
          reason: 'CHILD_SA_NOT_FOUND' as IkeErrorKind
        })),
        ...renegotiation.orphans.map((p) => ({
          phase1Id: p.id,
          reason: 'CHILD_SA_NOT_FOUND' as IkeErrorKind
        }))
      ],
      connections,
      corrupt: taken.corrupt,
      durationMs: clock.monotonic() - startedAt
    }
    parts.changed()
    parts.emit({ type: 'takeover:completed', report })
    return report
  } catch (err) {
    // Nothing is lost: the store keeps the taken records in its journal for the next taker.
    await parts.close()
    if (!signal.aborted) {
      parts.emit({
        type: 'takeover:failed',
        dvipa,
        error: `${(err as Error).name}: ${(err as Error).message}`
      })
    }
    parts.changed()
    throw err
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}

/**
 * Renegotiates every IKE SA, at most `renegotiationConcurrency` at a time (a thousand handshakes
 * started at once would overrun the peers and the node and mostly retransmit), for at most
 * `renegotiationDeadlineMs`. What is still under way then is reported as failed with `TIMEOUT`
 * and goes on in the background: if it succeeds, the IKE events record it; if it fails, it is
 * retried with backoff. So one unreachable peer never holds the takeover up. An aborted takeover
 * starts no more renegotiations.
 */
async function renegotiate(
  parts: TakeoverParts,
  ike: IkeService,
  fence: Fence,
  sas: IkeSaRecords[],
  pending: Set<string>,
  signal: AbortSignal
): Promise<RenegotiationOutcome[]> {
  const outcomes: (RenegotiationOutcome | undefined)[] = new Array(sas.length)
  let next = 0
  let late = false
  const worker = async (): Promise<void> => {
    while (next < sas.length && !signal.aborted) {
      const i = next++
      const previous = sas[i]!
      let outcome: RenegotiationOutcome
      try {
        ;[outcome] = (await ike.renegotiate([previous], { signal })) as [RenegotiationOutcome]
      } catch (err) {
        // the IKE service stopped (ownership lost) or broke: report, do not throw
        outcome = {
          status: 'failed',
          previous,
          reason: 'TEMPORARY_FAILURE',
          message: (err as Error).message
        }
      }
      if (outcome.status === 'renegotiated' && !signal.aborted)
        parts.track(outcome.current.phase1, outcome.current.phase2)
      if (!late) outcomes[i] = outcome
      else if (outcome.status === 'failed') scheduleRetry(parts, fence, previous, 2)
      pending.delete(previous.phase1.id)
    }
  }
  for (const sa of sas) pending.add(sa.phase1.id)
  const workers = Math.max(1, Math.min(parts.renegotiationConcurrency, sas.length))
  const all = Promise.all(Array.from({ length: workers }, worker))
  const deadline = new AbortController()
  const stop = (): void => deadline.abort()
  signal.addEventListener('abort', stop)
  await Promise.race([
    all,
    parts.clock
      .sleep(parts.renegotiationDeadlineMs, { signal: deadline.signal })
      .catch(() => undefined)
  ])
  signal.removeEventListener('abort', stop)
  deadline.abort()
  late = true
  return sas.map(
    (previous, i) =>
      outcomes[i] ?? {
        status: 'failed',
        previous,
        reason: 'TIMEOUT',
        message: `not renegotiated within ${parts.renegotiationDeadlineMs} ms; still trying in the background`
      }
  )
}

/** Maps each old phase 2 id to the new Child SA that replaced it (by position in its IKE SA). */
function mapChildren(outcomes: RenegotiationOutcome[]): Map<string, Phase2Record> {
  const map = new Map<string, Phase2Record>()
  for (const outcome of outcomes) {
    if (outcome.status !== 'renegotiated') continue
    const failed = new Set(outcome.failedChildren.map((f) => f.previous.id))
    const kept = outcome.previous.phase2.filter((p) => !failed.has(p.id))
    kept.forEach((old, i) => {
      const next = outcome.current.phase2[i]
      if (next !== undefined) map.set(old.id, next)
    })
  }
  return map
}

/**
 * Installs the old owner's filters that are not tied to an SA (bypass, discard); the protect
 * filters of the new Child SAs were installed with them. The ESP engine keeps one active filter
 * per direction and selector: installing one removes any active duplicate
 * (`filter:duplicate-removed`), for example a filter left from an earlier ownership.
 */
function installFilters(parts: TakeoverParts, records: FilterRecord[]): void {
  for (const record of records) {
    if (record.action === 'protect') continue
    parts.esp.installFilter({
      id: record.id,
      direction: record.direction,
      selector: record.selector,
      action: record.action,
      priority: record.priority
    })
  }
}

/** Puts every flow back in the routing table with its old target, now through this node. */
function reroute(parts: TakeoverParts, connections: ConnectionRecord[]): number {
  const now = parts.clock.monotonic()
  for (const old of connections) {
    const connection: ConnectionRecord = { ...old, dvipa: parts.dvipa }
    parts.table.add(connection)
    parts.table.touch(connection.flow, now)
    parts.emit({ type: 'connection:rerouted', connection })
  }
  return connections.length
}

/** Points each flow at the Child SA that replaced the one it travelled in. */
function relink(table: ConnectionTable, replaced: Map<string, Phase2Record>): void {
  for (const connection of table.all()) {
    const next = connection.phase2Id === null ? undefined : replaced.get(connection.phase2Id)
    if (next !== undefined) table.add({ ...connection, phase2Id: next.id })
  }
}

/** Connections to this node as a target are now local: not distributed. */
function localize(parts: TakeoverParts): void {
  for (const connection of parts.table.all()) {
    if (connection.target === parts.node && connection.distributed) {
      parts.table.add({ ...connection, distributed: false })
    }
  }
}

/**
 * The taken records without the adopted IKE SAs and Child SAs: those the heir carries on with the
 * same SPIs and keys, so a delete for them would tear down its own SAs.
 */
function withoutAdopted(taken: DvipaRecordSet, adopted: IkeSaRecords[]): DvipaRecordSet {
  if (adopted.length === 0) return taken
  const ikeSas = new Set(
    adopted.map((sa) => `${sa.phase1.ikeSaId.initiatorSpi}/${sa.phase1.ikeSaId.responderSpi}`)
  )
  const spis = new Set<string>()
  for (const sa of adopted) for (const p of sa.phase2) spis.add(`${p.inboundSpi}/${p.outboundSpi}`)
  return {
    ...taken,
    phase1: taken.phase1.filter(
      (p) => !ikeSas.has(`${p.ikeSaId.initiatorSpi}/${p.ikeSaId.responderSpi}`)
    ),
    phase2: taken.phase2.filter((p) => !spis.has(`${p.inboundSpi}/${p.outboundSpi}`))
  }
}

async function sendDeletes(
  parts: TakeoverParts,
  previousOwner: NodeId,
  taken: DvipaRecordSet,
  fence: Fence
): Promise<void> {
  if (previousOwner === parts.node || (taken.phase1.length === 0 && taken.phase2.length === 0))
    return
  const message: DeleteMessage = {
    v: 1,
    id: `${parts.dvipa}/${fence.epoch}`,
    to: previousOwner,
    from: parts.node,
    dvipa: parts.dvipa,
    epoch: fence.epoch,
    ikeSas: taken.phase1.map((p) => p.ikeSaId),
    childSas: taken.phase2.map((p) => ({ inboundSpi: p.inboundSpi, outboundSpi: p.outboundSpi })),
    sentAt: parts.clock.now()
  }
  await parts.store.postMessage(message)
  parts.emit({
    type: 'deletes:sent',
    dvipa: parts.dvipa,
    to: previousOwner,
    ikeSas: message.ikeSas.length,
    childSas: message.childSas.length
  })
}

/** Retries a failed renegotiation with exponential backoff while this node serves under `fence`. */
function scheduleRetry(
  parts: TakeoverParts,
  fence: Fence,
  previous: IkeSaRecords,
  attempt: number
): void {
  const { initialMs, maxMs, attempts } = parts.retry
  if (attempt > attempts + 1) return
  const delay = Math.min(maxMs, initialMs * 2 ** (attempt - 2))
  const timer = parts.clock.setTimeout(() => {
    parts.forgetTimer(timer)
    const ike = parts.ike()
    if (!parts.serving(fence) || ike === undefined) return
    void ike.renegotiate([previous]).then(
      ([outcome]) => {
        const succeeded = outcome?.status === 'renegotiated'
        parts.emit({
          type: 'renegotiation:retried',
          dvipa: parts.dvipa,
          phase1Id: previous.phase1.id,
          attempt,
          succeeded
        })
        if (outcome?.status === 'renegotiated')
          parts.track(outcome.current.phase1, outcome.current.phase2)
        else scheduleRetry(parts, fence, previous, attempt + 1)
        parts.changed()
      },
      () => scheduleRetry(parts, fence, previous, attempt + 1)
    )
  }, delay)
  parts.keepTimer(timer)
}
