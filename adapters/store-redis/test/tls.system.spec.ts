import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import type { CouplingStoreEvent } from '@vipsec/interface'
import { samplePhase1 } from '@vipsec/compliance/coupling-store'
import { RedisCouplingStore, type RedisCouplingStoreInit } from '../src/index.js'
import { RedisServer } from './redis-server.js'

const DVIPA = '10.0.0.100'
// A self-signed test certificate for 127.0.0.1 and localhost (P-256, valid for 100 years).
const certFile = fileURLToPath(new URL('./fixtures/tls/server.crt', import.meta.url))
const keyFile = fileURLToPath(new URL('./fixtures/tls/server.key', import.meta.url))

async function rejection(promise: Promise<unknown>): Promise<Error & Record<string, unknown>> {
  try {
    await promise
  } catch (err) {
    return err as Error & Record<string, unknown>
  }
  throw new Error('expected the promise to reject, but it fulfilled')
}

describe('RedisCouplingStore over TLS', function () {
  this.timeout(60_000)
  let server: RedisServer
  const stores: RedisCouplingStore[] = []

  function newStore(init: RedisCouplingStoreInit): RedisCouplingStore {
    const store = new RedisCouplingStore({}, { port: server.port, keyPrefix: 'tls:', ...init })
    stores.push(store)
    return store
  }

  before(async () => {
    server = await RedisServer.start({ tls: { certFile, keyFile } })
  })

  afterEach(async () => {
    for (const store of stores.splice(0)) await store.stop()
  })

  after(async () => {
    await server?.remove()
  })

  describe('when the client trusts the server certificate', () => {
    it('should connect, write, read and stream changes', async () => {
      const store = newStore({ tls: { ca: readFileSync(certFile) } })
      await store.start()
      const events: CouplingStoreEvent[] = []
      const sub = store.events$.subscribe((e) => events.push(e))
      const { epoch } = await store.claimOwnership(DVIPA, {
        owner: 'dp-1',
        ranks: [],
        expectedEpoch: 0
      })
      await store.putRecords(DVIPA, [samplePhase1(DVIPA, 1)], { owner: 'dp-1', epoch })
      expect(await store.getRecord(DVIPA, 'phase1', 'ike-1')).to.deep.equal(samplePhase1(DVIPA, 1))
      for (let i = 0; i < 100 && events.length < 2; i++) await new Promise((r) => setTimeout(r, 20))
      sub.unsubscribe()
      expect(events.map((e) => e.type)).to.deep.equal(['ownership:claimed', 'record:put'])
    })
  })

  describe('when the client does not trust the certificate', () => {
    it('should reject start with StoreUnavailableError naming the certificate problem', async () => {
      const store = newStore({ tls: {}, operationTimeoutMs: 1000 })
      const err = await rejection(store.start())
      expect(err.name).to.equal('StoreUnavailableError')
      expect(err.message).to.match(/certificate/)
    })
  })

  describe('when the client does not use TLS', () => {
    it('should reject start with StoreUnavailableError', async () => {
      const store = newStore({ operationTimeoutMs: 1000 })
      const err = await rejection(store.start())
      expect(err.name).to.equal('StoreUnavailableError')
    })
  })
})
