import {
  type ComponentLogger,
  type DistributionProcessor,
  type EspEngine,
  type IkeEvent,
  type IkeService,
  type Logger,
  type LogFields
} from '@vipsec/interface'
import { pino, type DestinationStream, type Level } from 'pino'
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

/** What the log lines waiting for stdout may take, bytes: beyond it, lines are dropped. */
export const LOG_BUFFER_BYTES = 16 * 1024 * 1024

/**
 * Where a node's log lines go by default: a file descriptor (stdout) written asynchronously.
 * Lines written while a write is under way join the next one, so a burst (a takeover logs a few
 * lines per tunnel, thousands in a second) costs a few writes rather than a blocking write per
 * line, and a slow reader of stdout no longer stalls the process (the data plane, the
 * heartbeats). What waits is bounded by {@link LOG_BUFFER_BYTES}; it is written out
 * synchronously when the process exits (not after `kill -9`).
 *
 * @param fd - the file descriptor; default 1 (stdout)
 */
export function logDestination(fd = 1): DestinationStream {
  return pino.destination({ dest: fd, sync: false, maxLength: LOG_BUFFER_BYTES })
}

/** Options of {@link pinoLogger}. */
export interface PinoLoggerInit {
  /** The node id put on every line as `node` (the writer, never the event's subject). */
  node: string
  /** The most verbose level written: `error`, `warn`, `info` (default) or `debug`. */
  level?: Level
  /** Where lines go. Default: stdout, written asynchronously ({@link logDestination}). */
  destination?: DestinationStream
}

/**
 * A {@link ComponentLogger} on pino: one JSON object per line with `time` (ISO 8601), `level`
 * (its name), `node` (the node that wrote it), `component` (the part) and the event's fields.
 *
 * @param init - node id, level and destination
 */
export function pinoLogger(init: PinoLoggerInit): ComponentLogger {
  const root = pino(
    {
      level: init.level ?? 'info',
      base: { node: init.node },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      messageKey: 'msg'
    },
    init.destination ?? logDestination()
  )
  return {
    forComponent(name: string): Logger {
      const child = root.child({ component: name })
      return {
        error: (fields, message) => child.error(fields, message),
        warn: (fields, message) => child.warn(fields, message),
        info: (fields, message) => child.info(fields, message),
        debug: (fields, message) => child.debug(fields, message)
      }
    }
  }
}

/** Anything with an event type. */
export interface TypedEvent {
  /** The event type, `noun:verb`. */
  type: string
}

/**
 * An event as log fields: byte arrays as their length, bigints as text, and the event's own
 * `node` (the node it is about) as `subject`, so that `node` stays the writer.
 */
export function eventFields<E extends TypedEvent>(event: E): LogFields {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(event)) {
    const key = k === 'node' ? 'subject' : k
    out[key] = plainField(v ?? null)
  }
  return out as LogFields
}

/** What JSON would make of a log field, byte arrays as their length and bigints as text. */
function viaJson(v: unknown): unknown {
  return JSON.parse(
    JSON.stringify(v, (_k, x: unknown) =>
      x instanceof Uint8Array ? { bytes: x.length } : typeof x === 'bigint' ? x.toString() : x
    ) ?? 'null'
  ) as unknown
}

/**
 * {@link viaJson} without the text in between for what events hold (strings, finite numbers,
 * booleans, null, bigints, byte arrays, plain objects and arrays of them): each ESP SA an heir
 * adopts logs a line, and the round trip through JSON was most of that line's cost. Anything
 * else (a toJSON, a Map, a non-finite number, a function) goes through JSON as before.
 */
function plainField(v: unknown, depth = 0): unknown {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return v
    case 'number':
      // (JSON writes -0 as 0)
      return Number.isFinite(v) ? (v === 0 ? 0 : v) : null
    case 'bigint':
      return v.toString()
    case 'object': {
      if (v === null) return null
      if (v instanceof Uint8Array) return { bytes: v.length }
      if (depth > 32) return viaJson(v)
      if (Array.isArray(v)) {
        const out: unknown[] = []
        for (const x of v) {
          const t = typeof x
          // JSON writes these as null in an array
          out.push(
            t === 'undefined' || t === 'function' || t === 'symbol'
              ? null
              : plainField(x, depth + 1)
          )
        }
        return out
      }
      const proto = Object.getPrototypeOf(v) as unknown
      if ((proto !== Object.prototype && proto !== null) || 'toJSON' in v) return viaJson(v)
      const out: Record<string, unknown> = {}
      for (const [k, x] of Object.entries(v)) {
        const t = typeof x
        // JSON leaves these fields out
        if (t === 'undefined' || t === 'function' || t === 'symbol') continue
        out[k] = plainField(x, depth + 1)
      }
      return out
    }
    default:
      return viaJson(v)
  }
}

