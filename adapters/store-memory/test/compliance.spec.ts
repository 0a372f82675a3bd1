import { couplingStoreSuite } from '@vipsec/compliance/coupling-store'
import { MemoryCouplingFacility, MemoryCouplingStore, type RecordKey } from '../src/index.js'
import { takeOnceTests } from './take-once.js'
import { warmKindsTests } from './warm-kinds.js'

describe('MemoryCouplingStore', () => {
  couplingStoreSuite({
    setup: () => new MemoryCouplingStore({}, { facility: new MemoryCouplingFacility() }),
    corrupt: async (store, dvipa, kind, id, bytes) => {
      const key: RecordKey = `${kind}/${id}`
      ;(store as MemoryCouplingStore).facility.slot(dvipa).records.set(key, bytes)
    }
  })
})

describe('MemoryCouplingStore: one take per epoch', () => {
  takeOnceTests(
    async () => {
      const store = new MemoryCouplingStore({}, { facility: new MemoryCouplingFacility() })
      await store.start()
      return store
    },
    async (store) => store.stop()
  )
})

describe('MemoryCouplingStore: warm mode records', () => {
  warmKindsTests(
    async () => {
      const store = new MemoryCouplingStore({}, { facility: new MemoryCouplingFacility() })
      await store.start()
      return store
    },
    async (store) => store.stop()
  )
})
