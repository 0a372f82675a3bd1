import { expect } from 'chai'
import type { CouplingStoreEvent, EspEvent, IkeEvent } from '@vipsec/interface'
import { DVIPA, SimulatedCluster, type ClusterEvent } from '../src/index.js'

/** Which target answered each peer, from its answers so far. */
function targetsByPeer(cluster: SimulatedCluster): Map<string, Set<string>> {
  return new Map(cluster.peers.map((p) => [p.node, new Set(Object.keys(p.traffic.servedBy))]))
}

function answersSince(cluster: SimulatedCluster, at: number): number {
  return cluster.peers.reduce((n, p) => n + p.traffic.answerTimes.filter((t) => t > at).length, 0)
}

describe('takeover, step by step (ARCHITECTURE.md steps 2 to 12)', function () {
  this.timeout(60_000)
  let cluster: SimulatedCluster
  let events: ClusterEvent[]
  let storeEvents: CouplingStoreEvent[]
  let crashedAt: number

  /** A running cluster with traffic, whose primary is killed. */
  async function failover(
    options: ConstructorParameters<typeof SimulatedCluster>[0] = {},
    before?: () => void
  ): Promise<void> {
    cluster = new SimulatedCluster({ peers: 4, ...options })
    events = []
    storeEvents = []
    cluster.events$.subscribe((e) => events.push(e))
    await cluster.start()
    cluster.dps.get('dp-2')!.store.events$.subscribe((e) => storeEvents.push(e))
    cluster.startTraffic()
    await cluster.advance(500)
    before?.()
    await cluster.crash('dp-1')
    crashedAt = cluster.clock.monotonic()
    await cluster.advance(2000)
  }

  const of = <T extends ClusterEvent['event']['type']>(type: T, node = 'dp-2') =>
    events
      .filter((e) => e.node === node && e.event.type === type)
      .map((e) => e.event as Extract<ClusterEvent['event'], { type: T }>)

  afterEach(async () => {
    await cluster.stop()
  })

  describe('step 2: the owner records its state', () => {
    it('should write phase 1, phase 2, correlation, filter and connection records for every peer', async () => {
      cluster = new SimulatedCluster({ peers: 4 })
      await cluster.start()
      cluster.startTraffic()
      await cluster.advance(200)
      const set = await cluster.dps.get('dp-1')!.store.listRecords(DVIPA)
      expect(set.phase1).to.have.length(4)
      expect(set.phase2).to.have.length(4)
      expect(set.correlation).to.have.length(4)
      expect(set.connection).to.have.length(4)
      expect(set.filter.length).to.be.at.least(8)
      for (const peer of cluster.peers) {
        const phase1 = set.phase1.find((p) => p.remoteIdentity.value === peer.identity.value)
        expect(phase1, peer.node).to.not.equal(undefined)
        expect(phase1!.peer.address).to.equal(peer.address)
        expect(phase1!.local.address).to.equal(DVIPA)
        const correlation = set.correlation.find((c) => c.phase1Id === phase1!.id)!
        const phase2 = set.phase2.find((p) => p.id === correlation.phase2Ids[0])!
        expect(phase2.selectors.remote[0]!.startAddress).to.equal(peer.inner)
        expect(
          set.connection.some(
            (c) => c.flow.sourceAddress === peer.inner && c.phase2Id === phase2.id
          )
        ).to.equal(true)
        expect(
          set.filter
            .filter((f) => f.phase2Id === phase2.id)
            .map((f) => f.direction)
            .sort()
        ).to.deep.equal(['inbound', 'outbound'])
      }
    })
  })

  describe('step 4: the failure is detected', () => {
    it('should start the takeover once the owner has been silent for the detection time', async () => {
      await failover()
      const started = events.find((e) => e.event.type === 'takeover:started')!
      expect(started.node).to.equal('dp-2')
      expect(started.event).to.include({ previousOwner: 'dp-1' })
      // 300 ms after the owner's last heartbeat, which came up to an interval before the crash
      expect(started.at - crashedAt).to.be.within(200, 400)
      const detect = of('takeover:step').find((s) => s.timing.step === 'detect')!
      expect(detect.timing.durationMs).to.be.within(300, 400)
    })
  })

  describe('step 4: ownership is claimed with a higher epoch', () => {
    it('should move ownership to the best live backup at epoch 2, and the other backup should stand down', async () => {
      await failover()
      expect(cluster.ownership()).to.include({ owner: 'dp-2', epoch: 2 })
      expect(of('ownership:claimed')).to.deep.equal([
        { type: 'ownership:claimed', dvipa: DVIPA, epoch: 2 }
      ])
      expect(of('ownership:claimed', 'dp-3')).to.deep.equal([])
      expect(of('takeover:completed', 'dp-3')).to.deep.equal([])
    })
  })

  describe('step 5: the records are read, then cleared', () => {
    it('should take every record the owner wrote, and leave none of them in the store', async () => {
      let written: string[] = []
      await failover({}, () => {
        const slot = cluster.facility.dvipas.get(DVIPA)!
        written = [...slot.records.keys()]
      })
      const taken = storeEvents.find((e) => e.type === 'records:taken')
      expect(taken).to.include({ dvipa: DVIPA, epoch: 2, count: written.length })
      const now = [...cluster.facility.dvipas.get(DVIPA)!.records.keys()]
      const oldSas = written.filter((k) => k.startsWith('phase1/') || k.startsWith('phase2/'))
      expect(oldSas.length).to.equal(8)
      for (const key of oldSas) expect(now).to.not.include(key)
    })
  })

  describe('step 6: the SAs are renegotiated with INITIAL_CONTACT and installed', () => {
    it('should leave every peer with one new IKE SA and Child SA, the old ones deleted by INITIAL_CONTACT', async () => {
      const peerEvents: IkeEvent[] = []
      let before: string[] = []
      await failover({}, () => {
        before = cluster.peers.map((p) => p.ike.list()[0]!.phase1.ikeSaId.initiatorSpi)
        for (const p of cluster.peers) p.ike.events$.subscribe((e) => peerEvents.push(e))
      })
      expect(of('takeover:renegotiated')).to.deep.include({
        type: 'takeover:renegotiated',
        dvipa: DVIPA,
        renegotiated: 4,
        failed: 0
      })
      for (const [i, peer] of cluster.peers.entries()) {
        const sas = peer.ike.list()
        expect(sas, peer.node).to.have.length(1)
        expect(sas[0]!.phase1.ikeSaId.initiatorSpi).to.not.equal(before[i])
        expect(sas[0]!.phase2).to.have.length(1)
      }
      expect(
        peerEvents.filter((e) => e.type === 'ike:deleted' && e.reason === 'initial-contact')
      ).to.have.length(4)
      const installed = cluster.dps.get('dp-2')!.esp.listSas()
      expect(installed.filter((s) => s.direction === 'inbound')).to.have.length(4)
      expect(installed.filter((s) => s.direction === 'outbound')).to.have.length(4)
    })
  })

  describe('step 7: the filters are installed and duplicates removed', () => {
    const icmp = {
      source: '10.77.0.0/24',
      destination: '0.0.0.0/0',
      protocol: 1,
      sourcePorts: [0, 65535] as [number, number],
      destinationPorts: [0, 65535] as [number, number]
    }

    it('should install the old owner’s filters and leave exactly one active filter per selector', async () => {
      const espEvents: EspEvent[] = []
      await failover({}, () => {
        const esp = cluster.dps.get('dp-2')!.esp
        esp.events$.subscribe((e) => espEvents.push(e))
        // the old owner had recorded a bypass filter for ICMP from the service subnet ...
        void cluster.dps.get('dp-1')!.store.putRecords(
          DVIPA,
          [
            {
              v: 1,
              kind: 'filter',
              id: 'bypass-icmp',
              dvipa: DVIPA,
              phase2Id: null,
              direction: 'outbound',
              selector: icmp,
              action: 'bypass',
              priority: 10
            }
          ],
          { owner: 'dp-1', epoch: 1 }
        )
        // ... which the backup already has active under another name: a duplicate
        esp.installFilter({
          id: 'local-icmp',
          direction: 'outbound',
          selector: icmp,
          action: 'bypass',
          priority: 10
        })
        // and a protect filter left on the backup for peer-1's traffic, from an earlier ownership
        esp.installFilter({
          id: 'stale/peer-1',
          direction: 'outbound',
          selector: { ...icmp, destination: `${cluster.peers[0]!.inner}/32`, protocol: 0 },
          action: 'protect',
          priority: 100,
          spi: 0x0badcafe
        })
      })
      const filters = cluster.dps.get('dp-2')!.esp.listFilters()
      const ids = filters.map((f) => f.id)
      expect(ids).to.include('bypass-icmp')
      expect(ids).to.not.include('local-icmp')
      expect(ids).to.not.include('stale/peer-1')
      const removed = espEvents
        .filter((e) => e.type === 'filter:duplicate-removed')
        .map((e) => (e as { removed: string }).removed)
      expect(removed).to.include.members(['local-icmp', 'stale/peer-1'])
      const keys = filters.map((f) => `${f.direction} ${JSON.stringify(f.selector)}`)
      expect(new Set(keys).size).to.equal(keys.length)
      expect(filters.filter((f) => f.action === 'protect')).to.have.length(8)
    })
  })

  describe('step 8: the DVIPA and its connections move to the new owner', () => {
    it('should carry inbound and outbound traffic of every existing flow through dp-2 to its old target', async () => {
      let before = new Map<string, Set<string>>()
      await failover({}, () => {
        before = targetsByPeer(cluster)
      })
      const atCrash = cluster.peers.map((p) => ({ ...p.traffic.servedBy }))
      await cluster.advance(500)
      expect(cluster.network.routeOf(DVIPA)).to.equal('dp-2')
      const dp2 = cluster.dps.get('dp-2')!.processor.counters()
      expect(dp2.inbound).to.be.greaterThan(0)
      expect(dp2.outbound).to.be.greaterThan(0)
      for (const [i, peer] of cluster.peers.entries()) {
        const served = Object.entries(peer.traffic.servedBy)
          .filter(([t, n]) => n > (atCrash[i]![t] ?? 0))
          .map(([t]) => t)
        expect(served, peer.node).to.deep.equal([...before.get(peer.node)!])
      }
      expect(of('connection:rerouted')).to.have.length(4)
      expect(answersSince(cluster, crashedAt + 1000)).to.be.greaterThan(4 * 40)
    })
  })

  describe('step 9: the targets are notified', () => {
    it('should make every target, even one without flows, send its replies to dp-2 at epoch 2', async () => {
      // 4 targets and 3 peers: target-4 gets no flow, so only the notice can tell it
      await failover({ targets: 4, peers: 3 })
      expect(cluster.targets.get('target-4')!.stack.counters().requests).to.equal(0)
      for (const target of cluster.targets.values()) {
        expect(target.stack.ownerOf(DVIPA), target.node).to.deep.equal({ owner: 'dp-2', epoch: 2 })
      }
      expect(of('targets:notified')[0]).to.include({ epoch: 2 })
    })
  })

  describe('step 10: connections to the new owner as a target become non-distributed', () => {
    it('should serve dp-2’s own flows locally', async () => {
      // targets: target-1..2, then dp-1..3 are targets too; 5 peers spread round robin
      await failover({ targets: 2, peers: 5, dpsAreTargets: true })
      const local = cluster.dps
        .get('dp-2')!
        .processor.connections(DVIPA)
        .filter((c) => c.target === 'dp-2')
      expect(local).to.have.length(1)
      expect(local[0]!.distributed).to.equal(false)
      const record = await cluster.dps
        .get('dp-2')!
        .store.getRecord(DVIPA, 'connection', local[0]!.id)
      expect(record.distributed).to.equal(false)
      const peer = cluster.peers.find((p) => p.inner === local[0]!.flow.sourceAddress)!
      const served = peer.traffic.servedBy['dp-2'] ?? 0
      await cluster.advance(500)
      expect(peer.traffic.servedBy['dp-2']).to.be.greaterThan(served)
    })
  })

  describe('step 11: the new owner records its state under the new epoch', () => {
    it('should write its new SAs and the connections with epoch 2, and settle the journal', async () => {
      await failover()
      const puts = storeEvents.filter((e) => e.type === 'record:put' && e.epoch === 2)
      expect(puts.length).to.be.greaterThan(0)
      const set = await cluster.dps.get('dp-2')!.store.listRecords(DVIPA)
      const current = cluster.dps.get('dp-2')!.ikeServices.at(-1)!.list()
      expect(set.phase1.map((p) => p.id).sort()).to.deep.equal(
        current.map((c) => c.phase1.id).sort()
      )
      expect(set.connection).to.have.length(4)
      expect(cluster.facility.dvipas.get(DVIPA)!.journals.size).to.equal(0)
    })
  })

  describe('step 12: deletes go to the old owner, which never serves again', () => {
    it('should leave the old SPIs in dp-1’s mailbox, and dp-1 should apply them on restart and stay a backup', async () => {
      let oldSpis: string[] = []
      await failover({}, () => {
        oldSpis = cluster.peers.map((p) => p.ike.list()[0]!.phase1.ikeSaId.initiatorSpi).sort()
      })
      const box = cluster.facility.mailboxes.get('dp-1')!
      expect(box).to.have.length(1)
      const message = JSON.parse(new TextDecoder().decode(box[0]))
      expect(
        message.ikeSas.map((s: { initiatorSpi: string }) => s.initiatorSpi).sort()
      ).to.deep.equal(oldSpis)
      expect(message.epoch).to.equal(2)
      await cluster.restart('dp-1')
      await cluster.advance(500)
      expect(of('deletes:applied', 'dp-1')).to.have.length(1)
      expect(cluster.facility.mailboxes.get('dp-1') ?? []).to.have.length(0)
      expect(cluster.ownership()).to.include({ owner: 'dp-2', epoch: 2 })
      expect(cluster.network.routeOf(DVIPA)).to.equal('dp-2')
      expect(cluster.dps.get('dp-1')!.processor.counters().outbound).to.equal(0)
    })
  })
})
