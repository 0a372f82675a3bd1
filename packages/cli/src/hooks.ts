import { execFile } from 'node:child_process'
import type { VipsecNode } from '@vipsec/container'
import {
  TOKENS,
  type Logger,
  type Phase1Record,
  type Phase2Record,
  type EspDirection
} from '@vipsec/interface'
import { selectorName } from './strongswan.js'

/** The events a hook runs on, with the environment it gets (all values are strings). */
export const HOOK_EVENTS = [
  'ownership:claimed',
  'ownership:lost',
  'ownership:fenced',
  'takeover:completed',
  'takeover:failed',
  'sa:installed',
  'sa:removed'
] as const

/** Options of {@link runHooks}. */
export interface HookOptions {
  /** The program to run (no shell), with the event in its environment. */
  command: string
  /** The most time one run may take, ms; it is killed after. Default 10000. */
  timeoutMs?: number
  /** Where failures and exits are logged. */
  log: Logger
}

/**
 * Runs a program on every ownership transition and every ESP SA installed or removed, like
 * keepalived's `notify_master`/`notify_backup` and strongSwan's updown script: one run at a time,
 * in the order of the events, each with `VIPSEC_EVENT`, `VIPSEC_NODE` and, as they apply,
 * `VIPSEC_DVIPA`, `VIPSEC_EPOCH`, `VIPSEC_PREVIOUS_OWNER`, `VIPSEC_SPI` (hex),
 * `VIPSEC_DIRECTION` (inbound or outbound) and `VIPSEC_REASON`. An ESP SA of a Child SA the
 * processor knows also gets what strongSwan's updown script is given, for routes and firewall
 * rules: `VIPSEC_LOCAL_TS` and `VIPSEC_REMOTE_TS` (its traffic selectors in swanctl's words,
 * space-separated), `VIPSEC_MODE`, `VIPSEC_PEER` and `VIPSEC_PEER_PORT` (the peer's IKE
 * endpoint), `VIPSEC_LOCAL_ID` and `VIPSEC_REMOTE_ID`, and its `VIPSEC_DVIPA`. A run that fails
 * or times out is logged (`hook:failed`) and does not stop the node.
 *
 * @param node - the node
 * @param options - the program, its timeout and the logger
 * @returns a promise that settles when the runs queued so far have finished
 */
export function runHooks(node: VipsecNode, options: HookOptions): () => Promise<void> {
  let queue: Promise<void> = Promise.resolve()
  const run = (env: Record<string, string> | Promise<Record<string, string>>): void => {
    queue = queue.then(async () => {
      const vars = await env
      return new Promise<void>((resolve) => {
        execFile(
          options.command,
          [],
          {
            env: { ...process.env, VIPSEC_NODE: node.nodeId, ...vars },
            timeout: options.timeoutMs ?? 10_000
          },
          (err) => {
            if (err !== null)
              options.log.error(
                {
                  type: 'hook:failed',
                  event: vars.VIPSEC_EVENT,
                  command: options.command,
                  error: err.message
                },
                `hook failed: ${err.message}`
              )
            resolve()
          }
        )
      })
    })
  }
  if (node.has(TOKENS.DistributionProcessor)) {
    node.get(TOKENS.DistributionProcessor).events$.subscribe((e) => {
      if (!(HOOK_EVENTS as readonly string[]).includes(e.type)) return
      const env: Record<string, string> = { VIPSEC_EVENT: e.type }
      const fields = e as unknown as Record<string, unknown>
      const report = fields.report as
        { dvipa?: string; epoch?: number; previousOwner?: string } | undefined
      const dvipa = fields.dvipa ?? report?.dvipa
      const epoch = fields.epoch ?? report?.epoch
      const previous = report?.previousOwner ?? fields.previousOwner
      if (dvipa !== undefined) env.VIPSEC_DVIPA = String(dvipa)
      if (epoch !== undefined) env.VIPSEC_EPOCH = String(epoch)
      if (previous !== undefined) env.VIPSEC_PREVIOUS_OWNER = String(previous)
      if (fields.reason !== undefined) env.VIPSEC_REASON = String(fields.reason)
      run(env)
    })
  }
  if (node.has(TOKENS.EspEngine)) {
    const states = node.has(TOKENS.DistributionProcessor)
      ? (node.get(TOKENS.DistributionProcessor) as unknown as { states?: Map<string, SaHolder> })
          .states
      : undefined
    node.get(TOKENS.EspEngine).events$.subscribe((e) => {
      if (e.type !== 'sa:installed' && e.type !== 'sa:removed') return
      const env = {
        VIPSEC_EVENT: e.type,
        VIPSEC_SPI: e.spi.toString(16).padStart(8, '0'),
        VIPSEC_DIRECTION: e.direction,
        ...(e.type === 'sa:removed' ? { VIPSEC_REASON: e.reason } : {})
      }
      const withChild = (): Record<string, string> => ({
        ...childEnv(states, e.spi, e.direction),
        ...env
      })
      // an SA is installed just before the processor hears of its Child SA (in the same turn),
      // and removed just before the processor forgets it
      run(e.type === 'sa:installed' ? Promise.resolve().then(withChild) : withChild())
    })
  }
  return () => queue
}

/** What the processor holds per DVIPA that {@link childEnv} reads: its IKE SAs and Child SAs. */
interface SaHolder {
  sas: Map<string, { phase1: Phase1Record; phase2: Map<string, Phase2Record> }>
}

/**
 * The updown-like variables of the Child SA an ESP SA belongs to, when the processor knows it.
 *
 * @param states - the processor's per-DVIPA state
 * @param spi - the ESP SA's SPI
 * @param direction - its direction
 */
function childEnv(
  states: Map<string, SaHolder> | undefined,
  spi: number,
  direction: EspDirection
): Record<string, string> {
  for (const [dvipa, state] of states ?? []) {
    for (const { phase1, phase2 } of state.sas.values()) {
      for (const child of phase2.values()) {
        const own = direction === 'inbound' ? child.inboundSpi : child.outboundSpi
        if (Number.parseInt(own, 16) !== spi) continue
        return {
          VIPSEC_DVIPA: dvipa,
          VIPSEC_LOCAL_TS: child.selectors.local.map(selectorName).join(' '),
          VIPSEC_REMOTE_TS: child.selectors.remote.map(selectorName).join(' '),
          VIPSEC_MODE: child.mode,
          VIPSEC_PEER: phase1.peer.address,
          VIPSEC_PEER_PORT: String(phase1.peer.port),
          VIPSEC_LOCAL_ID: phase1.localIdentity.value,
          VIPSEC_REMOTE_ID: phase1.remoteIdentity.value
        }
      }
    }
  }
  return {}
}
