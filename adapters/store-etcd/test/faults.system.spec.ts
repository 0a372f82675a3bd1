import { expect } from 'chai'
import { countRecords, type CouplingStoreEvent, type DvipaRecord } from '@vipsec/interface'
import { samplePhase1 } from '@vipsec/compliance/coupling-store'
import { EtcdCouplingStore } from '../src/index.js'
import { EtcdCluster } from './etcd-cluster.js'

const DVIPA = '10.0.0.100'
const sleep = async (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe('EtcdCouplingStore on a 3-member cluster under faults', function () {
  this.timeout(120_000)
  let cluster: EtcdCluster
  let n = 0
  const stores: EtcdCouplingStore[] = []

  /** A started store of this test's own prefix. */
  async function open(hosts = cluster.hosts): Promise<EtcdCouplingStore> {
    const store = new EtcdCouplingStore(
      {},
      { hosts, keyPrefix: `faults-${n}/`, operationTimeoutMs: 8000, attemptTimeoutMs: 1000 }
    )
    stores.push(store)
    await store.start()
    return store
  }

  /** Writes one record after another until `stop()`; resolves with the acknowledged ones. */
  function writer(store: EtcdCouplingStore, epoch: number): { stop: () => Promise<string[]> } {
    let running = true
    const acked: string[] = []
    const done = (async () => {
      for (let i = 0; running; i++) {
        const record: DvipaRecord = samplePhase1(DVIPA, i)
        try {
          await store.putRecords(DVIPA, [record], { owner: 'dp-1', epoch })
          acked.push(record.id)
        } catch (err) {
          // an unknown outcome is not an acknowledgement; anything else is a failure
          expect((err as Error).name).to.equal('StoreUnavailableError')
        }
      }
    })()
    return {
      stop: async () => {
        running = false
        await done
        return acked
      }
    }
  }

  before(async () => {
    cluster = await EtcdCluster.start({ size: 3 })
  })

  beforeEach(() => {
    n++
  })

  afterEach(async () => {
    await Promise.all(stores.splice(0).map(async (s) => s.stop()))
    for (const member of cluster.members) {
      member.resume()
      if (member.pid === undefined) member.launch()
    }
    await cluster.waitHealthy(cluster.members)
  })

  after(async () => {
    await cluster?.remove()
  })

  for (const fault of ['kill the leader', 'pause a minority member', 'restart all members']) {
    describe(`when we ${fault} during writes`, () => {
      it('should lose no acknowledged record and keep the epoch', async () => {
        const store = await open()
        const { epoch } = await store.claimOwnership(DVIPA, {
          owner: 'dp-1',
          ranks: [],
          expectedEpoch: 0
        })
        const w = writer(store, epoch)
        await sleep(300)
        if (fault === 'kill the leader') {
          const leader = await cluster.leader()
          await leader!.kill()
          await sleep(1500)
          leader!.launch()
        } else if (fault === 'pause a minority member') {
          const follower = cluster.members.find((m) => m.pid !== undefined)!
          const victim = (await follower.isLeader()) ? cluster.members[1]! : follower
          victim.pause()
          await sleep(1500)
          victim.resume()
        } else {
          await cluster.restartAll()
        }
        await sleep(300)
        const acked = await w.stop()
        expect(acked.length).to.be.greaterThan(0)
        const reader = await open()
        const set = await reader.listRecords(DVIPA, { kind: 'phase1' })
        const held = new Set(set.phase1.map((r) => r.id))
        expect(acked.filter((id) => !held.has(id))).to.deep.equal([])
        expect(await reader.getOwnership(DVIPA)).to.include({ owner: 'dp-1', epoch })
        expect(countRecords(set)).to.be.at.least(acked.length)
      })
    })
  }

  describe('when the member a watcher talks to is killed and restarted', () => {
    it('should deliver every change event once, in order, after it reconnects', async () => {
      const watched = cluster.members[0]!
      // the subscriber knows only this member, so its watch must resume there
      const subscriber = await open([watched.url])
      const events: CouplingStoreEvent[] = []
      subscriber.events$.subscribe((e) => events.push(e))
      const store = await open(cluster.hosts.slice(1))
      const { epoch } = await store.claimOwnership(DVIPA, {
        owner: 'dp-1',
        ranks: [],
        expectedEpoch: 0
      })
      const written: string[] = []
      for (let i = 0; i < 60; i++) {
        if (i === 20) await watched.kill()
        if (i === 40) watched.launch()
        const record = samplePhase1(DVIPA, i)
        await store.putRecords(DVIPA, [record], { owner: 'dp-1', epoch })
        written.push(record.id)
      }
      for (let i = 0; i < 300 && events.length < 61; i++) await sleep(50)
      expect(events[0]).to.include({ type: 'ownership:claimed' })
      const puts = events.filter((e) => e.type === 'record:put').map((e) => e.id)
      expect(puts).to.deep.equal(written)
    })
  })
})
