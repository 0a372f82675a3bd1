import type { Dvipa, Endpoint, NodeId } from '@vipsec/interface'
import type { TargetConfig } from './connection-table.js'
import type { DefaultDistributionProcessor } from './distribution-processor.js'

/** What {@link releaseForSwitchover} did for one DVIPA. */
export interface ReleasedDvipa {
  /** The DVIPA. */
  dvipa: Dvipa
  /** The epoch this node released. */
  epoch: number
  /** Milliseconds from the call until the release was written to the store. */
  durationMs: number
}

/**
 * A planned switchover, the owner's half: for every DVIPA this node owns, waits for its queued
 * store writes (so the records are current), stops serving it (IKE service, sockets, address)
 * and releases it in the store under its own epoch. A released DVIPA is the marker: each
 * backup's ownership unit takes it over at once, without waiting for its failure detector, the
 * best live backup first (the others wait their rank delay and find it claimed). Call it before
 * `stop()` on SIGTERM; the DVIPAs this node only backs up are left alone. The processor is
 * marked as stopping: the DVIPAs it gives up are not made ready for a takeover again.
 *
 * @param dp - the distribution processor
 * @returns what was released, in the order of the DVIPAs
 */
export async function releaseForSwitchover(
  dp: DefaultDistributionProcessor
): Promise<ReleasedDvipa[]> {
  const released: ReleasedDvipa[] = []
  const { clock } = dp.components
  dp.markStopping()
  for (const [dvipa, state] of dp.states) {
    const fence = state.ownership.fence()
    if (fence === undefined || state.ownership.current().role !== 'owner') continue
    const started = clock.monotonic()
    await state.writes.catch(() => undefined)
    await state.ownership.abandon()
    released.push({ dvipa, epoch: fence.epoch, durationMs: clock.monotonic() - started })
  }
  return released
}

/** The targets {@link setDvipaTargets} added and removed. */
export interface TargetChange {
  /** Targets now in the list that were not. */
  added: NodeId[]
  /** Targets no longer in the list. */
  removed: NodeId[]
}

/**
 * Replaces the targets of a DVIPA while running (a reload): the connection table's new flows
 * go to the new list at once (existing flows keep their target), the failure detector watches
 * the new targets' heartbeats, and, on the owner, the new targets are told who owns the DVIPA.
 *
 * @param dp - the distribution processor
 * @param dvipa - a DVIPA it serves
 * @param targets - the new targets
 * @param heartbeats - the heartbeat endpoint of each target that has one
 * @returns the targets added and removed
 * @throws Error when this node does not serve the DVIPA
 * @throws InvalidParametersError when a weight is not positive (nothing changes)
 */
export function setDvipaTargets(
  dp: DefaultDistributionProcessor,
  dvipa: Dvipa,
  targets: TargetConfig[],
  heartbeats: Record<NodeId, Endpoint> = {}
): TargetChange {
  const config = dp.init.dvipas.find((d) => d.dvipa === dvipa)
  if (config === undefined) throw new Error(`${dp.id} does not serve ${dvipa}`)
  const state = dp.states.get(dvipa)
  state?.table.setTargets(targets)
  const before = new Set(config.targets.map((t) => t.node))
  const after = new Set(targets.map((t) => t.node))
  config.targets.splice(0, config.targets.length, ...targets.map((t) => ({ ...t })))
  const added = [...after].filter((n) => !before.has(n))
  const removed = [...before].filter((n) => !after.has(n))
  const { detector, link } = dp.components
  const elsewhere = (node: NodeId): boolean =>
    dp.init.dvipas.some((d) => d.targets.some((t) => t.node === node))
  for (const node of added) {
    const endpoint = heartbeats[node]
    if (endpoint === undefined || node === dp.id) continue
    dp.init.targetHeartbeats[node] = endpoint
    if (dp.isStarted()) detector.watch({ node, endpoint })
  }
  for (const node of removed) {
    if (elsewhere(node) || !(node in dp.init.targetHeartbeats)) continue
    delete dp.init.targetHeartbeats[node]
    if (dp.isStarted() && !(node in dp.init.heartbeats)) detector.unwatch(node)
  }
  const fence = state?.ownership.fence()
  if (state !== undefined && fence !== undefined && state.ownership.current().role === 'owner') {
    for (const node of added) {
      if (node === dp.id) continue
      link
        .send(node, { type: 'ownership:notice', dvipa, owner: dp.id, epoch: fence.epoch })
        .catch(() => undefined)
    }
  }
  return { added, removed }
}
