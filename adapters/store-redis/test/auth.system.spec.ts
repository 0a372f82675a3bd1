import { expect } from 'chai'
import { countRecords, type CouplingStoreEvent } from '@vipsec/interface'
import { samplePhase1 } from '@vipsec/compliance/coupling-store'
import { RedisCouplingStore, type RedisCouplingStoreInit } from '../src/index.js'
import { RedisServer } from './redis-server.js'

const DVIPA = '10.0.0.100'

/** Resolves with the rejection of `promise`, or fails when it fulfils. */
async function rejection(promise: Promise<unknown>): Promise<Error & Record<string, unknown>> {
  try {
    await promise
  } catch (err) {
    return err as Error & Record<string, unknown>
  }
  throw new Error('expected the promise to reject, but it fulfilled')
}

describe('RedisCouplingStore with ACL users', function () {
  this.timeout(60_000)
  let server: RedisServer
  const stores: RedisCouplingStore[] = []

  function newStore(init: RedisCouplingStoreInit): RedisCouplingStore {
    const store = new RedisCouplingStore(
      {},
      { port: server.port, operationTimeoutMs: 2000, ...init }
    )
    stores.push(store)
    return store
  }

  before(async () => {
    // `default` is off: every connection must log in. alice may use the keys and the channel of
    // cluster `a:` only.
    server = await RedisServer.start({
      args: [
        '--user',
        'default',
        'off',
        '--user',
        'alice',
        'on',
        '>alice-secret',
        'resetchannels',
        '~a:*',
        '&a:*',
        '+@all'
      ]
    })
  })

  afterEach(async () => {
    for (const store of stores.splice(0)) await store.stop()
  })

  after(async () => {
    await server?.remove()
  })

  describe('.start', () => {
    describe('when username and password are right', () => {
      it('should log in and work, change stream included', async () => {
        const store = newStore({ username: 'alice', password: 'alice-secret', keyPrefix: 'a:' })
        await store.start()
        const events: CouplingStoreEvent[] = []
        const sub = store.events$.subscribe((e) => events.push(e))
        const { epoch } = await store.claimOwnership(DVIPA, {
          owner: 'dp-1',
          ranks: [],
          expectedEpoch: 0
        })
        await store.putRecords(DVIPA, [samplePhase1(DVIPA, 1)], { owner: 'dp-1', epoch })
        expect(countRecords(await store.listRecords(DVIPA))).to.equal(1)
        for (let i = 0; i < 100 && events.length < 2; i++)
          await new Promise((r) => setTimeout(r, 20))
        sub.unsubscribe()
        expect(events.map((e) => e.type)).to.deep.equal(['ownership:claimed', 'record:put'])
      })

      it('should accept the credentials in a URL', async () => {
        const store = newStore({
          url: `redis://alice:alice-secret@127.0.0.1:${server.port}`,
          keyPrefix: 'a:url:'
        })
        await store.start()
        expect(store.isStarted()).to.equal(true)
      })
    })

    describe('when the password is wrong', () => {
      it('should reject with StoreUnavailableError that says the credentials were refused', async () => {
        const store = newStore({ username: 'alice', password: 'wrong', keyPrefix: 'a:' })
        const err = await rejection(store.start())
        expect(err.name).to.equal('StoreUnavailableError')
        expect(err.message).to.include('WRONGPASS')
        expect(err.message).to.include('alice')
        expect(store.isStarted()).to.equal(false)
      })
    })

    describe('when no credentials are given', () => {
      it('should reject with StoreUnavailableError', async () => {
        const store = newStore({ keyPrefix: 'a:' })
        const err = await rejection(store.start())
        expect(err.name).to.equal('StoreUnavailableError')
        expect(err.message).to.match(/NOAUTH|WRONGPASS/)
      })
    })

    describe("when the user may not use the cluster's keys", () => {
      it('should reject with StoreUnavailableError that names the missing permission', async () => {
        const store = newStore({ username: 'alice', password: 'alice-secret', keyPrefix: 'b:' })
        const err = await rejection(store.start())
        expect(err.name).to.equal('StoreUnavailableError')
        expect(err.message).to.include('NOPERM')
      })
    })
  })
})
