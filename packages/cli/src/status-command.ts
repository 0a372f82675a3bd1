import { countRecords, type Ownership, type Phase2Record } from '@vipsec/interface'
import { EtcdCouplingStore, type EtcdCouplingStoreInit } from '@vipsec/store-etcd'
import { RedisCouplingStore, type RedisCouplingStoreInit } from '@vipsec/store-redis'
import { loadConfigOrThrow } from './load-config.js'
import { proposalName, selectorName } from './strongswan.js'

/** A Child SA as the store records it, in swanctl's words. */
export interface ChildReport {
  /** The inbound SPI, hex. */
  inboundSpi: string
  /** The outbound SPI, hex. */
  outboundSpi: string
  /** `tunnel` or `transport`. */
  mode: string
  /** Its ESP proposals, e.g. `aes256gcm16`. */
  proposals: string[]
  /** This side's selectors, e.g. `10.77.0.0/24`. */
  localTs: string[]
  /** The peer's selectors. */
  remoteTs: string[]
  /** Seconds since it was established (or last rekeyed). */
  ageSeconds: number
}

/** An IKE SA as the store records it, with its Child SAs. */
export interface PeerReport {
  /** The peer's address and port, as last seen. */
  peer: string
  /** Our identity. */
  localId: string
  /** The peer's identity. */
  remoteId: string
  /** The IKE SA's SPIs: `initiator_i responder_r`. */
  ikeSpis: string
  /** Its IKE proposals, e.g. `aes256gcm16-prfsha256-x25519`. */
  proposals: string[]
  /** Seconds since it was established (or last rekeyed). */
  ageSeconds: number
  /** Its Child SAs. */
  children: ChildReport[]
}

/** Where `vipsec status` reads: Redis options, or `{ etcd: options }` for an etcd store. */
export type StatusSource =
  | RedisCouplingStoreInit
  | {
      /** The etcd store's options: member URLs, credentials, TLS, key prefix. */
      etcd: EtcdCouplingStoreInit
    }

/** The key prefix a status source reads under (the store's default if it sets none). */
export function prefixOf(source: StatusSource): string {
  return 'etcd' in source ? (source.etcd.keyPrefix ?? 'vipsec/') : (source.keyPrefix ?? 'vipsec:')
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
  /** Each IKE SA with its Child SAs. */
  peers: PeerReport[]
}

/**
 * Reads owners, epochs, and every IKE and Child SA of DVIPAs from a Redis or etcd coupling store.
 *
 * @param init - how to reach the store
 * @param dvipas - which DVIPAs
 * @param now - the time ages are counted to, ms since the Unix epoch (default now)
 */
export async function readStatus(
  init: StatusSource,
  dvipas: string[],
  now = Date.now()
): Promise<DvipaReport[]> {
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
      const phase2 = new Map(set.phase2.map((p) => [p.id, p]))
      const age = (at: number): number => Math.max(0, Math.round((now - at) / 1000))
      const peers = set.phase1.map((p): PeerReport => {
        const ids = set.correlation.find((c) => c.phase1Id === p.id)?.phase2Ids ?? []
        const children = ids
          .map((id) => phase2.get(id))
          .filter((c): c is Phase2Record => c !== undefined)
        return {
          peer: `${p.peer.address}:${p.peer.port}`,
          localId: p.localIdentity.value,
          remoteId: p.remoteIdentity.value,
          ikeSpis: `${p.ikeSaId.initiatorSpi}_i ${p.ikeSaId.responderSpi}_r`,
          proposals: p.policy.proposals.map(proposalName),
          ageSeconds: age(p.establishedAt),
          children: children.map((c) => ({
            inboundSpi: c.inboundSpi,
            outboundSpi: c.outboundSpi,
            mode: c.mode,
            proposals: c.policy.proposals.map(proposalName),
            localTs: c.selectors.local.map(selectorName),
            remoteTs: c.selectors.remote.map(selectorName),
            ageSeconds: age(c.establishedAt)
          }))
        }
      })
      reports.push({
        dvipa,
        ownership,
        ikeSas: set.phase1.length,
        childSas: set.phase2.length,
        connections: set.connection.length,
        filters: set.filter.length,
        corrupt: set.corrupt.length,
        records: countRecords(set),
        peers
      })
    }
    return reports
  } finally {
    await store.stop()
  }
}

