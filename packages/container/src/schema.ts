import type { UdpClusterLinkInit } from '@vipsec/cluster-link-udp'
import type { DefaultDistributionProcessorInit } from '@vipsec/core'
import type { HeartbeatFailureDetectorInit } from '@vipsec/detector-heartbeat'
import type { LeaseFailureDetectorInit } from '@vipsec/detector-lease'
import type { SoftwareEspEngineInit } from '@vipsec/esp-software'
import type { IkeV2ServiceInit } from '@vipsec/ike-v2'
import type {
  AppHandler,
  Clock,
  ClusterLink,
  ComponentLogger,
  CouplingStore,
  DistributionProcessor,
  EspEngine,
  FailureDetector,
  IkeServiceFactory,
  NetworkAdapter,
  PacketDelivery,
  RandomSource,
  TargetStack,
  Token
} from '@vipsec/interface'
import type { VirtualNetwork } from '@vipsec/network-virtual'
import type { EtcdCouplingStoreInit } from '@vipsec/store-etcd'
import type { RedisCouplingStoreInit } from '@vipsec/store-redis'
import type { MemoryCouplingFacility } from '@vipsec/store-memory'
import type { Registry } from 'prom-client'
import * as z from 'zod'
import { configErrorMap } from './config-issues.js'

/** The role a node plays in the cluster. */
export type NodeRole = 'primary' | 'backup' | 'target'

/** The roles, as a list. */
export const NODE_ROLES: readonly NodeRole[] = ['primary', 'backup', 'target']

/** Resolves another part of the same node, for component factories. */
export type Resolve = <T>(token: Token<T>) => T

const isObject = (v: unknown): v is object =>
  v !== null && typeof v === 'object' && !Array.isArray(v)

/** An option object checked by the adapter it belongs to (the adapter names its own fields). */
const options = <T>(what: string) =>
  z.custom<T>(isObject, { message: `expected an object: the options of ${what}` })

/**
 * A part supplied by the integrator: a ready instance, or a factory that may resolve the node's
 * other parts (for example an IKE service that needs the node's ESP engine and clock).
 */
export type ComponentSpec<T> =
  | {
      /** The part itself. */
      instance: T
    }
  | {
      /** Builds the part once, when the node is created; `resolve` gives the node's other parts. */
      factory: (resolve: Resolve) => T
    }

function componentSpec<T>(): z.ZodType<ComponentSpec<T>, ComponentSpec<T>> {
  return z.union([
    z.strictObject({
      instance: z.custom<T>((v) => v != null, { message: 'expected the part itself' })
    }),
    z.strictObject({
      factory: z.custom<(resolve: Resolve) => T>((v) => typeof v === 'function', {
        message: 'expected a function (resolve) => part'
      })
    })
  ])
}

/**
 * A part: one of the built-in adapters by `type`, or the integrator's own. Errors follow the
 * form the value looks like (`type` present: the built-in options; otherwise `instance`/`factory`).
 */
function part<B extends z.ZodType, T>(
  builtIn: B
): z.ZodType<z.output<B> | ComponentSpec<T>, z.output<B> | ComponentSpec<T>> {
  const own = componentSpec<T>()
  return z.custom<z.output<B> | ComponentSpec<T>>().superRefine((value, ctx) => {
    const schema: z.ZodType = isObject(value) && 'type' in value ? builtIn : own
    const result = schema.safeParse(value, { error: configErrorMap })
    if (result.success) return
    for (const issue of result.error.issues) {
      const path =
        issue.code === 'unrecognized_keys' && issue.keys.length === 1
          ? [...issue.path, issue.keys[0]!]
          : issue.path
      ctx.addIssue({ code: 'custom', path, message: issue.message })
    }
  }) as never
}

