/**
 * The two workloads of the IKE benchmarks (bench/ike.bench.ts, bench/ike-profile.bench.ts): full
 * handshakes between two IkeV2Services, and the crypto-only work of the same handshake.
 */
import { VirtualClock } from '@vipsec/clock'
import { SoftwareEspEngine } from '@vipsec/esp-software'
import type { IkeConnectRequest } from '@vipsec/interface'
import { CryptoRandomSource } from '@vipsec/random'
import { IkeV2Service, wire } from '../src/index.js'
import { MemoryNetwork } from '../test/helpers/network.js'
import { GCM_PHASE1 as PHASE1, GCM_PHASE2 as PHASE2 } from '../test/helpers/policies.js'

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

/**
 * Two IkeV2Services (A the initiator, B the responder) over an in-memory datagram pipe, each with
 * a SoftwareEspEngine; `run(n, concurrency)` makes n full handshakes with `concurrency` in flight
 * and checks that B holds them all.
 *
 * @param installFilters - whether the services install protect filters besides the SAs
 */
export async function handshakePair(installFilters = true): Promise<{
  run: (n: number, concurrency: number) => Promise<void>
  stop: () => Promise<void>
}> {
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
  let done = 0
  return {
    run: async (n, concurrency) => {
      let started = 0
      const worker = async (): Promise<void> => {
        while (started < n) {
          started++
          await a.connect(request)
        }
      }
      await Promise.all(Array.from({ length: concurrency }, worker))
      done += n
      if (b.list().length !== done)
        throw new Error(`responder has ${b.list().length} IKE SAs, expected ${done}`)
    },
    stop: async () => {
      await a.stop()
      await b.stop()
      await aEngine.stop()
      await bEngine.stop()
    }
  }
}

/** The pre-shared key of both sides, as bytes (the service encodes a textual key once too). */
const PSK = new TextEncoder().encode('bench secret')

/** The cryptographic work of one handshake (both sides), with the functions the service uses. */
export function cryptoHandshake(random: CryptoRandomSource): void {
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
  const id = Uint8Array.of(2, 0, 0, 0, 97, 46, 101, 120)
  const msg1 = random.randomBytes(260)
  // each side computes its own AUTH and checks the peer's
  for (const k of [keysI.skPi, keysR.skPi, keysR.skPr, keysI.skPr]) {
    wire.pskAuth('hmac-sha2-256', PSK, wire.signedOctets('hmac-sha2-256', msg1, nr, k, id))
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
