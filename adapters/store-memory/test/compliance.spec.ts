import { couplingStoreSuite } from '@vipsec/compliance/coupling-store'
import { MemoryCouplingFacility, MemoryCouplingStore, type RecordKey } from '../src/index.js'

describe('MemoryCouplingStore', () => {
  couplingStoreSuite({
    setup: () => new MemoryCouplingStore({}, { facility: new MemoryCouplingFacility() }),
    corrupt: async (store, dvipa, kind, id, bytes) => {
      const key: RecordKey = `${kind}/${id}`
      ;(store as MemoryCouplingStore).facility.slot(dvipa).records.set(key, bytes)
    }
  })
})