const storeSchema = z.discriminatedUnion('type', [
  z.strictObject({
    /** The in-memory store (the embedded default). */
    type: z.literal('memory'),
    /** Share this facility to put several nodes of one process on one store. Default: a new one. */
    facility: z.custom<MemoryCouplingFacility>(isObject).optional()
  }),
  z.strictObject({
    /** A Redis server (or Sentinel group) shared by the cluster: `@vipsec/store-redis`. */
    type: z.literal('redis'),
    /** Connection options: URL or host and port, credentials, TLS, key prefix, Sentinel, timeouts. */
    init: options<RedisCouplingStoreInit>('@vipsec/store-redis').optional()
  }),
  z.strictObject({
    /** An etcd cluster shared by the cluster, for several machines: `@vipsec/store-etcd`. */
    type: z.literal('etcd'),
    /** Member URLs, credentials, TLS, key prefix, timeouts. */
    init: options<EtcdCouplingStoreInit>('@vipsec/store-etcd').optional()
  }),
  z.strictObject({
    /** A store the integrator made. */
    type: z.literal('custom'),
    /** The store or its factory. */
    component: componentSpec<CouplingStore>()
  })
])

/** Where the coupling store comes from: `memory` (default), `redis`, `etcd`, or `custom`. */
export type StoreConfig = z.output<typeof storeSchema>

const clockSchema = z.discriminatedUnion('type', [
  z.strictObject({
    /** The system clock. */
    type: z.literal('system')
  }),
  z.strictObject({
    /** A clock the integrator made. */
    type: z.literal('custom'),
    /** The clock or its factory. */
    component: componentSpec<Clock>()
  })
])

/** Where time comes from: `system` (default) or `custom` (e.g. a shared `VirtualClock`). */
export type ClockConfig = z.output<typeof clockSchema>

const randomSchema = z.discriminatedUnion('type', [
  z.strictObject({
    /** node:crypto. */
    type: z.literal('crypto')
  }),
  z.strictObject({
    /** A deterministic source: tests and simulations only. */
    type: z.literal('seeded'),
    /** The seed, not empty. */
    seed: z.string().min(1)
  }),
  z.strictObject({
    /** A source the integrator made. */
    type: z.literal('custom'),
    /** The source or its factory. */
    component: componentSpec<RandomSource>()
  })
])

/** Where randomness comes from: `crypto` (default), `seeded` (tests only) or `custom`. */
export type RandomConfig = z.output<typeof randomSchema>

const softwareEsp = z.strictObject({
  /** Selects `@vipsec/esp-software`. */
  type: z.literal('software'),
  /** Its options: anti-replay window, worker threads. */
  init: options<SoftwareEspEngineInit>('@vipsec/esp-software').optional()
})

/** The built-in ESP engine `@vipsec/esp-software`, with its options (anti-replay window, workers). */
export type SoftwareEspConfig = z.output<typeof softwareEsp>

const ikeV2 = z.strictObject({
  /** Selects `@vipsec/ike-v2`. */
  type: z.literal('ike-v2'),
  /** Its options: credentials, peers, timing. */
  init: options<IkeV2ServiceInit>('@vipsec/ike-v2')
})

/**
 * The built-in IKE service `@vipsec/ike-v2`, one per DVIPA, on the node's clock, randomness and
 * ESP engine; `init` holds credentials (from local configuration), peers and timing.
 */
export type IkeV2Config = z.output<typeof ikeV2>

const heartbeat = z.strictObject({
  /** Selects `@vipsec/detector-heartbeat`. */
  type: z.literal('heartbeat'),
  /** Its options except the node id. */
  init: options<Omit<HeartbeatFailureDetectorInit, 'node'>>('@vipsec/detector-heartbeat'),
  /** On a worker thread with its own UDP socket (real networks only). Default false. */
  worker: z.boolean().optional()
})

/**
 * The heartbeat failure detector `@vipsec/detector-heartbeat`: its options except the node id.
 * `worker: true` runs it on a worker thread with its own UDP socket at `init.local`, so that
 * data-plane bursts never delay heartbeats (needs a real network). Default false.
 */
