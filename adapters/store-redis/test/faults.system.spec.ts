import { expect } from 'chai'
import { Redis } from 'ioredis'
import {
  countRecords,
  type CouplingStoreEvent,
  type DvipaRecord,
  type Fence
} from '@vipsec/interface'
import { sampleDeleteMessage, samplePhase1, sampleRecords } from '@vipsec/compliance/coupling-store'
import { RedisCouplingStore, type RedisCouplingStoreInit } from '../src/index.js'
import { RedisServer } from './redis-server.js'

const DVIPA = '10.0.0.100'

const sleep = async (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Resolves with the rejection of `promise`, or fails when it fulfils. */
async function rejection(promise: Promise<unknown>): Promise<Error & Record<string, unknown>> {
  try {
    await promise
  } catch (err) {
    return err as Error & Record<string, unknown>
  }
  throw new Error('expected the promise to reject, but it fulfilled')
}

/**
 * Writes a record and waits for its `record:put` event, again and again (at most `tries` times,
 * 200 ms each), until one arrives: events published while a subscriber reconnects are lost.
 */
async function eventsFlow(
  writer: RedisCouplingStore,
  watcher: RedisCouplingStore,
  fence: Fence,
  tries = 50
): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    const id = 9000 + i
    let seen = false
    const sub = watcher.events$.subscribe((e) => {
      if (e.type === 'record:put' && e.id === `ike-${id}`) seen = true
    })
    await writer.putRecords(DVIPA, [samplePhase1(DVIPA, id)], fence)
    for (let j = 0; j < 10 && !seen; j++) await sleep(20)
    sub.unsubscribe()
    if (seen) return true
  }
  return false
}

