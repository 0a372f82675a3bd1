/**
 * Warm takeover: the heir adopts the IKE SAs the dead owner recorded sealed, instead of
 * renegotiating them. For each IKE SA of the renegotiation plan it opens the sealed state, finds
 * each Child SA's sequence reservation, reserves its own first block past it (fenced, in one
 * write, before anything is adopted), and asks the IKE service to adopt them, all in one call:
 * the service installs every Child SA before it runs the RFC 6311 message ID syncs with the peers,
 * so traffic does not wait for them. Whatever cannot be adopted goes through the renegotiation
 * as before, with the reason reported.
 *
 * @module
 */
import {
  StaleEpochError,
  type Clock,
  type CouplingStore,
  type Dvipa,
  type DvipaRecordSet,
  type Fence,
  type IkeSaRecords,
  type IkeSaState,
  type IkeService,
  type Phase2Record,
  type SequenceRecord,
  type AdoptionOutcome,
  type AdoptionRequest
} from '@vipsec/interface'
import type { WarmKeySet } from './warm.js'
import type { WarmRecorder } from './warm-recorder.js'

/** What the warm takeover needs. */
export interface WarmTakeoverOptions {
  /** The DVIPA. */
  dvipa: Dvipa
  /** The coupling store. */
  store: CouplingStore
  /** The heir's fence. */
  fence: Fence
  /** The cluster key set. */
  keys: WarmKeySet
  /** Sequence numbers per reservation. */
  blockSize: bigint
  /** The heir's recorder: it keeps what was adopted, to renew blocks and rewrite records. */
  recorder: WarmRecorder
  /** Aborted when the takeover is. */
  signal: AbortSignal
  /** Time, for the deadline. */
  clock: Clock
  /**
   * How long the adoptions may take, ms: those still under way then are aborted (the IKE
   * service leaves nothing of them installed) and renegotiated (`TIMEOUT`).
   */
  deadlineMs: number
}

/** An IKE SA a warm takeover did not adopt. */
export interface WarmFallBack {
  /** Its phase 1 record id. */
  phase1Id: string
  /** Why (`no-state`, `unsealed:*`, `UNSUPPORTED`, `TIMEOUT`, ...). */
  reason: string
}

/** What the warm takeover did. */
export interface WarmTakeoverResult {
  /** Adopted IKE SAs, with the Child SAs carried on. */
  adopted: IkeSaRecords[]
  /** IKE SAs not adopted, with why: they are to be renegotiated. */
  fellBack: WarmFallBack[]
  /** What is left to renegotiate, in plan order. */
  renegotiate: IkeSaRecords[]
  /** Child SAs of adopted IKE SAs that the IKE service did not adopt. */
  failedChildren: Phase2Record[]
}

const sameIds = (a: readonly Phase2Record[], b: readonly Phase2Record[]): boolean => {
  if (a.length !== b.length) return false
  const ids = new Set(a.map((p) => p.id))
  return b.every((p) => ids.has(p.id))
}

/**
 * Runs the adoption of every IKE SA that can be adopted (see the module).
 *
 * @param ike - the heir's IKE service for the DVIPA
 * @param sas - the renegotiation plan's IKE SAs
 * @param taken - the records read and cleared
 * @param options - store, fence, keys, block size, recorder, deadline
 * @throws StaleEpochError when the heir's reservations were refused for a newer epoch
 */
