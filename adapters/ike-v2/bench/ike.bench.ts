/**
 * IKEv2 handshake rate on one core: full handshakes per second (IKE_SA_INIT + IKE_AUTH + one
 * Child SA, PSK, Curve25519, AES-GCM-256; two IkeV2Services in one process over an in-memory
 * datagram pipe, SAs installed in real SoftwareEspEngines), next to the crypto-only cost of the
 * same handshake (the same key exchanges, key derivations, AUTH computations and SK
 * encryptions, without messages, state or I/O); and the full handshake once more with the
 * service's protect filters turned off (`installFilters: false`: SAs only, the filters left to
 * the distribution processor).
 *
 * The machine is shared and its load drifts, so the three measures are interleaved: every round
 * runs one batch of each, the crypto-only batch always in the middle and the two full ones in
 * alternating order (full, crypto, SAs only; then SAs only, crypto, full), after a full GC each;
 * a ratio is taken within a round, and the figures are the medians over the rounds (after two
 * warm-up rounds), printed with their spread (lowest, quartiles, highest). Each batch is timed
 * both on the wall clock and in process CPU time (all threads: V8's GC helpers included): the
 * CPU-time ratio is the one that load from other processes disturbs least. Prints a table and one
 * JSON line. Run: npm run bench:ike (IKE_BENCH_ROUNDS, IKE_BENCH_HANDSHAKES,
 * IKE_BENCH_CONCURRENCY change the defaults)
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { loadavg } from 'node:os'
import { VirtualClock } from '@vipsec/clock'
import { SoftwareEspEngine } from '@vipsec/esp-software'
import type { IkeConnectRequest } from '@vipsec/interface'
import { CryptoRandomSource } from '@vipsec/random'
import { IkeV2Service, wire } from '../src/index.js'
import { MemoryNetwork } from '../test/helpers/network.js'
import { GCM_PHASE1 as PHASE1, GCM_PHASE2 as PHASE2 } from '../test/helpers/policies.js'

const ROUNDS = Number(process.env.IKE_BENCH_ROUNDS ?? 15)
const WARMUP_ROUNDS = 2
const HANDSHAKES = Number(process.env.IKE_BENCH_HANDSHAKES ?? 300)
const CONCURRENCY = Number(process.env.IKE_BENCH_CONCURRENCY ?? 32)

const A_ID = { type: 'fqdn' as const, value: 'a.example' }
const B_ID = { type: 'fqdn' as const, value: 'b.example' }
const A_NET = {
  startAddress: '172.16.1.0',
  endAddress: '172.16.1.255',
  protocol: 0,
  startPort: 0,
  endPort: 65535
}
const B_NET = {
  startAddress: '172.16.2.0',
  endAddress: '172.16.2.255',
  protocol: 0,
  startPort: 0,
  endPort: 65535
}

/** The rates of one batch: per wall-clock second and per second of process CPU time. */
interface Rate {
  wall: number
  cpu: number
}

/** A stopwatch of wall-clock and process CPU time. */
function stopwatch(): () => { wall: number; cpu: number } {
  const t0 = process.hrtime.bigint()
  const c0 = process.cpuUsage()
  return () => {
    const c = process.cpuUsage(c0)
    return { wall: Number(process.hrtime.bigint() - t0) / 1e9, cpu: (c.user + c.system) / 1e6 }
  }
}

function rate(n: number, t: { wall: number; cpu: number }): Rate {
  return { wall: n / t.wall, cpu: n / t.cpu }
}

async function fullHandshakes(n: number, installFilters = true): Promise<Rate> {
  const net = new MemoryNetwork()
  net.logging = false
  const clock = new VirtualClock()
  const random = new CryptoRandomSource()
  const aEngine = new SoftwareEspEngine({ clock })
  const bEngine = new SoftwareEspEngine({ clock })
  const psks = [
    { remote: A_ID, secret: 'bench secret' },
    { remote: B_ID, secret: 'bench secret' }
  ]
  const a = new IkeV2Service(
    {
      clock,
      random,
      espEngine: aEngine,
      udp500: net.bind('10.0.0.1', 500),
      udp4500: net.bind('10.0.0.1', 4500)
    },
    { psks, installFilters }
  )
  const b = new IkeV2Service(
    {
      clock,
      random,
      espEngine: bEngine,
      udp500: net.bind('10.0.0.2', 500),
      udp4500: net.bind('10.0.0.2', 4500)
    },
    {
      psks,
      installFilters,
      halfOpenLimitPerPeer: 1_000_000,
      cookieThreshold: 1_000_000,
      peers: [
        {
          localIdentity: B_ID,
          remoteIdentity: A_ID,
          phase1: PHASE1,
          children: [{ policy: PHASE2, mode: 'tunnel', local: [B_NET], remote: [A_NET] }]
        }
      ]
    }
  )
  await aEngine.start()
  await bEngine.start()
  await a.start()
  await b.start()
  const request: IkeConnectRequest = {
    local: { address: '10.0.0.1', port: 500 },
    peer: { address: '10.0.0.2', port: 500 },
    localIdentity: A_ID,
    remoteIdentity: B_ID,
    phase1: PHASE1,
    child: { policy: PHASE2, mode: 'tunnel', local: [A_NET], remote: [B_NET] }
  }
  let started = 0
  const elapsed = stopwatch()
  const worker = async (): Promise<void> => {
    while (started < n) {
      started++
      await a.connect(request)
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))
  const t = elapsed()
  if (b.list().length !== n)
    throw new Error(`responder has ${b.list().length} IKE SAs, expected ${n}`)
  await a.stop()
  await b.stop()
  await aEngine.stop()
  await bEngine.stop()
  return rate(n, t)
}

