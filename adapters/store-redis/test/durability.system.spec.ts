import { expect } from 'chai'
import { RedisCouplingStore } from '../src/index.js'
import { RedisServer } from './redis-server.js'

describe('RedisCouplingStore durability check', function () {
  this.timeout(30_000)
  let server: RedisServer
  let store: RedisCouplingStore | undefined

  before(async () => {
    // the helper turns the append-only file on; a later argument turns it off again
    server = await RedisServer.start({ args: ['--appendonly', 'no'] })
  })

  afterEach(async () => {
    await store?.stop()
    store = undefined
  })

  after(async () => {
    await server?.remove()
  })

  describe('when the server runs without the append-only file', () => {
    it('should refuse to start with RedisDurabilityError', async () => {
      store = new RedisCouplingStore({}, { port: server.port, keyPrefix: 'durability:' })
      const err = await store.start().then(
        () => undefined,
        (e: Error) => e
      )
      expect(err?.name).to.equal('RedisDurabilityError')
      expect(err?.message).to.match(/appendonly yes/)
      expect(store.isStarted()).to.equal(false)
    })

    it('should start when told to accept the risk', async () => {
      store = new RedisCouplingStore(
        {},
        { port: server.port, keyPrefix: 'durability:', acceptNonDurableServer: true }
      )
      await store.start()
      const ownership = await store.claimOwnership('10.0.0.1', {
        owner: 'dp-1',
        ranks: [],
        expectedEpoch: 0
      })
      expect(ownership.epoch).to.equal(1)
    })
  })

  describe('when the server has the append-only file on', () => {
    it('should start', async () => {
      const durable = await RedisServer.start()
      try {
        store = new RedisCouplingStore({}, { port: durable.port, keyPrefix: 'durability:' })
        await store.start()
        expect(store.isStarted()).to.equal(true)
        await store.stop()
      } finally {
        await durable.remove()
      }
    })
  })
})
