import { ContainerModule, type ContainerModuleLoadOptions } from 'inversify'
import { SystemClock } from '@vipsec/clock'
import { UdpClusterLink } from '@vipsec/cluster-link-udp'
import {
  DefaultDistributionProcessor,
  DefaultTargetStack,
  type EspProposalEntry,
  type IkeProposalEntry
} from '@vipsec/core'
import {
  HeartbeatFailureDetector,
  ThreadedHeartbeatFailureDetector
} from '@vipsec/detector-heartbeat'
import { LeaseFailureDetector } from '@vipsec/detector-lease'
import { SoftwareEspEngine } from '@vipsec/esp-software'
import { ikeV2ServiceFactory, unsupportedInIkeProposal } from '@vipsec/ike-v2'
import {
  TOKENS,
  type Clock,
  type ClusterLink,
  type CouplingStore,
  type EspEngine,
  type IkeServiceFactory,
  type IkeSockets,
  type NetworkAdapter,
  type RandomSource,
  type Token
} from '@vipsec/interface'
import { CryptoRandomSource, SeededRandomSource } from '@vipsec/random'
import { MemoryCouplingStore } from '@vipsec/store-memory'
import { EtcdCouplingStore } from '@vipsec/store-etcd'
import { RedisCouplingStore } from '@vipsec/store-redis'
import type {
  ComponentSpec,
  DefaultProcessorConfig,
  DefaultTargetConfig,
  HeartbeatDetectorConfig,
  IkeV2Config,
  LeaseDetectorConfig,
  NodeComponents,
  NodeConfig,
  SoftwareEspConfig,
  UdpLinkConfig,
  VirtualNetworkConfig
} from './schema.js'
import { observeIke, type Observers } from './observe.js'

/** The token under which a node's role is bound. */
export const NODE_ROLE: Token<NodeConfig['role']> = Symbol.for('@vipsec/NodeRole') as Token<
  NodeConfig['role']
>

/** Which token each key of {@link NodeComponents} binds. */
export const COMPONENT_TOKENS: { readonly [K in keyof Required<NodeComponents>]: symbol } = {
  espEngine: TOKENS.EspEngine,
  ikeServiceFactory: TOKENS.IkeServiceFactory,
  failureDetector: TOKENS.FailureDetector,
  clusterLink: TOKENS.ClusterLink,
  networkAdapter: TOKENS.NetworkAdapter,
  distributionProcessor: TOKENS.DistributionProcessor,
  targetStack: TOKENS.TargetStack
}

/**
 * Runs once the network adapter has started, before any other part: acquires the node's own
 * addresses on a virtual network. Bound only when there is something to do.
 */
export const NETWORK_BOOTSTRAP: Token<() => Promise<void>> = Symbol.for(
  '@vipsec/NetworkBootstrap'
) as Token<() => Promise<void>>

type Bind = ContainerModuleLoadOptions['bind']

const RAW_IKE_FACTORY = Symbol.for('@vipsec/container/RawIkeServiceFactory')

function bindSpec<T>(bind: Bind, token: symbol, spec: ComponentSpec<T>): void {
  if ('instance' in spec) {
    bind(token).toConstantValue(spec.instance)
  } else {
    bind(token)
      .toDynamicValue((context) => spec.factory(<U>(t: Token<U>) => context.get<U>(t)))
      .inSingletonScope()
  }
}

function isBuiltIn(spec: object): spec is { type: string } {
  return 'type' in spec
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
    } else if (store.type === 'redis') {
      bind(TOKENS.CouplingStore)
        .toResolvedValue(
          (clock: Clock) => new RedisCouplingStore({ clock }, store.init),
          [TOKENS.Clock]
        )
        .inSingletonScope()
    } else if (store.type === 'etcd') {
      bind(TOKENS.CouplingStore)
        .toResolvedValue(
          (clock: Clock) => new EtcdCouplingStore({ clock }, store.init),
          [TOKENS.Clock]
        )
        .inSingletonScope()
    } else {
      bindSpec(bind, TOKENS.CouplingStore, store.component)
    }
  })
}

/**
 * The parts in `config.components`: the built-in adapters chosen by `type` (software ESP, IKEv2,
 * heartbeat detector, UDP cluster link, virtual network, default processor and target stack),
 * or the integrator's own instances and factories.
 *
 * @param config - the node configuration
 * @param observers - where the IKE services it makes log and count (default: not observed)
 */
