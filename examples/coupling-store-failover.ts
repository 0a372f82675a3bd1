/**
 * The coupling store's part of a failover, on the embedded in-memory store: an owner records
 * its SAs under a DVIPA, dies, and a backup claims the DVIPA with a higher epoch, reads and
 * clears what the owner left, records its own state, and leaves deletes in the old owner's
 * mailbox. The old owner comes back, finds its writes fenced off, and applies the deletes.
 *
 * Run it: `npm start` (or `node --import tsx --conditions=vipsec-source examples/coupling-store-failover.ts`).
 */
import {
  countRecords,
  type DvipaRecord,
  type Fence,
  type Phase1Record,
  type Phase2Record
} from '@vipsec/interface'
import { MemoryCouplingFacility, MemoryCouplingStore } from '@vipsec/store-memory'

const DVIPA = '10.0.0.100'
const started = Date.now()
const log = (who: string, what: string): void => {
  console.log(`${String(Date.now() - started).padStart(4)} ms  ${who.padEnd(5)}  ${what}`)
}

/** The records an owner keeps for one peer: IKE SA, Child SA, their correlation, filter, flow. */
function peerRecords(peer: number, spiBase: number): DvipaRecord[] {
  const hex = (n: number, digits: number): string => n.toString(16).padStart(digits, '0')
  const peerInner = `172.16.2.${peer}`
  const phase1: Phase1Record = {
    v: 1,
    kind: 'phase1',
    id: `ike-${peer}`,
    dvipa: DVIPA,
    ikeSaId: { initiatorSpi: hex(spiBase + peer, 16), responderSpi: hex(spiBase * 2 + peer, 16) },
    role: 'responder',
    localIdentity: { type: 'fqdn', value: 'vpn.example.test' },
    remoteIdentity: { type: 'fqdn', value: `peer${peer}.example.test` },
    local: { address: DVIPA, port: 4500 },
    peer: { address: `192.0.2.${peer}`, port: 4500 },
    nat: { localBehindNat: false, remoteBehindNat: false, encapsulated: true },
    policy: {
      proposals: [
        {
          encryption: [{ algorithm: 'aes-gcm-16', keyBits: 256 }],
          integrity: ['none'],
          prf: ['hmac-sha2-256'],
          keyExchange: ['curve25519']
        }
      ],
      authMethod: 'psk',
      lifetime: { rekeySeconds: 14400, reauthSeconds: 0 },
      liveness: { intervalMs: 10000, timeoutMs: 30000 }
    },
    establishedAt: Date.now()
  }
  const phase2: Phase2Record = {
    v: 1,
    kind: 'phase2',
    id: `child-${peer}`,
    dvipa: DVIPA,
    protocol: 'esp',
    inboundSpi: hex(0xc0000000 + spiBase + peer, 8),
    outboundSpi: hex(0xd0000000 + spiBase + peer, 8),
    mode: 'tunnel',
    policy: {
      proposals: [
        {
          protocol: 'esp',
          encryption: [{ algorithm: 'aes-gcm-16', keyBits: 256 }],
          integrity: ['none'],
          keyExchange: ['none'],
          extendedSequenceNumbers: [true]
        }
      ],
      pfsGroup: 'none',
      lifetime: {
        softSeconds: 3000,
        hardSeconds: 3600,
        softBytes: 0,
        hardBytes: 0,
        softPackets: 0,
        hardPackets: 0
      }
    },
    selectors: {
      local: [
        {
          startAddress: '10.77.0.0',
          endAddress: '10.77.0.255',
          protocol: 0,
          startPort: 0,
          endPort: 65535
        }
      ],
      remote: [
        {
          startAddress: peerInner,
          endAddress: peerInner,
          protocol: 0,
          startPort: 0,
          endPort: 65535
        }
      ]
    },
    encapsulation: 'udp',
    establishedAt: Date.now()
  }
  return [
    phase1,
    phase2,
    {
      v: 1,
      kind: 'correlation',
      id: phase1.id,
      dvipa: DVIPA,
      phase1Id: phase1.id,
      phase2Ids: [phase2.id]
    },
    {
      v: 1,
      kind: 'filter',
      id: `filter-${peer}`,
      dvipa: DVIPA,
      phase2Id: phase2.id,
      direction: 'outbound',
      selector: {
        source: '10.77.0.0/24',
        destination: `${peerInner}/32`,
        protocol: 0,
        sourcePorts: [0, 65535],
        destinationPorts: [0, 65535]
      },
      action: 'protect',
      priority: 100
    },
    {
      v: 1,
      kind: 'connection',
      id: `conn-${peer}`,
      dvipa: DVIPA,
      flow: {
        protocol: 17,
        sourceAddress: peerInner,
        sourcePort: 40000 + peer,
        destinationAddress: '10.77.0.10',
        destinationPort: 7
      },
      target: peer % 2 === 0 ? 'target-1' : 'target-2',
      distributed: true,
      phase2Id: phase2.id,
      createdAt: Date.now()
    }
  ]
}

