import { expect } from 'chai'
import { DVIPA, SimulatedCluster, type ClusterEvent } from '../src/index.js'

describe('failover scenarios', function () {
  this.timeout(60_000)
  let cluster: SimulatedCluster
  let events: ClusterEvent[]

  async function running(
    options: ConstructorParameters<typeof SimulatedCluster>[0] = {}
  ): Promise<void> {
    cluster = new SimulatedCluster({ peers: 4, ...options })
    events = []
    cluster.events$.subscribe((e) => events.push(e))
    await cluster.start()
    cluster.startTraffic()
    await cluster.advance(500)
  }

  const completed = (node: string) =>
    events.filter((e) => e.node === node && e.event.type === 'takeover:completed').length

  afterEach(async () => {
    await cluster.stop()
  })

  describe('fault 10: a peer re-establishes on its own while the takeover renegotiates', () => {
    it('should end with exactly one IKE SA at both ends and in the store, the newer one', async () => {
      await running({ peers: 2 })
      await cluster.crash('dp-1')
      // the takeover starts after detection (300 ms); the peer connects again meanwhile
      await cluster.advance(320)
      const peer = cluster.peers[0]!
      const again = cluster.connectPeer(peer).catch((e: Error) => e)
      await cluster.advance(3000)
      expect(await again).to.equal(undefined)
      expect(cluster.ownership()).to.include({ owner: 'dp-2', epoch: 2 })
      expect(peer.ike.list()).to.have.length(1)
      const owner = cluster.dps.get('dp-2')!
      const ours = owner.ikeServices.at(-1)!.list()
      const forPeer = ours.filter((sa) => sa.phase1.peer.address === peer.address)
      expect(forPeer).to.have.length(1)
      expect(forPeer[0]!.phase1.ikeSaId).to.deep.equal(peer.ike.list()[0]!.phase1.ikeSaId)
      const stored = (await owner.store.listRecords(DVIPA)).phase1
      expect(stored.filter((r) => r.peer.address === peer.address)).to.have.length(1)
      expect(events.some((e) => e.node === 'dp-2' && e.event.type === 'takeover:merged')).to.equal(
        true
      )
    })
  })

  describe('when the primary and then the first backup fail (a chain)', () => {
    it('should let backup 2 take over from what backup 1 wrote, with traffic on the same targets', async () => {
      await running()
      const targets = cluster.peers.map((p) => Object.keys(p.traffic.servedBy))
      await cluster.crash('dp-1')
      await cluster.advance(1500)
      expect(cluster.ownership()).to.include({ owner: 'dp-2', epoch: 2 })
      await cluster.crash('dp-2')
      const at = cluster.clock.monotonic()
      await cluster.advance(1500)
      expect(cluster.ownership()).to.include({ owner: 'dp-3', epoch: 3 })
      expect(completed('dp-3')).to.equal(1)
      const report = events.find((e) => e.node === 'dp-3' && e.event.type === 'takeover:completed')!
        .event as {
        report: { previousOwner: string; renegotiated: number; connections: number }
      }
      expect(report.report).to.include({ previousOwner: 'dp-2', renegotiated: 4, connections: 4 })
      for (const [i, peer] of cluster.peers.entries()) {
        expect(peer.ike.list(), peer.node).to.have.length(1)
        const recent = peer.traffic.answerTimes.filter((t) => t > at + 1000).length
        expect(recent, peer.node).to.be.greaterThan(10)
        expect(Object.keys(peer.traffic.servedBy)).to.deep.equal(targets[i])
      }
      // dp-2's deletes went to dp-2's mailbox, dp-1's to dp-1's
      expect(cluster.facility.mailboxes.get('dp-2')).to.have.length(1)
      expect(cluster.facility.mailboxes.get('dp-1')).to.have.length(1)
    })
  })

  describe('when two backups race to take over', () => {
    it('should let exactly one win and the other stand down', async () => {
      await running()
      await cluster.crash('dp-1')
      const race = await Promise.allSettled([
        cluster.dps.get('dp-2')!.processor.takeover(DVIPA, 'dp-1'),
        cluster.dps.get('dp-3')!.processor.takeover(DVIPA, 'dp-1'),
        cluster.advance(1000)
      ])
      const outcomes = race.slice(0, 2).map((r) => r.status)
      expect(outcomes.filter((s) => s === 'fulfilled')).to.have.length(1)
      expect(outcomes.filter((s) => s === 'rejected')).to.have.length(1)
      const loser = race.slice(0, 2).find((r) => r.status === 'rejected') as PromiseRejectedResult
      expect(loser.reason.name).to.equal('TakeoverError')
      const stoodDown = events.filter((e) => e.event.type === 'takeover:stood-down')
      expect(stoodDown).to.have.length(1)
      expect(cluster.ownership()!.epoch).to.equal(2)
      await cluster.advance(1000)
      // the detector-driven takeover that follows must not move the DVIPA again
      expect(cluster.ownership()!.epoch).to.equal(2)
      for (const peer of cluster.peers) expect(peer.ike.list()).to.have.length(1)
    })
  })

  describe('when the owner is only partitioned from the other distribution processors', () => {
    it('should stop serving on seeing the higher epoch, and no packet is encrypted by two owners', async () => {
      await running()
      const dp1 = cluster.dps.get('dp-1')!
      cluster.partition(['dp-1'], ['dp-2', 'dp-3'])
      await cluster.advance(1500)
      // the backups declared dp-1 failed and dp-2 took over; dp-1 is alive and saw epoch 2
      expect(cluster.ownership()).to.include({ owner: 'dp-2', epoch: 2 })
      const lost = events.find((e) => e.node === 'dp-1' && e.event.type === 'ownership:lost')
      expect(lost?.event).to.include({ epoch: 1, supersededBy: 2 })
      const takeoverAt = events.find(
        (e) => e.node === 'dp-2' && e.event.type === 'takeover:completed'
      )!.at
      expect(lost!.at).to.be.at.most(takeoverAt)
      const dp1Out = dp1.processor.counters().outbound
      const dp1Encapsulated = dp1.esp.counters().encapsulated
      await cluster.advance(1000)
      expect(dp1.processor.counters().outbound).to.equal(dp1Out)
      expect(dp1.esp.counters().encapsulated).to.equal(dp1Encapsulated)
      expect(dp1.esp.listSas()).to.deep.equal([])
      cluster.heal()
      await cluster.advance(1000)
      expect(cluster.ownership()).to.include({ owner: 'dp-2', epoch: 2 })
      expect(cluster.network.routeOf(DVIPA)).to.equal('dp-2')
      expect(dp1.esp.counters().encapsulated).to.equal(dp1Encapsulated)
      // every packet after the takeover was answered through dp-2
      const after = cluster.peers.reduce(
        (n, p) => n + p.traffic.answerTimes.filter((t) => t > takeoverAt + 100).length,
        0
      )
      expect(after).to.be.greaterThan(4 * 80)
    })
  })

  describe('when the old owner restarts', () => {
    it('should apply its mailbox, stay a backup, and be able to take over again later', async () => {
      await running()
      await cluster.crash('dp-1')
      await cluster.advance(1500)
      await cluster.restart('dp-1')
      await cluster.advance(500)
      expect(
        events.filter((e) => e.node === 'dp-1' && e.event.type === 'deletes:applied')
      ).to.have.length(1)
      expect(cluster.ownership()!.owner).to.equal('dp-2')
      await cluster.crash('dp-2')
      await cluster.advance(1500)
      // dp-1 is the best live backup again
      expect(cluster.ownership()).to.include({ owner: 'dp-1', epoch: 3 })
      for (const peer of cluster.peers) expect(peer.ike.list()).to.have.length(1)
    })
  })

  describe('when a peer cannot be reached during the takeover', () => {
    it('should renegotiate the others at once, report the peer, and retry it with backoff', async () => {
      await running({ retransmit: { timeoutMs: 200, backoff: 2, tries: 1 } })
      const unreachable = cluster.peers[0]!
      await cluster.crash('dp-1')
      cluster.partition([unreachable.node], ['dp-2', 'dp-3'])
      await cluster.advance(1500)
      const report = events.find((e) => e.event.type === 'takeover:completed')!.event as {
        report: { renegotiated: number; failed: { reason: string }[] }
      }
      expect(report.report.renegotiated).to.equal(3)
      expect(report.report.failed).to.have.length(1)
      expect(report.report.failed[0]!.reason).to.equal('TIMEOUT')
      for (const peer of cluster.peers.slice(1)) expect(peer.ike.list()).to.have.length(1)
      cluster.heal()
      await cluster.advance(5000)
      const retried = events.filter((e) => e.event.type === 'renegotiation:retried')
      expect(retried.length).to.be.greaterThan(0)
      expect(retried.at(-1)!.event).to.include({ succeeded: true })
      expect(unreachable.ike.list()).to.have.length(1)
      const answered = unreachable.traffic.answered
      await cluster.advance(500)
      expect(unreachable.traffic.answered).to.be.greaterThan(answered)
    })
  })

  describe('when a target dies', () => {
    it('should move its flows to the live targets once it is declared failed', async () => {
      await running()
      const onTarget1 = cluster.peers.filter((p) => 'target-1' in p.traffic.servedBy)
      expect(onTarget1.length).to.be.greaterThan(0)
      await cluster.crash('target-1')
      const at = cluster.clock.monotonic()
      await cluster.advance(1000)
      for (const peer of onTarget1) {
        const recent = peer.traffic.answerTimes.filter((t) => t > at + 500).length
        expect(recent, peer.node).to.be.greaterThan(10)
      }
      const moved = events.filter((e) => e.event.type === 'connection:created' && e.at > at)
      expect(moved.length).to.equal(onTarget1.length)
      expect(cluster.ownership()!.owner).to.equal('dp-1')
    })
  })

  describe('when the network loses 5% of datagrams during the failover', () => {
    it('should still complete the takeover, every peer ending with one IKE SA and traffic flowing', async () => {
      await running({ retransmit: { timeoutMs: 200, backoff: 2, tries: 5 } })
      cluster.setLoss(0.05)
      await cluster.crash('dp-1')
      await cluster.advance(4000)
      expect(cluster.ownership()).to.include({ owner: 'dp-2', epoch: 2 })
      cluster.setLoss(0)
      await cluster.advance(5000)
      const at = cluster.clock.monotonic()
      await cluster.advance(500)
      for (const peer of cluster.peers) {
        expect(peer.ike.list(), peer.node).to.have.length(1)
        expect(peer.traffic.answerTimes.filter((t) => t > at).length, peer.node).to.be.greaterThan(
          10
        )
      }
    })
  })

  describe('when flows go idle', () => {
    it('should drop their connections from the table and the store', async () => {
      await running({ connectionIdleMs: 2000 })
      expect(cluster.dps.get('dp-1')!.processor.connections(DVIPA)).to.have.length(4)
      cluster.stopTraffic()
      await cluster.advance(2500)
      expect(cluster.dps.get('dp-1')!.processor.connections(DVIPA)).to.have.length(0)
      expect((await cluster.dps.get('dp-1')!.store.listRecords(DVIPA)).connection).to.have.length(0)
      expect(events.filter((e) => e.event.type === 'connection:expired')).to.have.length(4)
    })
  })

  describe('when a peer stays unreachable past the renegotiation deadline', () => {
    it('should complete the takeover at the deadline, keep the others on their targets, and finish that peer later', async () => {
      await running({
        retransmit: { timeoutMs: 1000, backoff: 2, tries: 4 },
        renegotiationDeadlineMs: 2000
      })
      const targets = cluster.peers.map((p) => Object.keys(p.traffic.servedBy))
      const unreachable = cluster.peers[0]!
      await cluster.crash('dp-1')
      cluster.partition([unreachable.node], ['dp-2', 'dp-3'])
      const crashedAt = cluster.clock.monotonic()
      await cluster.advance(3000)
      const completed = events.find((e) => e.event.type === 'takeover:completed')!
      expect(completed.at - crashedAt).to.be.within(2000, 2600)
      const report = (
        completed.event as { report: { renegotiated: number; failed: { reason: string }[] } }
      ).report
      expect(report.renegotiated).to.equal(3)
      expect(report.failed.map((f) => f.reason)).to.deep.equal(['TIMEOUT'])
      for (const [i, peer] of cluster.peers.entries()) {
        if (peer === unreachable) continue
        expect(Object.keys(peer.traffic.servedBy), peer.node).to.deep.equal(targets[i])
        // answered while the takeover was still waiting for the unreachable peer
        expect(
          peer.traffic.answerTimes.some((t) => t > crashedAt + 500 && t < completed.at),
          peer.node
        ).to.equal(true)
      }
      // every flow found its old target: none was distributed anew
      expect(
        events.filter((e) => e.node === 'dp-2' && e.event.type === 'connection:created')
      ).to.deep.equal([])
      cluster.heal()
      await cluster.advance(30_000)
      expect(unreachable.ike.list()).to.have.length(1)
      const answered = unreachable.traffic.answered
      await cluster.advance(500)
      expect(unreachable.traffic.answered).to.be.greaterThan(answered)
      expect(Object.keys(unreachable.traffic.servedBy)).to.deep.equal(targets[0])
    })
  })

  describe('when the failure detector is the store lease', () => {
    it('should take over when the owner dies, as with heartbeats', async () => {
      await running({ detector: 'lease' })
      const targets = cluster.peers.map((p) => Object.keys(p.traffic.servedBy))
      await cluster.crash('dp-1')
      const at = cluster.clock.monotonic()
      await cluster.advance(1500)
      expect(cluster.ownership()).to.include({ owner: 'dp-2', epoch: 2 })
      const started = events.find((e) => e.event.type === 'takeover:started')!
      expect(started.at - at).to.be.within(200, 500)
      for (const [i, peer] of cluster.peers.entries()) {
        expect(
          peer.traffic.answerTimes.filter((t) => t > at + 1000).length,
          peer.node
        ).to.be.greaterThan(10)
        expect(Object.keys(peer.traffic.servedBy)).to.deep.equal(targets[i])
      }
    })
  })

  describe('when the owner loses the store but not the peers (self-fencing)', () => {
    it('should stop encrypting before the backup claims the DVIPA, and the backup takes over', async () => {
      await running({ detector: 'lease', selfFenceMs: 200 })
      const dp1 = cluster.dps.get('dp-1')!
      const down = (): Promise<never> =>
        Promise.reject(Object.assign(new Error('store down'), { name: 'StoreUnavailableError' }))
      for (const method of [
        'getOwnership',
        'putRecords',
        'deleteRecords',
        'renewLease',
        'readLeases',
        'takeMessages'
      ] as const) {
        ;(dp1.store as unknown as Record<string, unknown>)[method] = down
      }
      // dp-1's ESP counter at the instant dp-2 claims the DVIPA: it must never move after that
      let atClaim: number | undefined
      cluster.events$.subscribe((e) => {
        if (e.node === 'dp-2' && e.event.type === 'ownership:claimed') {
          atClaim = dp1.esp.counters().encapsulated
        }
      })
      const before = dp1.esp.counters().encapsulated
      await cluster.advance(2000)
      const fenced = events.find((e) => e.node === 'dp-1' && e.event.type === 'ownership:fenced')
      expect(fenced, 'dp-1 fenced itself').to.not.equal(undefined)
      const claimed = events.find((e) => e.node === 'dp-2' && e.event.type === 'ownership:claimed')!
      expect(fenced!.at).to.be.lessThan(claimed.at)
      expect(atClaim).to.be.greaterThan(before)
      expect(dp1.esp.counters().encapsulated).to.equal(atClaim)
      expect(cluster.ownership()).to.include({ owner: 'dp-2', epoch: 2 })
      const at = cluster.clock.monotonic()
      await cluster.advance(500)
      for (const peer of cluster.peers)
        expect(peer.traffic.answerTimes.filter((t) => t > at).length).to.be.greaterThan(5)
    })
  })

  describe('when the owner releases the DVIPA (as a takeover that failed after its claim does)', () => {
    it('should have the best backup take it over from its ownership read-back', async () => {
      await running()
      await cluster.dps.get('dp-1')!.store.releaseOwnership(DVIPA, { owner: 'dp-1', epoch: 1 })
      await cluster.advance(1500)
      expect(cluster.ownership()).to.include({ owner: 'dp-2', epoch: 2 })
      expect(events.some((e) => e.node === 'dp-1' && e.event.type === 'ownership:lost')).to.equal(
        true
      )
      const at = cluster.clock.monotonic()
      await cluster.advance(500)
      for (const peer of cluster.peers)
        expect(peer.traffic.answerTimes.filter((t) => t > at).length).to.be.greaterThan(5)
    })
  })
})
