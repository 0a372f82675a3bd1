import { performance } from 'node:perf_hooks'
import {
  OwnershipConflictError,
  TakeoverError,
  type Clock,
  type ConnectionRecord,
  type DeleteMessage,
  type DistributionEvent,
  type DvipaRecord,
  type DvipaRecordSet,
  type Fence,
  type FilterRecord,
  type IkeErrorKind,
  type IkeSaRecords,
  type NodeId,
  type Phase2Record,
  type RenegotiationOutcome,
  type StepTiming,
  type TakeoverReport,
  type TakeoverStep
} from '@vipsec/interface'
import type { DefaultDistributionProcessor, DvipaState } from './distribution-processor.js'
import { filterRecord, planRenegotiation, saRecords } from './records.js'

/** What the takeover needs from its distribution processor. */
export type TakeoverHost = Pick<
  DefaultDistributionProcessor,
  | 'id'
  | 'components'
  | 'init'
  | 'emit'
  | 'publishStatus'
  | 'openDvipa'
  | 'closeDvipa'
  | 'fence'
  | 'track'
  | 'notifyTargets'
  | 'filtersOf'
>

/** When and how the failure was detected. */
export interface Detection {
  /** Monotonic ms at which the failure was declared. */
  detectedAt: number
  /** How long the owner had been silent when it was declared failed, if known. */
  silentMs: number | undefined
}

/** Times one step and reports it. */
class StepClock {
  readonly steps: StepTiming[] = []
  constructor(
    private readonly clock: Clock,
    private readonly emit: (event: DistributionEvent) => void,
    private readonly dvipa: string
  ) {}

  async run<T>(step: TakeoverStep, work: () => Promise<T> | T): Promise<T> {
    const startedAt = this.clock.monotonic()
    const wallStart = performance.now()
    const result = await work()
    this.record({
      step,
      startedAt,
      durationMs: this.clock.monotonic() - startedAt,
      wallMs: performance.now() - wallStart
    })
    return result
  }

  record(timing: StepTiming): void {
    this.steps.push(timing)
    this.emit({ type: 'takeover:step', dvipa: this.dvipa, timing })
  }
}

/**
 * Runs the takeover of one DVIPA from a failed owner, steps 4 to 12 of the method, each step
 * timed and reported as a `takeover:step` event:
 *
 * 1. detect: the failure detector declared the owner failed (its silence is the step's time);
 *    a backup waits `rankDelayMs` for each better-ranked live backup, so the best live one
 *    claims first;
 * 2. claim: compare-and-set of the ownership record to a new epoch; losing it stands down;
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
 * @param host - the distribution processor
 * @param state - the DVIPA's state
 * @param previousOwner - the failed owner
 * @param detection - when the failure was declared
 */
