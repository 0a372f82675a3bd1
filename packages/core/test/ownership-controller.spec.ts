import { expect } from 'chai'
import { OwnershipController, joinWindowBound, type OwnershipControllerInit } from '../src/index.js'
import type { Fence } from '@vipsec/interface'
import {
  DVIPA,
  TestCluster,
  type RecordingActions,
  type TestNode
} from './helpers/ownership-harness.js'

/** A cluster of `size` DPs, all started: dp-1 owns the DVIPA at epoch 1. */
async function startedCluster(
  size = 3,
  init: Partial<OwnershipControllerInit> = {}
): Promise<TestCluster> {
  const cluster = new TestCluster(size, init)
  await cluster.startAll()
  return cluster
}

/** Three started DPs after the owner dp-1 died and both backups declared it failed: dp-2 owns epoch 2. */
async function clusterAfterFailover(): Promise<TestCluster> {
  const cluster = await startedCluster()
  await cluster.kill('dp-1')
  for (const id of ['dp-2', 'dp-3']) cluster.node(id).detector.fail('dp-1')
  await cluster.advance(1000)
  return cluster
}

/** Two DPs, the owner dp-1 dead: every takeover of dp-2 fails after its claim. */
async function failingTakeovers(): Promise<{ cluster: TestCluster; dp2: TestNode }> {
  const cluster = await startedCluster(2)
  await cluster.kill('dp-1')
  const dp2 = cluster.node('dp-2')
  dp2.actions.failTakeover = true
  dp2.detector.fail('dp-1')
  return { cluster, dp2 }
}

/** Starts a killed node again as a new process: a new unit over the same store. */
async function restart(cluster: TestCluster, id: string): Promise<TestNode> {
  cluster.nodes.delete(id)
  const node = await cluster.add(id)
  await cluster.start(node)
  return node
}

