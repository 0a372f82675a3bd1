import { expect } from 'chai'
import { StoreUnavailableError } from '@vipsec/interface'
import { DVIPA, SimulatedCluster, type ClusterEvent } from '@vipsec/simulation'

/**
 * Faults of issue 10 on a whole in-process cluster (DPs, targets, peers, one memory store): what
 * the cluster does end to end, with the peers' traffic as the measure.
 */
describe('ownership under faults (whole cluster)', function () {
  this.timeout(60_000)
  let cluster: SimulatedCluster
  let events: ClusterEvent[]

  async function running(
    options: ConstructorParameters<typeof SimulatedCluster>[0] = {}
  ): Promise<void> {
    cluster = new SimulatedCluster({ peers: 3, ...options })
    events = []
    cluster.events$.subscribe((e) => events.push(e))
    await cluster.start()
    cluster.startTraffic()
    await cluster.advance(500)
  }

  /** Answers every peer got after `at`. */
  const answeredAfter = (at: number): number[] =>
    cluster.peers.map((p) => p.traffic.answerTimes.filter((t) => t > at).length)

  afterEach(async () => {
    await cluster.stop()
  })

  describe('fault 1: the store applies the new owner’s claim but its reply is lost', () => {
    it('should have the claimer read back, find itself the owner and serve', async () => {
      await running()
      const store = cluster.dps.get('dp-2')!.store
      const claim = store.claimOwnership.bind(store)
      let lost = false
      store.claimOwnership = async (...args) => {
        const won = await claim(...args)
        if (!lost) {
          lost = true
          throw new StoreUnavailableError('claimOwnership: the reply was lost')
        }
        return won
      }
      await cluster.crash('dp-1')
      await cluster.advance(2000)
      expect(lost).to.equal(true)
      expect(cluster.ownership()).to.include({ owner: 'dp-2', epoch: 2 })
      const at = cluster.clock.monotonic()
      await cluster.advance(1000)
      for (const n of answeredAfter(at)) expect(n).to.be.greaterThan(10)
    })
  })

  describe('fault 6: heartbeats between the two DPs are lost, the store and the peers are not', () => {
    it('should fail over once and never take the DVIPA back while the new owner is live', async () => {
      await running({ dps: 2 })
      const cut = cluster.clock.monotonic()
      cluster.partition(['dp-1'], ['dp-2'])
      await cluster.advance(8000)
      const claims = events.filter((e) => e.at >= cut && e.event.type === 'ownership:claimed')
      expect(claims.map((e) => e.node)).to.deep.equal(['dp-2'])
      expect(cluster.ownership()).to.include({ owner: 'dp-2', epoch: 2 })
      const at = cluster.clock.monotonic()
      await cluster.advance(1000)
      for (const n of answeredAfter(at)) expect(n).to.be.greaterThan(10)
    })
  })

  describe('fault 7: the store loses every record (a restart without its append-only file)', () => {
    it('should raise the alarm, claim above the highest epoch seen and keep serving', async () => {
      await running()
      cluster.facility.dvipas.clear()
      await cluster.advance(2000)
      const alarm = events.find(
        (e) => e.node === 'dp-1' && e.event.type === 'ownership:epoch-regressed'
      )
      expect(alarm?.node).to.equal('dp-1')
      expect(alarm?.event).to.include({ storeEpoch: 0, highestSeen: 1 })
      expect(cluster.ownership()).to.include({ owner: 'dp-1', epoch: 2 })
      expect(cluster.dps.get('dp-1')!.processor.counters().epochRegressions).to.equal(1)
      const at = cluster.clock.monotonic()
      await cluster.advance(1000)
      for (const n of answeredAfter(at)) expect(n).to.be.greaterThan(10)
      // the records are back in the store under the new epoch
      const records = await cluster.dps.get('dp-2')!.store.listRecords(DVIPA)
      expect(records.phase1).to.have.length(3)
    })
  })
})
