import { Redis } from 'ioredis'
import { couplingStoreSuite } from '@vipsec/compliance/coupling-store'
import { takeOnceTests } from '@vipsec/store-memory/test/take-once'
import { warmKindsTests } from '@vipsec/store-memory/test/warm-kinds'
import { RedisCouplingStore, redisKeys } from '../src/index.js'
import { RedisServer } from './redis-server.js'

describe('RedisCouplingStore', () => {
  let server: RedisServer
  let admin: Redis
  let n = 0

  before(async () => {
    server = await RedisServer.start()
    admin = new Redis({ host: '127.0.0.1', port: server.port })
  })

  after(async () => {
    admin?.disconnect()
    await server?.remove()
  })

  couplingStoreSuite({
    // every test gets a cluster (key prefix) of its own on the one server
    setup: () => new RedisCouplingStore({}, { port: server.port, keyPrefix: `compliance-${++n}:` }),
    teardown: async (store) => {
      const keys = await admin.keys(`${(store as RedisCouplingStore).keys.prefix}*`)
      if (keys.length > 0) await admin.del(...keys)
    },
    corrupt: async (store, dvipa, kind, id, bytes) => {
      const keys = redisKeys((store as RedisCouplingStore).keys.prefix)
      await admin.hset(keys.records(dvipa), keys.field(kind, id), Buffer.from(bytes))
    }
  })

  describe('warm mode records', () => {
    warmKindsTests(
      async () => {
        const store = new RedisCouplingStore({}, { port: server.port, keyPrefix: `warm-${++n}:` })
        await store.start()
        return store
      },
      async (store) => {
        await store.stop()
        const keys = await admin.keys(`${(store as RedisCouplingStore).keys.prefix}*`)
        if (keys.length > 0) await admin.del(...keys)
      }
    )
  })

  describe('one take per epoch', () => {
    takeOnceTests(
      async () => {
        const store = new RedisCouplingStore({}, { port: server.port, keyPrefix: `take-${++n}:` })
        await store.start()
        return store
      },
      async (store) => {
        await store.stop()
        const keys = await admin.keys(`${(store as RedisCouplingStore).keys.prefix}*`)
        if (keys.length > 0) await admin.del(...keys)
      }
    )
  })
})