async function main(): Promise<void> {
  // One shared facility stands for the coupling store; each node has its own client of it.
  const facility = new MemoryCouplingFacility()
  const dp1 = new MemoryCouplingStore({}, { facility })
  const dp2 = new MemoryCouplingStore({}, { facility })
  await dp1.start()
  await dp2.start()
  dp2.events$.subscribe((event) => {
    if (event.type === 'ownership:claimed')
      log('store', `${event.ownership.owner} owns ${DVIPA} at epoch ${event.ownership.epoch}`)
  })

  // Steps 1-2: the primary owns the DVIPA and records three peers' SAs and flows.
  const owned = await dp1.claimOwnership(DVIPA, {
    owner: 'dp-1',
    ranks: ['dp-2'],
    expectedEpoch: 0
  })
  const fence1: Fence = { owner: 'dp-1', epoch: owned.epoch }
  for (const peer of [1, 2, 3]) await dp1.putRecords(DVIPA, peerRecords(peer, 0x1000), fence1)
  log('dp-1', `recorded ${countRecords(await dp1.listRecords(DVIPA))} records for 3 peers`)

  // Step 4: dp-1 dies; dp-2 claims the DVIPA with compare-and-set against the epoch it saw.
  log('dp-1', 'killed')
  const seen = await dp2.getOwnership(DVIPA)
  const claimed = await dp2.claimOwnership(DVIPA, {
    owner: 'dp-2',
    ranks: [],
    expectedEpoch: seen.epoch
  })
  const fence2: Fence = { owner: 'dp-2', epoch: claimed.epoch }

  // Step 5: read and clear, atomically; the store keeps a journal until the takeover settles.
  const taken = await dp2.takeRecords(DVIPA, fence2)
  log(
    'dp-2',
    `took ${countRecords(taken)} records (${taken.phase1.length} IKE SAs, ${taken.phase2.length} Child SAs, ${taken.connection.length} flows); ${countRecords(await dp2.listRecords(DVIPA))} left`
  )
  for (const p1 of taken.phase1) {
    const children = taken.correlation.find((c) => c.phase1Id === p1.id)?.phase2Ids ?? []
    log(
      'dp-2',
      `renegotiate ${p1.remoteIdentity.value} at ${p1.peer.address}:${p1.peer.port} with ${children.join(', ')}`
    )
  }

  // Step 11: the new owner records its own (renegotiated) state under the new epoch, then settles.
  for (const peer of [1, 2, 3]) await dp2.putRecords(DVIPA, peerRecords(peer, 0x5000), fence2)
  await dp2.settleTakeover(DVIPA, fence2)
  log(
    'dp-2',
    `recorded ${countRecords(await dp2.listRecords(DVIPA))} records under epoch ${fence2.epoch}`
  )

  // Step 12: deletes for the old owner's SAs go to its mailbox.
  await dp2.postMessage({
    v: 1,
    id: `del-${fence2.epoch}`,
    to: 'dp-1',
    from: 'dp-2',
    dvipa: DVIPA,
    epoch: fence2.epoch,
    ikeSas: taken.phase1.map((r) => r.ikeSaId),
    childSas: taken.phase2.map((r) => ({ inboundSpi: r.inboundSpi, outboundSpi: r.outboundSpi })),
    sentAt: Date.now()
  })

  // The old owner comes back with its old epoch: its writes are fenced off, and it reads its mail.
  try {
    await dp1.putRecords(DVIPA, peerRecords(4, 0x1000), fence1)
    throw new Error('a stale owner was able to write')
  } catch (err) {
    if ((err as Error).name !== 'StaleEpochError') throw err
    log(
      'dp-1',
      `back with epoch ${fence1.epoch}: write rejected (${(err as Error).message}); stops serving ${DVIPA}`
    )
  }
  for (const message of await dp1.takeMessages('dp-1')) {
    log(
      'dp-1',
      `mailbox: delete ${message.ikeSas.length} IKE SAs and ${message.childSas.length} Child SAs (from ${message.from}, epoch ${message.epoch})`
    )
  }

  const final = await dp2.getOwnership(DVIPA)
  const left = await dp2.listRecords(DVIPA)
  log(
    'done',
    `${final.owner} owns ${DVIPA} at epoch ${final.epoch} with ${left.phase1.length} IKE SAs recorded`
  )
  await dp1.stop()
  await dp2.stop()
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
