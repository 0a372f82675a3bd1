import type {
  Clock,
  ClusterLink,
  CouplingStore,
  DistributionProcessor,
  EspEngine,
  FailureDetector,
  IkeService,
  NetworkAdapter,
  RandomSource,
  TargetStack,
  Token
} from '@vipsec/interface'
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

/**
 * The parts of a node chosen by the integrator, by contract. Which are required depends on the
 * role: see {@link ROLE_REQUIREMENTS}.
 */
export interface NodeComponents {
  /** The ESP engine. */
  espEngine?: ComponentSpec<EspEngine>
  /** The IKE service. */
  ikeService?: ComponentSpec<IkeService>
  /** The failure detector. */
  failureDetector?: ComponentSpec<FailureDetector>
  /** The cluster link. */
  clusterLink?: ComponentSpec<ClusterLink>
  /** The network adapter. */
  networkAdapter?: ComponentSpec<NetworkAdapter>
  /** The distribution processor (primary and backup). */
  distributionProcessor?: ComponentSpec<DistributionProcessor>
  /** The target stack (target). */
  targetStack?: ComponentSpec<TargetStack>
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
    'ikeService',
    'failureDetector',
    'clusterLink',
    'networkAdapter',
    'distributionProcessor'
  ],
  backup: [
    'espEngine',
    'ikeService',
    'failureDetector',
    'clusterLink',
    'networkAdapter',
    'distributionProcessor'
  ],
  target: ['clusterLink', 'targetStack']
}
