/**
 * The reload of a running node (`SIGHUP`, `vipsec reload`): the files are read and checked again
 * as at start, compared with what the node runs, and either applied whole, without a failover,
 * or refused whole, with the reason.
 *
 * Applied: the peer connections (added, removed, changed), the secrets (PSKs, certificates and
 * private keys, trust anchors), the cluster keys, and the targets of each DVIPA. Refused, since
 * only a restart (and so a failover of what the node owns) can change them: the DVIPAs, their
 * ranks and policy (`dvipa`), the node's identity and addresses (`identity`), the coupling store
 * and its credentials (`store`), and the rest of the node's wiring (`restart`: detector,
 * takeover timing, IKE timing, link options, admin endpoint, hook, applications, delivery).
 *
 * @module
 */
import type { VipsecNode } from '@vipsec/container'
import { setDvipaTargets, type DefaultDistributionProcessor } from '@vipsec/core'
import { configChanged, type IkeV2ServiceInit } from '@vipsec/ike-v2'
import { TOKENS, type Endpoint, type Identity } from '@vipsec/interface'
import { endpointsOf, formatIssues, loadConfig, type LoadedConfig } from './load-config.js'

/** A change a reload applies. */
export interface ReloadChange {
  /** What changed. */
  kind:
    | 'peer:added'
    | 'peer:removed'
    | 'peer:changed'
    | 'secrets:psk'
    | 'secrets:certificates'
    | 'cluster-keys'
    | 'targets'
  /** The connection, secret or DVIPA it is about. */
  name: string
  /** For `targets`: the targets added and removed. */
  added?: string[]
  /** For `targets`: the targets removed. */
  removed?: string[]
}

/** Why a reload was refused. */
export type ReloadReason = 'invalid' | 'dvipa' | 'identity' | 'store' | 'restart'

/** A change a reload cannot apply without a restart (and a failover of what the node owns). */
export interface ReloadRefusal {
  /** Which kind of change. */
  reason: ReloadReason
  /** The file and field, e.g. `cluster: store`. */
  path: string
  /** What a reload cannot do about it. */
  message: string
}

/** What a reload would do: the changes it applies, or the refusals that stop it. */
export interface ReloadPlan {
  /** The changes, in the order they are applied. */
  changes: ReloadChange[]
  /** Changes that need a restart; when any, nothing is applied. */
  refused: ReloadRefusal[]
}

/** The outcome of a reload. */
export interface ReloadResult extends ReloadPlan {
  /** `applied`, `unchanged` (the files say what runs), `refused` or `invalid` (the files have errors). */
  outcome: 'applied' | 'unchanged' | 'refused' | 'invalid'
  /** For `invalid`: each problem as `file: field: message`. */
  issues?: string[]
  /** IKE SAs deleted because their connection was removed. */
  deletedIkeSas?: number
}

/** A canonical text of a value: keys sorted, bytes as hex, so that equal contents compare equal. */
export function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v instanceof Uint8Array) return `hex:${Buffer.from(v).toString('hex')}`
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const o = v as Record<string, unknown>
      if (o.type === 'Buffer' && Array.isArray(o.data))
        return `hex:${Buffer.from(o.data as number[]).toString('hex')}`
      return Object.fromEntries(
        Object.keys(o)
          .sort()
          .map((k) => [k, o[k]])
      )
    }
    return v
  })
}

const same = (a: unknown, b: unknown): boolean => canonical(a) === canonical(b)

/** The DPs of a cluster file: every node in some DVIPA's ranks. */
function dpsOf(config: LoadedConfig): Set<string> {
  return new Set(Object.values(config.cluster.dvipas).flatMap((d) => d.ranks))
}

/** The parts of a configuration a reload cannot change, each with its path and reason. */
function fixedParts(config: LoadedConfig): [ReloadReason, string, unknown][] {
  const { node, cluster, secrets } = config
  const me = node.node
  const dps = dpsOf(config)
  // every node a DVIPA ranks, and this node: their addresses and ports make the cluster
  const named = [...new Set([me, ...dps])].sort()
  const served = Object.entries(cluster.dvipas)
    .filter(([, d]) => d.ranks.includes(me) || d.targets.includes(me))
    .map(([dvipa, d]) => ({ dvipa, ranks: d.ranks, policy: d.policy }))
    .sort((a, b) => a.dvipa.localeCompare(b.dvipa))
  return [
    ['identity', 'node: node', me],
    ['identity', 'node: interface', node.interface],
    ['identity', 'node: role', config.role],
    [
      'identity',
      'cluster: nodes',
      named.map((n) => [n, cluster.nodes[n] === undefined ? null : endpointsOf(cluster, n)])
    ],
    ['identity', 'cluster: ports', cluster.ports],
    ['dvipa', 'cluster: dvipas', served],
    ['store', 'cluster: store', cluster.store],
    ['store', 'secrets: store', secrets?.store],
    ['restart', 'cluster: detector', cluster.detector],
    ['restart', 'cluster: takeover', cluster.takeover],
    ['restart', 'cluster: ike', cluster.ike],
    ['restart', 'cluster: link', cluster.link],
    ['restart', 'node: admin', node.admin],
    ['restart', 'node: hook', node.hook],
    ['restart', 'node: apps', node.apps],
    ['restart', 'node: deliver', config.deliver],
    ['restart', 'node: kernel', node.kernel]
  ]
}