export type HeartbeatDetectorConfig = z.output<typeof heartbeat>

const lease = z.strictObject({
  /** Selects `@vipsec/detector-lease`. */
  type: z.literal('lease'),
  /** Its options except the node id. */
  init: options<Omit<LeaseFailureDetectorInit, 'node'>>('@vipsec/detector-lease')
})

/** The coupling-store lease failure detector `@vipsec/detector-lease`: options except the node id. */
export type LeaseDetectorConfig = z.output<typeof lease>

const udpLink = z.strictObject({
  /** Selects `@vipsec/cluster-link-udp`. */
  type: z.literal('udp'),
  /** Its options except the node id. */
  init: options<Omit<UdpClusterLinkInit, 'node'>>('@vipsec/cluster-link-udp')
})

/** The built-in cluster link `@vipsec/cluster-link-udp`: its options except the node id. */
export type UdpLinkConfig = z.output<typeof udpLink>

const virtualNetwork = z.strictObject({
  /** Selects `@vipsec/network-virtual`. */
  type: z.literal('virtual'),
  /** The network the node attaches to. */
  network: z.custom<VirtualNetwork>(isObject, { message: 'expected a VirtualNetwork' }),
  /** The node's own addresses, acquired at start. */
  addresses: z.array(z.string())
})

/**
 * The simulated network `@vipsec/network-virtual`: the network the node attaches to (shared by
 * the nodes of a simulation) and the node's own addresses, acquired at start (not its DVIPAs).
 */
export type VirtualNetworkConfig = z.output<typeof virtualNetwork>

const defaultProcessor = z.strictObject({
  /** Selects the processor of `@vipsec/core`. */
  type: z.literal('default'),
  /** Its options except the node id. */
  init: options<Omit<DefaultDistributionProcessorInit, 'node'>>('@vipsec/core')
})

/** The built-in distribution processor of `@vipsec/core`: its options except the node id. */
export type DefaultProcessorConfig = z.output<typeof defaultProcessor>

const defaultTarget = z.strictObject({
  /** Selects the target stack of `@vipsec/core`. */
  type: z.literal('default'),
  /** Applications to register. */
  apps: z
    .array(
      z.strictObject({
        /** IP protocol number (17 for UDP). */
        protocol: z.number().int().min(0).max(255),
        /** Destination port. */
        port: z.number().int().min(0).max(65535),
        /** The application. */
        handler: z.custom<AppHandler>((v) => typeof v === 'function' || isObject(v))
      })
    )
    .optional(),
  /**
   * Where packets go that no application takes, e.g. the host's kernel (`KernelDelivery` of
   * `@vipsec/target-tun`). Default: none.
   */
  delivery: z.custom<PacketDelivery>(isObject).optional()
})

/**
 * The built-in target stack of `@vipsec/core` with its applications: IP protocol number (17 for
 * UDP), destination port and handler each.
 */
export type DefaultTargetConfig = z.output<typeof defaultTarget>

const componentsShape = {
  /** The ESP engine. */
  espEngine: part<typeof softwareEsp, EspEngine>(softwareEsp).optional(),
  /** Makes the IKE service of each DVIPA the node serves. */
  ikeServiceFactory: part<typeof ikeV2, IkeServiceFactory>(ikeV2).optional(),
  /** The failure detector (on targets: the heartbeats they send to the distribution processors). */
  failureDetector: part<z.ZodType<HeartbeatDetectorConfig | LeaseDetectorConfig>, FailureDetector>(
    z.discriminatedUnion('type', [heartbeat, lease])
  ).optional(),
  /** The cluster link. */
  clusterLink: part<typeof udpLink, ClusterLink>(udpLink).optional(),
  /** The network adapter. */
  networkAdapter: part<typeof virtualNetwork, NetworkAdapter>(virtualNetwork).optional(),
  /** The distribution processor (primary and backup). */
  distributionProcessor: part<typeof defaultProcessor, DistributionProcessor>(
    defaultProcessor
  ).optional(),
  /** The target stack (target; optional on primary and backup). */
  targetStack: part<typeof defaultTarget, TargetStack>(defaultTarget).optional()
}