export async function adoptWarm(
  ike: IkeService,
  sas: IkeSaRecords[],
  taken: DvipaRecordSet,
  options: WarmTakeoverOptions
): Promise<WarmTakeoverResult> {
  const { keys, blockSize, store, dvipa, fence } = options
  const warmById = new Map(taken.warm.map((w) => [w.phase1Id, w]))
  const sequenceById = new Map(taken.sequence.map((s) => [s.phase2Id, s]))
  const fellBack: WarmTakeoverResult['fellBack'] = []
  const renegotiate = new Set<IkeSaRecords>()
  const candidates: {
    sa: IkeSaRecords
    request: AdoptionRequest
    reservations: SequenceRecord[]
  }[] = []
  const fallBack = (sa: IkeSaRecords, reason: string): void => {
    fellBack.push({ phase1Id: sa.phase1.id, reason })
    renegotiate.add(sa)
  }
  for (const sa of sas) {
    const warm = warmById.get(sa.phase1.id)
    if (warm === undefined) {
      fallBack(sa, 'no-state')
      continue
    }
    if (ike.adopt === undefined) {
      fallBack(sa, 'no-adopt')
      continue
    }
    let state: IkeSaState
    try {
      state = keys.open(warm)
    } catch (err) {
      // SealedStateError (counted by the key set): unknown key id, failed authentication
      const reason = (err as { reason?: string }).reason ?? 'malformed'
      fallBack(sa, `unsealed:${reason}`)
      continue
    }
    if (!state.midSync) {
      fallBack(sa, 'UNSUPPORTED')
      continue
    }
    // a plan that merged other IKE SAs' Child SAs into this one: renegotiate them together
    if (!sameIds(state.records.phase2, sa.phase2)) {
      fallBack(sa, 'merged')
      continue
    }
    const sequences: AdoptionRequest['sequences'] = {}
    const reservations: SequenceRecord[] = []
    let missing: string | undefined
    for (const child of state.records.phase2) {
      const recorded = sequenceById.get(child.id)
      if (recorded === undefined || recorded.outboundSpi !== child.outboundSpi) {
        missing = 'no-sequence'
        break
      }
      try {
        // a reservation a store writer changed (lowered) does not verify
        keys.verify(recorded)
      } catch (err) {
        missing = `sequence:${(err as { reason?: string }).reason ?? 'authentication'}`
        break
      }
      // the dead owner never sent past its reserved end: the heir starts after it
      const outbound = BigInt(recorded.reservedEnd)
      const inbound = BigInt(recorded.inbound)
      const limit = outbound + blockSize
      sequences[child.id] = { outbound, inbound, limit }
      reservations.push(keys.authenticate({ ...recorded, dvipa, reservedEnd: limit.toString() }))
    }
    if (missing !== undefined) {
      fallBack(sa, missing)
      continue
    }
    candidates.push({ sa, request: { state, sequences }, reservations })
  }

  // The heir's first blocks, fenced, before any SA is adopted: a later heir starts past them.
  if (candidates.length > 0) {
    try {
      await store.putRecords(
        dvipa,
        candidates.flatMap((c) => c.reservations),
        fence
      )
    } catch (err) {
      if ((err as Error).name === StaleEpochError.name) throw err
      for (const c of candidates.splice(0)) fallBack(c.sa, 'reserve-failed')
    }
  }
  // known to the recorder before the SAs can carry traffic, so that a block that runs low during
  // the sync is renewed
  for (const c of candidates)
    options.recorder.adopted(undefined, c.reservations, c.request.state.records.phase2)

  // One call for every candidate: the IKE service installs all of them before it synchronises
  // any (their traffic does not wait for the round trips), then syncs a bounded number at once.
  let outcomes: (AdoptionOutcome | undefined)[] = []
  const deadline = new AbortController()
  const signal = AbortSignal.any([options.signal, deadline.signal])
  const timer = options.clock.setTimeout(() => deadline.abort(), options.deadlineMs)
  try {
    if (candidates.length > 0)
      outcomes = await ike.adopt!(
        candidates.map((c) => c.request),
        { signal }
      )
  } catch (err) {
    outcomes = candidates.map((c) => ({
      status: 'failed',
      previous: c.sa,
      reason: deadline.signal.aborted ? 'TIMEOUT' : 'TEMPORARY_FAILURE',
      message: (err as Error).message
    }))
  } finally {
    options.clock.clearTimeout(timer)
  }

  const adopted: IkeSaRecords[] = []
  const failedChildren: Phase2Record[] = []
  const unreserve: { kind: 'sequence'; id: string }[] = []
  candidates.forEach((c, i) => {
    const outcome = outcomes[i]
    if (outcome?.status !== 'synced') {
      fallBack(
        c.sa,
        outcome?.status === 'failed'
          ? outcome.reason
          : deadline.signal.aborted
            ? 'TIMEOUT'
            : 'aborted'
      )
      for (const r of c.reservations) {
        options.recorder.forgetChild(r.id)
        // installed before its sync failed, it may have sent under the reservation: a later heir
        // must start past it (the owner's next records audit deletes it)
        if (outcome?.status !== 'failed' || outcome.installed !== true)
          unreserve.push({ kind: 'sequence', id: r.id })
      }
      return
    }
    const dropped = new Set(outcome.failedChildren.map((p) => p.id))
    failedChildren.push(...outcome.failedChildren)
    const children = outcome.records.phase2.filter((p) => !dropped.has(p.id))
    for (const r of c.reservations) {
      if (!dropped.has(r.id)) continue
      unreserve.push({ kind: 'sequence', id: r.id })
      options.recorder.forgetChild(r.id)
    }
    const records = { phase1: outcome.records.phase1, phase2: children }
    adopted.push(records)
    // the heir's own sealed state, for the next backup (written with the heir's records)
    let state: IkeSaState = c.request.state
    try {
      state = ike.exportState?.(records.phase1.id) ?? state
    } catch {
      // not exportable (gone meanwhile): the state the heir adopted is the best it has
    }
    options.recorder.adopted(options.recorder.seal({ ...state, records }), [], children)
  })
  if (unreserve.length > 0)
    await store.deleteRecords(dvipa, unreserve, fence).catch((err: Error) => {
      if (err.name === StaleEpochError.name) throw err
      // a reservation left behind only makes a later heir start higher: harmless
    })
  return {
    adopted,
    fellBack,
    renegotiate: sas.filter((sa) => renegotiate.has(sa)),
    failedChildren
  }
}