describe('RedisCouplingStore under faults', function () {
  this.timeout(120_000)
  let server: RedisServer
  let admin: Redis
  const stores: RedisCouplingStore[] = []
  let n = 0

  /** A started store on the test server with a prefix of its own unless one is given. */
  async function newStore(init: RedisCouplingStoreInit = {}): Promise<RedisCouplingStore> {
    const store = new RedisCouplingStore(
      {},
      { port: server.port, keyPrefix: `faults-${++n}:`, ...init }
    )
    stores.push(store)
    await store.start()
    return store
  }

  before(async () => {
    server = await RedisServer.start()
    admin = new Redis({ host: '127.0.0.1', port: server.port, lazyConnect: true })
    admin.on('error', () => {})
    await admin.connect()
  })

  afterEach(async () => {
    for (const store of stores.splice(0)) await store.stop()
  })

  after(async () => {
    admin?.disconnect()
    await server?.remove()
  })

  describe('when redis-server is killed and restarted during normal running', () => {
    it('should reconnect, keep every acknowledged record and the ownership, and deliver events again', async () => {
      const owner = await newStore({ operationTimeoutMs: 15_000 })
      const backup = await newStore({ keyPrefix: owner.keys.prefix, operationTimeoutMs: 15_000 })
      const seen: CouplingStoreEvent[] = []
      const sub = backup.events$.subscribe((e) => seen.push(e))
      const ownership = await owner.claimOwnership(DVIPA, {
        owner: 'dp-1',
        ranks: ['dp-2'],
        expectedEpoch: 0
      })
      const fence = { owner: 'dp-1', epoch: ownership.epoch }

      // The owner keeps writing batches while the server is killed and started again.
      const acknowledged: DvipaRecord[] = []
      let writing = true
      const writer = (async () => {
        for (let i = 0; writing && i < 2000; i++) {
          const batch = sampleRecords(DVIPA, i)
          await owner.putRecords(DVIPA, batch, fence)
          acknowledged.push(...batch)
        }
      })()
      for (let i = 0; i < 2000 && acknowledged.length < 50; i++) await sleep(5)
      expect(acknowledged.length).to.be.at.least(50)
      await server.kill()
      await sleep(300)
      await server.launch()
      // every call made during the outage waited for the server and succeeded
      const before = acknowledged.length
      for (let i = 0; i < 4000 && acknowledged.length < before + 50; i++) await sleep(5)
      writing = false
      await writer
      sub.unsubscribe()

      const fresh = await newStore({ keyPrefix: owner.keys.prefix })
      const set = await fresh.listRecords(DVIPA)
      expect(countRecords(set)).to.equal(new Set(acknowledged.map((r) => `${r.kind}/${r.id}`)).size)
      for (const record of acknowledged) {
        expect(set[record.kind].find((r) => r.id === record.id)).to.deep.equal(record)
      }
      // no takeover was triggered: same owner, same epoch, and no ownership change was published
      expect(await fresh.getOwnership(DVIPA)).to.deep.equal(ownership)
      expect(seen.filter((e) => e.type !== 'record:put').map((e) => e.type)).to.deep.equal([
        'ownership:claimed'
      ])
      expect(await eventsFlow(owner, backup, fence)).to.equal(true)
    })

    it('should leave a take that was in flight all done or not begun, and lose no record', async () => {
      const owner = await newStore({ operationTimeoutMs: 15_000 })
      const first = await owner.claimOwnership(DVIPA, {
        owner: 'dp-1',
        ranks: [],
        expectedEpoch: 0
      })
      const written: DvipaRecord[] = []
      for (let i = 0; i < 200; i++) written.push(...sampleRecords(DVIPA, i))
      await owner.putRecords(DVIPA, written, { owner: 'dp-1', epoch: first.epoch })
      const taker = await newStore({ keyPrefix: owner.keys.prefix, operationTimeoutMs: 15_000 })
      const second = await taker.claimOwnership(DVIPA, {
        owner: 'dp-2',
        ranks: [],
        expectedEpoch: first.epoch
      })

      const take = taker.takeRecords(DVIPA, { owner: 'dp-2', epoch: second.epoch })
      await server.kill()
      await server.launch()
      const taken = await take
      expect(countRecords(taken)).to.equal(written.length)

      // a third node takes over from dp-2, which never settled: it gets everything, once
      const next = await newStore({ keyPrefix: owner.keys.prefix })
      const live = countRecords(await next.listRecords(DVIPA))
      expect(live).to.equal(0)
      const third = await next.claimOwnership(DVIPA, {
        owner: 'dp-3',
        ranks: [],
        expectedEpoch: second.epoch
      })
      const again = await next.takeRecords(DVIPA, { owner: 'dp-3', epoch: third.epoch })
      expect(countRecords(again)).to.equal(written.length)
      expect(again.corrupt).to.deep.equal([])
    })

    it('should keep mailbox messages across the restart and deliver each once', async () => {
      const store = await newStore({ operationTimeoutMs: 15_000 })
      for (let i = 1; i <= 5; i++) await store.postMessage(sampleDeleteMessage('dp-1', i))
      await server.kill()
      await server.launch()
      const got = await store.takeMessages('dp-1')
      expect(got.map((m) => m.id)).to.deep.equal(['msg-1', 'msg-2', 'msg-3', 'msg-4', 'msg-5'])
      expect(await store.takeMessages('dp-1')).to.deep.equal([])
    })
  })

  describe('when the server is down for a few seconds', () => {
    it('should reject calls with StoreUnavailableError after operationTimeoutMs, then work again', async () => {
      const store = await newStore({ operationTimeoutMs: 500 })
      const watcher = await newStore({ keyPrefix: store.keys.prefix })
      const { epoch } = await store.claimOwnership(DVIPA, {
        owner: 'dp-1',
        ranks: [],
        expectedEpoch: 0
      })
      const fence = { owner: 'dp-1', epoch }
      await server.kill()
      try {
        for (const call of [
          async () => store.getOwnership(DVIPA),
          async () => store.putRecords(DVIPA, [samplePhase1(DVIPA, 1)], fence),
          async () => store.takeMessages('dp-1')
        ]) {
          const err = await rejection(call())
          expect(err.name).to.equal('StoreUnavailableError')
          expect(err.message).to.include(`127.0.0.1:${server.port}`)
        }
        expect(store.isStarted()).to.equal(true)
        await sleep(2000)
      } finally {
        await server.launch()
      }
      // the same store, never restarted, works again, and so does the change stream
      // a call made while the client still reconnects fails at once: try for up to 10 s, not
      // 50 times in a row (on a loaded machine the reconnect outlasted 50 quick failures)
      let ok = false
      for (let i = 0; i < 50 && !ok; i++) {
        ok = await store.getOwnership(DVIPA).then(
          () => true,
          () => false
        )
        if (!ok) await sleep(200)
      }
      expect(ok).to.equal(true)
      expect((await store.getOwnership(DVIPA)).owner).to.equal('dp-1')
      expect(await eventsFlow(store, watcher, fence)).to.equal(true)
    })

    it('should let a call made during the outage wait and succeed when operationTimeoutMs allows', async () => {
      const store = await newStore({ operationTimeoutMs: 20_000 })
      const { epoch } = await store.claimOwnership(DVIPA, {
        owner: 'dp-1',
        ranks: [],
        expectedEpoch: 0
      })
      await server.kill()
      const put = store.putRecords(DVIPA, [samplePhase1(DVIPA, 1)], { owner: 'dp-1', epoch })
      await sleep(2000)
      await server.launch()
      await put
      expect((await store.getRecord(DVIPA, 'phase1', 'ike-1')).id).to.equal('ike-1')
    })
  })

  describe('when a connection of the store is killed', () => {
    it('should resubscribe the change stream', async () => {
      const writer = await newStore()
      const watcher = await newStore({ keyPrefix: writer.keys.prefix })
      const { epoch } = await writer.claimOwnership(DVIPA, {
        owner: 'dp-1',
        ranks: [],
        expectedEpoch: 0
      })
      const fence = { owner: 'dp-1', epoch }
      expect(await eventsFlow(writer, watcher, fence)).to.equal(true)
      const killed = await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub')
      expect(killed).to.be.greaterThan(0)
      expect(await eventsFlow(writer, watcher, fence)).to.equal(true)
    })

    it('should send a call that was in flight again and complete it once', async () => {
      const store = await newStore({ operationTimeoutMs: 10_000 })
      const { epoch } = await store.claimOwnership(DVIPA, {
        owner: 'dp-1',
        ranks: [],
        expectedEpoch: 0
      })
      for (let i = 1; i <= 3; i++) await store.postMessage(sampleDeleteMessage('dp-9', i))
      // Hold every write on the server, send calls, and kill their connection while they wait.
      await admin.call('CLIENT', 'PAUSE', '1000', 'WRITE')
      const put = store.putRecords(DVIPA, [samplePhase1(DVIPA, 1)], { owner: 'dp-1', epoch })
      const take = store.takeMessages('dp-9')
      await sleep(200)
      const list = String(await admin.call('CLIENT', 'LIST', 'TYPE', 'normal'))
      const ids = list
        .split('\n')
        .filter((line) => / name=vipsec /.test(line))
        .map((line) => /id=(\d+)/.exec(line)?.[1])
      expect(ids.length).to.be.greaterThan(0)
      for (const id of ids) await admin.call('CLIENT', 'KILL', 'ID', String(id))
      await put
      expect((await take).map((m) => m.id)).to.deep.equal(['msg-1', 'msg-2', 'msg-3'])
      expect((await store.getRecord(DVIPA, 'phase1', 'ike-1')).id).to.equal('ike-1')
      expect(await store.takeMessages('dp-9')).to.deep.equal([])
    })
  })

  describe('when a script is sent twice with one request id (a retry after a lost reply)', () => {
    it('should apply claims, posts and mailbox takes once', async () => {
      const store = await newStore()
      const { CLAIM, POST, TAKE_MESSAGES } = await import('../src/scripts.js')
      const { claimCall, postCall, takeMessagesCall } = await import('../src/calls.js')
      const ownership = {
        v: 1 as const,
        dvipa: DVIPA,
        owner: 'dp-1',
        epoch: 1,
        ranks: [],
        claimedAt: 1
      }
      const claim = claimCall(store.keys, ownership, 'claim-1')
      for (let i = 0; i < 2; i++) {
        const reply = (await CLAIM.run(admin, claim.keys, claim.args)) as Buffer[]
        expect(String(reply[0])).to.equal('ok')
      }
      // another claimer with the same expected epoch still loses
      const other = claimCall(store.keys, { ...ownership, owner: 'dp-2' }, 'claim-2')
      expect(String(((await CLAIM.run(admin, other.keys, other.args)) as Buffer[])[0])).to.equal(
        'conflict'
      )
      const post = postCall(store.keys, sampleDeleteMessage('dp-1', 1), 'post-1', 60_000)
      await POST.run(admin, post.keys, post.args)
      await POST.run(admin, post.keys, post.args)
      const take = takeMessagesCall(store.keys, 'dp-1', 'take-1', 60_000)
      const first = (await TAKE_MESSAGES.run(admin, take.keys, take.args)) as [Buffer, Buffer[]]
      const second = (await TAKE_MESSAGES.run(admin, take.keys, take.args)) as [Buffer, Buffer[]]
      expect(first[1]).to.have.length(1)
      expect(second[1].map(String)).to.deep.equal(first[1].map(String))
      expect(await store.takeMessages('dp-1')).to.deep.equal([])
    })
  })

  describe('when two clusters share one server', () => {
    it('should keep ownership, records, mailboxes and events apart by keyPrefix', async () => {
      const a = await newStore({ keyPrefix: 'cluster-a:' })
      const b = await newStore({ keyPrefix: 'cluster-b:' })
      const eventsOfB: CouplingStoreEvent[] = []
      const sub = b.events$.subscribe((e) => eventsOfB.push(e))
      const ownA = await a.claimOwnership(DVIPA, { owner: 'dp-a', ranks: [], expectedEpoch: 0 })
      const ownB = await b.claimOwnership(DVIPA, { owner: 'dp-b', ranks: [], expectedEpoch: 0 })
      expect([ownA.epoch, ownB.epoch]).to.deep.equal([1, 1])
      await a.putRecords(DVIPA, sampleRecords(DVIPA, 1), { owner: 'dp-a', epoch: 1 })
      await a.postMessage(sampleDeleteMessage('dp-1', 1))
      expect(countRecords(await b.listRecords(DVIPA))).to.equal(0)
      expect(await b.takeMessages('dp-1')).to.deep.equal([])
      const err = await rejection(
        b.putRecords(DVIPA, [samplePhase1(DVIPA, 1)], { owner: 'dp-a', epoch: 1 })
      )
      expect(err.name).to.equal('StaleEpochError')
      await sleep(100)
      sub.unsubscribe()
      expect(eventsOfB.map((e) => e.type)).to.deep.equal(['ownership:claimed'])
      expect(countRecords(await a.listRecords(DVIPA))).to.equal(5)
      expect((await a.takeMessages('dp-1')).map((m) => m.id)).to.deep.equal(['msg-1'])
      for (const key of await admin.keys('cluster-*')) {
        expect(key.startsWith('cluster-a:') || key.startsWith('cluster-b:')).to.equal(true)
      }
    })
  })
})
