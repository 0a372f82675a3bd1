export {
  FaultyCouplingStore,
  type FaultyCouplingStoreComponents,
  type FaultyCouplingStoreInit,
  type FaultyStoreStats,
  type ReplyFault,
  type ReplyFaultSetting,
  type StoreDefects
} from './faulty-store.js'
export { PausableClock } from './pausable-clock.js'
export {
  CHAOS_BOUNDS,
  INVARIANTS,
  runSchedule,
  type InvariantName,
  type RunOptions,
  type RunResult,
  type TamperContext,
  type TraceEntry,
  type Violation
} from './runner.js'
export {
  CHAOS_FAMILIES,
  CHAOS_TOPOLOGY,
  FAULT_WINDOW_MS,
  MAX_FAULT_MS,
  MAX_PAUSE_MS,
  ScheduleRandom,
  chaosFamily,
  describeFault,
  makeSchedule,
  type ChaosConfig,
  type ChaosFamily,
  type ChaosTopology,
  type TimedFault,
  type Fault,
  type FaultAction,
  type FaultStart,
  type NodeRef,
  type Schedule
} from './schedule.js'
export { formatViolation, reproduceCommand, shrink, type ShrunkViolation } from './shrink.js'