/** The cryptographic work of one handshake (both sides), with the functions the service uses. */
function cryptoHandshake(random: CryptoRandomSource): void {
  const encryption = { algorithm: 'aes-gcm-16' as const, keyBits: 256 as const }
  const spiI = random.randomBytes(8)
  const spiR = random.randomBytes(8)
  const ni = random.randomBytes(32)
  const nr = random.randomBytes(32)
  const kei = wire.createKeyExchange('curve25519', random)
  const ker = wire.createKeyExchange('curve25519', random)
  const addr = Uint8Array.of(10, 0, 0, 1)
  for (let i = 0; i < 4; i++) wire.natHash(spiI, spiR, addr, 500)
  const keysR = wire.deriveIkeKeys({
    prf: 'hmac-sha2-256',
    encryption,
    integrity: 'none',
    ni,
    nr,
    spiI,
    spiR,
    sharedSecret: ker.computeSharedSecret(kei.publicValue)
  })
  const keysI = wire.deriveIkeKeys({
    prf: 'hmac-sha2-256',
    encryption,
    integrity: 'none',
    ni,
    nr,
    spiI,
    spiR,
    sharedSecret: kei.computeSharedSecret(ker.publicValue)
  })
  const psk = new TextEncoder().encode('bench secret')
  const id = Uint8Array.of(2, 0, 0, 0, 97, 46, 101, 120)
  const msg1 = random.randomBytes(260)
  // each side computes its own AUTH and checks the peer's
  for (const k of [keysI.skPi, keysR.skPi, keysR.skPr, keysI.skPr]) {
    wire.pskAuth('hmac-sha2-256', psk, wire.signedOctets('hmac-sha2-256', msg1, nr, k, id))
  }
  for (const k of [keysI, keysR]) {
    wire.deriveChildKeys('hmac-sha2-256', k.skD, ni, nr, encryption, 'none')
  }
  // IKE_AUTH request and response: encrypted once, decrypted once each
  const header = { spiI, spiR, version: 0x20, exchange: 35, flags: 8, messageId: 1 }
  const payloads = [{ type: 40, data: random.randomBytes(180) } as wire.NoncePayload]
  for (const [enc, dec] of [
    [keysI.skEi, keysR.skEi],
    [keysR.skEr, keysI.skEr]
  ]) {
    const iv = random.randomBytes(8)
    const m = wire.encryptMessage(
      header,
      payloads,
      { encryption, integrity: 'none', encryptionKey: enc, integrityKey: new Uint8Array(0) },
      iv
    )
    wire.decryptMessage(wire.parseMessage(m), {
      encryption,
      integrity: 'none',
      encryptionKey: dec,
      integrityKey: new Uint8Array(0)
    })
  }
}

function cryptoOnly(n: number): Rate {
  const random = new CryptoRandomSource()
  const elapsed = stopwatch()
  for (let i = 0; i < n; i++) cryptoHandshake(random)
  return rate(n, elapsed())
}

/** The q-quantile of `xs` (nearest rank). */
function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((x, y) => x - y)
  return s[Math.min(s.length - 1, Math.max(0, Math.round(q * (s.length - 1))))]
}

/** Median and spread of a series. */
interface Summary {
  median: number
  min: number
  p25: number
  p75: number
  max: number
}

function summary(xs: number[]): Summary {
  return {
    median: quantile(xs, 0.5),
    min: quantile(xs, 0),
    p25: quantile(xs, 0.25),
    p75: quantile(xs, 0.75),
    max: quantile(xs, 1)
  }
}

// a full GC before each batch, so that no batch pays for the garbage of the one before it
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

