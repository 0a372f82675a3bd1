import { execFile } from 'node:child_process'
import type { VipsecNode } from '@vipsec/container'
import { TOKENS, type Logger } from '@vipsec/interface'

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
 * `VIPSEC_DIRECTION` (inbound or outbound) and `VIPSEC_REASON`. A run that fails or times out is
 * logged (`hook:failed`) and does not stop the node.
 *
 * @param node - the node
 * @param options - the program, its timeout and the logger
 * @returns a promise that settles when the runs queued so far have finished
 */
export function runHooks(node: VipsecNode, options: HookOptions): () => Promise<void> {
  let queue: Promise<void> = Promise.resolve()
  const run = (env: Record<string, string>): void => {
    queue = queue.then(
      () =>
        new Promise<void>((resolve) => {
          execFile(
            options.command,
            [],
            {
              env: { ...process.env, VIPSEC_NODE: node.nodeId, ...env },
              timeout: options.timeoutMs ?? 10_000
            },
            (err) => {
              if (err !== null)
                options.log.error(
                  {
                    type: 'hook:failed',
                    event: env.VIPSEC_EVENT,
                    command: options.command,
                    error: err.message
                  },
                  `hook failed: ${err.message}`
                )
              resolve()
            }
          )
        })
    )
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
    node.get(TOKENS.EspEngine).events$.subscribe((e) => {
      if (e.type !== 'sa:installed' && e.type !== 'sa:removed') return
      run({
        VIPSEC_EVENT: e.type,
        VIPSEC_SPI: e.spi.toString(16).padStart(8, '0'),
        VIPSEC_DIRECTION: e.direction,
        ...(e.type === 'sa:removed' ? { VIPSEC_REASON: e.reason } : {})
      })
    })
  }
  return () => queue
}