function ikeLine(e: IkeEvent): {
  level: 'info' | 'warn' | 'error'
  fields: LogFields
  msg: string
} {
  switch (e.type) {
    case 'ike:established':
    case 'ike:rekeyed': {
      const p = e.phase1
      return {
        level: 'info',
        fields: {
          type: e.type,
          dvipa: p.dvipa,
          peer: `${p.peer.address}:${p.peer.port}`,
          localId: p.localIdentity.value,
          remoteId: p.remoteIdentity.value,
          spis: `${p.ikeSaId.initiatorSpi}_i ${p.ikeSaId.responderSpi}_r`,
          ...(e.type === 'ike:rekeyed' ? { previous: e.previous.initiatorSpi } : {})
        },
        msg: `IKE SA ${e.type === 'ike:established' ? 'established' : 'rekeyed'} with ${p.remoteIdentity.value} at ${p.peer.address}`
      }
    }
    case 'ike:deleted':
      return {
        level: e.reason === 'dead-peer' ? 'warn' : 'info',
        fields: {
          type: e.type,
          spis: `${e.ikeSaId.initiatorSpi}_i ${e.ikeSaId.responderSpi}_r`,
          reason: e.reason
        },
        msg: `IKE SA deleted (${e.reason})`
      }
    case 'sa:established':
    case 'sa:rekeyed': {
      const p = e.phase2
      return {
        level: 'info',
        fields: {
          type: e.type,
          dvipa: p.dvipa,
          spis: `${p.inboundSpi}_i ${p.outboundSpi}_o`,
          mode: p.mode,
          localTs: p.selectors.local.map((s) => `${s.startAddress}-${s.endAddress}`),
          remoteTs: p.selectors.remote.map((s) => `${s.startAddress}-${s.endAddress}`),
          encapsulation: p.encapsulation
        },
        msg: `Child SA ${e.type === 'sa:established' ? 'established' : 'rekeyed'}`
      }
    }
    case 'sa:deleted':
      return {
        level: 'info',
        fields: { type: e.type, phase2Id: e.phase2Id, reason: e.reason },
        msg: `Child SA deleted (${e.reason})`
      }
    case 'ike:failed':
      return {
        level: 'error',
        fields: {
          type: e.type,
          peer: `${e.peer.address}:${e.peer.port}`,
          notify: e.reason,
          error: e.message,
          ...(e.localId === undefined ? {} : { localId: e.localId }),
          ...(e.remoteId === undefined ? {} : { remoteId: e.remoteId })
        },
        msg: `IKE exchange with ${e.peer.address} failed: ${e.reason}`
      }
  }
}

/** What {@link observeIke} and {@link observeNode} record into. */
export interface Observers {
  /** The node's logger. */
  logger: ComponentLogger
  /** The node's metrics, if any. */
  metrics: NodeMetrics | undefined
}

/**
 * Logs an IKE service's events and times its exchanges: every establish, rekey, delete and
 * failure (with its notify) goes to the `ike` logger and the IKE metrics, and `connect` and
 * `renegotiate` calls feed the handshake histogram. Returns the same service.
 *
 * @param service - the service the factory made
 * @param observers - where to log and count
 */
export function observeIke(service: IkeService, observers: Observers): IkeService {
  const log = observers.logger.forComponent('ike')
  const { metrics } = observers
  service.events$.subscribe((e) => {
    const line = ikeLine(e)
    log[line.level](line.fields, line.msg)
    metrics?.ikeEvents.inc({
      type: e.type,
      reason: 'reason' in e ? e.reason : ''
    })
  })
  if (metrics !== undefined) {
    const connect = service.connect.bind(service)
    const renegotiate = service.renegotiate.bind(service)
    const timed = <T>(kind: string, run: () => Promise<T>): Promise<T> => {
      const end = metrics.ikeHandshake.startTimer({ kind })
      return run().then(
        (v) => {
          end({ outcome: 'ok' })
          return v
        },
        (err: unknown) => {
          end({ outcome: 'failed' })
          throw err
        }
      )
    }
    service.connect = (request, options) => timed('connect', () => connect(request, options))
    service.renegotiate = (records, options) =>
      timed('renegotiate', () => renegotiate(records, options))
  }
  return service
}

/** Levels of processor events: per-connection detail is debug, losses and failures warn. */
function processorLevel(type: string): 'debug' | 'info' | 'warn' {
  if (type.startsWith('connection:')) return 'debug'
  if (
    ['ownership:lost', 'ownership:fenced', 'takeover:failed', 'takeover:stood-down'].includes(type)
  )
    return 'warn'
  return 'info'
}

/** A part that reports events. */
export interface EventSource {
  /** Its events. */
  readonly events$: {
    /** Calls `fn` with each event. */
    subscribe(fn: (e: { type: string }) => void): unknown
  }
}

/** A node's parts that {@link observeNode} watches; any may be absent for the role. */
export interface ObservedParts {
  /** The distribution processor. */
  processor?: DistributionProcessor
  /** The ESP engine. */
  esp?: EspEngine
  /** Anything else with `events$` (detector, network adapter, target stack), by component name. */
  others: Record<string, EventSource>
}

