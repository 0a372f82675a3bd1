/**
 * Plugging a custom coupling store into nodes: two distribution processors built by
 * `createNode` share the `FileCouplingStore` of `file-coupling-store.ts` (one JSON file) on a
 * virtual network and the system clock. `dp-1` claims the DVIPA; when it stops, `dp-2` takes
 * the DVIPA over through that store, with a higher epoch.
 *
 * Run it: `node --import tsx --conditions=vipsec-source examples/custom-store-node.ts`.
 */
import 'reflect-metadata'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { firstValueFrom, filter, timeout } from 'rxjs'
import { SystemClock } from '@vipsec/clock'
import { generateClusterKey } from '@vipsec/cluster-link-udp'
import { createNode, type VipsecNode } from '@vipsec/container'
import { TOKENS, type Endpoint, type TakeoverReport } from '@vipsec/interface'
import { VirtualNetwork } from '@vipsec/network-virtual'
import { FileCouplingStore } from './file-coupling-store.js'

const DVIPA = '10.0.0.100'
const clock = new SystemClock()
const network = new VirtualNetwork({ clock })
// The cluster key of the link and the heartbeats; a real cluster reads it from a file
// made by `vipsec keygen`.
const keys = [generateClusterKey()]
const at = (n: number, port: number): Endpoint => ({ address: `10.9.0.${n}`, port })

function dp(n: 1 | 2, path: string): VipsecNode {
  const other = n === 1 ? 2 : 1
  return createNode({
    role: n === 1 ? 'primary' : 'backup',
    nodeId: `dp-${n}`,
    clock: { type: 'custom', component: { instance: clock } },
    // The custom store: any object implementing CouplingStore.
    store: { type: 'custom', component: { instance: new FileCouplingStore(path) } },
    components: {
      networkAdapter: { type: 'virtual', network, addresses: [at(n, 0).address] },
      espEngine: { type: 'software' },
      ikeServiceFactory: { type: 'ike-v2', init: {} },
      failureDetector: { type: 'heartbeat', init: { local: at(n, 7500), keys } },
      clusterLink: {
        type: 'udp',
        init: { local: at(n, 7400), peers: { [`dp-${other}`]: at(other, 7400) }, keys }
      },
      distributionProcessor: {
        type: 'default',
        init: {
          dvipas: [{ dvipa: DVIPA, ranks: ['dp-1', 'dp-2'], targets: [] }],
          heartbeats: { 'dp-1': at(1, 7500), 'dp-2': at(2, 7500) }
        }
      }
    }
  })
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'vipsec-custom-store-'))
  const path = join(dir, 'coupling.json')
  const dp1 = dp(1, path)
  const dp2 = dp(2, path)
  try {
    await dp1.start()
    await dp2.start()
    const store = dp2.get(TOKENS.CouplingStore)
    const before = await store.getOwnership(DVIPA)
    console.log(`${before.owner} owns ${DVIPA} at epoch ${before.epoch} (store: ${path})`)

    const completed = firstValueFrom(
      dp2.get(TOKENS.DistributionProcessor).events$.pipe(
        filter((e) => e.type === 'takeover:completed'),
        timeout(10_000)
      )
    )
    await dp1.stop()
    console.log('dp-1 stopped')
    const { report } = (await completed) as { report: TakeoverReport }
    const after = await store.getOwnership(DVIPA)
    console.log(
      `dp-2 took ${DVIPA} over from ${report.previousOwner}: epoch ${report.epoch}, store says ${after.owner} at epoch ${after.epoch}`
    )
  } finally {
    await dp2.stop()
    await dp1.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
