import { Container } from 'inversify'
import { DefaultDistributionProcessor } from '@vipsec/core'
import {
  silentLogger,
  start,
  stop,
  TOKENS,
  type ComponentLogger,
  type Startable,
  type Token
} from '@vipsec/interface'
import { ROLE_REQUIREMENTS, type NodeConfig, type NodeRole } from './schema.js'
import {
  COMPONENT_TOKENS,
  NETWORK_BOOTSTRAP,
  componentsModule,
  identityModule,
  runtimeModule,
  storeModule
} from './modules.js'
import { NodeMetrics, observeNode, type Observers } from './observe.js'
import { validateNodeConfig } from './validate-config.js'

/** A node built by {@link createNode}: its parts, resolved, and one lifecycle for all of them. */
export interface VipsecNode extends Startable {
  /** The node's id. */
  readonly nodeId: string
  /** The node's role. */
  readonly role: NodeRole
  /**
   * Returns the node's part for a token.
   *
   * @param token - one of `TOKENS`
   * @throws Error from the container when nothing is bound to the token for this role
   */
  get<T>(token: Token<T>): T
  /** Whether a part is bound to the token for this role. */
  has(token: symbol): boolean
  /** The node's logger (`config.logger`, or one that writes nothing). */
  readonly logger: ComponentLogger
  /** The node's event metrics, when `config.metrics` gave a registry. */
  readonly metrics: NodeMetrics | undefined
}

/** The order parts start in (stopped in reverse): foundations first, the role's part last. */
const START_ORDER: readonly symbol[] = [
  TOKENS.CouplingStore,
  TOKENS.NetworkAdapter,
  NETWORK_BOOTSTRAP,
  TOKENS.ClusterLink,
  TOKENS.EspEngine,
  TOKENS.FailureDetector,
  TOKENS.TargetStack,
  TOKENS.DistributionProcessor
]

/**
 * Builds a node from a role and a configuration: validates the configuration (errors name the
 * field), binds one container module per concern, and resolves every part the role needs so
 * that a missing or failing part shows up here rather than at the first packet.
 *
 * @param config - the node configuration
 * @throws InvalidConfigError when the configuration is invalid or a required part is missing
 */
export function createNode(config: NodeConfig): VipsecNode {
  validateNodeConfig(config)
  const observers: Observers = {
    logger: config.logger ?? silentLogger,
    metrics:
      config.metrics === undefined
        ? undefined
        : new NodeMetrics(config.metrics.registry, { id: config.nodeId, role: config.role })
  }
  const container = new Container()
  container.load(
    identityModule(config),
    runtimeModule(config),
    storeModule(config),
    componentsModule(config, observers)
  )
  // Resolve now, so that a bad option of any part fails here, naming its field.
  if (container.isBound(TOKENS.CouplingStore)) container.get(TOKENS.CouplingStore)
  for (const key of ROLE_REQUIREMENTS[config.role]) container.get(COMPONENT_TOKENS[key])
  const optional = <T>(token: Token<T>): T | undefined =>
    container.isBound(token) ? container.get(token) : undefined
  // The start-time validation of the distribution processor (the whole configuration, every IKE
  // and ESP proposal against its engines), here too, so that `vipsec check` runs the same one.
  const processor = optional(TOKENS.DistributionProcessor)
  if (processor instanceof DefaultDistributionProcessor) processor.validate()
  const others: Record<string, unknown> = {
    detector: optional(TOKENS.FailureDetector),
    network: optional(TOKENS.NetworkAdapter),
    target: optional(TOKENS.TargetStack)
  }
  observeNode(
    {
      processor: optional(TOKENS.DistributionProcessor),
      esp: optional(TOKENS.EspEngine),
      others: Object.fromEntries(
        Object.entries(others).filter(
          ([, p]) => typeof (p as { events$?: unknown } | undefined)?.events$ === 'object'
        )
      ) as never
    },
    observers
  )

  const parts = (): unknown[] =>
    START_ORDER.filter((t) => container.isBound(t)).map((t) => container.get(t))
  let started = false
  // the start under way, the parts it has begun (in order) and whether a stop came during it
  let starting: Promise<void> | undefined
  let begun: unknown[] = []
  let stopRequested = false
  const startParts = async (): Promise<void> => {
    begun = []
    stopRequested = false
    try {
      for (const part of parts()) {
        if (stopRequested) break
        if (typeof part === 'function') await (part as () => Promise<void>)()
        else {
          begun.push(part)
          await start(part)
        }
      }
    } catch (err) {
      // all or nothing: what started is stopped again (the part that failed included)
      await stop(...begun).catch(() => undefined)
      throw err
    }
    if (stopRequested) await stop(...begun)
    else started = true
  }
  return {
    nodeId: config.nodeId,
    role: config.role,
    logger: observers.logger,
    metrics: observers.metrics,
    get: <T>(token: Token<T>): T => container.get<T>(token),
    has: (token: symbol): boolean => container.isBound(token),
    async start() {
      if (started) return
      if (starting !== undefined) return starting
      starting = startParts()
      try {
        await starting
      } finally {
        starting = undefined
      }
    },
    async stop() {
      if (starting !== undefined) {
        // a stop during the start (a distribution processor waiting out its join window): the
        // parts begun stop now, which ends the wait, and the start stops them once more when it
        // has returned, so nothing it set up afterwards is left running
        stopRequested = true
        await stop(...begun)
        await starting.catch(() => undefined)
        return
      }
      if (!started) return
      started = false
      await stop(...parts().filter((p) => typeof p !== 'function'))
    },
    isStarted: () => started
  }
}
