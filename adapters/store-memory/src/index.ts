/**
 * The in-memory coupling store: the embedded default of vipsec. One
 * {@link MemoryCouplingFacility} is the shared state; each node of a one-process cluster gets its
 * own {@link MemoryCouplingStore} on it, exactly as separate processes would each hold a client
 * of one Redis server. It passes the whole `CouplingStore` compliance suite.
 *
 * {@link BaseCouplingStore} holds the contract behaviour every store shares (checks, decoding,
 * the mailbox's damaged messages, the change stream); the Redis and etcd stores extend it too,
 * each with its backend's primitives, as the memory store does with the facility's.
 *
 * @example Two nodes sharing one facility
 * ```ts
 * import { MemoryCouplingFacility, MemoryCouplingStore } from '@vipsec/store-memory'
 *
 * const facility = new MemoryCouplingFacility()
 * const primary = new MemoryCouplingStore({}, { facility })
 * const backup = new MemoryCouplingStore({}, { facility })
 * await primary.start()
 * await backup.start()
 *
 * const { epoch } = await primary.claimOwnership('10.0.0.100', { owner: 'dp-1', ranks: ['dp-2'], expectedEpoch: 0 })
 * // the backup sees the claim, and takes over by claiming the next epoch
 * await backup.claimOwnership('10.0.0.100', { owner: 'dp-2', ranks: [], expectedEpoch: epoch })
 * ```
 *
 * @packageDocumentation
 */
export {
  BaseCouplingStore,
  checkCurrent,
  checkFence,
  COUPLING_STORE_EVENT_TYPES,
  mergeJournal,
  releasedOwnership,
  type ReleasedOwnership
} from './base-coupling-store.js'
export { MemoryCouplingFacility, type DvipaSlot, type RecordKey } from './facility.js'
export {
  MemoryCouplingStore,
  memoryCouplingStore,
  type MemoryCouplingStoreComponents,
  type MemoryCouplingStoreInit
} from './memory-coupling-store.js'
