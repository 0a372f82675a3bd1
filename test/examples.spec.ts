import { execFile } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { expect } from 'chai'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))
const examples = fileURLToPath(new URL('../examples', import.meta.url))

/** What each example must print, beyond exiting with 0. */
const expectations: Record<string, RegExp[]> = {
  'coupling-store-failover.ts': [
    /dp-2 owns 10\.0\.0\.100 at epoch 2/,
    /took 15 records .* 0 left/,
    /write rejected/,
    /mailbox: delete 3 IKE SAs and 3 Child SAs/,
    /dp-2 owns 10\.0\.0\.100 at epoch 2 with 3 IKE SAs recorded/
  ],
  'custom-store-node.ts': [
    /dp-1 owns 10\.0\.0\.100 at epoch 1/,
    /dp-1 stopped/,
    /dp-2 took 10\.0\.0\.100 over from dp-1: epoch 2, store says dp-2 at epoch 2/
  ],
  'embedded-cluster.ts': [
    /owner dp-1 \(epoch 1\)/,
    /dp-1 crashed/,
    /takeover of 10\.0\.0\.100 from dp-1: epoch 2, 4 IKE SAs renegotiated, 0 failed/,
    /renegotiate +\+ *[\d.]+ virtual ms/,
    /owner dp-2 \(epoch 2\)/,
    /every peer kept its target: yes/,
    /10\.0\.0\.100: traffic resumed/
  ],
  'file-coupling-store.ts': [
    /dp-1 owns 10\.0\.0\.100 at epoch 1 and recorded 2 flows/,
    /dp-2 claimed epoch 2 and took 2 records/,
    /dp-1's late write: StaleEpochError/,
    /on disk: owner dp-2, epoch 2, 2 records/
  ],
  'metered-esp-engine.ts': [
    /tampered packet: drop/,
    /SA 0xc0010001 outbound 6 packets, \d+ bytes/,
    /SA 0xc0010001 inbound {2}5 packets, \d+ bytes/,
    /vipsec_esp_sa_packets_total\{spi="0xc0010001",direction="inbound",tag="child-1"\} 5/,
    /vipsec_esp_dropped_total\{reason="icv-failure"\} 1/
  ]
}

describe('examples', function () {
  this.timeout(60_000)
  const files = readdirSync(examples).filter((f) => f.endsWith('.ts'))

  it('should have an expectation for every example', () => {
    expect(files.sort()).to.deep.equal(Object.keys(expectations).sort())
  })

  for (const file of files) {
    describe(file, () => {
      it('should run to completion and print what it shows', async () => {
        const { stdout } = await run(
          process.execPath,
          ['--import', 'tsx', '--conditions=vipsec-source', `examples/${file}`],
          { cwd: root, timeout: 50_000 }
        )
        for (const pattern of expectations[file] ?? []) expect(stdout).to.match(pattern)
      })
    })
  }
})
