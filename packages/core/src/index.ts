/**
 * The core of vipsec: the {@link DefaultDistributionProcessor} (owner and backup of DVIPAs, the
 * inbound and outbound data path, the coupling-store records), the takeover that a backup runs
 * when the owner fails ({@link runTakeover}, steps 4 to 12 of the method, each timed), the
 * {@link DefaultTargetStack} of the target hosts, and the {@link ConnectionTable} with its
 * target selection policies. It depends on contracts only; adapters are given to it.
 *
 * @example A backup distribution processor
 * ```ts
 * import { DefaultDistributionProcessor } from '@vipsec/core'
 *
 * const dp = new DefaultDistributionProcessor(
 *   { store, esp, ikeFactory, detector, link, network, clock },
 *   {
 *     node: 'dp-2',
 *     dvipas: [{ dvipa: '10.0.0.100', ranks: ['dp-1', 'dp-2', 'dp-3'], targets: [{ node: 'target-1' }] }],
 *     heartbeats: { 'dp-1': { address: '10.9.0.1', port: 7500 }, 'dp-3': { address: '10.9.0.3', port: 7500 } }
 *   }
 * )
 * dp.events$.subscribe((e) => { if (e.type === 'takeover:completed') console.log(e.report) })
 * await dp.start()
 * ```
 *
 * @packageDocumentation
 */
export { requestResponse, udpEcho } from './apps.js'
export { sameChildSelectors, sameSelectorSet, sameTrafficSelector } from './selectors.js'
export { FencingConfigError, JoinWindowConfigError, UnsupportedProposalError } from './errors.js'
export {
  ConnectionTable,
  connectionId,
  flowKey,
  type RouteResult,
  type SelectionPolicy,
  type TargetConfig,
  type TcpState,
  type TcpTrackingOptions
} from './connection-table.js'
export {
  DefaultDistributionProcessor,
  defaultDistributionProcessor,
  type DefaultDistributionProcessorComponents,
  type DefaultDistributionProcessorInit,
  type EspProposalEntry,
  type IkeProposalEntry,
  type DvipaConfig,
  type DvipaState,
  type RetryOptions,
  type WarmOptions
} from './distribution-processor.js'
export {
  WARM_KEY_BYTES,
  WarmKeySet,
  type SealIdentity,
  type WarmKeys,
  type WarmSealCounters
} from './warm.js'
export {
  DEFAULT_SEQUENCE_BLOCK,
  WarmRecorder,
  type RecordKey,
  type WarmRecorderCounters,
  type WarmRecorderOptions
} from './warm-recorder.js'
export {
  adoptWarm,
  type WarmFallBack,
  type WarmTakeoverOptions,
  type WarmTakeoverResult
} from './warm-takeover.js'
export {
  filterRecord,
  planRenegotiation,
  saRecords,
  spiHex,
  type Merge,
  type MergeReason,
  type RenegotiationPlan
} from './records.js'
export {
  releaseForSwitchover,
  setDvipaTargets,
  type ReleasedDvipa,
  type TargetChange
} from './operations.js'
export {
  runTakeover,
  type TakeoverParts,
  type TakeoverPlan,
  type TakeoverRetry,
  type TakeoverWarm
} from './takeover.js'
export {
  OwnershipController,
  OWNERSHIP_QUERY_EPOCH,
  joinWindowBound,
  ownerLease,
  type OwnershipActions,
  type OwnershipControllerComponents,
  type OwnershipControllerInit,
  type OwnershipCounters,
  type OwnershipDetector,
  type TakeoverRun
} from './ownership/ownership-controller.js'
export {
  stateEpoch,
  stateOwner,
  viewEpoch,
  type OwnerStanding,
  type OwnershipState,
  type StoreView,
  type TakeoverPhase
} from './ownership/ownership-state.js'
export {
  DefaultTargetStack,
  defaultTargetStack,
  type DefaultTargetStackComponents,
  type DefaultTargetStackInit,
  type LocalOwner,
  type TargetCounters
} from './target-stack.js'