export function componentsModule(config: NodeConfig, observers?: Observers): ContainerModule {
  return new ContainerModule(({ bind: bindAny }) => {
    const node = config.nodeId
    // The IKE factory is bound raw and wrapped, so that every service it makes is observed.
    const bind = ((token: symbol) =>
      bindAny(
        token === TOKENS.IkeServiceFactory && observers !== undefined ? RAW_IKE_FACTORY : token
      )) as Bind
    if (observers !== undefined && config.components?.ikeServiceFactory !== undefined) {
      bindAny(TOKENS.IkeServiceFactory)
        .toResolvedValue(
          (raw: IkeServiceFactory): IkeServiceFactory =>
            Object.assign((sockets: IkeSockets) => observeIke(raw(sockets), observers), {
              // what the engine cannot do stays visible through the wrapper
              ...(raw.unsupportedIn === undefined
                ? {}
                : { unsupportedIn: raw.unsupportedIn.bind(raw) })
            }),
          [RAW_IKE_FACTORY]
        )
        .inSingletonScope()
    }
    for (const [key, spec] of Object.entries(config.components ?? {})) {
      if (spec === undefined) continue
      const token = COMPONENT_TOKENS[key as keyof NodeComponents]
      if (!isBuiltIn(spec as object)) {
        bindSpec(bind, token, spec as ComponentSpec<unknown>)
        continue
      }
      switch (key as keyof NodeComponents) {
        case 'espEngine': {
          const { init } = spec as SoftwareEspConfig
          bind(TOKENS.EspEngine)
            .toResolvedValue(
              (clock: Clock) => new SoftwareEspEngine({ clock }, init),
              [TOKENS.Clock]
            )
            .inSingletonScope()
          break
        }
        case 'ikeServiceFactory': {
          const { init } = spec as IkeV2Config
          bind(TOKENS.IkeServiceFactory)
            .toResolvedValue(
              (clock: Clock, random: RandomSource, espEngine: EspEngine): IkeServiceFactory =>
                // with what its engine cannot do, checked by the DP's start and `vipsec check`
                Object.assign(ikeV2ServiceFactory({ clock, random, espEngine }, init), {
                  unsupportedIn: unsupportedInIkeProposal
                }),
              [TOKENS.Clock, TOKENS.RandomSource, TOKENS.EspEngine]
            )
            .inSingletonScope()
          break
        }
        case 'failureDetector': {
          if ((spec as LeaseDetectorConfig).type === 'lease') {
            const lease = (spec as LeaseDetectorConfig).init
            bind(TOKENS.FailureDetector)
              .toResolvedValue(
                (store: CouplingStore, clock: Clock) =>
                  // the store call's real timeout: a renewal waits for it, so the lease and
                  // the DP's self-fence bound (minDetectionMs) must account for it
                  new LeaseFailureDetector(
                    { store, clock },
                    { storeTimeoutMs: storeCallTimeoutMs(config, store), ...lease, node }
                  ),
                [TOKENS.CouplingStore, TOKENS.Clock]
              )
              .inSingletonScope()
            break
          }
          const { init, worker } = spec as HeartbeatDetectorConfig
          if (worker === true) {
            bind(TOKENS.FailureDetector).toConstantValue(
              new ThreadedHeartbeatFailureDetector({ ...init, node })
            )
            break
          }
          bind(TOKENS.FailureDetector)
            .toResolvedValue(
              (network: NetworkAdapter, clock: Clock) =>
                new HeartbeatFailureDetector({ network, clock }, { ...init, node }),
              [TOKENS.NetworkAdapter, TOKENS.Clock]
            )
            .inSingletonScope()
          break
        }
        case 'clusterLink': {
          const { init } = spec as UdpLinkConfig
          bind(TOKENS.ClusterLink)
            .toResolvedValue(
              (network: NetworkAdapter) => new UdpClusterLink({ network }, { ...init, node }),
              [TOKENS.NetworkAdapter]
            )
            .inSingletonScope()
          break
        }
        case 'networkAdapter': {
          const { network, addresses } = spec as VirtualNetworkConfig
          const adapter = network.attach(node)
          bind(TOKENS.NetworkAdapter).toConstantValue(adapter)
          bind(NETWORK_BOOTSTRAP).toConstantValue(async () => {
            for (const address of addresses) await adapter.acquireAddress(address)
          })
          break
        }
        case 'distributionProcessor': {
          const { init } = spec as DefaultProcessorConfig
          bind(TOKENS.DistributionProcessor)
            .toDynamicValue((context) => {
              const target = context.get(TOKENS.TargetStack, { optional: true })
              return new DefaultDistributionProcessor(
                {
                  store: context.get(TOKENS.CouplingStore),
                  esp: context.get(TOKENS.EspEngine),
                  ikeFactory: context.get(TOKENS.IkeServiceFactory),
                  detector: context.get(TOKENS.FailureDetector),
                  link: context.get(TOKENS.ClusterLink),
                  network: context.get(TOKENS.NetworkAdapter),
                  clock: context.get(TOKENS.Clock),
                  ...(target instanceof DefaultTargetStack ? { localTarget: target } : {})
                },
                { ...proposalsOf(config), ...init, node }
              )
            })
            .inSingletonScope()
          break
        }
        case 'targetStack': {
          const { apps, delivery } = spec as DefaultTargetConfig
          bind(TOKENS.TargetStack)
            .toResolvedValue(
              (link: ClusterLink) => {
                const stack = new DefaultTargetStack(
                  { link, ...(delivery === undefined ? {} : { delivery }) },
                  { node }
                )
                for (const app of apps ?? []) stack.register(app.protocol, app.port, app.handler)
                return stack
              },
              [TOKENS.ClusterLink]
            )
            .inSingletonScope()
          break
        }
      }
    }
  })
}

