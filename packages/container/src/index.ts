/**
 * The InversifyJS container of vipsec: {@link createNode} builds a node for a role (`primary`,
 * `backup` or `target`) from a configuration that chooses each part's adapter, with one
 * `ContainerModule` per concern. The same adapters serve a one-process simulation and a real
 * multi-process cluster. This is the only vipsec package that imports inversify.
 *
 * @example A backup node on the in-memory store, with the integrator's own parts
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
 *     espEngine: { instance: myEspEngine },
 *     ikeService: { factory: (resolve) => myIke(resolve(TOKENS.EspEngine), resolve(TOKENS.Clock)) },
 *     failureDetector: { instance: myDetector },
 *     clusterLink: { instance: myLink },
 *     networkAdapter: { instance: myNetwork },
 *     distributionProcessor: { instance: myProcessor }
 *   }
 * })
 * await node.start()
 * const store = node.get(TOKENS.CouplingStore)
 * ```
 *
 * @packageDocumentation
 */
export {
  NODE_ROLES,
  ROLE_REQUIREMENTS,
  type ClockConfig,
  type ComponentSpec,
  type NodeComponents,
  type NodeConfig,
  type NodeRole,
  type RandomConfig,
  type Resolve,
  type StoreConfig
} from './config.js'
export { createNode, type VipsecNode } from './create-node.js'
export {
  COMPONENT_TOKENS,
  NODE_ROLE,
  componentsModule,
  identityModule,
  runtimeModule,
  storeModule
} from './modules.js'
export { validateNodeConfig } from './validate-config.js'
