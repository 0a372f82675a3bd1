/**
 * Structured logging, as a component: a node hands each of its parts a logger named after the
 * part (libp2p's `ComponentLogger` is the model), so that every line says which part wrote it
 * and which node ran it. Libraries never write to the console; they log here.
 *
 * @module
 */

/** Fields of one log line: `type` (an event type in `noun:verb` form) and anything JSON can hold. */
export type LogFields = {
  /** What happened, e.g. `ike:failed`. */
  type?: string
} & Record<string, unknown>

/** A logger of one part. Each method writes one line with the fields and a short message. */
export interface Logger {
  /** Something failed and needs attention (an exchange refused, a store write lost). */
  error(fields: LogFields, message?: string): void
  /** Something degraded that the node works around (a suspect peer, a lost ownership). */
  warn(fields: LogFields, message?: string): void
  /** A state change an operator wants to see (an SA established, a takeover step). */
  info(fields: LogFields, message?: string): void
  /** Per-packet or per-connection detail. */
  debug(fields: LogFields, message?: string): void
}

/** Makes the logger of each part of a node. */
export interface ComponentLogger {
  /**
   * The logger of one part; its lines carry `component: name`.
   *
   * @param name - the part, e.g. `ike`, `processor`, `detector`
   */
  forComponent(name: string): Logger
}

/** A logger that writes nothing: the default where no logger is given. */
export const silentLogger: ComponentLogger = {
  forComponent: () => SILENT
}

const noop = (): void => {}
const SILENT: Logger = { error: noop, warn: noop, info: noop, debug: noop }
