/**
 * The contracts of vipsec: the interfaces every part implements (`CouplingStore`, `IkeService`,
 * `EspEngine`, `FailureDetector`, `DistributionProcessor` and the supporting `ClusterLink`,
 * `TargetStack`, `NetworkAdapter`, `Clock`, `RandomSource`), the records the coupling store holds
 * with their codec, the event unions, the named errors and the injection tokens.
 *
 * This package holds no implementation; adapters depend on it, and it depends on nothing but
 * RxJS types and `@vipsec/wire` (the packet layer, whose `IpProtocol`, `FiveTuple`,
 * `VipsecError` and `InvalidParametersError` it re-exports).
 *
 * @example Handling coupling-store errors by name
 * ```ts
 * import { StaleEpochError, type CouplingStore, type Phase1Record } from '@vipsec/interface'
 *
 * async function record (store: CouplingStore, phase1: Phase1Record, epoch: number): Promise<void> {
 *   try {
 *     await store.putRecords(phase1.dvipa, [phase1], { owner: 'dp-1', epoch })
 *   } catch (err: any) {
 *     if (err.name === StaleEpochError.name) {
 *       // another node owns the DVIPA now: stop serving it
 *     }
 *     throw err
 *   }
 * }
 * ```
 *
 * @packageDocumentation
 */
export * from './abort.js'
export * from './addressing.js'
export * from './clock.js'
export * from './cluster-link.js'
export * from './coupling-store.js'
export * from './distribution-processor.js'
export * from './errors.js'
export * from './esp-engine.js'
export * from './failure-detector.js'
export * from './ownership.js'
export * from './ike-service.js'
export * from './logger.js'
export * from './network-adapter.js'
export * from './packet-delivery.js'
export * from './random-source.js'
export * from './record-codec.js'
export * from './records.js'
export * from './startable.js'
export * from './target-stack.js'
export * from './tokens.js'
