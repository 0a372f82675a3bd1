import { expect } from 'chai'
import { DVIPA, SimulatedCluster } from '../src/index.js'

describe('the owner’s records as SAs come and go', function () {
  this.timeout(30_000)
  let cluster: SimulatedCluster

  afterEach(async () => {
    await cluster.stop()
  })

  describe('when a peer rekeys its Child SA', () => {
    it('should replace the phase 2 and filter records, leaving none of the old ones', async () => {
      cluster = new SimulatedCluster({ peers: 2 })
      await cluster.start()
      const store = cluster.dps.get('dp-1')!.store
      const before = await store.listRecords(DVIPA)
      const peer = cluster.peers[0]!
      const oldId = peer.ike.list()[0]!.phase2[0]!.id
      const rekey = peer.ike.rekeyChildSa(oldId)
      await cluster.advance(200)
      await rekey
      await cluster.advance(100)
      const after = await store.listRecords(DVIPA)
      expect(after.phase2).to.have.length(2)
      expect(after.filter).to.have.length(before.filter.length)
      const oldOnDp = before.phase2
        .map((p) => p.id)
        .filter((id) => !after.phase2.some((q) => q.id === id))
      expect(oldOnDp).to.have.length(1)
      expect(after.filter.some((f) => f.phase2Id === oldOnDp[0])).to.equal(false)
      for (const c of after.correlation) {
        for (const id of c.phase2Ids) expect(after.phase2.map((p) => p.id)).to.include(id)
      }
    })
  })

  describe('when a peer deletes its IKE SA', () => {
    it('should delete the IKE SA’s phase 1, correlation, phase 2 and filter records', async () => {
      cluster = new SimulatedCluster({ peers: 2 })
      await cluster.start()
      const store = cluster.dps.get('dp-1')!.store
      const peer = cluster.peers[0]!
      const del = peer.ike.deleteIkeSa(peer.ike.list()[0]!.phase1.id)
      await cluster.advance(200)
      await del
      await cluster.advance(100)
      const after = await store.listRecords(DVIPA)
      expect(after.phase1).to.have.length(1)
      expect(after.correlation).to.have.length(1)
      expect(after.phase2).to.have.length(1)
      expect(after.filter.every((f) => f.phase2Id === after.phase2[0]!.id)).to.equal(true)
    })
  })

  describe('when a read-and-clear at the owner’s own epoch is applied again late (a duplicated request)', () => {
    it('should write the records back and settle the journal it opened', async () => {
      cluster = new SimulatedCluster({ peers: 2 })
      await cluster.start()
      const store = cluster.dps.get('dp-1')!.store
      const before = await store.listRecords(DVIPA)
      expect(before.phase1).to.have.length(2)
      const epoch = cluster.ownership()!.epoch
      const taken = await store.takeRecords(DVIPA, { owner: 'dp-1', epoch })
      expect(taken.phase1).to.have.length(2)
      await cluster.advance(100)
      const after = await store.listRecords(DVIPA)
      expect(after.phase1.map((r) => r.id).sort()).to.deep.equal(
        before.phase1.map((r) => r.id).sort()
      )
      expect(after.connection).to.have.length(before.connection.length)
      expect(cluster.facility.dvipas.get(DVIPA)!.journals.size).to.equal(0)
    })
  })

  describe('when the store rolls back to records the owner no longer holds', () => {
    it('should delete what it does not hold after it claims above the regression', async () => {
      cluster = new SimulatedCluster({ peers: 2 })
      await cluster.start()
      await cluster.crash('dp-1')
      await cluster.advance(1500)
      expect(cluster.ownership()).to.include({ owner: 'dp-2', epoch: 2 })
      const store = cluster.dps.get('dp-2')!.store
      const held = (await store.listRecords(DVIPA)).phase1.map((r) => r.id).sort()
      // a replica from before: epoch 1, and an IKE SA since gone
      const slot = cluster.facility.dvipas.get(DVIPA)!
      const bytes = [...slot.records.entries()].find(([k]) => k.startsWith('phase1'))![1]
      const record = JSON.parse(new TextDecoder().decode(bytes)) as { id: string }
      const ghost = `ike-f${record.id.slice(5)}`
      slot.records.set(
        `phase1/${ghost}`,
        new TextEncoder().encode(JSON.stringify({ ...record, id: ghost }))
      )
      const ownership = JSON.parse(new TextDecoder().decode(slot.ownership!)) as object
      slot.epoch = 1
      slot.ownership = new TextEncoder().encode(JSON.stringify({ ...ownership, epoch: 1 }))
      await cluster.advance(1000)
      expect(cluster.ownership()).to.include({ owner: 'dp-2', epoch: 3 })
      const after = (await store.listRecords(DVIPA)).phase1.map((r) => r.id).sort()
      expect(after).to.deep.equal(held)
    })
  })

  describe('when the store holds a record at the owner’s epoch that it does not hold', () => {
    it('should find and delete it in its periodic audit', async () => {
      cluster = new SimulatedCluster({ peers: 2 })
      await cluster.start()
      const store = cluster.dps.get('dp-1')!.store
      const held = (await store.listRecords(DVIPA)).phase1.map((r) => r.id).sort()
      // a rollback to a moment of the same epoch: an IKE SA since gone is back
      const slot = cluster.facility.dvipas.get(DVIPA)!
      const bytes = [...slot.records.entries()].find(([k]) => k.startsWith('phase1'))![1]
      const record = JSON.parse(new TextDecoder().decode(bytes)) as { id: string }
      const ghost = `ike-f${record.id.slice(5)}`
      slot.records.set(
        `phase1/${ghost}`,
        new TextEncoder().encode(JSON.stringify({ ...record, id: ghost }))
      )
      await cluster.advance(10_000)
      const after = (await store.listRecords(DVIPA)).phase1.map((r) => r.id).sort()
      expect(after).to.deep.equal(held)
    })
  })

  describe('when a primary restarted right after the store restarted empty claims below the owner', () => {
    it('should leave the owner at a higher epoch, its records in the store and the address routed to it', async () => {
      cluster = new SimulatedCluster({ peers: 2 })
      await cluster.start()
      await cluster.crash('dp-1')
      await cluster.advance(1500)
      expect(cluster.ownership()).to.include({ owner: 'dp-2', epoch: 2 })
      const held = (await cluster.dps.get('dp-2')!.store.listRecords(DVIPA)).phase1.length
      cluster.facility.dvipas.clear()
      cluster.facility.leases.clear()
      await cluster.restart('dp-1')
      await cluster.advance(3000)
      const o = cluster.ownership()!
      expect(o.owner).to.equal('dp-2')
      expect(o.epoch).to.be.greaterThan(2)
      expect(cluster.network.routeOf(DVIPA)).to.equal('dp-2')
      expect((await cluster.dps.get('dp-2')!.store.listRecords(DVIPA)).phase1).to.have.length(held)
    })
  })
})
