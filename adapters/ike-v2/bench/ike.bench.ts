/**
 * IKEv2 handshake rate on one core: full handshakes per second (IKE_SA_INIT + IKE_AUTH + one
 * Child SA, PSK, Curve25519, AES-GCM-256; two IkeV2Services in one process over an in-memory
 * datagram pipe, SAs installed in real SoftwareEspEngines), next to the crypto-only cost of the
 * same handshake (the same key exchanges, key derivations, AUTH computations and SK
 * encryptions, without messages, state or I/O), measured interleaved in the same run; and the
 * full handshake once more with the service's protect filters turned off (`installFilters:
 * false`: SAs only, the filters left to the distribution processor). Prints a table and one JSON
 * line with the ratios. Run: npm run bench:ike
 */
import { VirtualClock } from '@vipsec/clock'
import { SoftwareEspEngine } from '@vipsec/esp-software'
import type { IkeConnectRequest } from '@vipsec/interface'
import { CryptoRandomSource } from '@vipsec/random'
import { IkeV2Service, wire } from '../src/index.js'
import { MemoryNetwork } from '../test/helpers/network.js'
import { GCM_PHASE1 as PHASE1, GCM_PHASE2 as PHASE2 } from '../test/helpers/policies.js'

const ROUNDS = Number(process.env.IKE_BENCH_ROUNDS ?? 9)
const HANDSHAKES = Number(process.env.IKE_BENCH_HANDSHAKES ?? 500)
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

async function fullHandshakes(n: number, installFilters = true): Promise<number> {
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
  const t0 = process.hrtime.bigint()
  const worker = async (): Promise<void> => {
    while (started < n) {
      started++
      await a.connect(request)
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  if (b.list().length !== n)
    throw new Error(`responder has ${b.list().length} IKE SAs, expected ${n}`)
  await a.stop()
  await b.stop()
  await aEngine.stop()
  await bEngine.stop()
  return n / seconds
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

function cryptoOnly(n: number): number {
  const random = new CryptoRandomSource()
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < n; i++) cryptoHandshake(random)
  return n / (Number(process.hrtime.bigint() - t0) / 1e9)
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y)
  return s[Math.floor(s.length / 2)]
}

const full: number[] = []
const bare: number[] = []
const crypto: number[] = []
const ratios: number[] = []
const bareRatios: number[] = []
await fullHandshakes(200) // warm-up
cryptoOnly(200)
// each round measures both, back to back, so that the machine's load drifts as little as
// possible between the two halves of a ratio; the ratio reported is the median of the rounds'
for (let r = 0; r < ROUNDS; r++) {
  const f = await fullHandshakes(HANDSHAKES)
  const c = cryptoOnly(HANDSHAKES)
  const b = await fullHandshakes(HANDSHAKES, false)
  full.push(f)
  crypto.push(c)
  bare.push(b)
  ratios.push(f / c)
  bareRatios.push(b / c)
}
const fullMedian = median(full)
const cryptoMedian = median(crypto)
const ratio = median(ratios)
const bareMedian = median(bare)
const bareRatio = median(bareRatios)
console.log('IKEv2 handshakes on one core (PSK, Curve25519, AES-GCM-256, one Child SA)')
console.log(`rounds: ${ROUNDS} x ${HANDSHAKES} handshakes, ${CONCURRENCY} in flight`)
console.log('')
console.log('| measure                         | handshakes/s (median) | rounds |')
console.log('|---------------------------------|----------------------:|--------|')
console.log(
  `| full (IkeV2Service pair)        | ${fullMedian.toFixed(0).padStart(21)} | ${full.map((x) => x.toFixed(0)).join(' ')} |`
)
console.log(
  `| full, SAs only (no filters)     | ${bareMedian.toFixed(0).padStart(21)} | ${bare.map((x) => x.toFixed(0)).join(' ')} |`
)
console.log(
  `| crypto only (same operations)   | ${cryptoMedian.toFixed(0).padStart(21)} | ${crypto.map((x) => x.toFixed(0)).join(' ')} |`
)
console.log(
  `| ratio full / crypto-only        | ${ratio.toFixed(2).padStart(21)} | ${ratios.map((x) => x.toFixed(2)).join(' ')} (median per round; goal >= 0.50) |`
)
console.log(
  `| ratio SAs only / crypto-only    | ${bareRatio.toFixed(2).padStart(21)} | ${bareRatios.map((x) => x.toFixed(2)).join(' ')} |`
)
console.log('')
console.log(
  JSON.stringify({
    bench: 'ike',
    handshakesPerSecond: Math.round(fullMedian),
    cryptoOnlyPerSecond: Math.round(cryptoMedian),
    ratio: Number(ratio.toFixed(3)),
    handshakesPerSecondWithoutFilters: Math.round(bareMedian),
    ratioWithoutFilters: Number(bareRatio.toFixed(3)),
    goal: 0.5,
    rounds: ROUNDS,
    handshakes: HANDSHAKES,
    concurrency: CONCURRENCY
  })
)
