import { Etcd3 } from 'etcd3'
import { couplingStoreSuite } from '@vipsec/compliance/coupling-store'
import { takeOnceTests } from '@vipsec/store-memory/test/take-once'
import { warmKindsTests } from '@vipsec/store-memory/test/warm-kinds'
import { EtcdCouplingStore, recordName } from '../src/index.js'
import { EtcdCluster } from './etcd-cluster.js'

for (const size of [1, 3]) {
  describe(`EtcdCouplingStore on ${size === 1 ? 'one etcd member' : `a ${size}-member etcd cluster`}`, function () {
    this.timeout(60_000)
    let cluster: EtcdCluster
    let admin: Etcd3
    let n = 0

    before(async () => {
      cluster = await EtcdCluster.start({ size })
      admin = new Etcd3({ hosts: cluster.hosts })
    })

    after(async () => {
      admin?.close()
      await cluster?.remove()
    })

    couplingStoreSuite({
      // every test gets a cluster (key prefix) of its own on the one etcd
      setup: () =>
        new EtcdCouplingStore({}, { hosts: cluster.hosts, keyPrefix: `compliance-${++n}/` }),
      teardown: async (store) => {
        await admin.delete().prefix((store as EtcdCouplingStore).keys.prefix)
      },
      corrupt: async (store, dvipa, kind, id, bytes) => {
        const keys = (store as EtcdCouplingStore).keys
        await admin.put(keys.records(dvipa) + recordName(kind, id)).value(Buffer.from(bytes))
      }
    })

    describe('warm mode records', () => {
      warmKindsTests(
        async () => {
          const store = new EtcdCouplingStore(
            {},
            { hosts: cluster.hosts, keyPrefix: `warm-${++n}/` }
          )
          await store.start()
          return store
        },
        async (store) => {
          await store.stop()
          await admin.delete().prefix((store as EtcdCouplingStore).keys.prefix)
        }
      )
    })

    describe('one take per epoch', () => {
      takeOnceTests(
        async () => {
          const store = new EtcdCouplingStore(
            {},
            { hosts: cluster.hosts, keyPrefix: `take-${++n}/` }
          )
          await store.start()
          return store
        },
        async (store) => {
          await store.stop()
          await admin.delete().prefix((store as EtcdCouplingStore).keys.prefix)
        }
      )
    })
  })
}