describe(OwnershipController.name, () => {
  describe('.start', () => {
    describe('when nobody ever claimed the DVIPA', () => {
      it('should have the primary claim epoch 1 and serve, the others back it up', async () => {
        const cluster = await startedCluster()
        expect(cluster.ownership()).to.deep.equal({ owner: 'dp-1', epoch: 1 })
        expect(cluster.serving()).to.deep.equal(['dp-1'])
        const dp1 = cluster.node('dp-1')
        expect(dp1.actions.calls).to.deep.equal(['serveFresh at 1'])
        expect(dp1.unit.current()).to.deep.include({ role: 'owner' })
        const changes = dp1.actions.of('ownership:changed')
        expect(changes.map((c) => [c.from, c.to, c.cause])).to.deep.equal([
          ['backup', 'joining', 'start'],
          ['joining', 'taking-over', 'start'],
          ['taking-over', 'owner', 'claim-won']
        ])
        expect(cluster.node('dp-2').unit.current()).to.deep.equal({
          role: 'backup',
          view: { kind: 'owned', owner: 'dp-1', epoch: 1 }
        })
      })
    })
  })

  describe('its join window by default', () => {
    it("should be the bound the distribution processor enforces: max(the detector's detection time, two read-backs)", async () => {
      const cluster = new TestCluster()
      const node = await cluster.add('dp-1')
      const window = (detectionTimeMs?: number): number =>
        new OwnershipController(
          {
            store: node.store,
            clock: node.clock,
            detector: { health: () => 'alive', detectionTimeMs },
            actions: node.actions
          },
          {
            node: 'dp-1',
            dvipa: DVIPA,
            ranks: cluster.ranks,
            rankDelayMs: 200,
            ownershipCheckMs: 250,
            selfFenceMs: 0
          }
        ).joinWindow
      expect(window(3000)).to.equal(3000)
      expect(window(100)).to.equal(500)
      expect(window(undefined)).to.equal(500)
      expect(window(3000)).to.equal(joinWindowBound(250, { detectionTimeMs: 3000 }))
    })
  })

  describe('when the owner fails', () => {
    it('should have the best live backup take over at epoch 2 and the next one stand down', async () => {
      const cluster = await clusterAfterFailover()
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-2', epoch: 2 })
      expect(cluster.serving()).to.deep.equal(['dp-2'])
      expect(cluster.node('dp-3').actions.of('takeover:stood-down')).to.have.length(1)
      expect(cluster.node('dp-3').actions.calls).to.deep.equal([])
    })
  })

  describe('the owner’s audits', () => {
    it('should run one at a time: none starts while the last is under way', async () => {
      const cluster = await startedCluster(2)
      const dp1 = cluster.node('dp-1')
      let started = 0
      let finish: (() => void) | undefined
      ;(dp1.actions as RecordingActions & { audit(f: Fence): Promise<void> }).audit = () => {
        started++
        return new Promise<void>((resolve) => (finish = resolve))
      }
      // 20 read-backs of 250 ms per audit: ten audits' worth of time, the first never ending
      await cluster.advance(10 * 20 * 250)
      expect(started).to.equal(1)
      finish!()
      await cluster.advance(2 * 20 * 250)
      expect(started).to.be.within(2, 3)
      finish!()
      await cluster.advance(100)
    })
  })

  describe('fault 1: the reply of a claim that the store applied is lost', () => {
    it('should read back, find itself the owner, and take over (nobody is left without the DVIPA)', async () => {
      const cluster = await startedCluster()
      await cluster.kill('dp-1')
      const dp2 = cluster.node('dp-2')
      dp2.faults.loseNextClaimReply = true
      dp2.detector.fail('dp-1')
      await cluster.advance(500)
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-2', epoch: 2 })
      expect(dp2.actions.of('ownership:indeterminate')).to.have.length(1)
      expect(dp2.actions.calls).to.deep.equal(['takeOver from dp-1 at 2'])
      expect(dp2.unit.current()).to.deep.include({ role: 'owner' })
      expect(cluster.serving()).to.deep.equal(['dp-2'])
    })

    it('should claim again when the read-back shows the claim did not apply', async () => {
      const cluster = await startedCluster()
      await cluster.kill('dp-1')
      const dp2 = cluster.node('dp-2')
      // The store is cut off for one call (5 s timeout), then answers again.
      dp2.faults.downWithTimeoutMs = 5000
      dp2.detector.fail('dp-1')
      await cluster.advance(100)
      dp2.faults.downWithTimeoutMs = undefined
      await cluster.advance(6000)
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-2', epoch: 2 })
      expect(cluster.serving()).to.deep.equal(['dp-2'])
    })
  })

  describe('fault 2: the owner is paused and wakes', () => {
    it('should not serve before it confirms, and not act on the verdicts computed during the pause', async () => {
      const cluster = await startedCluster()
      const dp1 = cluster.node('dp-1')
      dp1.clock.pause()
      for (const id of ['dp-2', 'dp-3']) cluster.node(id).detector.fail('dp-1')
      await cluster.advance(2000)
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-2', epoch: 2 })
      // dp-1 wakes: its detector's state is stale and declares the others failed first.
      dp1.clock.resume()
      dp1.detector.fail('dp-2')
      dp1.detector.fail('dp-3')
      expect(dp1.unit.mayServe(), 'dp-1 serves before confirming').to.equal(false)
      await cluster.advance(200)
      expect(dp1.unit.current().role).to.equal('backup')
      await cluster.advance(3000)
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-2', epoch: 2 })
      expect(dp1.actions.calls).to.deep.equal(['serveFresh at 1', 'stopServing'])
      expect(dp1.actions.of('ownership:paused')).to.have.length(1)
      expect(cluster.serving()).to.deep.equal(['dp-2'])
    })

    it('should serve again once the store confirms its epoch when nobody took over', async () => {
      const cluster = await startedCluster()
      const dp1 = cluster.node('dp-1')
      dp1.clock.pause()
      await cluster.advance(1500)
      dp1.clock.resume()
      expect(dp1.unit.mayServe()).to.equal(false)
      await cluster.advance(50)
      expect(dp1.unit.mayServe()).to.equal(true)
      expect(dp1.actions.of('ownership:confirmed')).to.deep.equal([
        { type: 'ownership:confirmed', dvipa: DVIPA, epoch: 1, reason: 'paused' }
      ])
    })
  })

  describe('fault 3: a node taking over sees a higher epoch', () => {
    it('should abort the takeover at once: stop serving, give the address up', async () => {
      const cluster = await startedCluster()
      await cluster.kill('dp-1')
      const dp2 = cluster.node('dp-2')
      dp2.actions.takeoverMs = 10_000
      dp2.detector.fail('dp-1')
      await cluster.advance(100)
      expect(dp2.unit.current()).to.deep.include({ role: 'taking-over' })
      expect(dp2.actions.serving).to.equal(true)
      // dp-3 claims above it (say it had seen a newer epoch)
      await cluster.node('dp-3').memory.claimOwnership(DVIPA, {
        owner: 'dp-3',
        ranks: cluster.ranks,
        expectedEpoch: 2
      })
      expect(dp2.actions.lastRun!.signal.aborted).to.equal(true)
      expect(dp2.unit.current().role).to.equal('backup')
      expect(dp2.unit.mayServe()).to.equal(false)
      await cluster.advance(1)
      expect(dp2.actions.serving).to.equal(false)
    })

    it('should take a released DVIPA over from the epoch it read back, never from an older view', async () => {
      const cluster = await startedCluster()
      const dp3 = cluster.node('dp-3')
      // dp-3 missed epoch 2 (dp-2 claimed it); then dp-2 released it at 2.
      dp3.memory.events$.subscribe(() => undefined)
      await cluster.node('dp-2').memory.claimOwnership(DVIPA, {
        owner: 'dp-2',
        ranks: cluster.ranks,
        expectedEpoch: 1
      })
      await cluster.advance(10)
      await cluster.node('dp-2').memory.releaseOwnership(DVIPA, { owner: 'dp-2', epoch: 2 })
      await cluster.advance(1500)
      const o = cluster.ownership()!
      expect(o.epoch).to.equal(3)
      expect(cluster.serving()).to.deep.equal([o.owner])
    })
  })

  describe('a planned switchover', () => {
    it('should take a released DVIPA over from the owner the record names, also on a node that never saw it', async () => {
      const cluster = new TestCluster()
      await cluster.startAll()
      await cluster.kill('dp-2')
      await cluster.node('dp-1').unit.abandon()
      await cluster.advance(500)
      // dp-3 saw dp-1 own it; dp-2 comes back after the release and knows only the record
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-3', epoch: 2 })
      expect(cluster.node('dp-3').actions.calls).to.deep.equal(['takeOver from dp-1 at 2'])
      await cluster.kill('dp-3')
      await cluster.node('dp-3').memory.releaseOwnership(DVIPA, { owner: 'dp-3', epoch: 2 })
      const fresh = await cluster.add('dp-2')
      await cluster.start(fresh)
      await cluster.advance(500)
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-2', epoch: 3 })
      expect(fresh.actions.calls).to.deep.equal(['takeOver from dp-3 at 3'])
    })

    it('should have the node a claim names take over from the owner it replaced, not from itself', async () => {
      const cluster = new TestCluster()
      await cluster.startAll()
      // `vipsec switchover --to dp-3`: a claim in dp-3's name over dp-1's epoch
      await cluster.node('dp-2').memory.claimOwnership(DVIPA, {
        owner: 'dp-3',
        ranks: cluster.ranks,
        expectedEpoch: 1,
        previousOwner: 'dp-1'
      })
      await cluster.advance(2000)
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-3', epoch: 3 })
      expect(cluster.serving()).to.deep.equal(['dp-3'])
      expect(cluster.node('dp-3').actions.calls).to.deep.equal(['takeOver from dp-1 at 3'])
      expect(cluster.node('dp-3').actions.of('takeover:started')).to.deep.equal([
        { type: 'takeover:started', dvipa: DVIPA, previousOwner: 'dp-1' }
      ])
      expect(cluster.node('dp-2').actions.calls).to.deep.equal([])
    })
  })

  describe('fault 4: a second failure during the rank delay', () => {
    it('should not be dropped: the next backup takes over from the new dead owner', async () => {
      const cluster = await startedCluster(3, { rankDelayMs: 600 })
      await cluster.kill('dp-1')
      const dp2 = cluster.node('dp-2')
      const dp3 = cluster.node('dp-3')
      // dp-2 claims and dies mid-takeover; dp-3 is still waiting out its rank delay
      dp2.actions.takeoverMs = 10_000
      dp3.detector.fail('dp-1')
      dp2.detector.fail('dp-1')
      await cluster.advance(100)
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-2', epoch: 2 })
      await cluster.kill('dp-2')
      dp3.detector.fail('dp-2')
      await cluster.advance(1500)
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-3', epoch: 3 })
      expect(dp3.actions.calls).to.deep.equal(['takeOver from dp-2 at 3'])
      expect(cluster.serving()).to.deep.equal(['dp-3'])
    })

    it('should claim at once when the better backup it waits for fails before claiming', async () => {
      const cluster = await startedCluster(3, { rankDelayMs: 600 })
      await cluster.kill('dp-1')
      await cluster.kill('dp-2')
      const dp3 = cluster.node('dp-3')
      dp3.detector.fail('dp-1')
      await cluster.advance(100)
      expect(dp3.unit.current()).to.deep.include({ role: 'taking-over' })
      dp3.detector.fail('dp-2')
      await cluster.advance(100)
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-3', epoch: 2 })
    })
  })

  describe('fault 5: the owner is cut off from the store, whose calls time out after 5 s', () => {
    it('should stop serving within selfFenceMs on its own deadline timer', async () => {
      const cluster = await startedCluster(2, { selfFenceMs: 400 })
      const dp1 = cluster.node('dp-1')
      const cutAt = cluster.clock.monotonic()
      dp1.faults.downWithTimeoutMs = 5000
      let stoppedAt: number | undefined
      for (let t = 0; t < 2000 && stoppedAt === undefined; t += 10) {
        await cluster.advance(10)
        if (!dp1.unit.mayServe()) stoppedAt = cluster.clock.monotonic()
      }
      expect(stoppedAt! - cutAt).to.be.at.most(400)
      expect(dp1.unit.current().role).to.equal('fenced')
      await cluster.advance(10)
      expect(dp1.actions.of('ownership:fenced')).to.have.length(1)
      expect(dp1.actions.serving).to.equal(false)
    })
  })

  describe('a takeover that lasts longer than selfFenceMs, the store answering throughout', () => {
    it('should count the read-backs during the takeover as confirmations: no fence, one claim', async () => {
      const cluster = await startedCluster(2, { selfFenceMs: 300, ownershipCheckMs: 100 })
      const dp2 = cluster.node('dp-2')
      // a store that answers in 30 ms, and a takeover (renegotiation, writes) of 1.5 s
      dp2.faults.latencyMs = 30
      dp2.actions.takeoverMs = 1500
      await cluster.kill('dp-1')
      dp2.detector.fail('dp-1')
      await cluster.advance(5000)
      expect(dp2.actions.of('ownership:fenced')).to.deep.equal([])
      expect(dp2.actions.of('ownership:claimed')).to.have.length(1)
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-2', epoch: 2 })
      expect(cluster.serving()).to.deep.equal(['dp-2'])
    })
  })

  describe('fault 5, with timers that fire a little early (as Node may, by up to 1 ms)', () => {
    it('should still stop serving within selfFenceMs: an early deadline timer is armed again', async () => {
      const cluster = await startedCluster(2, { selfFenceMs: 400 })
      const dp1 = cluster.node('dp-1')
      dp1.clock.earlyMs = 1
      // read-backs confirm the epoch and arm the deadline timer, which now fires 1 ms early
      await cluster.advance(300)
      const cutAt = cluster.clock.monotonic()
      dp1.faults.downWithTimeoutMs = 5000
      let stoppedAt: number | undefined
      for (let t = 0; t < 6000 && stoppedAt === undefined; t += 10) {
        await cluster.advance(10)
        if (dp1.actions.of('ownership:fenced').length > 0) stoppedAt = cluster.clock.monotonic()
      }
      expect(stoppedAt! - cutAt).to.be.at.most(420)
    })
  })

  describe('fault 6: heartbeats between the DPs are lost (each holds the other failed)', () => {
    it('should not take the DVIPA back while the new owner is live, and take it once it dies', async () => {
      const cluster = await startedCluster(2)
      const dp1 = cluster.node('dp-1')
      const dp2 = cluster.node('dp-2')
      dp2.detector.fail('dp-1')
      dp1.detector.fail('dp-2')
      await cluster.advance(5000)
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-2', epoch: 2 })
      expect(dp1.actions.of('ownership:claimed')).to.have.length(1)
      expect(cluster.serving()).to.deep.equal(['dp-2'])
      // dp-2 really dies: its owner lease runs out and dp-1 takes over
      await cluster.kill('dp-2')
      await cluster.advance(3000)
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-1', epoch: 3 })
      expect(cluster.serving()).to.deep.equal(['dp-1'])
    })
  })

  describe('fault 6: a verdict that comes after the new owner’s claim', () => {
    it('should not take over when the silence behind it began before the claim', async () => {
      const cluster = await startedCluster()
      const dp3 = cluster.node('dp-3')
      // the heartbeats between the DPs are lost; dp-2 hears of dp-1 first and claims
      cluster.node('dp-2').detector.fail('dp-1')
      dp3.detector.fail('dp-1')
      await cluster.advance(1000)
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-2', epoch: 2 })
      // dp-3's verdict on dp-2 arrives now, but dp-2 has been silent since before its claim
      dp3.detector.fail('dp-2', 1500)
      await cluster.advance(3000)
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-2', epoch: 2 })
      expect(dp3.actions.of('ownership:claimed')).to.have.length(0)
      expect(cluster.serving()).to.deep.equal(['dp-2'])
    })
  })

  describe('when every DP is cut off from the others but all reach the store', () => {
    it('should settle on one owner, not claim in a loop on verdicts older than the claims', async () => {
      const cluster = await startedCluster()
      for (const id of cluster.ranks)
        for (const other of cluster.ranks) if (other !== id) cluster.node(id).detector.fail(other)
      await cluster.advance(5000)
      const o = cluster.ownership()!
      expect(o.epoch).to.be.at.most(3)
      expect(cluster.serving()).to.deep.equal([o.owner])
    })
  })

  describe('fault 7: the store loses data and its epoch goes backwards', () => {
    it('should raise an alarm and claim above the highest epoch seen', async () => {
      const cluster = await clusterAfterFailover()
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-2', epoch: 2 })
      // Redis restarts without its append-only file
      cluster.facility.dvipas.clear()
      await cluster.advance(1000)
      const dp2 = cluster.node('dp-2')
      expect(dp2.actions.of('ownership:epoch-regressed')).to.deep.equal([
        { type: 'ownership:epoch-regressed', dvipa: DVIPA, storeEpoch: 0, highestSeen: 2 }
      ])
      expect(dp2.unit.counters().epochRegressions).to.equal(1)
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-2', epoch: 3 })
      expect(dp2.actions.calls).to.include('reassert at 3')
      expect(cluster.serving()).to.deep.equal(['dp-2'])
    })

    it('should never accept ownership at or below an epoch it has seen', async () => {
      const cluster = await clusterAfterFailover()
      // a replica that missed epoch 2 names dp-3 at epoch 1
      const slot = cluster.facility.dvipas.get(DVIPA)!
      await cluster.node('dp-3').memory.releaseOwnership(DVIPA, { owner: 'dp-2', epoch: 2 })
      slot.epoch = 1
      slot.owner = 'dp-3'
      slot.ownership = new TextEncoder().encode(
        JSON.stringify({
          v: 1,
          dvipa: DVIPA,
          owner: 'dp-3',
          epoch: 1,
          ranks: cluster.ranks,
          claimedAt: 0
        })
      )
      await cluster.advance(1000)
      expect(cluster.node('dp-3').actions.calls).to.deep.equal([])
      expect(cluster.ownership()!.epoch).to.be.greaterThan(2)
    })
  })

  describe('fault 7 and fault 1 together: the store lost data, and a claim reply above it is lost', () => {
    /**
     * dp-2, owner of epoch 2, dies and the store comes back without its data; `lose` puts a
     * lost claim reply on dp-3 before it declares dp-2 failed. Checks that dp-3 won nothing at
     * or below epoch 2 and serves above it.
     */
    async function recoverAboveTheLoss(lose: (dp3: TestNode) => void): Promise<void> {
      const cluster = await clusterAfterFailover()
      await cluster.kill('dp-2')
      cluster.facility.dvipas.clear()
      const dp3 = cluster.node('dp-3')
      lose(dp3)
      dp3.detector.fail('dp-2')
      await cluster.advance(2000)
      expect(dp3.actions.of('ownership:indeterminate')).to.have.length(1)
      const won = dp3.actions.of('ownership:claimed').map((c) => c.epoch)
      expect(won.length, 'claims won').to.be.above(0)
      expect(
        won.filter((e) => e <= 2),
        'epochs won at or below the highest seen'
      ).to.deep.equal([])
      expect(cluster.ownership()!.epoch).to.be.greaterThan(2)
      expect(dp3.actions.calls.filter((c) => / at [12]$/.test(c))).to.deep.equal([])
      expect(cluster.serving()).to.deep.equal(['dp-3'])
    }

    it('should not take an epoch it reads back that is not above the highest seen: it claims on', async () => {
      // the first claim above the loss (epoch 1 again) applies, and its reply is lost
      await recoverAboveTheLoss((dp3) => (dp3.faults.loseNextClaimReply = true))
    })

    it('should not take the highest seen epoch itself when the reply of the claim reaching it is lost', async () => {
      // the claim to epoch 1 is answered; the next one, to epoch 2 (dp-2's), applies and its
      // reply is lost
      await recoverAboveTheLoss((dp3) => {
        dp3.faults.afterNextClaim = () => {
          dp3.faults.afterNextClaim = () => {
            dp3.faults.loseNextClaimReply = true
          }
        }
      })
    })
  })

  describe('when two backups claim at one instant (a claim storm)', () => {
    it('should back the loser off by its rank before it tries again', async () => {
      const cluster = await startedCluster(3, { rankDelayMs: 200 })
      const dp3 = cluster.node('dp-3')
      await cluster.kill('dp-1')
      await cluster.kill('dp-2')
      // dp-2 won epoch 2 in a moment dp-3 did not see; dp-3 holds both failed
      setOwnership(cluster, 'dp-2', 2)
      dp3.detector.set('dp-2', 'failed')
      dp3.detector.fail('dp-1')
      await cluster.advance(10)
      expect(dp3.unit.counters().claimsLost).to.equal(1)
      expect(dp3.actions.of('takeover:started')).to.have.length(1)
      // nothing holds it back but the backoff of rank 3: 3 x 200 ms after the loss
      await cluster.advance(500)
      expect(dp3.actions.of('takeover:started')).to.have.length(1)
      await cluster.advance(200)
      expect(dp3.actions.of('takeover:started')).to.have.length(2)
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-3', epoch: 3 })
    })

    it('should claim from the epoch the conflict reported, not from its stale view', async () => {
      // no read-back: only the conflict tells it the store's epoch
      const cluster = await startedCluster(3, { ownershipCheckMs: 0 })
      const dp3 = cluster.node('dp-3')
      await cluster.kill('dp-1')
      // dp-1 claimed epoch 2 in a moment dp-3 did not see (a store cut, a lost change)
      setOwnership(cluster, 'dp-1', 2)
      dp3.detector.set('dp-2', 'failed')
      dp3.detector.fail('dp-1')
      await cluster.advance(3000)
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-3', epoch: 3 })
      expect(dp3.actions.of('takeover:started').length).to.be.at.most(3)
      expect(dp3.unit.counters().claimsLost).to.equal(1)
    })
  })

  describe('a read-back answered late, after a newer epoch was seen', () => {
    it('should not be taken for a loss of data (no false alarm)', async () => {
      const cluster = await startedCluster()
      const dp3 = cluster.node('dp-3')
      dp3.faults.delayReadsMs = 200
      await cluster.advance(200)
      await cluster.kill('dp-1')
      cluster.node('dp-2').detector.fail('dp-1')
      dp3.detector.fail('dp-1')
      await cluster.advance(1500)
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-2', epoch: 2 })
      expect(dp3.actions.of('ownership:epoch-regressed')).to.deep.equal([])
      expect(dp3.unit.counters().epochRegressions).to.equal(0)
    })
  })

  describe('a node restarted after the store lost data', () => {
    it('should not claim fresh while another node holds a live owner lease (no epoch 1 again)', async () => {
      const cluster = await clusterAfterFailover()
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-2', epoch: 2 })
      // the store restarts empty; the primary restarts at once, before dp-2's read-back
      cluster.facility.dvipas.clear()
      const dp1 = await restart(cluster, 'dp-1')
      expect(dp1.actions.of('ownership:claimed')).to.deep.equal([])
      await cluster.advance(2000)
      expect(dp1.actions.of('ownership:claimed')).to.deep.equal([])
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-2', epoch: 3 })
      expect(cluster.serving()).to.deep.equal(['dp-2'])
    })

    it('should wait a join window before it takes over from itself (an epoch claimed twice)', async () => {
      const cluster = await clusterAfterFailover()
      // a rollback to before the takeover: dp-1 at epoch 1, and no leases
      setOwnership(cluster, 'dp-1', 1)
      cluster.facility.leases.clear()
      const dp1 = await restart(cluster, 'dp-1')
      await cluster.advance(2000)
      expect(dp1.actions.of('ownership:claimed')).to.deep.equal([])
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-2', epoch: 3 })
      expect(cluster.serving()).to.deep.equal(['dp-2'])
    })

    it('should still take over from itself after the window when nobody else serves', async () => {
      const cluster = await startedCluster()
      await cluster.kill('dp-1')
      cluster.facility.leases.clear()
      const dp1 = await restart(cluster, 'dp-1')
      await cluster.advance(1000)
      expect(dp1.actions.calls).to.deep.equal(['takeOver from dp-1 at 2'])
      expect(cluster.serving()).to.deep.equal(['dp-1'])
    })
  })

  describe('when the store lost data and no node serves above the loss', () => {
    it('should have the best live backup recover above the highest epoch once no owner lease is live', async () => {
      const cluster = await startedCluster()
      // the owner's process is gone (its detector verdict not in yet: a restarted node looks alive)
      await cluster.kill('dp-1')
      cluster.facility.dvipas.clear()
      cluster.facility.leases.clear()
      await cluster.advance(3000)
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-2', epoch: 2 })
      expect(cluster.node('dp-2').actions.of('ownership:epoch-regressed')).to.have.length(1)
      expect(cluster.serving()).to.deep.equal(['dp-2'])
    })
  })

  describe('when the store restarts empty and the primary restarts before the owner read back', () => {
    it('should have the primary join as a backup of the live owner, which claims above the loss (chaos seed 2265)', async () => {
      const cluster = await clusterAfterFailover()
      // dp-2 owns epoch 2; the store restarts empty and dp-1 restarts 40 ms later, within one
      // read-back of dp-2, and with the link down (only the store can tell it)
      cluster.facility.dvipas.clear()
      cluster.facility.leases.clear()
      cluster.linkCut = true
      await cluster.advance(40)
      const dp1 = await restart(cluster, 'dp-1')
      expect(dp1.actions.of('ownership:claimed'), 'dp-1 claimed nothing').to.deep.equal([])
      expect(dp1.unit.current()).to.deep.include({ role: 'backup' })
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-2', epoch: 3 })
      await cluster.advance(1000)
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-2', epoch: 3 })
      expect(cluster.serving()).to.deep.equal(['dp-2'])
      expect(dp1.actions.of('ownership:changed').map((c) => [c.from, c.to, c.cause])).to.deep.equal(
        [
          ['backup', 'joining', 'start'],
          ['joining', 'backup', 'joined']
        ]
      )
    })

    it('should learn the live owner from its answer when the owner cannot reach the store (chaos seed 3410)', async () => {
      const cluster = await clusterAfterFailover()
      const dp2 = cluster.node('dp-2')
      // dp-2 serves epoch 2 but its store calls hang; the store restarts empty; dp-1 restarts
      dp2.faults.downWithTimeoutMs = 1000
      cluster.facility.dvipas.clear()
      cluster.facility.leases.clear()
      await cluster.advance(40)
      cluster.nodes.delete('dp-1')
      const dp1 = await cluster.add('dp-1')
      const started = cluster.start(dp1)
      let most = 0
      for (let i = 0; i < 100; i++) {
        most = Math.max(most, cluster.serving().length)
        await cluster.advance(10)
      }
      await started
      expect(most, 'never two servers').to.equal(1)
      expect(dp1.actions.queries).to.equal(1)
      expect(dp1.actions.of('ownership:claimed'), 'dp-1 claimed nothing').to.deep.equal([])
      expect(dp1.unit.current()).to.deep.equal({
        role: 'backup',
        view: { kind: 'owned', owner: 'dp-2', epoch: 2 }
      })
      // dp-2 reaches the store again: it sees the loss and claims above what it held
      dp2.faults.downWithTimeoutMs = undefined
      await cluster.advance(1500)
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-2', epoch: 3 })
      expect(cluster.serving()).to.deep.equal(['dp-2'])
      expect(dp1.actions.of('ownership:claimed')).to.deep.equal([])
    })

    it('should claim above the highest epoch it heard of when the owner it heard of dies', async () => {
      const cluster = await clusterAfterFailover()
      cluster.facility.dvipas.clear()
      cluster.facility.leases.clear()
      cluster.nodes.delete('dp-1')
      const dp1 = await cluster.add('dp-1')
      const started = cluster.start(dp1)
      // dp-2 answers the query at epoch 2, then dies before it read the loss back
      await cluster.clock.advance(1)
      expect(dp1.actions.queries).to.equal(1)
      await cluster.kill('dp-2')
      await cluster.kill('dp-3')
      await started
      // it backs up the owner it heard of; the store is empty and no owner lease comes back:
      // once a lease lifetime has passed, dp-1 recovers, above epoch 2, not at 1
      expect(dp1.unit.current()).to.deep.include({ role: 'backup' })
      await cluster.advance(2000)
      expect(dp1.actions.of('ownership:claimed').map((e) => e.epoch)).to.deep.equal([3])
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-1', epoch: 3 })
    })
  })

  describe('a fenced owner whose store lost data', () => {
    it('should recover above the highest epoch it saw, not leave the DVIPA unowned', async () => {
      const cluster = await startedCluster(3, { selfFenceMs: 300 })
      const dp1 = cluster.node('dp-1')
      dp1.faults.downWithTimeoutMs = 1000
      await cluster.advance(500)
      expect(dp1.unit.current().role).to.equal('fenced')
      // the store restarts empty while dp-1 is cut off; the others hold dp-1 alive
      cluster.facility.dvipas.clear()
      cluster.facility.leases.clear()
      dp1.faults.downWithTimeoutMs = undefined
      await cluster.advance(2000)
      expect(dp1.actions.of('ownership:epoch-regressed')).to.have.length.at.least(1)
      // dp-1 re-joins for one window before it takes over from itself; the best live backup,
      // which found no live owner lease, may recover first: either way above epoch 1, one server
      const o = cluster.ownership()!
      expect(o.epoch).to.equal(2)
      expect(cluster.serving()).to.deep.equal([o.owner])
    })

    it('should write its records again until it succeeds after claiming above a regression', async () => {
      const cluster = await startedCluster()
      const dp1 = cluster.node('dp-1')
      dp1.actions.failReasserts = 2
      cluster.facility.dvipas.clear()
      await cluster.advance(2000)
      expect(cluster.ownership()).to.deep.equal({ owner: 'dp-1', epoch: 2 })
      expect(dp1.actions.calls.filter((c) => c === 'reassert at 2')).to.have.length(3)
      expect(dp1.actions.of('ownership:claimed').map((e) => e.epoch)).to.deep.equal([1, 2])
    })
  })

  describe('a claim applied on a master that failed over to a replica without it, the store refusing every call meanwhile', () => {
    for (const size of [2, 3])
      it(`should claim above the highest epoch seen soon after the store answers again (${size} DPs)`, async () => {
        const cluster = await startedCluster(size)
        await cluster.kill('dp-1')
        const dp2 = cluster.node('dp-2')
        const live = cluster.ranks.slice(1).map((id) => cluster.node(id))
        dp2.faults.loseNextClaimReply = true
        dp2.faults.afterNextClaim = () => {
          // the master applied the claim (everyone saw its change), then the promoted replica
          // lacks it, and refuses every call until it has a replica of its own (NOREPLICAS)
          setOwnership(cluster, 'dp-1', 1)
          for (const n of live) n.faults.downWithTimeoutMs = 5000
        }
        for (const n of live) n.detector.fail('dp-1')
        await cluster.advance(30_000)
        expect(cluster.ownership()).to.deep.equal({ owner: 'dp-1', epoch: 1 })
        expect(cluster.serving()).to.deep.equal([])
        for (const n of live) n.faults.downWithTimeoutMs = undefined
        // the calls under way when it came back still time out: one timeout, then a few checks
        await cluster.advance(8000)
        const o = cluster.ownership()!
        expect(o.epoch, 'the epoch claimed after the store came back').to.be.greaterThan(2)
        expect(cluster.serving()).to.deep.equal([o.owner])
      })
  })

  describe('when a takeover fails after its claim', () => {
    it('should release, back off, and leave the DVIPA to a node that can serve it', async () => {
      const cluster = await startedCluster()
      await cluster.kill('dp-1')
      const dp2 = cluster.node('dp-2')
      dp2.actions.failTakeover = true
      for (const id of ['dp-2', 'dp-3']) cluster.node(id).detector.fail('dp-1')
      await cluster.advance(3000)
      const o = cluster.ownership()!
      expect(o.owner).to.equal('dp-3')
      expect(dp2.actions.calls.filter((c) => c.startsWith('takeOver'))).to.have.length(1)
      expect(cluster.serving()).to.deep.equal(['dp-3'])
    })

    it('should double its wait after each failed takeover in a row', async () => {
      const { cluster, dp2 } = await failingTakeovers()
      await cluster.advance(20_000)
      // attempts at about 0, 1, 3, 7 and 15 s (waits of 1, 2, 4 and 8 s)
      expect(dp2.actions.calls.filter((c) => c.startsWith('takeOver'))).to.have.length(5)
    })

    it('should try again within one first wait once the store answers after failing', async () => {
      const { cluster, dp2 } = await failingTakeovers()
      // six failures: the next wait is 30 s
      await cluster.advance(40_000)
      expect(dp2.actions.calls.filter((c) => c.startsWith('takeOver'))).to.have.length(6)
      dp2.faults.downWithTimeoutMs = 500
      await cluster.advance(2000)
      dp2.faults.downWithTimeoutMs = undefined
      dp2.actions.failTakeover = false
      await cluster.advance(3000)
      expect(cluster.serving()).to.deep.equal(['dp-2'])
    })
  })
})

/** Sets the store's ownership record directly, as a replica or a rollback would, without a change event. */
function setOwnership(cluster: TestCluster, owner: string, epoch: number): void {
  const slot = cluster.facility.dvipas.get(DVIPA)!
  slot.epoch = epoch
  slot.owner = owner
  slot.ownership = new TextEncoder().encode(
    JSON.stringify({ v: 1, dvipa: DVIPA, owner, epoch, ranks: cluster.ranks, claimedAt: 0 })
  )
}