const WHY: Record<ReloadReason, string> = {
  invalid: 'the files have errors',
  dvipa:
    'the DVIPAs, their ranks and policy change only with a restart (a failover of what this node owns)',
  identity: "the node's identity and the DPs' addresses change only with a restart",
  store: 'the coupling store changes only with a restart',
  restart: 'applied only at start'
}

/**
 * Compares what a node runs with the files as they are now: the changes a reload applies and
 * the ones it must refuse.
 *
 * @param current - the configuration the node runs
 * @param next - the files as loaded now
 */
export function planReload(current: LoadedConfig, next: LoadedConfig): ReloadPlan {
  const refused: ReloadRefusal[] = []
  const now = fixedParts(next)
  for (const [i, [reason, path, value]] of fixedParts(current).entries()) {
    if (!same(value, now[i]![2])) refused.push({ reason, path, message: WHY[reason] })
  }
  const changes: ReloadChange[] = []
  if (current.role !== 'target') {
    const before = current.cluster.connections
    const after = next.cluster.connections
    for (const name of Object.keys(after))
      if (!(name in before)) changes.push({ kind: 'peer:added', name })
    for (const name of Object.keys(before))
      if (!(name in after)) changes.push({ kind: 'peer:removed', name })
    for (const name of Object.keys(after))
      if (name in before && !same(before[name], after[name]))
        changes.push({ kind: 'peer:changed', name })
    if (!same(current.ike?.psks, next.ike?.psks)) {
      const a = current.secrets?.ike ?? {}
      const b = next.secrets?.ike ?? {}
      const names = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter(
        (n) => !same(a[n], b[n])
      )
      changes.push({ kind: 'secrets:psk', name: names.join(',') || 'ike' })
    }
    if (
      !same(current.ike?.certificates, next.ike?.certificates) ||
      !same(current.ike?.trustAnchors, next.ike?.trustAnchors)
    )
      changes.push({ kind: 'secrets:certificates', name: 'private' })
    for (const d of next.dvipas) {
      const old = current.dvipas.find((c) => c.dvipa === d.dvipa)
      if (old === undefined || same(old.targets, d.targets)) continue
      const was = new Set(old.targets.map((t) => t.node))
      const is = new Set(d.targets.map((t) => t.node))
      changes.push({
        kind: 'targets',
        name: d.dvipa,
        added: [...is].filter((n) => !was.has(n)),
        removed: [...was].filter((n) => !is.has(n))
      })
    }
  }
  if (!same(current.keys, next.keys)) changes.push({ kind: 'cluster-keys', name: 'cluster_key' })
  return { changes, refused }
}

/** Replaces an array's contents in place (the IKE services hold the array itself). */
function replace<T>(target: T[] | undefined, values: T[] | undefined): void {
  if (target !== undefined) target.splice(0, target.length, ...(values ?? []))
}

const sameIdentity = (a: Identity | undefined, b: Identity | undefined): boolean =>
  a !== undefined && b !== undefined && a.type === b.type && a.value === b.value

/** What {@link applyReload} did. */
export interface AppliedReload {
  /** The configuration the node runs now. */
  config: LoadedConfig
  /** IKE SAs deleted because their connection was removed. */
  deletedIkeSas: number
}

/**
 * Applies a plan without refusals to a running node: the IKE options in place (every IKE
 * service of the node reads them at its next negotiation), deletes the IKE SAs of removed
 * connections, sets the cluster keys on the link and the detector, and the targets of each
 * DVIPA. Returns the configuration the node runs now, and the number of IKE SAs deleted.
 *
 * @param node - the running node
 * @param current - the configuration it runs (its IKE options are the ones its services hold)
 * @param next - the files as loaded now
 * @param plan - from {@link planReload}, with no refusals
 */
