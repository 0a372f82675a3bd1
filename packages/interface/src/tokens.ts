import type { Clock } from './clock.js'
import type { ClusterLink } from './cluster-link.js'
import type { CouplingStore } from './coupling-store.js'
import type { DistributionProcessor } from './distribution-processor.js'
import type { EspEngine } from './esp-engine.js'
import type { FailureDetector } from './failure-detector.js'
import type { IkeService, IkeServiceFactory } from './ike-service.js'
import type { NetworkAdapter } from './network-adapter.js'
import type { RandomSource } from './random-source.js'
import type { TargetStack } from './target-stack.js'

/**
 * An injection token: a registered symbol (`Symbol.for`) that carries the type it resolves to, so
 * a container's `get(token)` is typed without this package depending on a container library.
 */
export type Token<T> = symbol & {
  /** Never present at run time: carries `T` for the type checker only. */
  readonly __vipsecToken?: T
}

function token<T>(name: string): Token<T> {
  return Symbol.for(`@vipsec/${name}`) as Token<T>
}

/** The injection tokens of every contract, and of a node's id and configuration values. */
export const TOKENS = {
  /** The coupling store. */
  CouplingStore: token<CouplingStore>('CouplingStore'),
  /** The failure detector. */
  FailureDetector: token<FailureDetector>('FailureDetector'),
  /** The IKE service. */
  IkeService: token<IkeService>('IkeService'),
  /** Makes the IKE service of each DVIPA a distribution processor serves. */
  IkeServiceFactory: token<IkeServiceFactory>('IkeServiceFactory'),
  /** The ESP engine. */
  EspEngine: token<EspEngine>('EspEngine'),
  /** The distribution processor (primary and backup roles). */
  DistributionProcessor: token<DistributionProcessor>('DistributionProcessor'),
  /** The cluster link. */
  ClusterLink: token<ClusterLink>('ClusterLink'),
  /** The target stack (target role). */
  TargetStack: token<TargetStack>('TargetStack'),
  /** The network adapter. */
  NetworkAdapter: token<NetworkAdapter>('NetworkAdapter'),
  /** The clock. */
  Clock: token<Clock>('Clock'),
  /** The randomness source. */
  RandomSource: token<RandomSource>('RandomSource'),
  /** This node's id. */
  NodeId: token<string>('NodeId')
} as const
