import { countRecords, type Ownership } from '@vipsec/interface'
import { EtcdCouplingStore, type EtcdCouplingStoreInit } from '@vipsec/store-etcd'
import { RedisCouplingStore, type RedisCouplingStoreInit } from '@vipsec/store-redis'

/** Where `vipsec status` reads: Redis options, or `{ etcd: options }` for an etcd store. */
export type StatusSource =
  | RedisCouplingStoreInit
  | {
      /** The etcd store's options: member URLs, credentials, TLS, key prefix. */
      etcd: EtcdCouplingStoreInit
    }

/** What `vipsec status` found for one DVIPA. */
export interface DvipaReport {
  /** The DVIPA. */
  dvipa: string
  /** Its ownership, if it was ever claimed. */
  ownership: Ownership | undefined
  /** IKE SAs recorded. */
  ikeSas: number
  /** Child SAs recorded. */
  childSas: number
  /** Connections recorded. */
  connections: number
  /** Filters recorded. */
  filters: number
  /** Records that could not be decoded. */
  corrupt: number
  /** All records. */
  records: number
}

/**
 * Reads owners, epochs, SAs and connections of DVIPAs from a Redis or etcd coupling store.
 *
 * @param init - how to reach the store
 * @param dvipas - which DVIPAs
 */
export async function readStatus(init: StatusSource, dvipas: string[]): Promise<DvipaReport[]> {
  const store =
    'etcd' in init ? new EtcdCouplingStore({}, init.etcd) : new RedisCouplingStore({}, init)
  await store.start()
  try {
    const reports: DvipaReport[] = []
    for (const dvipa of dvipas) {
      let ownership: Ownership | undefined
      try {
        ownership = await store.getOwnership(dvipa)
      } catch (err) {
        if ((err as Error).name !== 'NotFoundError') throw err
      }
      const set = await store.listRecords(dvipa)
      reports.push({
        dvipa,
        ownership,
        ikeSas: set.phase1.length,
        childSas: set.phase2.length,
        connections: set.connection.length,
        filters: set.filter.length,
        corrupt: set.corrupt.length,
        records: countRecords(set)
      })
    }
    return reports
  } finally {
    await store.stop()
  }
}

/**
 * Formats status reports as a table.
 *
 * @param reports - from {@link readStatus}
 */
export function formatStatus(reports: DvipaReport[]): string[] {
  const rows = [
    [
      'DVIPA',
      'owner',
      'epoch',
      'backups',
      'IKE SAs',
      'Child SAs',
      'connections',
      'filters',
      'corrupt'
    ]
  ]
  for (const r of reports) {
    rows.push([
      r.dvipa,
      r.ownership === undefined ? '-' : (r.ownership.owner ?? '(released)'),
      String(r.ownership?.epoch ?? 0),
      r.ownership?.ranks.join(',') || '-',
      String(r.ikeSas),
      String(r.childSas),
      String(r.connections),
      String(r.filters),
      String(r.corrupt)
    ])
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)))
  return rows.map((row) =>
    row
      .map((cell, i) => cell.padEnd(widths[i]!))
      .join('  ')
      .trimEnd()
  )
}
