import { expect } from 'chai'
import { releaseForSwitchover, setDvipaTargets } from '@vipsec/core'
import { DVIPA, SimulatedCluster, type ClusterEvent } from '@vipsec/simulation'
import { switchover } from '../src/operator-commands.js'

// The core operations that `vipsec node` uses on SIGTERM and on a reload, on an in-process cluster
// (virtual time, heartbeats of 100 ms x 3).
describe('core operations for the operator', function () {
  this.timeout(60_000)
  let cluster: SimulatedCluster
  let events: ClusterEvent[]

  beforeEach(async () => {
    cluster = new SimulatedCluster({ peers: 3, seed: 'ops' })
    events = []
    cluster.events$.subscribe((e) => events.push(e))
    await cluster.start()
    cluster.startTraffic()
    await cluster.advance(500)
  })

  afterEach(async () => {
    await cluster.stop()
  })

  /** Who `node` says it took the DVIPA over from, and whose mailbox its deletes went to. */
  const takenFrom = (node: string): { reports: string[]; deletes: string[] } => ({
    reports: events.flatMap((e) =>
      e.node === node && e.event.type === 'takeover:completed' ? [e.event.report.previousOwner] : []
    ),
    deletes: events.flatMap((e) =>
      e.node === node && e.event.type === 'deletes:sent' ? [e.event.to] : []
    )
  })

  describe('releaseForSwitchover', () => {
    it('should let the best live backup claim at once, before any detector could fail the owner', async () => {
      const released = await releaseForSwitchover(cluster.dps.get('dp-1')!.processor)
      expect(released.map((r) => [r.dvipa, r.epoch])).to.deep.equal([[DVIPA, 1]])
      await cluster.crash('dp-1') // the process exits
      const at = cluster.clock.monotonic()
      // detection alone takes 300 ms (100 ms x 3): 150 ms is well before any verdict
      await cluster.advance(150)
      expect(cluster.ownership()).to.include({ owner: 'dp-2', epoch: 2 })
      const claims = events.filter((e) => e.event.type === 'ownership:claimed' && e.node !== 'dp-1')
      expect(claims.map((e) => e.node)).to.deep.equal(['dp-2'])
      await cluster.advance(1000)
      // from the released record: dp-1 released it, and its SAs are deleted
      expect(takenFrom('dp-2')).to.deep.equal({ reports: ['dp-1'], deletes: ['dp-1'] })
      for (const peer of cluster.peers) {
        expect(peer.ike.list(), peer.node).to.have.length(1)
        expect(peer.traffic.answerTimes.filter((t) => t > at + 500).length).to.be.greaterThan(5)
      }
    })

    it('should release nothing on a backup', async () => {
      expect(await releaseForSwitchover(cluster.dps.get('dp-2')!.processor)).to.deep.equal([])
      await cluster.advance(500)
      expect(cluster.ownership()).to.include({ owner: 'dp-1', epoch: 1 })
    })
  })

  describe('switchover (vipsec switchover, through the store)', () => {
    it('should hand the DVIPA to the best live backup, or to the node named, and refuse bad requests', async () => {
      const store = cluster.dps.get('dp-3')!.store
      // real time passes in switchover's wait: let virtual time run beside it
      const run = async <T>(p: Promise<T>): Promise<T> => {
        let done = false
        void p.finally(() => (done = true))
        while (!done) await cluster.advance(20)
        return p
      }
      const first = await run(switchover(store, { dvipa: DVIPA, timeoutMs: 5000 }))
      expect(first.from).to.deep.equal({ owner: 'dp-1', epoch: 1 })
      expect(first.to).to.deep.equal({ owner: 'dp-2', epoch: 2 })
      await cluster.advance(500)
      expect(takenFrom('dp-2')).to.deep.equal({ reports: ['dp-1'], deletes: ['dp-1'] })
      const second = await run(switchover(store, { dvipa: DVIPA, to: 'dp-3', timeoutMs: 5000 }))
      expect(second.to?.owner).to.equal('dp-3')
      expect(second.to!.epoch).to.be.greaterThan(3)
      await cluster.advance(1000)
      expect(cluster.ownership()).to.include({ owner: 'dp-3' })
      // dp-3 was named by the claim, but takes the DVIPA (and deletes the SAs) from dp-2
      expect(takenFrom('dp-3')).to.deep.equal({ reports: ['dp-2'], deletes: ['dp-2'] })
      for (const peer of cluster.peers) expect(peer.ike.list(), peer.node).to.have.length(1)
      const refused = async (options: Parameters<typeof switchover>[1]): Promise<string> =>
        switchover(store, options).then(
          () => '',
          (e: Error) => e.message
        )
      expect(await refused({ dvipa: DVIPA, to: 'dp-9' })).to.match(/not in the ranks/)
      expect(await refused({ dvipa: DVIPA, to: 'dp-3' })).to.match(/owns .* already/)
      expect(await refused({ dvipa: '10.1.2.3' })).to.match(/never claimed/)
    })
  })

  describe('setDvipaTargets', () => {
    it('should send new flows to an added target, keep old flows on theirs, and reject a bad weight', async () => {
      const dp = cluster.dps.get('dp-1')!.processor
      const before = dp.connections(DVIPA).map((c) => [c.id, c.target])
      const targets = [...cluster.targets.keys()]
      expect(targets.length).to.be.greaterThan(1)
      const kept = targets[0]!
      expect(() => setDvipaTargets(dp, DVIPA, [{ node: kept, weight: 0 }])).to.throw(/weight/)
      const result = setDvipaTargets(dp, DVIPA, [{ node: kept }])
      expect(result.removed).to.deep.equal(targets.slice(1))
      await cluster.advance(500)
      // existing flows keep their targets
      for (const [id, target] of before)
        expect(dp.connections(DVIPA).find((c) => c.id === id)?.target).to.equal(target)
      // a backup that takes over later uses the same list
      expect(dp.init.dvipas[0]!.targets).to.deep.equal([{ node: kept }])
      const again = setDvipaTargets(
        dp,
        DVIPA,
        targets.map((node) => ({ node }))
      )
      expect(again.added).to.deep.equal(targets.slice(1))
      expect(() => setDvipaTargets(dp, '10.1.2.3', [])).to.throw(/does not serve/)
    })
  })
})
