/**
 * An embedded cluster: a whole vipsec cluster in this one process, on a virtual network and a
 * virtual clock. Three distribution processors (`dp-1` owns the DVIPA, `dp-2` and `dp-3` back it
 * up), three targets serving a request/response application, and four remote IPsec peers
 * (vipsec's own IKEv2 initiators and ESP engines) that each send a request every 20 ms through
 * their tunnel. We kill the owner, print the takeover report of the backup that took over, and
 * check that the peers' traffic resumed and kept its targets.
 *
 * Every part is a real adapter (`@vipsec/ike-v2`, `@vipsec/esp-software`, `@vipsec/store-memory`,
 * the heartbeat detector, the UDP cluster link), built by `createNode` of `@vipsec/container`;
 * only the network and the clock are simulated, so ten seconds of cluster time take well under a
 * second and every run is the same.
 *
 * Run it: `node --import tsx --conditions=vipsec-source examples/embedded-cluster.ts`.
 */
import type { TakeoverReport } from '@vipsec/interface'
import { DVIPA, SimulatedCluster } from '@vipsec/simulation'

async function main(): Promise<void> {
  const cluster = new SimulatedCluster({ dps: 3, targets: 3, peers: 4 })
  // The distribution processors' events: keep the takeover report when one completes.
  let report: TakeoverReport | undefined
  cluster.events$.subscribe(({ event }) => {
    if (event.type === 'takeover:completed') report = event.report
  })

  await cluster.start() // the DPs start, dp-1 claims the DVIPA, the peers negotiate with it
  cluster.startTraffic()
  await cluster.advance(1000)
  const before = cluster.traffic()
  console.log(`owner ${cluster.ownership()?.owner} (epoch ${cluster.ownership()?.epoch})`)
  console.log(`before the failure: ${before.answered} of ${before.sent} requests answered`)
  // Which target served each peer, to compare after the takeover.
  const targetsBefore = cluster.peers.map((p) => Object.keys(p.traffic.servedBy).join(','))

  await cluster.crash('dp-1') // the process dies: no goodbye, its heartbeats just stop
  console.log('dp-1 crashed')
  await cluster.advance(3000) // dp-2 detects it, claims epoch 2 and renegotiates with every peer

  if (report === undefined) throw new Error('no takeover completed')
  console.log(
    `takeover of ${report.dvipa} from ${report.previousOwner}: epoch ${report.epoch}, ${report.renegotiated} IKE SAs renegotiated, ${report.failed.length} failed, ${report.connections} connections`
  )
  for (const step of report.steps)
    console.log(`  ${step.step.padEnd(22)} +${step.durationMs.toFixed(1).padStart(6)} virtual ms`)

  // Traffic resumed: answers keep coming after the takeover, from the same targets.
  const atTakeover = cluster.traffic()
  await cluster.advance(1000)
  const after = cluster.traffic()
  const sameTargets = cluster.peers.every((p, i) => {
    const now = Object.keys(p.traffic.servedBy).join(',')
    return now === targetsBefore[i]
  })
  console.log(`owner ${cluster.ownership()?.owner} (epoch ${cluster.ownership()?.epoch})`)
  console.log(
    `after the takeover: ${after.answered - atTakeover.answered} more requests answered in 1 s; every peer kept its target: ${sameTargets ? 'yes' : 'no'}`
  )
  await cluster.stop()
  if (report.epoch !== 2 || after.answered <= atTakeover.answered || !sameTargets)
    process.exitCode = 1
  console.log(`${DVIPA}: ${process.exitCode === 1 ? 'FAILED' : 'traffic resumed'}`)
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