/**
 * The IKE and Child SA proposals of the built-in IKE service's peers, with the dotted path of
 * each: the distribution processor checks them against its engines at start (and `vipsec check`
 * through `createNode`), before anything is claimed or bound.
 *
 * @param config - the node configuration
 */
export function proposalsOf(config: NodeConfig): {
  ikeProposals: IkeProposalEntry[]
  espProposals: EspProposalEntry[]
} {
  const spec = config.components?.ikeServiceFactory
  const ikeProposals: IkeProposalEntry[] = []
  const espProposals: EspProposalEntry[] = []
  if (spec === undefined || !('type' in spec) || spec.type !== 'ike-v2')
    return { ikeProposals, espProposals }
  const at = 'components.ikeServiceFactory.init.peers'
  ;(spec.init.peers ?? []).forEach((peer, i) => {
    ;(peer.phase1?.proposals ?? []).forEach((proposal, j) =>
      ikeProposals.push({ field: `${at}[${i}].phase1.proposals[${j}]`, proposal })
    )
    ;(peer.children ?? []).forEach((child, k) =>
      (child.policy?.proposals ?? []).forEach((proposal, m) =>
        espProposals.push({
          field: `${at}[${i}].children[${k}].policy.proposals[${m}]`,
          proposal
        })
      )
    )
  })
  return { ikeProposals, espProposals }
}

/** The default call timeout of `@vipsec/store-redis` and `@vipsec/store-etcd`, ms (`operationTimeoutMs`). */
const STORE_OPERATION_TIMEOUT_MS = 5000

/**
 * How long one call of the node's coupling store may take before it fails, ms: the Redis or etcd
 * store's `operationTimeoutMs` (their default when not set), a custom store's numeric
 * `callTimeoutMs` or `operationTimeoutMs` if it has one, and 0 for the in-memory store. The lease
 * detector is given it (unless its options say `storeTimeoutMs`), so that its lease outlasts a
 * renewal that waits that long and the DP's self-fence bound sees it.
 *
 * @param config - the node configuration
 * @param store - the store the node was built with
 */
export function storeCallTimeoutMs(config: NodeConfig, store: CouplingStore): number {
  const spec = config.store ?? { type: 'memory' as const }
  if (spec.type === 'redis' || spec.type === 'etcd')
    return spec.init?.operationTimeoutMs ?? STORE_OPERATION_TIMEOUT_MS
  if (spec.type === 'custom') {
    const own = store as unknown as { callTimeoutMs?: unknown; operationTimeoutMs?: unknown }
    for (const v of [own.callTimeoutMs, own.operationTimeoutMs])
      if (typeof v === 'number' && Number.isFinite(v) && v >= 0) return v
  }
  return 0
}