type Measure = 'full' | 'crypto' | 'bare'
const samples: Record<Measure, Rate[]> = { full: [], crypto: [], bare: [] }
const run = async (m: Measure): Promise<Rate> => {
  gc()
  return m === 'full'
    ? fullHandshakes(HANDSHAKES)
    : m === 'bare'
      ? fullHandshakes(HANDSHAKES, false)
      : cryptoOnly(HANDSHAKES)
}
const loadBefore = loadavg()
for (let r = 0; r < WARMUP_ROUNDS + ROUNDS; r++) {
  const order: Measure[] = r % 2 === 0 ? ['full', 'crypto', 'bare'] : ['bare', 'crypto', 'full']
  const got: Partial<Record<Measure, Rate>> = {}
  for (const m of order) got[m] = await run(m)
  if (r < WARMUP_ROUNDS) continue
  for (const m of order) samples[m].push(got[m]!)
}
const loadAfter = loadavg()

const series = (m: Measure, k: keyof Rate): number[] => samples[m].map((x) => x[k])
const ratio = (m: Measure, k: keyof Rate): number[] =>
  samples[m].map((x, i) => x[k] / samples.crypto[i][k])
const rows: [string, number[], number][] = [
  ['full (IkeV2Service pair), wall', series('full', 'wall'), 0],
  ['full, SAs only (no filters), wall', series('bare', 'wall'), 0],
  ['crypto only (same operations), wall', series('crypto', 'wall'), 0],
  ['ratio full / crypto-only, wall', ratio('full', 'wall'), 2],
  ['ratio SAs only / crypto-only, wall', ratio('bare', 'wall'), 2],
  ['full, per CPU second', series('full', 'cpu'), 0],
  ['crypto only, per CPU second', series('crypto', 'cpu'), 0],
  ['ratio full / crypto-only, CPU', ratio('full', 'cpu'), 2],
  ['ratio SAs only / crypto-only, CPU', ratio('bare', 'cpu'), 2]
]
const fmt = (x: number, d: number): string => x.toFixed(d)
console.log('IKEv2 handshakes on one core (PSK, Curve25519, AES-GCM-256, one Child SA)')
console.log(
  `${ROUNDS} rounds (after ${WARMUP_ROUNDS} warm-up) x ${HANDSHAKES} handshakes per measure, ` +
    `${CONCURRENCY} in flight; measures interleaved; load average ` +
    `${loadBefore.map((x) => x.toFixed(2)).join(' ')} before, ` +
    `${loadAfter.map((x) => x.toFixed(2)).join(' ')} after`
)
console.log('')
console.log(
  '| measure                             |  median |     min |     p25 |     p75 |     max |'
)
console.log(
  '|-------------------------------------|--------:|--------:|--------:|--------:|--------:|'
)
for (const [name, xs, d] of rows) {
  const s = summary(xs)
  const cells = [s.median, s.min, s.p25, s.p75, s.max].map((x) => fmt(x, d).padStart(7))
  console.log(`| ${name.padEnd(35)} | ${cells.join(' | ')} |`)
}
console.log('')
console.log(
  `ratios per round, wall: ${ratio('full', 'wall')
    .map((x) => fmt(x, 2))
    .join(' ')}`
)
console.log(
  `ratios per round, CPU:  ${ratio('full', 'cpu')
    .map((x) => fmt(x, 2))
    .join(' ')}`
)
console.log('')
const wallRatio = summary(ratio('full', 'wall'))
const cpuRatio = summary(ratio('full', 'cpu'))
console.log(
  JSON.stringify({
    bench: 'ike',
    handshakesPerSecond: Math.round(summary(series('full', 'wall')).median),
    cryptoOnlyPerSecond: Math.round(summary(series('crypto', 'wall')).median),
    ratio: Number(wallRatio.median.toFixed(3)),
    ratioSpread: [wallRatio.min, wallRatio.p25, wallRatio.p75, wallRatio.max].map((x) =>
      Number(x.toFixed(3))
    ),
    ratioCpu: Number(cpuRatio.median.toFixed(3)),
    ratioCpuSpread: [cpuRatio.min, cpuRatio.p25, cpuRatio.p75, cpuRatio.max].map((x) =>
      Number(x.toFixed(3))
    ),
    handshakesPerSecondWithoutFilters: Math.round(summary(series('bare', 'wall')).median),
    ratioWithoutFilters: Number(summary(ratio('bare', 'wall')).median.toFixed(3)),
    goal: 0.55,
    rounds: ROUNDS,
    handshakes: HANDSHAKES,
    concurrency: CONCURRENCY,
    loadAverage: [loadBefore[0], loadAfter[0]].map((x) => Number(x.toFixed(2)))
  })
)
