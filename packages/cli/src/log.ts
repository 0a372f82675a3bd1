import type { VipsecNode } from '@vipsec/container'
import { TOKENS } from '@vipsec/interface'

/** Log levels, most severe first. */
export type LogLevel = 'error' | 'warn' | 'info' | 'debug'

const ORDER: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 }

/** Writes one JSON object per line: time, level, node, event type, and the event's fields. */
export class JsonLogger {
  /**
   * @param node - the node id put on every line
   * @param level - the most verbose level written
   * @param write - where lines go (default stdout)
   */
  constructor(
    private readonly node: string,
    private readonly level: LogLevel = 'info',
    private readonly write: (line: string) => void = (line) => process.stdout.write(`${line}\n`)
  ) {}

  /**
   * Logs an event.
   *
   * @param level - its level
   * @param event - `type` and any fields (Uint8Arrays are written as their length)
   */
  log(level: LogLevel, event: { type: string } & Record<string, unknown>): void {
    if (ORDER[level] > ORDER[this.level]) return
    const line = JSON.stringify(
      { time: new Date().toISOString(), level, node: this.node, ...event },
      (_k, v: unknown) =>
        v instanceof Uint8Array ? { bytes: v.length } : typeof v === 'bigint' ? v.toString() : v
    )
    this.write(line)
  }
}

/**
 * Logs what a node's parts report: distribution processor, failure detector, network adapter
 * and target stack events. Per-connection events are `debug`; failures and lost ownership `warn`.
 *
 * @param node - the node
 * @param logger - where to log
 */
export function logNodeEvents(node: VipsecNode, logger: JsonLogger): void {
  if (node.has(TOKENS.DistributionProcessor)) {
    node.get(TOKENS.DistributionProcessor).events$.subscribe((e) => {
      const level: LogLevel = e.type.startsWith('connection:')
        ? 'debug'
        : e.type === 'ownership:lost' ||
            e.type === 'ownership:fenced' ||
            e.type === 'takeover:failed'
          ? 'warn'
          : 'info'
      logger.log(level, e)
    })
  }
  if (node.has(TOKENS.FailureDetector)) {
    node
      .get(TOKENS.FailureDetector)
      .events$.subscribe((e) => logger.log(e.type === 'node:failed' ? 'warn' : 'info', e))
  }
  if (node.has(TOKENS.NetworkAdapter))
    node.get(TOKENS.NetworkAdapter).events$.subscribe((e) => logger.log('info', e))
  if (node.has(TOKENS.TargetStack))
    node.get(TOKENS.TargetStack).events$.subscribe((e) => logger.log('info', e))
}