export async function runTakeover(
  host: TakeoverHost,
  state: DvipaState,
  previousOwner: NodeId,
  detection: Detection
): Promise<TakeoverReport> {
  const { clock, store, detector } = host.components
  const dvipa = state.config.dvipa
  const steps = new StepClock(clock, (e) => host.emit(e), dvipa)
  const startedAt = detection.detectedAt - (detection.silentMs ?? 0)
  host.emit({ type: 'takeover:started', dvipa, previousOwner })
  steps.record({ step: 'detect', startedAt, durationMs: detection.silentMs ?? 0, wallMs: 0 })

  // The DVIPA must still belong to the failed owner: another backup may have claimed it already.
  if (state.owner !== undefined && state.owner !== previousOwner) {
    host.emit({ type: 'takeover:stood-down', dvipa, reason: 'lost-claim' })
    throw new TakeoverError(`${dvipa} is owned by ${state.owner} now, not by ${previousOwner}`)
  }
  // Rank: wait for each better-ranked backup that is still alive, then claim unless one did.
  const seenEpoch = state.epoch
  const better = state.config.ranks
    .slice(0, state.config.ranks.indexOf(host.id))
    .filter((n) => n !== previousOwner && n !== host.id && detector.health(n) === 'alive')
  if (better.length > 0) await clock.sleep(host.init.rankDelayMs * better.length)
  if (state.epoch !== seenEpoch) {
    host.emit({ type: 'takeover:stood-down', dvipa, reason: 'lost-claim' })
    throw new TakeoverError(`${dvipa} was claimed by ${state.owner ?? 'another node'} first`)
  }

  state.role = 'taking-over'
  host.publishStatus()
  let fence: Fence
  try {
    fence = await steps.run('claim', async () => {
      const ownership = await store.claimOwnership(dvipa, {
        owner: host.id,
        ranks: state.config.ranks,
        expectedEpoch: seenEpoch
      })
      state.epoch = ownership.epoch
      state.owner = host.id
      state.confirmedAt = clock.monotonic()
      return host.fence(state)
    })
  } catch (err) {
    state.role = 'backup'
    host.publishStatus()
    if ((err as Error).name === OwnershipConflictError.name) {
      // Learn who won, in case the store's change event has not arrived (or never will).
      const conflict = err as OwnershipConflictError
      if (conflict.currentEpoch > state.epoch) {
        state.epoch = conflict.currentEpoch
        state.owner = conflict.currentOwner
      }
      host.emit({ type: 'takeover:stood-down', dvipa, reason: 'lost-claim' })
      throw new TakeoverError(`lost the claim of ${dvipa}`, { cause: err })
    }
    // The claim itself failed (the store did not answer): say so, and retry from the read-back.
    state.failedTakeoverOf = previousOwner
    host.emit({
      type: 'takeover:failed',
      dvipa,
      error: `${(err as Error).name}: ${(err as Error).message}`
    })
    throw err
  }
  state.failedTakeoverOf = undefined
  host.emit({ type: 'ownership:claimed', dvipa, epoch: fence.epoch })

  try {
    const taken = await steps.run('read-and-clear', async () => store.takeRecords(dvipa, fence))
    await steps.run('take-address', async () => host.openDvipa(state, false))
    // The flows go back in the table before any SA is renegotiated, so that the first packet of
    // each finds its old target rather than being distributed anew.
    const connections = await steps.run('reroute-connections', () =>
      reroute(host, state, taken.connection)
    )
    const plan = planRenegotiation(taken)
    const pending = new Set<string>()
    const outcomes = await steps.run('renegotiate', async () =>
      renegotiate(host, state, plan.sas, pending)
    )
    const renegotiated = outcomes.filter((o) => o.status === 'renegotiated')
    const failed = outcomes.filter((o) => o.status === 'failed')
    host.emit({
      type: 'takeover:renegotiated',
      dvipa,
      renegotiated: renegotiated.length,
      failed: failed.length
    })
    relink(state, mapChildren(renegotiated))
    await steps.run('install-filters', () => installFilters(host, taken.filter))
    await steps.run('notify-targets', async () => {
      const targets = await host.notifyTargets(state)
      host.emit({ type: 'targets:notified', dvipa, targets, epoch: fence.epoch })
    })
    await steps.run('localize-connections', () => localize(host, state))
    state.role = 'owner'
    await steps.run('write-records', async () => {
      await store.putRecords(dvipa, ownRecords(host, state), fence)
      await store.settleTakeover(dvipa, fence)
      state.recording = true
    })
    await steps.run('send-deletes', async () =>
      sendDeletes(host, state, previousOwner, taken, fence)
    )
    for (const outcome of failed) {
      if (!pending.has(outcome.previous.phase1.id)) scheduleRetry(host, state, outcome.previous, 2)
    }

    const report: TakeoverReport = {
      dvipa,
      previousOwner,
      epoch: fence.epoch,
      steps: steps.steps,
      renegotiated: renegotiated.length,
      failed: [
        ...failed.map((o) => ({ phase1Id: o.previous.phase1.id, reason: o.reason })),
        ...plan.orphans.map((p) => ({
          phase1Id: p.id,
          reason: 'CHILD_SA_NOT_FOUND' as IkeErrorKind
        }))
      ],
      connections,
      corrupt: taken.corrupt,
      durationMs: clock.monotonic() - startedAt
    }
    host.publishStatus()
    host.emit({ type: 'takeover:completed', report })
    return report
  } catch (err) {
    // Nothing is lost: the store keeps the taken records in its journal for the next taker.
    state.role = 'backup'
    await host.closeDvipa(state)
    // Released, the DVIPA is taken over by the best backup from its ownership read-back.
    await store.releaseOwnership(dvipa, fence).catch(() => undefined)
    host.emit({
      type: 'takeover:failed',
      dvipa,
      error: `${(err as Error).name}: ${(err as Error).message}`
    })
    host.publishStatus()
    throw err
  }
}