/** Where `vipsec status` reads from. */
export interface StatusTarget {
  /** How to reach the store, password included. */
  init: StatusSource
  /** The DVIPAs of the cluster file. */
  dvipas: string[]
  /** The store's `host:port` (or etcd URLs), for messages. */
  where: string
}

/**
 * The store and DVIPAs a node file's cluster names, with the password from its secrets file.
 *
 * @param path - a node file
 * @throws InvalidConfigError naming the field when the files are wrong; an Error when the store
 * is the in-memory one
 */
export async function statusTarget(path: string): Promise<StatusTarget> {
  const config = await loadConfigOrThrow(path, { host: false })
  const store = config.cluster.store
  const password = config.secrets?.store?.password
  if (store.type === 'etcd')
    return {
      init: {
        etcd: {
          hosts: store.endpoints,
          ...(store.prefix === undefined ? {} : { keyPrefix: store.prefix }),
          ...(store.username === undefined ? {} : { username: store.username }),
          ...(password === undefined ? {} : { password })
        }
      },
      dvipas: Object.keys(config.cluster.dvipas),
      where: store.endpoints.join(',')
    }
  if (store.type !== 'redis')
    throw new Error(`status reads a Redis or etcd store; this cluster's is ${store.type}`)
  return {
    init: {
      ...(store.address === undefined
        ? {}
        : { host: store.address.address, port: store.address.port }),
      ...(store.sentinels === undefined
        ? {}
        : {
            sentinels: store.sentinels.map((e) => ({ host: e.address, port: e.port })),
            name: store.name
          }),
      ...(store.prefix === undefined ? {} : { keyPrefix: store.prefix }),
      ...(store.db === undefined ? {} : { db: store.db }),
      ...(store.username === undefined ? {} : { username: store.username }),
      ...(password === undefined ? {} : { password }),
      ...(store.tls === true ? { tls: {} } : {})
    },
    dvipas: Object.keys(config.cluster.dvipas),
    where:
      store.address !== undefined
        ? `${store.address.address}:${store.address.port}`
        : `Sentinel ${store.name} at ${store.sentinels!.map((e) => `${e.address}:${e.port}`).join(',')}`
  }
}

/** Whether the store held nothing at all for these DVIPAs: most likely a wrong prefix. */
export function isEmpty(reports: DvipaReport[]): boolean {
  return reports.every((r) => r.ownership === undefined && r.records === 0)
}

/**
 * The owner column, from the ownership record: a released DVIPA names who released it, and an
 * owner named by a switchover claim, until its takeover claims again, whose SAs it takes over.
 */
function ownerCell(ownership: Ownership | undefined): string {
  if (ownership === undefined) return '-'
  const previous = ownership.previousOwner
  if (ownership.owner === null)
    return previous === undefined ? '(released)' : `(released by ${previous})`
  return previous === undefined ? ownership.owner : `${ownership.owner} (from ${previous})`
}

/**
 * Formats status reports as a table, then each DVIPA's IKE SAs and Child SAs as
 * `swanctl --list-sas` would show them.
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
      ownerCell(r.ownership),
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
  const lines = rows.map((row) =>
    row
      .map((cell, i) => cell.padEnd(widths[i]!))
      .join('  ')
      .trimEnd()
  )
  for (const r of reports) {
    for (const p of r.peers) {
      lines.push(
        `${r.dvipa}: ${p.localId} === ${p.remoteId} at ${p.peer}, IKE ${p.ikeSpis}, ${p.proposals.join(', ')}, ${p.ageSeconds}s`
      )
      for (const c of p.children)
        lines.push(
          `  ESP ${c.inboundSpi}_i ${c.outboundSpi}_o ${c.mode} ${c.proposals.join(', ')}: ${c.localTs.join(',')} === ${c.remoteTs.join(',')}, ${c.ageSeconds}s`
        )
    }
  }
  return lines
}
