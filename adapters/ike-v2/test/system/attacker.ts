/**
 * The attacker of the IKE system tests, run by the test inside a network namespace on the path
 * (`ip netns exec <ns> node --import tsx --conditions=vipsec-source attacker.ts <job-json>`).
 * It knows what an attacker on the path sees — the live SPIs and message IDs, cleartext on the
 * wire — and no keys. It sends the job's datagrams, counts what comes back to its sockets, and
 * prints one JSON line: `{ sent, replies, ms, rate }`.
 */
import { createSocket, type Socket } from 'node:dgram'
import { randomBytes } from 'node:crypto'
import { wire } from '../../src/index.js'
import { prng } from '../helpers/mutate.js'

const { ExchangeType, PayloadType, TransformType, EncrId, PrfId, GroupId, HeaderFlag } = wire

interface Job {
  /** vipsec's address. */
  target: string
  /** Local addresses to send from (their sockets get any replies). */
  sources: string[]
  mode: 'packets' | 'fuzz' | 'flood'
  /** For `packets`: base64 IKE messages and the port each goes to. */
  packets?: { data: string; port: number }[]
  /** For `fuzz` and `flood`: how many datagrams. */
  count?: number
  /** For `fuzz`: the live SA and the next request IDs of both halves. */
  sa?: { spiI: string; spiR: string; toResponder: number; toInitiator: number }
  /** For `fuzz`: datagrams per second at most. */
  rate?: number
  /** How long to wait for replies after the last datagram, in ms. */
  listenMs?: number
  /** For `fuzz`: the PRNG seed. */
  seed?: number
}

const job = JSON.parse(process.argv[2]) as Job

function payload(next: number, data: Uint8Array, critical = false): Uint8Array {
  const len = 4 + data.length
  return wire.concat(Uint8Array.of(next, critical ? 0x80 : 0, len >> 8, len & 0xff), data)
}

function message(
  spiI: Uint8Array,
  spiR: Uint8Array,
  exchange: number,
  flags: number,
  messageId: number,
  nextPayload: number,
  body: Uint8Array
): Uint8Array {
  return wire.concat(
    wire.encodeHeader({
      spiI,
      spiR,
      nextPayload,
      version: 0x20,
      exchange,
      flags,
      messageId,
      length: 28 + body.length
    }),
    body
  )
}

/** A well-formed IKE_SA_INIT request (AES-GCM-256, SHA-256, X25519), Nonce last. */
const INIT_TEMPLATE = buildInit()

/** The template with a fresh SPIi, KE value and Nonce. */
function ikeSaInit(): Uint8Array {
  const m = INIT_TEMPLATE.slice()
  m.set(randomBytes(8), 0)
  m.set(randomBytes(32), m.length - 32)
  m.set(randomBytes(32), m.length - 36 - 32)
  return m
}

function buildInit(): Uint8Array {
  return wire.encodeMessage(
    {
      spiI: randomBytes(8),
      spiR: new Uint8Array(8),
      version: 0x20,
      exchange: ExchangeType.IKE_SA_INIT,
      flags: HeaderFlag.INITIATOR,
      messageId: 0
    },
    [
      {
        type: PayloadType.SA,
        proposals: [
          {
            number: 1,
            protocol: 1,
            spi: new Uint8Array(0),
            transforms: [
              { type: TransformType.ENCR, id: EncrId.AES_GCM_16, keyLength: 256 },
              { type: TransformType.PRF, id: PrfId.HMAC_SHA2_256 },
              { type: TransformType.KE, id: GroupId.CURVE25519 }
            ]
          }
        ]
      } as wire.SaPayload,
      { type: PayloadType.KE, group: GroupId.CURVE25519, data: randomBytes(32) } as wire.KePayload,
      { type: PayloadType.NONCE, data: randomBytes(32) } as wire.NoncePayload
    ]
  )
}

