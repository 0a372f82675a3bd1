import { expect } from 'chai'
import { buildIpPacket, buildUdp } from '@vipsec/esp-software'
import type { Endpoint } from '@vipsec/interface'
import { MemoryCouplingStore } from '@vipsec/store-memory'
import {
  CHAOS_FAMILIES,
  DVIPA,
  SERVICE_ADDRESS,
  formatViolation,
  makeSchedule,
  runSchedule,
  shrink,
  type ChaosConfig,
  type FaultAction,
  type FaultStart,
  type InvariantName,
  type RunResult,
  type Schedule
} from '../src/index.js'

const HEARTBEAT: ChaosConfig = {
  detector: 'heartbeat',
  selfFenceMs: 200,
  rankDelayMs: 50,
  storeTimeoutMs: 1000
}

function schedule(faults: Array<[FaultStart, FaultAction]>, seed = 1): Schedule {
  return {
    seed,
    family: 'proof',
    config: HEARTBEAT,
    faults: faults.map(([start, action], i) => ({ id: i + 1, start, action }))
  }
}

const broke = (result: RunResult, invariant: InvariantName): boolean =>
  result.violations.some((v) => v.invariant === invariant)

describe('the chaos checker', function () {
  this.timeout(600_000)

  // dp-2 and dp-3 cannot hear each other, so both claim when dp-1 dies.
  const racingClaims = schedule([
    [0, { kind: 'partition', a: ['dp-2'], b: ['dp-3'], durationMs: 1200 }],
    [100, { kind: 'crash', node: 'dp-1', restartAfterMs: null }]
  ])
  // The owner is cut off from the other DPs and the targets (not from the store or the peers):
  // only the store can tell it that it lost the DVIPA.
  const cutOff: FaultAction = {
    kind: 'partition',
    a: ['dp-1'],
    b: ['dp-2', 'dp-3', 'target-1', 'target-2'],
    durationMs: 1200
  }
  const isolatedOwner = schedule([[100, cutOff]])

  describe('when claims are not atomic (a deliberately broken store)', () => {
    it('should report one epoch claimed by two DPs', async () => {
      const result = await runSchedule(racingClaims, { defects: { nonAtomicClaimMs: 100 } })
      expect(broke(result, 'epoch-owner'), JSON.stringify(result.violations)).to.equal(true)
      const v = result.violations.find((x) => x.invariant === 'epoch-owner')!
      expect(v.detail).to.match(/epoch 2 (claimed by|to) dp-[23] and then (by|to) dp-[23]/)
    })

    it('should find no such violation in the same schedule with the real store', async () => {
      const result = await runSchedule(racingClaims)
      expect(broke(result, 'epoch-owner')).to.equal(false)
      expect(broke(result, 'epoch-order')).to.equal(false)
    })
  })

  describe('when an ex-owner never learns it was fenced (a store that ignores fencing for it)', () => {
    it('should report two DPs serving the DVIPA past the fencing bound', async () => {
      const result = await runSchedule(isolatedOwner, {
        defects: { ignoreFencing: true },
        defectiveNodes: ['dp-1']
      })
      const v = result.violations.find((x) => x.invariant === 'dual-serve')
      expect(v, JSON.stringify(result.violations)).to.not.equal(undefined)
      expect(v!.detail).to.match(/^dp-1 still holds 10\.0\.0\.100/)
    })

    it('should find no dual serving in the same schedule with the real store', async () => {
      const result = await runSchedule(isolatedOwner)
      expect(result.violations, JSON.stringify(result.violations)).to.deep.equal([])
    })
  })

  describe('when a second DP encrypts under the owner’s key from sequence 0', () => {
    it('should report the (key, nonce) pair used twice', async () => {
      const result = await runSchedule(schedule([]), {
        tamper: async ({ cluster, outboundSas }) => {
          const sa = outboundSas('dp-1')[0]!
          const dp2 = cluster.dps.get('dp-2')!
          dp2.esp.addSa({ ...sa, initialSequence: 0n })
          for (const f of cluster.dps.get('dp-1')!.esp.listFilters())
            if (f.spi === sa.spi) dp2.esp.installFilter({ ...f, id: `copy-${f.id}` })
          const peer = cluster.peers.find((p) => p.address === sa.tunnel?.remote)!
          const udp = await dp2.adapter.openUdp({ address: dp2.address, port: 4500 })
          const payload = buildUdp({
            source: SERVICE_ADDRESS,
            destination: peer.inner,
            sourcePort: 7,
            destinationPort: 40001,
            payload: new Uint8Array(8)
          })
          const out = dp2.esp.protect(
            buildIpPacket({
              source: SERVICE_ADDRESS,
              destination: peer.inner,
              protocol: 17,
              payload
            })
          )
          expect(out.action).to.equal('protect')
          if (out.action === 'protect') udp.send(out.packet, out.to as Endpoint)
        }
      })
      const v = result.violations.find((x) => x.invariant === 'nonce-reuse')
      expect(v, JSON.stringify(result.violations)).to.not.equal(undefined)
      expect(v!.detail).to.match(/sequence 1: sent by dp-1 .* and by dp-2/)
    })
  })

  describe('when the store keeps a record the owner does not hold', () => {
    it('should report the records as not matching', async () => {
      const result = await runSchedule(schedule([]), {
        tamper: async ({ cluster }) => {
          const writer = new MemoryCouplingStore({}, { facility: cluster.facility })
          await writer.start()
          const { phase1 } = await writer.listRecords(DVIPA)
          const stale = { ...phase1[0]!, id: 'stale-phase1' }
          // the owner's audit deletes a stale record: this store keeps putting it back
          const put = (): void => {
            const fence = { owner: 'dp-1', epoch: cluster.ownership()!.epoch }
            void writer.putRecords(DVIPA, [stale], fence).catch(() => undefined)
            cluster.clock.setTimeout(put, 50)
          }
          put()
        }
      })
      const v = result.violations.find((x) => x.invariant === 'converge-records')
      expect(v, JSON.stringify(result.violations)).to.not.equal(undefined)
      expect(v!.detail).to.include('stale-phase1')
    })
  })

  describe('when a violation needs only one of several faults', () => {
    it('should shrink the schedule to that fault and print the seed, the command and the trace', async () => {
      const noisy = schedule([
        [0, { kind: 'crash', node: 'target-2', restartAfterMs: 300 }],
        [100, cutOff],
        [200, { kind: 'pause', node: 'dp-3', durationMs: 150 }]
      ])
      const options = { defects: { ignoreFencing: true }, defectiveNodes: ['dp-1'] }
      const failing = await runSchedule(noisy, options)
      expect(broke(failing, 'dual-serve')).to.equal(true)
      const shrunk = await shrink(failing, 'dual-serve', options)
      expect(shrunk.result.schedule.faults.map((f) => f.id)).to.deep.equal([2])
      const text = formatViolation(shrunk, noisy)
      expect(text).to.include('VIOLATION dual-serve seed 1 family proof')
      expect(text).to.include('npm run test:chaos -- --seed 1 --family proof --faults 2')
      expect(text).to.include('faults kept by shrinking (1 of 3)')
      expect(text).to.match(/dp-2 +ownership:claimed epoch=2/)
    })
  })

  describe('when a seed is run twice', () => {
    it('should make the same schedule and the same trace', async () => {
      const a = await runSchedule(makeSchedule(7, 'takeover'))
      const b = await runSchedule(makeSchedule(7, 'takeover'))
      expect(a.schedule).to.deep.equal(b.schedule)
      expect(a.trace).to.deep.equal(b.trace)
    })
  })

  describe('over 500 schedules of every family', () => {
    it('should hold every invariant', async function () {
      this.timeout(1_800_000) // about 20 s on an idle machine; a busy one is much slower
      const failures: string[] = []
      for (let seed = 0; seed < 500; seed++) {
        const family = CHAOS_FAMILIES[seed % CHAOS_FAMILIES.length]!.name
        const result = await runSchedule(makeSchedule(seed, family))
        if (result.violations.length === 0) continue
        const v = result.violations[0]!
        failures.push(formatViolation(await shrink(result, v.invariant), result.schedule))
        if (failures.length >= 3) break
      }
      expect(failures, failures.join('\n\n')).to.deep.equal([])
    })
  })
})
