import type {
  CorrelationRecord,
  DvipaRecordSet,
  DynamicFilter,
  FilterRecord,
  IkeSaRecords,
  Phase1Record,
  Phase2Record
} from '@vipsec/interface'

/** Formats an SPI as the 8 hex digits records use. */
export function spiHex(spi: number): string {
  return spi.toString(16).padStart(8, '0')
}

/**
 * The records an owner writes for one IKE SA: phase 1, its phase 2 records, their correlation.
 *
 * @param phase1 - the IKE SA
 * @param phase2 - its Child SAs
 */
export function saRecords(
  phase1: Phase1Record,
  phase2: Phase2Record[]
): [Phase1Record, ...Phase2Record[], CorrelationRecord] {
  const correlation: CorrelationRecord = {
    v: 1,
    kind: 'correlation',
    id: phase1.id,
    dvipa: phase1.dvipa,
    phase1Id: phase1.id,
    phase2Ids: phase2.map((p) => p.id).sort()
  }
  return [phase1, ...phase2, correlation]
}

/**
 * A dynamic filter as a coupling-store record.
 *
 * @param dvipa - the DVIPA
 * @param filter - the filter as the ESP engine holds it
 * @param phase2Id - the Child SA it protects, if any
 */
export function filterRecord(
  dvipa: string,
  filter: DynamicFilter,
  phase2Id: string | null
): FilterRecord {
  return {
    v: 1,
    kind: 'filter',
    id: filter.id,
    dvipa,
    phase2Id,
    direction: filter.direction,
    selector: structuredClone(filter.selector),
    action: filter.action,
    priority: filter.priority
  }
}

/** Why an IKE SA of the records was merged into another rather than renegotiated on its own. */
export type MergeReason =
  /** It had no Child SA, and another IKE SA with the same peer and identities did. */
  | 'no-child-sa'
  /** Another IKE SA with the same peer and identities was newer; its Child SAs move to that one. */
  | 'same-peer'

/** An IKE SA of the records merged into another: one IKE SA per peer is renegotiated. */
export interface Merge {
  /** The phase 1 record merged. */
  phase1Id: string
  /** The phase 1 record it was merged into (the one renegotiated). */
  into: string
  /** Why. */
  reason: MergeReason
  /** How many Child SAs it brought along (renegotiated under the one it was merged into). */
  childSas: number
}

/** What a takeover renegotiates, assembled from the records it took. */
export interface RenegotiationPlan {
  /** One entry per peer and identities, with every Child SA the correlations name for it. */
  sas: IkeSaRecords[]
  /** Phase 2 records no correlation names (reported as failed: nothing to renegotiate them under). */
  orphans: Phase2Record[]
  /** IKE SAs merged into another one of the same peer and identities (every one is in `merged`). */
  superseded: Phase1Record[]
  /** Each merge with its reason, to be reported. */
  merged: Merge[]
}

/**
 * Joins phase 1, phase 2 and correlation records into what `IkeService.renegotiate` takes, one
 * IKE SA per peer and identities: when the records hold several for one peer (a chain of
 * takeovers left a journal beside the records the next owner wrote, or a peer re-established
 * while an old IKE SA was still recorded), the newest one that has Child SAs is renegotiated
 * and carries the Child SAs of the others; every other one is merged into it with a reason.
 * So every Child SA in the records is renegotiated, whichever IKE SA it was under.
 *
 * @param set - the records taken from the coupling store
 */
export function planRenegotiation(set: DvipaRecordSet): RenegotiationPlan {
  const phase2ById = new Map(set.phase2.map((p) => [p.id, p]))
  const used = new Set<string>()
  const byPeer = new Map<string, IkeSaRecords[]>()
  // by phase 1 id: a search of every correlation per IKE SA would be quadratic; the first
  // correlation of an IKE SA counts, as before
  const correlations = new Map<string, (typeof set.correlation)[number]>()
  for (const c of set.correlation)
    if (!correlations.has(c.phase1Id)) correlations.set(c.phase1Id, c)
  for (const phase1 of set.phase1) {
    const correlation = correlations.get(phase1.id)
    const phase2 = (correlation?.phase2Ids ?? []).flatMap((id) => {
      const p = phase2ById.get(id)
      if (p === undefined || used.has(id)) return []
      used.add(id)
      return [p]
    })
    const key = `${phase1.localIdentity.type}:${phase1.localIdentity.value}|${phase1.remoteIdentity.type}:${phase1.remoteIdentity.value}|${phase1.peer.address}`
    const group = byPeer.get(key)
    if (group === undefined) byPeer.set(key, [{ phase1, phase2 }])
    else group.push({ phase1, phase2 })
  }
  const sas: IkeSaRecords[] = []
  const superseded: Phase1Record[] = []
  const merged: Merge[] = []
  for (const group of byPeer.values()) {
    // newest first; among equals, the one with Child SAs
    const ordered = [...group].sort(
      (a, b) =>
        b.phase1.establishedAt - a.phase1.establishedAt ||
        Number(b.phase2.length > 0) - Number(a.phase2.length > 0)
    )
    const base = ordered.find((sa) => sa.phase2.length > 0) ?? ordered[0]!
    const phase2 = [...base.phase2]
    for (const other of ordered) {
      if (other === base) continue
      superseded.push(other.phase1)
      merged.push({
        phase1Id: other.phase1.id,
        into: base.phase1.id,
        reason: other.phase2.length === 0 ? 'no-child-sa' : 'same-peer',
        childSas: other.phase2.length
      })
      phase2.push(...other.phase2)
    }
    sas.push({ phase1: base.phase1, phase2 })
  }
  const orphans = set.phase2.filter((p) => !used.has(p.id))
  return { sas, orphans, superseded, merged }
}
