import { ContainerModule, type ResolutionContext } from 'inversify'
import { SystemClock } from '@vipsec/clock'
import { TOKENS, type Clock, type Token } from '@vipsec/interface'
import { CryptoRandomSource, SeededRandomSource } from '@vipsec/random'
import { MemoryCouplingStore } from '@vipsec/store-memory'
import type { ComponentSpec, NodeComponents, NodeConfig } from './config.js'

/** The token under which a node's role is bound. */
export const NODE_ROLE: Token<NodeConfig['role']> = Symbol.for('@vipsec/NodeRole') as Token<
  NodeConfig['role']
>

/** Which token each key of {@link NodeComponents} binds. */
export const COMPONENT_TOKENS: { readonly [K in keyof Required<NodeComponents>]: symbol } = {
  espEngine: TOKENS.EspEngine,
  ikeService: TOKENS.IkeService,
  failureDetector: TOKENS.FailureDetector,
  clusterLink: TOKENS.ClusterLink,
  networkAdapter: TOKENS.NetworkAdapter,
  distributionProcessor: TOKENS.DistributionProcessor,
  targetStack: TOKENS.TargetStack
}

function bindSpec<T>(
  bind: (token: symbol) => {
    toConstantValue(value: T): unknown
    toDynamicValue(builder: (context: ResolutionContext) => T): { inSingletonScope(): unknown }
  },
  token: symbol,
  spec: ComponentSpec<T>
): void {
  if ('instance' in spec) {
    bind(token).toConstantValue(spec.instance)
  } else {
    bind(token)
      .toDynamicValue((context) => spec.factory(<U>(t: Token<U>) => context.get<U>(t)))
      .inSingletonScope()
  }
}

/**
 * The node's identity: its id and role.
 *
 * @param config - the node configuration
 */
export function identityModule(config: NodeConfig): ContainerModule {
  return new ContainerModule(({ bind }) => {
    bind(TOKENS.NodeId).toConstantValue(config.nodeId)
    bind(NODE_ROLE).toConstantValue(config.role)
  })
}

/**
 * Time and randomness.
 *
 * @param config - the node configuration
 */
export function runtimeModule(config: NodeConfig): ContainerModule {
  return new ContainerModule(({ bind }) => {
    const clock = config.clock ?? { type: 'system' }
    if (clock.type === 'system') bind(TOKENS.Clock).toConstantValue(new SystemClock())
    else bindSpec(bind, TOKENS.Clock, clock.component)

    const random = config.random ?? { type: 'crypto' }
    if (random.type === 'crypto')
      bind(TOKENS.RandomSource).toConstantValue(new CryptoRandomSource())
    else if (random.type === 'seeded') {
      bind(TOKENS.RandomSource).toConstantValue(new SeededRandomSource({ seed: random.seed }))
    } else bindSpec(bind, TOKENS.RandomSource, random.component)
  })
}

/**
 * The coupling store (not bound for targets, which do not use one).
 *
 * @param config - the node configuration
 */
export function storeModule(config: NodeConfig): ContainerModule {
  return new ContainerModule(({ bind }) => {
    if (config.role === 'target' && config.store === undefined) return
    const store = config.store ?? { type: 'memory' }
    if (store.type === 'memory') {
      bind(TOKENS.CouplingStore)
        .toResolvedValue(
          (clock: Clock) =>
            new MemoryCouplingStore(
              { clock },
              store.facility === undefined ? {} : { facility: store.facility }
            ),
          [TOKENS.Clock]
        )
        .inSingletonScope()
    } else {
      bindSpec(bind, TOKENS.CouplingStore, store.component)
    }
  })
}

/**
 * The parts supplied through `config.components`: data plane, IKE, detection, network, and the
 * role's own part (distribution processor or target stack).
 *
 * @param config - the node configuration
 */
export function componentsModule(config: NodeConfig): ContainerModule {
  return new ContainerModule(({ bind }) => {
    for (const [key, spec] of Object.entries(config.components ?? {})) {
      if (spec === undefined) continue
      bindSpec(bind, COMPONENT_TOKENS[key as keyof NodeComponents], spec as ComponentSpec<unknown>)
    }
  })
}