/** One forged or mutated message for the live SA, and the port it goes to. */
function fuzzed(
  next: () => number,
  sa: NonNullable<Job['sa']>
): { data: Uint8Array; port: number } {
  const spiI = Uint8Array.from(Buffer.from(sa.spiI, 'hex'))
  const spiR = Uint8Array.from(Buffer.from(sa.spiR, 'hex'))
  const exchanges = [
    ExchangeType.INFORMATIONAL,
    ExchangeType.CREATE_CHILD_SA,
    ExchangeType.IKE_AUTH,
    ExchangeType.IKE_SA_INIT,
    next() & 0xff
  ]
  const flagsSet = [
    HeaderFlag.INITIATOR,
    0,
    HeaderFlag.RESPONSE,
    HeaderFlag.RESPONSE | HeaderFlag.INITIATOR,
    next() & 0xff
  ]
  const flags = flagsSet[next() % flagsSet.length]
  // both halves' next IDs, their neighbours, and a few wild ones
  const base = (flags & HeaderFlag.INITIATOR) !== 0 ? sa.toResponder : sa.toInitiator
  const ids = [base, base, base - 1, base + 1, 0, sa.toResponder, sa.toInitiator, next()]
  const mid = ids[next() % ids.length] >>> 0
  const exchange = exchanges[next() % exchanges.length]
  let nextPayload = 0
  let body: Uint8Array = new Uint8Array(0)
  switch (next() % 7) {
    case 0: // no payloads (attack 1's shape)
      break
    case 1: // an SK payload of random size: bad ICV, or too short for one
      nextPayload = PayloadType.SK
      body = payload(next() % 40, randomBytes(next() % 120))
      break
    case 2: // a plaintext Delete of the IKE SA
      nextPayload = PayloadType.DELETE
      body = payload(0, Uint8Array.of(1, 0, 0, 0))
      break
    case 3: // a plaintext notify (AUTHENTICATION_FAILED, INVALID_SYNTAX, COOKIE ...)
      nextPayload = PayloadType.NOTIFY
      body = payload(
        0,
        wire.concat(
          Uint8Array.of(0, 0, 0, [24, 7, 16390, 16393][next() % 4] & 0xff),
          randomBytes(4)
        )
      )
      break
    case 4: // an unknown critical payload
      nextPayload = 200 + (next() % 50)
      body = payload(0, randomBytes(8), true)
      break
    case 5: // a fresh IKE_SA_INIT request (half-open state, bounded by the COOKIE)
      return { data: ikeSaInit(), port: next() % 2 === 0 ? 500 : 4500 }
    default: {
      // a plausible message, then a few bits flipped anywhere, the header included
      nextPayload = PayloadType.SK
      const m = message(spiI, spiR, exchange, flags, mid, nextPayload, payload(0, randomBytes(64)))
      for (let i = 1 + (next() % 4); i > 0; i--) m[next() % m.length] ^= 1 << (next() % 8)
      if (next() % 4 === 0) return { data: m.subarray(0, next() % m.length), port: 4500 }
      return { data: m, port: next() % 2 === 0 ? 500 : 4500 }
    }
  }
  return {
    data: message(spiI, spiR, exchange, flags, mid, nextPayload, body),
    port: next() % 2 === 0 ? 500 : 4500
  }
}

async function bind(address: string): Promise<Socket> {
  const s = createSocket('udp4')
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject)
    s.bind(0, address, () => resolve())
  })
  s.on('error', () => undefined)
  return s
}

const sockets = await Promise.all(job.sources.map(bind))
let replies = 0
for (const s of sockets) s.on('message', () => replies++)

let inFlight = 0
let sent = 0
async function send(s: Socket, data: Uint8Array, port: number): Promise<void> {
  while (inFlight >= 256) await new Promise((r) => setImmediate(r))
  inFlight++
  const out = port === 4500 ? wire.concat(wire.NON_ESP_MARKER, data) : data
  s.send(out, port, job.target, () => {
    inFlight--
    sent++
  })
}

const started = performance.now()
const next = prng(job.seed ?? 1)
const pick = (): Socket => sockets[next() % sockets.length]
if (job.mode === 'packets') {
  for (const p of job.packets ?? []) await send(pick(), Buffer.from(p.data, 'base64'), p.port)
} else {
  const n = job.count ?? 0
  const perMs = (job.rate ?? Infinity) / 1000
  for (let i = 0; i < n; i++) {
    if (job.mode === 'flood') await send(pick(), ikeSaInit(), 500)
    else {
      const f = fuzzed(next, job.sa!)
      await send(pick(), f.data, f.port)
    }
    // paced: never ahead of `rate` per second
    while (i / (performance.now() - started) > perMs) await new Promise((r) => setTimeout(r, 1))
  }
}
while (inFlight > 0) await new Promise((r) => setImmediate(r))
const ms = performance.now() - started
await new Promise((r) => setTimeout(r, job.listenMs ?? 300))
process.stdout.write(
  JSON.stringify({ sent, replies, ms, rate: Math.round((sent / ms) * 1000) }) + '\n'
)
for (const s of sockets) s.close()