export async function applyReload(
  node: VipsecNode,
  current: LoadedConfig,
  next: LoadedConfig,
  plan: ReloadPlan
): Promise<AppliedReload> {
  if (plan.refused.length > 0) throw new Error('a plan with refusals is never applied')
  let deletedIkeSas = 0
  const ike: IkeV2ServiceInit | undefined = current.ike
  const dp = node.has(TOKENS.DistributionProcessor)
    ? (node.get(TOKENS.DistributionProcessor) as DefaultDistributionProcessor)
    : undefined
  if (ike !== undefined && next.ike !== undefined) {
    const removedIds = plan.changes
      .filter((c) => c.kind === 'peer:removed')
      .map((c) => current.cluster.connections[c.name]?.remote.id)
      .filter((id): id is Identity => id !== undefined)
      .filter((id) => !(next.ike?.peers ?? []).some((p) => sameIdentity(p.remoteIdentity, id)))
    replace(ike.peers, next.ike.peers)
    replace(ike.psks, next.ike.psks)
    replace(ike.certificates, next.ike.certificates)
    replace(ike.trustAnchors, next.ike.trustAnchors)
    // the services index these lists: tell them they changed, whatever their lengths now
    configChanged(ike)
    if (removedIds.length > 0 && dp !== undefined) {
      for (const state of dp.states.values()) {
        const service = state.ike
        if (service === undefined) continue
        for (const sa of service.list()) {
          if (!removedIds.some((id) => sameIdentity(sa.phase1.remoteIdentity, id))) continue
          await service.deleteIkeSa(sa.phase1.id).catch(() => undefined)
          deletedIkeSas++
        }
      }
    }
  }
  if (plan.changes.some((c) => c.kind === 'cluster-keys') && !next.insecure) {
    for (const token of [TOKENS.ClusterLink, TOKENS.FailureDetector]) {
      if (!node.has(token)) continue
      const part = node.get(token as symbol) as { setKeys?: (keys: unknown) => void }
      part.setKeys?.(next.keys)
    }
  }
  const dvipas = current.dvipas
  if (dp !== undefined) {
    const link = node.has(TOKENS.ClusterLink)
      ? (node.get(TOKENS.ClusterLink) as { addPeer?: (n: string, e: Endpoint) => void })
      : undefined
    for (const change of plan.changes) {
      if (change.kind !== 'targets') continue
      const targets = next.dvipas.find((d) => d.dvipa === change.name)!.targets
      const heartbeats: Record<string, Endpoint> = {}
      for (const t of change.added ?? []) {
        const ends = endpointsOf(next.cluster, t)
        heartbeats[t] = ends.heartbeat
        link?.addPeer?.(t, ends.link)
      }
      setDvipaTargets(dp, change.name, targets, heartbeats)
    }
  }
  // the node keeps running on the objects it was built with, now holding the new contents
  return { config: { ...next, ...(ike === undefined ? {} : { ike }), dvipas }, deletedIkeSas }
}

/** A node that can be reloaded: what it runs, and how to replace that. */
export interface Reloadable {
  /** The node. */
  node: VipsecNode
  /** The configuration it runs. */
  config: LoadedConfig
}

/**
 * Reloads a running node from its files: loads and checks them as a start would, plans, and
 * applies all of it or nothing. Logs `reload:applied` (info), `reload:unchanged` (info) or
 * `reload:refused` (warn, error for invalid files) with the changes and the reasons.
 *
 * @param running - the node and what it runs (its `config` is replaced when applied)
 * @param options - host checks (default on, as at start)
 */
export async function reloadNode(
  running: Reloadable,
  options: { host?: boolean } = {}
): Promise<ReloadResult> {
  const log = running.node.logger.forComponent('node')
  const loaded = await loadConfig(running.config.path, { host: options.host ?? true })
  if (!loaded.ok) {
    const issues = formatIssues(loaded.issues)
    log.error(
      { type: 'reload:refused', reason: 'invalid', issues },
      'reload: the files have errors; nothing changed'
    )
    return {
      outcome: 'invalid',
      changes: [],
      refused: [{ reason: 'invalid', path: issues[0] ?? '', message: WHY.invalid }],
      issues
    }
  }
  const plan = planReload(running.config, loaded.config)
  if (plan.refused.length > 0) {
    log.warn(
      {
        type: 'reload:refused',
        reason: plan.refused[0]!.reason,
        refused: plan.refused,
        changes: plan.changes
      },
      `reload: ${plan.refused.map((r) => `${r.path} (${r.reason})`).join(', ')} changed and needs a restart; nothing changed`
    )
    return { outcome: 'refused', ...plan }
  }
  if (plan.changes.length === 0) {
    log.info({ type: 'reload:unchanged' }, 'reload: the files say what runs; nothing to do')
    return { outcome: 'unchanged', ...plan }
  }
  const { config, deletedIkeSas } = await applyReload(
    running.node,
    running.config,
    loaded.config,
    plan
  )
  running.config = config
  log.info(
    { type: 'reload:applied', changes: plan.changes, deletedIkeSas },
    `reload: applied ${plan.changes.map((c) => `${c.kind} ${c.name}`).join(', ')}`
  )
  return { outcome: 'applied', ...plan, deletedIkeSas }
}
