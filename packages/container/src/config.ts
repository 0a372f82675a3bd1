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
  CouplingStore,
  DistributionProcessor,
  EspEngine,
  FailureDetector,
  IkeServiceFactory,
  NetworkAdapter,
  RandomSource,
  TargetStack,
  PacketDelivery,
  Token
} from '@vipsec/interface'
import type { VirtualNetwork } from '@vipsec/network-virtual'
import type { EtcdCouplingStoreInit } from '@vipsec/store-etcd'
import type { RedisCouplingStoreInit } from '@vipsec/store-redis'
import type { MemoryCouplingFacility } from '@vipsec/store-memory'

/** The role a node plays in the cluster. */
export type NodeRole = 'primary' | 'backup' | 'target'

/** The roles, as a list. */
export const NODE_ROLES: readonly NodeRole[] = ['primary', 'backup', 'target']

/** Resolves another part of the same node, for component factories. */
export type Resolve = <T>(token: Token<T>) => T

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

/** Where the coupling store comes from. */
export type StoreConfig =
  | {
      /** The in-memory store (the embedded default). */
      type: 'memory'
      /** Share this facility to put several nodes of one process on one store. Default: a new one. */
      facility?: MemoryCouplingFacility
    }
  | {
      /** A Redis server (or Sentinel group) shared by the cluster: `@vipsec/store-redis`. */
      type: 'redis'
      /** Connection options: URL or host and port, credentials, TLS, key prefix, Sentinel, timeouts. */
      init?: RedisCouplingStoreInit
    }
  | {
      /** An etcd cluster shared by the cluster, for several machines: `@vipsec/store-etcd`. */
      type: 'etcd'
      /** Member URLs, credentials, TLS, key prefix, timeouts. */
      init?: EtcdCouplingStoreInit
    }
  | {
      /** A store the integrator made. */
      type: 'custom'
      /** The store or its factory. */
      component: ComponentSpec<CouplingStore>
    }

/** Where time comes from. */
export type ClockConfig =
  | {
      /** The system clock (the default). */
      type: 'system'
    }
  | {
      /** A clock the integrator made, for example a shared `VirtualClock` in a simulation. */
      type: 'custom'
      /** The clock or its factory. */
      component: ComponentSpec<Clock>
    }

/** Where randomness comes from. */
export type RandomConfig =
  | {
      /** node:crypto (the default). */
      type: 'crypto'
    }
  | {
      /** A deterministic source from a seed: tests and simulations only. */
      type: 'seeded'
      /** The seed. */
      seed: string
    }
  | {
      /** A source the integrator made. */
      type: 'custom'
      /** The source or its factory. */
      component: ComponentSpec<RandomSource>
    }

/** The built-in ESP engine: `@vipsec/esp-software`. */
export interface SoftwareEspConfig {
  /** Selects it. */
  type: 'software'
  /** Its options (anti-replay window, worker threads). */
  init?: SoftwareEspEngineInit
}

/** The built-in IKE service: `@vipsec/ike-v2`, one per DVIPA, on the node's clock, randomness and ESP engine. */
export interface IkeV2Config {
  /** Selects it. */
  type: 'ike-v2'
  /** Its options: credentials (PSKs, certificates) from local configuration, peers, timing. */
  init: IkeV2ServiceInit
}

/** The built-in failure detector: `@vipsec/detector-heartbeat`. */
export interface HeartbeatDetectorConfig {
  /** Selects it. */
  type: 'heartbeat'
  /** Its options except the node id (the node's own). */
  init: Omit<HeartbeatFailureDetectorInit, 'node'>
  /**
   * Run it on a worker thread of its own, with its own UDP socket (node:dgram) at `init.local`,
   * so that data-plane bursts never delay heartbeats. Needs a real network (not the virtual one).
   * Default false.
   */
  worker?: boolean
}

/** The coupling-store lease failure detector: `@vipsec/detector-lease`. */
export interface LeaseDetectorConfig {
  /** Selects it. */
  type: 'lease'
  /** Its options except the node id (the node's own). */
  init: Omit<LeaseFailureDetectorInit, 'node'>
}

/** The built-in cluster link: `@vipsec/cluster-link-udp`. */
export interface UdpLinkConfig {
  /** Selects it. */
  type: 'udp'
  /** Its options except the node id (the node's own). */
  init: Omit<UdpClusterLinkInit, 'node'>
}

/** The simulated network: `@vipsec/network-virtual`. */
export interface VirtualNetworkConfig {
  /** Selects it. */
  type: 'virtual'
  /** The network the node attaches to (shared by the nodes of a simulation). */
  network: VirtualNetwork
  /** The node's own addresses, acquired when the node starts (not its DVIPAs). */
  addresses: string[]
}

/** The built-in distribution processor: `@vipsec/core`. */
export interface DefaultProcessorConfig {
  /** Selects it. */
  type: 'default'
  /** Its options except the node id (the node's own). */
  init: Omit<DefaultDistributionProcessorInit, 'node'>
}

/** The built-in target stack: `@vipsec/core`, with its applications. */
export interface DefaultTargetConfig {
  /** Selects it. */
  type: 'default'
  /** Applications to register: protocol, port and handler. */
  apps?: {
    /** IP protocol number (17 for UDP). */
    protocol: number
    /** Destination port. */
    port: number
    /** The application. */
    handler: AppHandler
  }[]
  /**
   * Where packets go that no application takes, e.g. the host's kernel (`KernelDelivery` of
   * `@vipsec/target-tun`). Default: none.
   */
  delivery?: PacketDelivery
}

/**
 * The parts of a node, by contract: each is one of the built-in adapters (by `type`), or the
 * integrator's own part (`{ instance }` or `{ factory }`). Which are required depends on the
 * role: see {@link ROLE_REQUIREMENTS}. A primary or backup that also has a target stack serves
 * its own connections locally (they become non-distributed when it takes a DVIPA over).
 */
export interface NodeComponents {
  /** The ESP engine. */
  espEngine?: SoftwareEspConfig | ComponentSpec<EspEngine>
  /** Makes the IKE service of each DVIPA the node serves. */
  ikeServiceFactory?: IkeV2Config | ComponentSpec<IkeServiceFactory>
  /** The failure detector (on targets: the heartbeats they send to the distribution processors). */
  failureDetector?: HeartbeatDetectorConfig | LeaseDetectorConfig | ComponentSpec<FailureDetector>
  /** The cluster link. */
  clusterLink?: UdpLinkConfig | ComponentSpec<ClusterLink>
  /** The network adapter. */
  networkAdapter?: VirtualNetworkConfig | ComponentSpec<NetworkAdapter>
  /** The distribution processor (primary and backup). */
  distributionProcessor?: DefaultProcessorConfig | ComponentSpec<DistributionProcessor>
  /** The target stack (target; optional on primary and backup). */
  targetStack?: DefaultTargetConfig | ComponentSpec<TargetStack>
}

/** The configuration of one node. */
export interface NodeConfig {
  /** The node's role. */
  role: NodeRole
  /** The node's id, unique in the cluster. */
  nodeId: string
  /** The coupling store. Default: `{ type: 'memory' }`. Targets do not use one. */
  store?: StoreConfig
  /** The clock. Default: `{ type: 'system' }`. */
  clock?: ClockConfig
  /** The randomness source. Default: `{ type: 'crypto' }`. */
  random?: RandomConfig
  /** The remaining parts. */
  components?: NodeComponents
}

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