/**
 * Renegotiates every IKE SA, at most `renegotiationConcurrency` at a time (a thousand handshakes
 * started at once would overrun the peers and the node and mostly retransmit), for at most
 * `renegotiationDeadlineMs`. What is still under way then is reported as failed with `TIMEOUT`
 * and goes on in the background: if it succeeds, the IKE events record it; if it fails, it is
 * retried with backoff. So one unreachable peer never holds the takeover up.
 */
async function renegotiate(
  host: TakeoverHost,
  state: DvipaState,
  sas: IkeSaRecords[],
  pending: Set<string>
): Promise<RenegotiationOutcome[]> {
  const outcomes: (RenegotiationOutcome | undefined)[] = new Array(sas.length)
  let next = 0
  let late = false
  const worker = async (): Promise<void> => {
    while (next < sas.length) {
      const i = next++
      const previous = sas[i]!
      let outcome: RenegotiationOutcome
      try {
        ;[outcome] = (await state.ike!.renegotiate([previous])) as [RenegotiationOutcome]
      } catch (err) {
        // the IKE service stopped (ownership lost) or broke: report, do not throw
        outcome = {
          status: 'failed',
          previous,
          reason: 'TEMPORARY_FAILURE',
          message: (err as Error).message
        }
      }
      if (outcome.status === 'renegotiated')
        host.track(state, outcome.current.phase1, outcome.current.phase2)
      if (!late) outcomes[i] = outcome
      else if (outcome.status === 'failed') scheduleRetry(host, state, previous, 2)
      pending.delete(previous.phase1.id)
    }
  }
  for (const sa of sas) pending.add(sa.phase1.id)
  const workers = Math.max(1, Math.min(host.init.renegotiationConcurrency, sas.length))
  const all = Promise.all(Array.from({ length: workers }, worker))
  const deadline = new AbortController()
  await Promise.race([
    all,
    host.components.clock
      .sleep(host.init.renegotiationDeadlineMs, { signal: deadline.signal })
      .catch(() => undefined)
  ])
  deadline.abort()
  late = true
  return sas.map(
    (previous, i) =>
      outcomes[i] ?? {
        status: 'failed',
        previous,
        reason: 'TIMEOUT',
        message: `not renegotiated within ${host.init.renegotiationDeadlineMs} ms; still trying in the background`
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
function installFilters(host: TakeoverHost, records: FilterRecord[]): void {
  for (const record of records) {
    if (record.action === 'protect') continue
    host.components.esp.installFilter({
      id: record.id,
      direction: record.direction,
      selector: record.selector,
      action: record.action,
      priority: record.priority
    })
  }
}

/** Puts every flow back in the routing table with its old target, now through this node. */
function reroute(host: TakeoverHost, state: DvipaState, connections: ConnectionRecord[]): number {
  const now = host.components.clock.monotonic()
  for (const old of connections) {
    const connection: ConnectionRecord = { ...old, dvipa: state.config.dvipa }
    state.table.add(connection)
    state.table.touch(connection.flow, now)
    host.emit({ type: 'connection:rerouted', connection })
  }
  return connections.length
}

/** Points each flow at the Child SA that replaced the one it travelled in. */
function relink(state: DvipaState, replaced: Map<string, Phase2Record>): void {
  for (const connection of state.table.all()) {
    const next = connection.phase2Id === null ? undefined : replaced.get(connection.phase2Id)
    if (next !== undefined) state.table.add({ ...connection, phase2Id: next.id })
  }
}

/** Connections to this node as a target are now local: not distributed. */
function localize(host: TakeoverHost, state: DvipaState): void {
  for (const connection of state.table.all()) {
    if (connection.target === host.id && connection.distributed) {
      state.table.add({ ...connection, distributed: false })
    }
  }
}

function ownRecords(host: TakeoverHost, state: DvipaState): DvipaRecord[] {
  const records: DvipaRecord[] = []
  const children: Phase2Record[] = []
  for (const sa of state.sas.values()) {
    records.push(...saRecords(sa.phase1, [...sa.phase2.values()]))
    children.push(...sa.phase2.values())
  }
  // One listing of the SPD for every Child SA (a listing per IKE SA is quadratic).
  records.push(...host.filtersOf(state, children))
  for (const f of host.components.esp.listFilters()) {
    if (f.action !== 'protect') records.push(filterRecord(state.config.dvipa, f, null))
  }
  records.push(...state.table.all())
  return records
}

async function sendDeletes(
  host: TakeoverHost,
  state: DvipaState,
  previousOwner: NodeId,
  taken: DvipaRecordSet,
  fence: Fence
): Promise<void> {
  if (previousOwner === host.id || (taken.phase1.length === 0 && taken.phase2.length === 0)) return
  const { store, clock } = host.components
  const message: DeleteMessage = {
    v: 1,
    id: `${state.config.dvipa}/${fence.epoch}`,
    to: previousOwner,
    from: host.id,
    dvipa: state.config.dvipa,
    epoch: fence.epoch,
    ikeSas: taken.phase1.map((p) => p.ikeSaId),
    childSas: taken.phase2.map((p) => ({ inboundSpi: p.inboundSpi, outboundSpi: p.outboundSpi })),
    sentAt: clock.now()
  }
  await store.postMessage(message)
  host.emit({
    type: 'deletes:sent',
    dvipa: state.config.dvipa,
    to: previousOwner,
    ikeSas: message.ikeSas.length,
    childSas: message.childSas.length
  })
}

/** Retries a failed renegotiation with exponential backoff while this node owns the DVIPA. */
function scheduleRetry(
  host: TakeoverHost,
  state: DvipaState,
  previous: IkeSaRecords,
  attempt: number
): void {
  const { clock } = host.components
  const { initialMs, maxMs, attempts } = host.init.retry
  if (attempt > attempts + 1) return
  const delay = Math.min(maxMs, initialMs * 2 ** (attempt - 2))
  const epoch = state.epoch
  const timer = clock.setTimeout(() => {
    state.retryTimers.delete(timer)
    if (state.role !== 'owner' || state.epoch !== epoch || state.ike === undefined) return
    void state.ike.renegotiate([previous]).then(
      ([outcome]) => {
        const succeeded = outcome?.status === 'renegotiated'
        host.emit({
          type: 'renegotiation:retried',
          dvipa: state.config.dvipa,
          phase1Id: previous.phase1.id,
          attempt,
          succeeded
        })
        if (outcome?.status === 'renegotiated')
          host.track(state, outcome.current.phase1, outcome.current.phase2)
        else scheduleRetry(host, state, previous, attempt + 1)
        host.publishStatus()
      },
      () => scheduleRetry(host, state, previous, attempt + 1)
    )
  }, delay)
  state.retryTimers.add(timer)
}
