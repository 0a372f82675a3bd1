/**
 * The history checker against a real three-member etcd cluster: four clients race for two DVIPAs
 * while a seeded fault schedule kills the leader, kills a follower, pauses a minority member (cut
 * off from peers and clients alike) or restarts every member; each run's history must be
 * linearizable and no acknowledged write may be lost. Prints one verdict line per schedule.
 */
import { writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { runWorkload, type WorkloadVerdict } from '@vipsec/compliance/coupling-store'
import { EtcdCouplingStore } from '../src/index.js'
import { EtcdCluster, type EtcdMember } from './etcd-cluster.js'

const SCHEDULES = Number(process.env.VIPSEC_HISTORY_SCHEDULES ?? 20)
const FIRST = Number(process.env.VIPSEC_HISTORY_FIRST ?? 1)
const sleep = async (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** A small seeded generator (mulberry32), so a failing schedule can be run again. */
function random(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

type Fault = 'kill-leader' | 'kill-follower' | 'pause-minority' | 'pause-leader' | 'restart-all'
const FAULTS: Fault[] = [
  'kill-leader',
  'kill-follower',
  'pause-minority',
  'pause-leader',
  'restart-all'
]

async function inject(cluster: EtcdCluster, fault: Fault, rnd: () => number): Promise<void> {
  const leader = await cluster.leader()
  const followers = cluster.members.filter((m) => m !== leader && m.pid !== undefined)
  const pick = (list: EtcdMember[]): EtcdMember | undefined => list[Math.floor(rnd() * list.length)]
  switch (fault) {
    case 'kill-leader':
    case 'kill-follower': {
      const victim = fault === 'kill-leader' ? leader : pick(followers)
      if (victim === undefined) return
      await victim.kill()
      await sleep(300 + rnd() * 700)
      victim.launch()
      return
    }
    case 'pause-minority':
    case 'pause-leader': {
      const victim = fault === 'pause-leader' ? leader : pick(followers)
      if (victim === undefined) return
      victim.pause()
      await sleep(500 + rnd() * 1500)
      victim.resume()
      return
    }
    case 'restart-all':
      await cluster.restartAll()
  }
}

describe('EtcdCouplingStore under faults: history checker', function () {
  this.timeout(600_000)
  let cluster: EtcdCluster
  const verdicts: Array<{ seed: number; faults: Fault[]; verdict: WorkloadVerdict }> = []

  before(async () => {
    cluster = await EtcdCluster.start({ size: 3 })
  })

  after(async () => {
    await cluster?.remove()
    for (const { seed, faults, verdict } of verdicts) {
      console.log(
        `etcd schedule ${seed} [${faults.join(', ')}]: ${verdict.ok ? 'LINEARIZABLE' : 'NOT LINEARIZABLE'}` +
          ` (${verdict.calls} calls, ${verdict.unknown} unknown, ${verdict.claims} claims won,` +
          ` lost writes ${verdict.lostWrites.length})`
      )
    }
  })

  for (let seed = FIRST; seed < FIRST + SCHEDULES; seed++) {
    it(`should keep the ownership register linearizable under fault schedule ${seed}`, async () => {
      const rnd = random(seed)
      const faults = Array.from({ length: 2 }, () => FAULTS[Math.floor(rnd() * FAULTS.length)]!)
      const stores = Array.from(
        { length: 4 },
        (_, i) =>
          new EtcdCouplingStore(
            {},
            {
              // each client lists the members in its own order
              hosts: [...cluster.hosts.slice(i % 3), ...cluster.hosts.slice(0, i % 3)],
              keyPrefix: `history-${seed}/`,
              operationTimeoutMs: 3000,
              attemptTimeoutMs: 1000
            }
          )
      )
      await Promise.all(stores.map(async (s) => s.start()))
      try {
        const work = runWorkload(stores, { durationMs: 4000 })
        for (const fault of faults) {
          await sleep(300 + rnd() * 500)
          await inject(cluster, fault, rnd)
        }
        const verdict = await work
        verdicts.push({ seed, faults, verdict })
        if (!verdict.ok) {
          const file = join(tmpdir(), `vipsec-etcd-history-${seed}-${process.pid}.json`)
          await writeFile(file, JSON.stringify(verdict.history.entries, null, 1))
          console.log(`history of schedule ${seed} written to ${file}`)
        }
        await cluster.waitHealthy(cluster.members)
        expect(verdict.lostWrites).to.deep.equal([])
        expect(verdict.registers.map((r) => r.linearizable)).to.deep.equal(
          verdict.registers.map(() => true)
        )
        expect(verdict.claims).to.be.greaterThan(0)
      } finally {
        await Promise.all(stores.map(async (s) => s.stop()))
        for (const member of cluster.members) if (member.pid === undefined) member.launch()
        for (const member of cluster.members) member.resume()
      }
    })
  }
})
