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
})
