/**
 * What a warm takeover costs an heir next to rebuilding the same IKE SAs with handshakes: per
 * round, a peer (A) sets up N IKE SAs (PSK, Curve25519, AES-GCM-256, one Child SA each) with a
 * warm responder (B) over an in-memory datagram pipe, B's states are exported and B stops; then
 * one heir adopts all N (`adopt`: install and the RFC 6311 message ID sync), and another fresh
 * service on B's address answers N new full handshakes from A. The two are timed in the same
 * round, in alternating order, on the wall clock and in process CPU time, and the figure is the
 * median over the rounds of the ratio adopt / handshakes (after one warm-up round), with the
 * spread and the load average. Run: node --import tsx --conditions=vipsec-source
 * adapters/ike-v2/bench/warm.bench.ts (WARM_BENCH_ROUNDS, WARM_BENCH_SAS change the defaults)
 */
import { loadavg } from 'node:os'
import { VirtualClock } from '@vipsec/clock'
import { SoftwareEspEngine } from '@vipsec/esp-software'
import type { AdoptionRequest, IkeConnectRequest } from '@vipsec/interface'
import { CryptoRandomSource } from '@vipsec/random'
import { IkeV2Service, type IkeV2ServiceInit } from '../src/index.js'
import { MemoryNetwork } from '../test/helpers/network.js'
import { GCM_PHASE1 as PHASE1, GCM_PHASE2 as PHASE2 } from '../test/helpers/policies.js'

const ROUNDS = Number(process.env.WARM_BENCH_ROUNDS ?? 7)
const SAS = Number(process.env.WARM_BENCH_SAS ?? 100)

const A_ID = { type: 'fqdn' as const, value: 'a.example' }
const B_ID = { type: 'fqdn' as const, value: 'b.example' }
const A_NET = {
  startAddress: '172.16.1.0',
  endAddress: '172.16.1.255',
  protocol: 0,
  startPort: 0,
  endPort: 65535
}
const B_NET = { ...A_NET, startAddress: '172.16.2.0', endAddress: '172.16.2.255' }
const PSKS = [
  { remote: B_ID, secret: 'bench secret' },
  { remote: A_ID, secret: 'bench secret' }
]

function stopwatch(): () => { wall: number; cpu: number } {
  const t0 = process.hrtime.bigint()
  const c0 = process.cpuUsage()
  return () => {
    const c = process.cpuUsage(c0)
    return { wall: Number(process.hrtime.bigint() - t0) / 1e9, cpu: (c.user + c.system) / 1e6 }
  }
}

async function service(
  net: MemoryNetwork,
  clock: VirtualClock,
  address: string,
  init: IkeV2ServiceInit
): Promise<{ ike: IkeV2Service; engine: SoftwareEspEngine }> {
  const engine = new SoftwareEspEngine({ clock })
  const ike = new IkeV2Service(
    {
      clock,
      random: new CryptoRandomSource(),
      espEngine: engine,
      udp500: net.bind(address, 500),
      udp4500: net.bind(address, 4500)
    },
    { psks: PSKS, warm: { enabled: true }, ...init }
  )
  await engine.start()
  await ike.start()
  return { ike, engine }
}

const RESPONDER: IkeV2ServiceInit = {
  halfOpenLimitPerPeer: 100_000,
  cookieThreshold: 100_000,
  peers: [
    {
      localIdentity: B_ID,
      remoteIdentity: A_ID,
      phase1: PHASE1,
      children: [{ policy: PHASE2, mode: 'tunnel', local: [B_NET], remote: [A_NET] }]
    }
  ]
}

const REQUEST: IkeConnectRequest = {
  local: { address: '10.0.0.1', port: 500 },
  peer: { address: '10.0.0.2', port: 500 },
  localIdentity: A_ID,
  remoteIdentity: B_ID,
  phase1: PHASE1,
  child: { policy: PHASE2, mode: 'tunnel', local: [A_NET], remote: [B_NET] }
}

/** One round: the seconds of adopting SAS IKE SAs and of SAS fresh handshakes. */
async function round(adoptFirst: boolean): Promise<{ adopt: number; handshakes: number }> {
  const net = new MemoryNetwork()
  net.logging = false
  const clock = new VirtualClock()
  const a = await service(net, clock, '10.0.0.1', {})
  const b = await service(net, clock, '10.0.0.2', RESPONDER)
  await Promise.all(Array.from({ length: SAS }, () => a.ike.connect(REQUEST)))
  const requests: AdoptionRequest[] = b.ike.list().map((r) => {
    const state = b.ike.exportState(r.phase1.id)
    const sequences: AdoptionRequest['sequences'] = {}
    for (const c of state.records.phase2) sequences[c.id] = { outbound: 1024n, inbound: 0n }
    return { state, sequences }
  })
  await b.ike.stop()
  await b.engine.stop()
  let adopt = 0
  let handshakes = 0
  const timeAdopt = async (): Promise<void> => {
    const heir = await service(net, clock, '10.0.0.2', RESPONDER)
    const t = stopwatch()
    const outcomes = await heir.ike.adopt(requests)
    adopt = t().cpu
    if (outcomes.some((o) => o.status !== 'synced')) throw new Error('an adoption failed')
    await heir.ike.stop()
    await heir.engine.stop()
  }
  const timeHandshakes = async (): Promise<void> => {
    const fresh = await service(net, clock, '10.0.0.2', RESPONDER)
    const t = stopwatch()
    await Promise.all(Array.from({ length: SAS }, () => a.ike.connect(REQUEST)))
    handshakes = t().cpu
    await fresh.ike.stop()
    await fresh.engine.stop()
  }
  if (adoptFirst) {
    await timeAdopt()
    await timeHandshakes()
  } else {
    await timeHandshakes()
    await timeAdopt()
  }
  await a.ike.stop()
  await a.engine.stop()
  return { adopt, handshakes }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((x, y) => x - y)
  return s[Math.floor(s.length / 2)]!
}

const ratios: number[] = []
const adoptRates: number[] = []
const handshakeRates: number[] = []
await round(true) // warm-up
for (let i = 0; i < ROUNDS; i++) {
  const r = await round(i % 2 === 0)
  ratios.push(r.adopt / r.handshakes)
  adoptRates.push(SAS / r.adopt)
  handshakeRates.push(SAS / r.handshakes)
}
const sorted = [...ratios].sort((x, y) => x - y)
const result = {
  sas: SAS,
  rounds: ROUNDS,
  adoptPerCpuSecond: Math.round(median(adoptRates)),
  handshakesPerCpuSecond: Math.round(median(handshakeRates)),
  ratioAdoptToHandshakes: Number(median(ratios).toFixed(3)),
  spread: [sorted[0], sorted.at(-1)].map((x) => Number(x!.toFixed(3))),
  loadavg: loadavg().map((x) => Number(x.toFixed(2)))
}
console.log(
  `adopt ${result.adoptPerCpuSecond} IKE SAs per CPU second, handshakes ${result.handshakesPerCpuSecond}; ` +
    `CPU ratio adopt/handshakes ${result.ratioAdoptToHandshakes} (lowest ${result.spread[0]}, highest ${result.spread[1]}), load ${result.loadavg.join(' ')}`
)
console.log(JSON.stringify(result))