/**
 * Logs what a node's parts report, each through its own component logger: processor
 * (ownership transitions, takeover steps), ESP SA installs and expiries, detector verdicts,
 * addresses, owner changes at targets. Feeds the takeover histograms.
 *
 * @param parts - the node's parts
 * @param observers - where to log and count
 */
export function observeNode(parts: ObservedParts, observers: Observers): void {
  const { metrics } = observers
  if (parts.processor !== undefined) {
    const log = observers.logger.forComponent('processor')
    parts.processor.events$.subscribe((e) => {
      log[processorLevel(e.type)](eventFields(e), e.type)
      if (e.type === 'takeover:completed' && metrics !== undefined) {
        metrics.takeover.observe({ dvipa: e.report.dvipa }, e.report.durationMs / 1000)
        for (const s of e.report.steps)
          metrics.takeoverStep.observe({ step: s.step }, s.durationMs / 1000)
      }
      if (e.type.startsWith('ownership:')) metrics?.ownershipTransitions.inc({ type: e.type })
    })
  }
  if (parts.esp !== undefined) {
    const log = observers.logger.forComponent('esp')
    parts.esp.events$.subscribe((e) => {
      log[e.type.startsWith('filter:') ? 'debug' : 'info'](eventFields(e), e.type)
      if (e.type === 'sa:installed' || e.type === 'sa:removed' || e.type === 'sa:soft-expired')
        metrics?.espSaEvents.inc({ type: e.type })
    })
  }
  for (const [name, part] of Object.entries(parts.others)) {
    const log = observers.logger.forComponent(name)
    part.events$.subscribe((e) =>
      log[e.type === 'node:failed' || e.type === 'node:suspect' ? 'warn' : 'info'](
        eventFields(e),
        e.type
      )
    )
  }
}

/** Durations of takeover steps are short; takeovers and handshakes span more. */
const SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/**
 * The metrics a node records from its events, on prom-client, in Prometheus naming (seconds,
 * `_total` counters, histograms). The gauges that read a part's state are added by the caller
 * that knows the parts (see `@vipsec/cli`).
 */
export class NodeMetrics {
  /** `vipsec_takeover_duration_seconds`: a takeover from detection to the end, by DVIPA. */
  readonly takeover: Histogram<'dvipa'>
  /** `vipsec_takeover_step_duration_seconds`: each step of a takeover, by step. */
  readonly takeoverStep: Histogram<'step'>
  /** `vipsec_ike_handshake_duration_seconds`: IKE exchanges this node initiated, by kind and outcome. */
  readonly ikeHandshake: Histogram<'kind' | 'outcome'>
  /** `vipsec_ike_events_total`: IKE SA events by type and reason (notify for failures). */
  readonly ikeEvents: Counter<'type' | 'reason'>
  /** `vipsec_esp_sa_events_total`: ESP SAs installed, soft-expired and removed. */
  readonly espSaEvents: Counter<'type'>
  /** `vipsec_ownership_transitions_total`: ownership claimed, lost, fenced. */
  readonly ownershipTransitions: Counter<'type'>
  /** `vipsec_node_info`: 1, with the node's id and role. */
  readonly info: Gauge<'node' | 'role'>

  /**
   * @param registry - where the metrics are registered
   * @param node - the node id and role, for `vipsec_node_info`
   */
  constructor(
    readonly registry: Registry,
    node: { id: string; role: string }
  ) {
    const registers = [registry]
    this.takeover = new Histogram({
      name: 'vipsec_takeover_duration_seconds',
      help: 'Takeover durations, failure detection included',
      labelNames: ['dvipa'],
      buckets: SECONDS_BUCKETS,
      registers
    })
    this.takeoverStep = new Histogram({
      name: 'vipsec_takeover_step_duration_seconds',
      help: 'Durations of each takeover step (detect is the silence before it)',
      labelNames: ['step'],
      buckets: SECONDS_BUCKETS,
      registers
    })
    this.ikeHandshake = new Histogram({
      name: 'vipsec_ike_handshake_duration_seconds',
      help: 'IKE_SA_INIT and IKE_AUTH exchanges this node initiated (connect, renegotiate batch)',
      labelNames: ['kind', 'outcome'],
      buckets: SECONDS_BUCKETS,
      registers
    })
    this.ikeEvents = new Counter({
      name: 'vipsec_ike_events_total',
      help: 'IKE and Child SA events, by type and reason (the notify of a failure)',
      labelNames: ['type', 'reason'],
      registers
    })
    this.espSaEvents = new Counter({
      name: 'vipsec_esp_sa_events_total',
      help: 'ESP SAs installed, soft-expired and removed',
      labelNames: ['type'],
      registers
    })
    this.ownershipTransitions = new Counter({
      name: 'vipsec_ownership_transitions_total',
      help: 'Ownership transitions of this node, by type',
      labelNames: ['type'],
      registers
    })
    this.info = new Gauge({
      name: 'vipsec_node_info',
      help: 'Always 1; labels name the node and its role',
      labelNames: ['node', 'role'],
      registers
    })
    this.info.set({ node: node.id, role: node.role }, 1)
  }
}
