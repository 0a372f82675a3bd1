/**
 * The InversifyJS container of vipsec: {@link createNode} builds a node for a role (`primary`,
 * `backup` or `target`) from a configuration that chooses each part's adapter, with one
 * `ContainerModule` per concern. The same adapters serve a one-process simulation and a real
 * multi-process cluster. This is the only vipsec package that imports inversify.
 *
 * @example A backup node with the built-in adapters and the integrator's network adapter
 * ```ts
 * import 'reflect-metadata'
 * import { createNode } from '@vipsec/container'
 * import { TOKENS } from '@vipsec/interface'
 *
 * const node = createNode({
 *   role: 'backup',
 *   nodeId: 'dp-2',
 *   store: { type: 'memory' },
 *   components: {
 *     espEngine: { type: 'software' },
 *     ikeServiceFactory: { type: 'ike-v2', init: { psks, peers } },
 *     failureDetector: { type: 'heartbeat', init: { local: { address: '10.9.0.2', port: 7500 } } },
 *     clusterLink: { type: 'udp', init: { local: { address: '10.9.0.2', port: 7400 }, peers } },
 *     networkAdapter: { instance: myLinuxNetwork },
 *     distributionProcessor: { type: 'default', init: { dvipas, heartbeats } }
 *   }
 * })
 * await node.start()
 * const store = node.get(TOKENS.CouplingStore)
 * ```
 *
 * @packageDocumentation
 */
export {
  BUILT_IN_TYPES,
  NODE_ROLES,
  ROLE_REQUIREMENTS,
  type DefaultProcessorConfig,
  type DefaultTargetConfig,
  type HeartbeatDetectorConfig,
  type IkeV2Config,
  type LeaseDetectorConfig,
  type SoftwareEspConfig,
  type UdpLinkConfig,
  type VirtualNetworkConfig,
  type ClockConfig,
  type ComponentSpec,
  type NodeComponents,
  type NodeConfig,
  type NodeRole,
  type RandomConfig,
  type Resolve,
  type StoreConfig,
  nodeConfigSchema
} from './schema.js'
export {
  configErrorMap,
  didYouMean,
  formatPath,
  parseConfig,
  throwIssues,
  type ConfigIssue,
  type ParseResult
} from './config-issues.js'
export { createNode, type VipsecNode } from './create-node.js'
export {
  COMPONENT_TOKENS,
  NETWORK_BOOTSTRAP,
  NODE_ROLE,
  componentsModule,
  identityModule,
  runtimeModule,
  storeModule
} from './modules.js'
export {
  NodeMetrics,
  eventFields,
  logDestination,
  LOG_BUFFER_BYTES,
  observeIke,
  observeNode,
  pinoLogger,
  type EventSource,
  type ObservedParts,
  type Observers,
  type PinoLoggerInit,
  type TypedEvent
} from './observe.js'
export { nodeConfigIssues, validateNodeConfig } from './validate-config.js'