/**
 * The parts of a node, by contract: each is one of the built-in adapters (by `type`), or the
 * integrator's own part (`{ instance }` or `{ factory }`). Which are required depends on the
 * role: see {@link ROLE_REQUIREMENTS}. A primary or backup that also has a target stack serves
 * its own connections locally (they become non-distributed when it takes a DVIPA over).
 */
export type NodeComponents = z.output<z.ZodObject<typeof componentsShape>>

/** The parts each role needs, by their key in {@link NodeComponents}. */
export const ROLE_REQUIREMENTS: Readonly<Record<NodeRole, readonly (keyof NodeComponents)[]>> = {
  primary: [
    'espEngine',
    'ikeServiceFactory',
    'failureDetector',
    'clusterLink',
    'networkAdapter',
    'distributionProcessor'
  ],
  backup: [
    'espEngine',
    'ikeServiceFactory',
    'failureDetector',
    'clusterLink',
    'networkAdapter',
    'distributionProcessor'
  ],
  target: ['clusterLink', 'targetStack']
}

/** The built-in `type`s each part accepts. */
export const BUILT_IN_TYPES: Readonly<Record<keyof NodeComponents, readonly string[]>> = {
  espEngine: ['software'],
  ikeServiceFactory: ['ike-v2'],
  failureDetector: ['heartbeat', 'lease'],
  clusterLink: ['udp'],
  networkAdapter: ['virtual'],
  distributionProcessor: ['default'],
  targetStack: ['default']
}

const nodeConfig = z
  .strictObject({
    /** The node's role. */
    role: z.enum(['primary', 'backup', 'target']),
    /** The node's id, unique in the cluster: 1 to 64 letters, digits, `.`, `_` or `-`. */
    nodeId: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, {
      message: 'expected 1 to 64 letters, digits, ".", "_" or "-"'
    }),
    /** The coupling store. Default: `{ type: 'memory' }`. Targets do not use one. */
    store: storeSchema.optional(),
    /** The clock. Default: `{ type: 'system' }`. */
    clock: clockSchema.optional(),
    /** The randomness source. Default: `{ type: 'crypto' }`. */
    random: randomSchema.optional(),
    /**
     * Where the node's parts log (one child logger per part). Default: nothing is logged.
     * `@vipsec/container` makes one on pino with `pinoLogger`.
     */
    logger: z
      .custom<ComponentLogger>(
        (v) => isObject(v) && typeof (v as ComponentLogger).forComponent === 'function',
        {
          message: 'expected a ComponentLogger ({ forComponent(name) })'
        }
      )
      .optional(),
    /** Registers the node's metrics (prom-client) in this registry. Default: no metrics. */
    metrics: z
      .strictObject({
        /** A prom-client registry. */
        registry: z.custom<Registry>(
          (v) => isObject(v) && typeof (v as Registry).registerMetric === 'function',
          { message: 'expected a prom-client Registry' }
        )
      })
      .optional(),
    /** The remaining parts. */
    components: z.strictObject(componentsShape).optional()
  })
  .superRefine((config, ctx) => {
    for (const key of ROLE_REQUIREMENTS[config.role]) {
      if (config.components?.[key] === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['components', key],
          message: `required for the ${config.role} role`
        })
      }
    }
  })

/** The configuration of one node: the options of `createNode`, as {@link nodeConfigSchema} says. */
export type NodeConfig = z.input<typeof nodeConfig>

/**
 * The schema of {@link NodeConfig}, the options of `createNode`: the one definition its type
 * and its validation come from. Unknown fields are errors.
 */
export const nodeConfigSchema: z.ZodType<NodeConfig, NodeConfig> = nodeConfig
