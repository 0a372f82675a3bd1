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

/** What a takeover renegotiates, assembled from the records it took. */
export interface RenegotiationPlan {
  /** One entry per IKE SA, with the Child SAs the correlations name. */
  sas: IkeSaRecords[]
  /** Phase 2 records no correlation names (reported as failed: nothing to renegotiate them under). */
  orphans: Phase2Record[]
  /** IKE SAs left out because a newer one with the same identities and peer was recorded. */
  superseded: Phase1Record[]
}

/**
 * Joins phase 1, phase 2 and correlation records into what `IkeService.renegotiate` takes. When
 * a chain of takeovers left two IKE SAs for the same peer and identities (the journal of a
 * takeover that died and the records it wrote), only the newest is renegotiated.
 *
 * @param set - the records taken from the coupling store
 */
export function planRenegotiation(set: DvipaRecordSet): RenegotiationPlan {
  const phase2ById = new Map(set.phase2.map((p) => [p.id, p]))
  const used = new Set<string>()
  const byPeer = new Map<string, IkeSaRecords>()
  const superseded: Phase1Record[] = []
  for (const phase1 of set.phase1) {
    const correlation = set.correlation.find((c) => c.phase1Id === phase1.id)
    const phase2 = (correlation?.phase2Ids ?? []).flatMap((id) => {
      const p = phase2ById.get(id)
      if (p === undefined) return []
      used.add(id)
      return [p]
    })
    const key = `${phase1.remoteIdentity.type}:${phase1.remoteIdentity.value}|${phase1.peer.address}`
    const other = byPeer.get(key)
    if (other === undefined || other.phase1.establishedAt < phase1.establishedAt) {
      if (other !== undefined) superseded.push(other.phase1)
      byPeer.set(key, { phase1, phase2 })
    } else {
      superseded.push(phase1)
    }
  }
  const orphans = set.phase2.filter((p) => !used.has(p.id))
  return { sas: [...byPeer.values()], orphans, superseded }
}
