/**
 * ESP throughput on one core: packets/s of SoftwareEspEngine.protect (encapsulate) and
 * .unprotect (decapsulate) for 64, 512 and 1400-byte inner packets, for each transform next to
 * its bare node:crypto ceiling on the same sizes, measured interleaved in the same run (for
 * encapsulation in alternating chunks of 32 packets, so both see the same load and GCs):
 * AES-256-GCM and ChaCha20-Poly1305 against one createCipheriv/createDecipheriv per packet,
 * AES-CBC with an HMAC against one createCipheriv plus one createHmac per packet (and, for
 * information, against a cipher kept across packets, as the engine keeps one). Then what an
 * AES-CBC IV costs (crypto.randomBytes per packet, a pool of random bytes, the counter encrypted
 * under a local key), and the worker-thread mode (protectBatch/unprotectBatch, AES-256-GCM) with
 * 1 and 2 workers. Prints tables and one JSON line. Run: npm run bench:esp (ESP_BENCH_ROUNDS,
 * ESP_BENCH_SLICE_MS, ESP_BENCH_ONLY=single|workers and ESP_BENCH_SUITES=gcm,chacha,cbc-sha256,
 * cbc-sha1 tune it)
 *
 * Method of the one-core table: each phase (one suite, one size, one direction) runs in a fresh
 * node process of its own, started with this script's flags, so that no phase inherits the heap
 * another left behind (the decapsulation phases hold a slice's worth of sealed packets and make
 * V8 grow its young generation to tens of MB, which slowed the encapsulation rounds after them).
 * A phase warms up with one discarded slice, then runs ESP_BENCH_ROUNDS rounds (default 15) of
 * bare and engine under the same load; the printed ratio is the median of the per-round ratios,
 * with their first and third quartiles as the spread and the ratio of the median rates beside
 * it. ESP_BENCH_ISOLATE=0 runs all phases in one process, one after another, as before. The
 * ceilings are unchanged: one createCipheriv per packet on the padded ESP plaintext (plus one
 * createHmac over header, IV and ciphertext for AES-CBC).
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  randomBytes,
  randomFillSync,
  timingSafeEqual
} from 'node:crypto'
import { readFileSync, readdirSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import { SystemClock } from '@vipsec/clock'
import {
  IpProtocol,
  type EspAlgorithm,
  type EspIntegrityAlgorithm,
  type EspSaParams
} from '@vipsec/interface'
import { buildIpPacket, buildUdp } from '@vipsec/wire'
import { CBC_IV_BATCH, SoftwareEspEngine, espPadLength } from '../src/index.js'
import { median } from './stats.js'

const SIZES = [64, 512, 1400]
const ROUNDS = Number(process.env.ESP_BENCH_ROUNDS ?? 15)
const SLICE_MS = Number(process.env.ESP_BENCH_SLICE_MS ?? 200)
const BATCH = 256
/** `single` or `workers` runs only that part; default both. */
const ONLY = process.env.ESP_BENCH_ONLY

const LIMITS = {
  softSeconds: 0,
  hardSeconds: 0,
  softBytes: 0,
  hardBytes: 0,
  softPackets: 0,
  hardPackets: 0
}

function innerPacket(size: number): Uint8Array {
  const source = '10.1.0.5'
  const destination = '10.2.0.7'
  const payload = new Uint8Array(size - 28).fill(0xab)
  return buildIpPacket({
    source,
    destination,
    protocol: IpProtocol.UDP,
    payload: buildUdp({ source, destination, sourcePort: 40000, destinationPort: 5001, payload })
  })
}

/** A transform measured on one core, with its bare node:crypto ceiling. */
interface Suite {
  name: string
  algorithm: EspAlgorithm
  integrity?: EspIntegrityAlgorithm
  keyLength: number
  /** One packet's worth of the bare transform on the ESP plaintext (padded payload and trailer). */
  bareEncrypt(plaintext: Uint8Array): void
  /** A closure that undoes one packet's worth of `bareEncrypt`, verifying first. */
  makeBareDecrypt(plaintext: Uint8Array): () => void
  /** The ESP plaintext's padding block. */
  block: number
  /**
   * AES-CBC, for information beside the ceiling: one packet's worth with a cipher kept across
   * packets (made by the returned closure's maker, once), as the engine does, plus a createHmac.
   */
  makeBareKept?(plaintext: Uint8Array): () => void
}

const key = Buffer.alloc(32, 7)
const nonce = Buffer.alloc(12, 9)
const aad = Buffer.alloc(8, 1)
const cbcIv = Buffer.alloc(16, 3)
const header = Buffer.alloc(8, 2)

function aeadSuite(
  name: string,
  algorithm: EspAlgorithm,
  cipher: 'aes-256-gcm' | 'chacha20-poly1305'
): Suite {
  // one of the two AEAD names (typed as one: node's overloads take a literal)
  const cipherName = cipher as 'aes-256-gcm'
  return {
    name,
    algorithm,
    keyLength: 36,
    block: 4,
    bareEncrypt(plaintext) {
      const cipher = createCipheriv(cipherName, key, nonce, { authTagLength: 16 })
      cipher.setAAD(aad)
      cipher.update(plaintext)
      cipher.final()
      cipher.getAuthTag()
    },
    makeBareDecrypt(plaintext) {
      const cipher = createCipheriv(cipherName, key, nonce, { authTagLength: 16 })
      cipher.setAAD(aad)
      const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()])
      const tag = cipher.getAuthTag()
      return () => {
        const decipher = createDecipheriv(cipherName, key, nonce, { authTagLength: 16 })
        decipher.setAuthTag(tag)
        decipher.setAAD(aad)
        decipher.update(ciphertext)
        decipher.final()
      }
    }
  }
}

function cbcSuite(
  name: string,
  integrity: EspIntegrityAlgorithm,
  hash: string,
  hmacKeyLength: number,
  icvLength: number
): Suite {
  const hmacKey = Buffer.alloc(hmacKeyLength, 5)
  return {
    name,
    algorithm: 'aes-cbc',
    integrity,
    keyLength: 32 + hmacKeyLength,
    block: 16,
    bareEncrypt(plaintext) {
      const cipher = createCipheriv('aes-256-cbc', key, cbcIv).setAutoPadding(false)
      const ciphertext = cipher.update(plaintext)
      cipher.final()
      createHmac(hash, hmacKey).update(header).update(cbcIv).update(ciphertext).digest()
    },
    makeBareDecrypt(plaintext) {
      const cipher = createCipheriv('aes-256-cbc', key, cbcIv).setAutoPadding(false)
      const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()])
      const icv = createHmac(hash, hmacKey)
        .update(header)
        .update(cbcIv)
        .update(ciphertext)
        .digest()
        .subarray(0, icvLength)
      return () => {
        const mac = createHmac(hash, hmacKey)
          .update(header)
          .update(cbcIv)
          .update(ciphertext)
          .digest()
        if (!timingSafeEqual(mac.subarray(0, icvLength), icv)) throw new Error('ICV')
        const decipher = createDecipheriv('aes-256-cbc', key, cbcIv).setAutoPadding(false)
        decipher.update(ciphertext)
        decipher.final()
      }
    },
    makeBareKept(plaintext) {
      // the IV block and the plaintext through one kept cipher, as the engine feeds its own
      const kept = createCipheriv('aes-256-cbc', key, cbcIv).setAutoPadding(false)
      const input = new Uint8Array(16 + plaintext.length)
      input.set(cbcIv, 0)
      input.set(plaintext, 16)
      return () => {
        const ivAndCiphertext = kept.update(input)
        createHmac(hash, hmacKey).update(header).update(ivAndCiphertext).digest()
      }
    }
  }
}

const ALL_SUITES: Record<string, Suite> = {
  gcm: aeadSuite('AES-256-GCM', 'aes-gcm-16', 'aes-256-gcm'),
  chacha: aeadSuite('ChaCha20-Poly1305', 'chacha20-poly1305', 'chacha20-poly1305'),
  'cbc-sha256': cbcSuite('AES-256-CBC + HMAC-SHA2-256-128', 'hmac-sha2-256-128', 'sha256', 32, 16),
  'cbc-sha1': cbcSuite('AES-256-CBC + HMAC-SHA1-96', 'hmac-sha1-96', 'sha1', 20, 12)
}
const SUITES = (process.env.ESP_BENCH_SUITES ?? Object.keys(ALL_SUITES).join(','))
  .split(',')
  .map((name) => {
    if (ALL_SUITES[name.trim()] == null) throw new Error(`ESP_BENCH_SUITES: unknown suite ${name}`)
    return name.trim()
  })
const GCM = ALL_SUITES.gcm

/** The ESP plaintext of an inner packet of `size` bytes: padded payload and trailer. */
function espPlaintext(size: number, block: number): Uint8Array {
  return new Uint8Array(size + espPadLength(size, block) + 2).fill(0xab)
}

let keySeed = 1
function sa(spi: number, direction: 'inbound' | 'outbound', suite: Suite = GCM): EspSaParams {
  const keyMaterial = Uint8Array.from(
    { length: suite.keyLength },
    (_, i) => (keySeed * 31 + i) & 0xff
  )
  if (direction === 'outbound') keySeed++
  return {
    spi,
    direction,
    mode: 'tunnel',
    algorithm: suite.algorithm,
    ...(suite.integrity !== undefined ? { integrity: suite.integrity } : {}),
    keyMaterial,
    extendedSequenceNumbers: true,
    lifetime: LIMITS,
    replayWindow: 4096,
    tunnel:
      direction === 'outbound'
        ? { local: '192.0.2.1', remote: '198.51.100.2' }
        : { local: '198.51.100.2', remote: '192.0.2.1' },
    udpEncapsulation: {
      local: { address: '192.0.2.1', port: 4500 },
      remote: { address: '198.51.100.2', port: 4500 }
    }
  }
}

const SELECTOR = {
  source: '10.1.0.0/16',
  destination: '10.2.0.0/16',
  protocol: 0,
  sourcePorts: [0, 65535] as [number, number],
  destinationPorts: [0, 65535] as [number, number]
}

/** A started engine with one outbound SA and the inbound SA for the same key, plus filters. */
async function makeEngine(
  workers: number,
  suite: Suite = GCM
): Promise<{ engine: SoftwareEspEngine; spi: number }> {
  const engine = new SoftwareEspEngine({ clock: new SystemClock() }, { workers })
  await engine.start()
  const spi = 0x1000 + keySeed
  const outbound = sa(spi, 'outbound', suite)
  engine.addSa(outbound)
  engine.addSa({ ...outbound, direction: 'inbound', tunnel: sa(spi, 'inbound').tunnel })
  engine.installFilter({
    id: 'o',
    direction: 'outbound',
    selector: SELECTOR,
    action: 'protect',
    priority: 1,
    spi
  })
  engine.installFilter({
    id: 'i',
    direction: 'inbound',
    selector: SELECTOR,
    action: 'protect',
    priority: 1,
    spi
  })
  return { engine, spi }
}

/** Runs `step` (which processes `per` packets) for about SLICE_MS; returns packets/s. */
/** Packets/s of the last {@link rate} or {@link decapsulateRate} per second of this process's CPU time. */
let lastCpuRate = 0

function cpuMs(): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

/** CPU milliseconds of each thread of this process, by thread id (Linux /proc; empty elsewhere). */
function threadCpuMs(): Map<number, number> {
  const out = new Map<number, number>()
  let tids: string[]
  try {
    tids = readdirSync('/proc/self/task')
  } catch {
    return out
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      // utime and stime, in clock ticks of 10 ms
      out.set(Number(tid), (Number(fields[11]) + Number(fields[12])) * 10)
    } catch {
      // the thread ended
    }
  }
  return out
}

/** The threads that existed before any worker: the main thread and V8's and libuv's helpers. */
const startupThreads = new Set(threadCpuMs().keys())

/** CPU time split by kind of thread: main, crypto workers (started later), helpers (V8's GC). */
interface ThreadSplit {
  main: number
  workers: number
  helpers: number
}

function splitSince(before: Map<number, number>): ThreadSplit {
  const split = { main: 0, workers: 0, helpers: 0 }
  for (const [tid, ms] of threadCpuMs()) {
    const delta = ms - (before.get(tid) ?? 0)
    if (tid === process.pid) split.main += delta
    else if (startupThreads.has(tid)) split.helpers += delta
    else split.workers += delta
  }
  return split
}

/**
 * Runs `step` (which processes `per` packets) for about SLICE_MS; returns packets/s of wall time
 * and leaves packets/s of process CPU time in `lastCpuRate` (steadier on a shared machine).
 */
function rate(per: number, step: () => void): number {
  const end = performance.now() + SLICE_MS
  const start = performance.now()
  const cpuStart = cpuMs()
  let n = 0
  let now = start
  while (now < end) {
    for (let i = 0; i < 64; i++) step()
    n += 64 * per
    now = performance.now()
  }
  lastCpuRate = (n / (cpuMs() - cpuStart)) * 1000
  return (n / (now - start)) * 1000
}

/** Operations per chunk of {@link paired}. */
const CHUNK = 32

/**
 * Runs `a` and `b` for about SLICE_MS in alternating chunks of CHUNK calls (the order flipped
 * each chunk), so that both see the same load, the same CPU frequency and their share of the
 * garbage collections at a granularity of a few hundred microseconds; returns each one's calls
 * per second of wall time and of process CPU time, from the sums of its chunks.
 */
function paired(
  a: () => void,
  b: () => void
): { a: number; b: number; aCpu: number; bCpu: number } {
  let aMs = 0
  let bMs = 0
  let aCpuMs = 0
  let bCpuMs = 0
  let chunks = 0
  const end = performance.now() + SLICE_MS
  let t = performance.now()
  let c = cpuMs()
  while (t < end) {
    const first = chunks % 2 === 0 ? a : b
    const second = first === a ? b : a
    for (let i = 0; i < CHUNK; i++) first()
    const t1 = performance.now()
    const c1 = cpuMs()
    for (let i = 0; i < CHUNK; i++) second()
    const t2 = performance.now()
    const c2 = cpuMs()
    if (first === a) {
      aMs += t1 - t
      bMs += t2 - t1
      aCpuMs += c1 - c
      bCpuMs += c2 - c1
    } else {
      bMs += t1 - t
      aMs += t2 - t1
      bCpuMs += c1 - c
      aCpuMs += c2 - c1
    }
    chunks++
    t = t2
    c = c2
  }
  const n = chunks * CHUNK * 1000
  return { a: n / aMs, b: n / bMs, aCpu: n / aCpuMs, bCpu: n / bCpuMs }
}

interface Row {
  suite: string
  size: number
  bareEncrypt: number
  encapsulate: number
  encapsulateRatio: number
  /** First and third quartiles of the per-round ratios: the spread. */
  encapsulateRatioQuartiles: [number, number]
  /** The median engine rate over the median bare rate, for comparison. */
  encapsulateRatioOfMedians: number
  bareDecrypt: number
  decapsulate: number
  decapsulateRatio: number
  decapsulateRatioQuartiles: [number, number]
  decapsulateRatioOfMedians: number
  /** The same ratios, from packets per second of process CPU time. */
  encapsulateCpuRatio: number
  decapsulateCpuRatio: number
  /** Process CPU time per packet, in microseconds. */
  encapsulateCpuUs: number
  decapsulateCpuUs: number
  /** AES-CBC: packets/s with a kept cipher (see Suite.makeBareKept) and the engine's ratio to it. */
  bareKeptEncrypt?: number
  encapsulateVsKeptRatio?: number
}

/** Times the decapsulation of about one slice's worth of fresh packets; returns packets/s. */
function decapsulateRate(engine: SoftwareEspEngine, packet: Uint8Array, expected: number): number {
  const fresh: Uint8Array[] = []
  const count = Math.ceil(expected * (SLICE_MS / 1000))
  for (let i = 0; i < count; i++) {
    const out = engine.protect(packet)
    if (out.action === 'protect') fresh.push(out.packet)
  }
  const started = performance.now()
  const cpuStart = cpuMs()
  for (const esp of fresh) {
    if (engine.unprotect(esp).action !== 'accept') throw new Error('not accepted')
  }
  lastCpuRate = (fresh.length / (cpuMs() - cpuStart)) * 1000
  return (fresh.length / (performance.now() - started)) * 1000
}

/** The per-round samples of one phase (encapsulation or decapsulation) of one suite and size. */
interface PhaseSamples {
  /** Bare packets/s, wall clock. */
  bare: number[]
  /** Engine packets/s, wall clock. */
  engine: number[]
  /** Engine / bare, wall clock, per round. */
  ratio: number[]
  /** Engine / bare, per CPU-second, per round. */
  cpuRatio: number[]
  /** Engine CPU microseconds per packet. */
  cpuUs: number[]
  /** AES-CBC encapsulation: the kept-cipher packets/s and the engine's ratio to it. */
  kept?: number[]
  keptRatio?: number[]
}

type Phase = 'encapsulate' | 'decapsulate'

/** One phase's engine and bare closures for `suite` at `size` bytes, warmed up. */
async function phaseSetup(suite: Suite, size: number) {
  const packet = innerPacket(size)
  const plaintext = espPlaintext(size, suite.block)
  const { engine } = await makeEngine(0, suite)
  const encap = (): void => {
    if (engine.protect(packet).action !== 'protect') throw new Error('not protected')
  }
  return { packet, plaintext, engine, encap }
}

/**
 * Encapsulation: ROUNDS paired slices of bare and engine (interleaved in chunks, see
 * {@link paired}), after one discarded slice of warm-up.
 */
async function encapsulationPhase(suite: Suite, size: number): Promise<PhaseSamples> {
  const { plaintext, engine, encap } = await phaseSetup(suite, size)
  const bareEncrypt = (): void => suite.bareEncrypt(plaintext)
  const bareKept = suite.makeBareKept?.(plaintext)
  const s: PhaseSamples = { bare: [], engine: [], ratio: [], cpuRatio: [], cpuUs: [] }
  if (bareKept !== undefined) {
    s.kept = []
    s.keptRatio = []
  }
  paired(bareEncrypt, encap)
  if (bareKept !== undefined) paired(bareKept, encap)
  for (let round = 0; round < ROUNDS; round++) {
    const { a: bare, b: mine, aCpu: bareCpu, bCpu: mineCpu } = paired(bareEncrypt, encap)
    s.bare.push(bare)
    s.engine.push(mine)
    s.ratio.push(mine / bare)
    s.cpuRatio.push(mineCpu / bareCpu)
    s.cpuUs.push(1e6 / mineCpu)
    if (bareKept !== undefined) {
      const kept = paired(bareKept, encap)
      s.kept?.push(kept.a)
      s.keptRatio?.push(kept.b / kept.a)
    }
  }
  await engine.stop()
  return s
}

/**
 * Decapsulation: ROUNDS rounds of one slice of bare decryption and one slice's worth of fresh
 * engine packets (made before the timing starts), in alternating order, after a warm-up.
 */
async function decapsulationPhase(suite: Suite, size: number): Promise<PhaseSamples> {
  const { packet, plaintext, engine, encap } = await phaseSetup(suite, size)
  const bareDecrypt = suite.makeBareDecrypt(plaintext)
  const s: PhaseSamples = { bare: [], engine: [], ratio: [], cpuRatio: [], cpuUs: [] }
  // warm-up, and the encapsulation rate that sizes each round's set of fresh packets
  const expected = rate(1, encap)
  rate(1, bareDecrypt)
  decapsulateRate(engine, packet, expected)
  for (let round = 0; round < ROUNDS; round++) {
    let bare: number
    let mine: number
    let bareCpu: number
    let mineCpu: number
    if (round % 2 === 0) {
      bare = rate(1, bareDecrypt)
      bareCpu = lastCpuRate
      mine = decapsulateRate(engine, packet, expected)
      mineCpu = lastCpuRate
    } else {
      mine = decapsulateRate(engine, packet, expected)
      mineCpu = lastCpuRate
      bare = rate(1, bareDecrypt)
      bareCpu = lastCpuRate
    }
    s.bare.push(bare)
    s.engine.push(mine)
    s.ratio.push(mine / bare)
    s.cpuRatio.push(mineCpu / bareCpu)
    s.cpuUs.push(1e6 / mineCpu)
  }
  await engine.stop()
  return s
}

/** Set in a child process of {@link isolatedPhase}: which phase it runs. */
const CHILD = process.env.ESP_BENCH_CHILD
/** `0` runs every phase in this process, one after another (the method before isolation). */
const ISOLATE = process.env.ESP_BENCH_ISOLATE !== '0'

/**
 * Runs one phase in a fresh node process (the same flags and script), so that what earlier
 * phases did to the heap (the decapsulation phases grow V8's young generation to tens of MB)
 * cannot slow a later one; returns its samples.
 */
function isolatedPhase(suiteName: string, size: number, phase: Phase): PhaseSamples {
  const child = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    env: { ...process.env, ESP_BENCH_CHILD: JSON.stringify({ suite: suiteName, size, phase }) },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 16 * 1024 * 1024
  })
  if (child.status !== 0) throw new Error(`bench phase ${suiteName} ${size} ${phase} failed`)
  return JSON.parse(child.stdout.trim().split('\n').at(-1) as string) as PhaseSamples
}

function runPhase(suiteName: string, size: number, phase: Phase): Promise<PhaseSamples> {
  if (ISOLATE) return Promise.resolve(isolatedPhase(suiteName, size, phase))
  const suite = ALL_SUITES[suiteName]
  return phase === 'encapsulate' ? encapsulationPhase(suite, size) : decapsulationPhase(suite, size)
}

/** The first and third quartiles of `values`. */
function quartiles(values: number[]): [number, number] {
  const sorted = [...values].sort((a, b) => a - b)
  const at = (q: number): number => sorted[Math.round(q * (sorted.length - 1))]
  return [at(0.25), at(0.75)]
}

/**
 * One core: each phase (suite, size, direction) in a fresh process of its own (unless
 * ESP_BENCH_ISOLATE=0), measuring bare and engine in the same rounds; the ratio is the median of
 * the per-round ratios, reported with their quartiles and beside the ratio of the medians.
 */
async function singleCore(suiteName: string): Promise<Row[]> {
  const rows: Row[] = []
  for (const size of SIZES) {
    const enc = await runPhase(suiteName, size, 'encapsulate')
    const dec = await runPhase(suiteName, size, 'decapsulate')
    rows.push({
      suite: ALL_SUITES[suiteName].name,
      size,
      bareEncrypt: median(enc.bare),
      encapsulate: median(enc.engine),
      encapsulateRatio: median(enc.ratio),
      encapsulateRatioQuartiles: quartiles(enc.ratio),
      encapsulateRatioOfMedians: median(enc.engine) / median(enc.bare),
      bareDecrypt: median(dec.bare),
      decapsulate: median(dec.engine),
      decapsulateRatio: median(dec.ratio),
      decapsulateRatioQuartiles: quartiles(dec.ratio),
      decapsulateRatioOfMedians: median(dec.engine) / median(dec.bare),
      encapsulateCpuRatio: median(enc.cpuRatio),
      decapsulateCpuRatio: median(dec.cpuRatio),
      encapsulateCpuUs: median(enc.cpuUs),
      decapsulateCpuUs: median(dec.cpuUs),
      ...(enc.kept !== undefined && enc.keptRatio !== undefined
        ? { bareKeptEncrypt: median(enc.kept), encapsulateVsKeptRatio: median(enc.keptRatio) }
        : {})
    })
  }
  return rows
}

interface WorkerRow {
  size: number
  workers: number
  encapsulate: number
  decapsulate: number
  /** Process CPU time (all threads) per packet, in microseconds. */
  encapsulateCpuUs: number
  decapsulateCpuUs: number
  /** Encapsulation CPU time per packet by thread kind (all rounds), in microseconds. */
  encapsulateSplitUs: ThreadSplit
}

interface Scaling {
  /** 2 workers / 1 worker. */
  encapsulate: number
  decapsulate: number
  /** 2 workers / no workers (inline on the calling thread). */
  encapsulateVsInline: number
  decapsulateVsInline: number
  /** Bare AES-256-GCM in 2 threads / 1 thread, measured in the same rounds. */
  bareCeiling: number
}

/**
 * Keeps `inFlight` calls of `call` outstanding, starting a new one as each finishes, for about
 * SLICE_MS (or until `limit` calls); returns how many finished. A steady stream, as a data plane
 * would feed the engine.
 */
async function pipeline(
  inFlight: number,
  call: (n: number) => Promise<void>,
  limit = Infinity
): Promise<number> {
  const end = performance.now() + SLICE_MS
  let started = 0
  let finished = 0
  await new Promise<void>((resolve, reject) => {
    let active = 0
    const launch = (): void => {
      while (
        active < inFlight &&
        started < limit &&
        (limit !== Infinity || performance.now() < end)
      ) {
        active++
        call(started++).then(() => {
          active--
          finished++
          launch()
        }, reject)
      }
      if (active === 0) resolve()
    }
    launch()
  })
  return finished
}

async function encapsulateBatches(
  engine: SoftwareEspEngine,
  batch: Uint8Array[],
  inFlight: number
): Promise<number> {
  const start = performance.now()
  const cpuStart = cpuMs()
  const batches = await pipeline(inFlight, async () => {
    const results = await engine.protectBatch(batch)
    if (results[0].action !== 'protect') throw new Error('not protected')
  })
  lastCpuRate = ((batches * BATCH) / (cpuMs() - cpuStart)) * 1000
  return ((batches * BATCH) / (performance.now() - start)) * 1000
}

async function decapsulateBatches(
  engine: SoftwareEspEngine,
  batch: Uint8Array[],
  inFlight: number,
  expected: number
): Promise<number> {
  // about one slice's worth of fresh batches
  const count = Math.ceil((expected * (SLICE_MS / 1000)) / BATCH)
  const fresh: Uint8Array[][] = []
  for (let b = 0; b < count; b++) {
    const results = await engine.protectBatch(batch)
    fresh.push(results.map((r) => (r.action === 'protect' ? r.packet : new Uint8Array(0))))
  }
  const start = performance.now()
  const cpuStart = cpuMs()
  await pipeline(
    inFlight,
    async (n) => {
      const results = await engine.unprotectBatch(fresh[n])
      if (results[0].action !== 'accept') throw new Error('not accepted')
    },
    fresh.length
  )
  lastCpuRate = ((fresh.length * BATCH) / (cpuMs() - cpuStart)) * 1000
  return ((fresh.length * BATCH) / (performance.now() - start)) * 1000
}

/**
 * Worker-thread mode: the same batches through engines with no workers (inline), 1 and 2 workers,
 * measured back to back in rotating order each round; scales are medians of per-round ratios.
 */
async function workerMode(): Promise<{ rows: WorkerRow[]; scaling: Record<string, Scaling> }> {
  const rows: WorkerRow[] = []
  const scaling: Record<string, Scaling> = {}
  const counts = [0, 1, 2]
  for (const size of SIZES) {
    const packet = innerPacket(size)
    const batch = Array.from({ length: BATCH }, () => packet)
    const engines: SoftwareEspEngine[] = []
    for (const workers of counts) engines.push((await makeEngine(workers)).engine)
    // warm up: worker start-up and JIT are not part of the rate
    for (const engine of engines) for (let w = 0; w < 20; w++) await engine.protectBatch(batch)
    const enc: number[][] = counts.map(() => [])
    const dec: number[][] = counts.map(() => [])
    const encCpu: number[][] = counts.map(() => [])
    const decCpu: number[][] = counts.map(() => [])
    const splits: ThreadSplit[] = counts.map(() => ({ main: 0, workers: 0, helpers: 0 }))
    const encPackets: number[] = counts.map(() => 0)
    const scale = {
      ceiling: [] as number[],
      encVsOne: [] as number[],
      decVsOne: [] as number[],
      encVsInline: [] as number[],
      decVsInline: [] as number[]
    }
    for (let round = 0; round < ROUNDS; round++) {
      const order = counts.map((_, i) => (i + round) % counts.length)
      const inFlight = (i: number): number => Math.max(1, counts[i]) + 1
      for (const i of order) {
        const before = threadCpuMs()
        const started = performance.now()
        enc[i].push(await encapsulateBatches(engines[i], batch, inFlight(i)))
        encCpu[i].push(1e6 / lastCpuRate)
        const split = splitSince(before)
        splits[i].main += split.main
        splits[i].workers += split.workers
        splits[i].helpers += split.helpers
        encPackets[i] += ((enc[i].at(-1) as number) * (performance.now() - started)) / 1000
      }
      // the machine's own 2-thread ceiling, under the same load as this round
      const one = await bareThreads(1, size)
      scale.ceiling.push((await bareThreads(2, size)) / one)
      for (const i of order) {
        dec[i].push(
          await decapsulateBatches(engines[i], batch, inFlight(i), enc[i].at(-1) as number)
        )
        decCpu[i].push(1e6 / lastCpuRate)
      }
      const last = (xs: number[][], i: number): number => xs[i].at(-1) as number
      scale.encVsOne.push(last(enc, 2) / last(enc, 1))
      scale.decVsOne.push(last(dec, 2) / last(dec, 1))
      scale.encVsInline.push(last(enc, 2) / last(enc, 0))
      scale.decVsInline.push(last(dec, 2) / last(dec, 0))
    }
    for (const engine of engines) await engine.stop()
    counts.forEach((workers, i) => {
      rows.push({
        size,
        workers,
        encapsulate: median(enc[i]),
        decapsulate: median(dec[i]),
        encapsulateCpuUs: median(encCpu[i]),
        decapsulateCpuUs: median(decCpu[i]),
        encapsulateSplitUs: {
          main: (splits[i].main * 1000) / encPackets[i],
          workers: (splits[i].workers * 1000) / encPackets[i],
          helpers: (splits[i].helpers * 1000) / encPackets[i]
        }
      })
    })
    scaling[size] = {
      encapsulate: median(scale.encVsOne),
      decapsulate: median(scale.decVsOne),
      encapsulateVsInline: median(scale.encVsInline),
      decapsulateVsInline: median(scale.decVsInline),
      bareCeiling: median(scale.ceiling)
    }
  }
  return { rows, scaling }
}

/** Bare AES-256-GCM in `threads` worker threads at once, for the machine's own scaling ceiling. */
async function bareThreads(threads: number, size: number): Promise<number> {
  const code = `
    const { createCipheriv } = require('node:crypto')
    const { parentPort } = require('node:worker_threads')
    const key = Buffer.alloc(32, 7), nonce = Buffer.alloc(12, 9), aad = Buffer.alloc(8, 1)
    const plaintext = Buffer.alloc(${size}, 0xab)
    const step = () => {
      const c = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: 16 })
      c.setAAD(aad); c.update(plaintext); c.final(); c.getAuthTag()
    }
    for (let i = 0; i < 20000; i++) step()
    const start = performance.now()
    let n = 0
    while (performance.now() - start < ${SLICE_MS * 2}) { for (let i = 0; i < 64; i++) step(); n += 64 }
    parentPort.postMessage((n / (performance.now() - start)) * 1000)`
  const rates = await Promise.all(
    Array.from(
      { length: threads },
      () =>
        new Promise<number>((resolve, reject) => {
          const worker = new Worker(code, { eval: true })
          worker.once('message', (rate: number) => {
            resolve(rate)
            void worker.terminate()
          })
          worker.once('error', reject)
        })
    )
  )
  return rates.reduce((a, b) => a + b, 0)
}

/** Nanoseconds per AES-CBC IV from each source, median of ROUNDS slices. */
interface IvCost {
  /** crypto.randomBytes(16) per packet. */
  randomBytes: number
  /** crypto.randomFillSync into a 4 KB pool, 16 bytes taken per packet. */
  randomPool: number
  /** One 16-byte update of a kept AES-128-ECB cipher per packet. */
  encryptedCounter: number
  /** The engine's way: the same, CBC_IV_BATCH counters per update. */
  encryptedCounterBatch: number
}

function ivCost(): IvCost {
  // each source leaves the IV in one 16-byte buffer, as the engine's sealer does
  const iv = Buffer.alloc(16)
  const take = (from: Buffer, at: number): Buffer => {
    for (let i = 0; i < 16; i++) iv[i] = from[at + i]
    return iv
  }
  const pool = Buffer.alloc(4096)
  let used = pool.length
  const fromPool = (): Buffer => {
    if (used === pool.length) {
      randomFillSync(pool)
      used = 0
    }
    used += 16
    return take(pool, used - 16)
  }
  const ecb = createCipheriv('aes-128-ecb', randomBytes(16), null).setAutoPadding(false)
  const block = Buffer.alloc(16)
  let counter = 0
  const fromCounter = (): Buffer => {
    block.writeUInt32BE(++counter >>> 0, 4)
    return take(ecb.update(block), 0)
  }
  // the engine's: a kept AES-128-ECB cipher over CBC_IV_BATCH counter blocks per update
  const blocks = Buffer.alloc(CBC_IV_BATCH * 16)
  let batch: Buffer = Buffer.alloc(0)
  let taken = CBC_IV_BATCH
  const fromBatch = (): Buffer => {
    if (taken === CBC_IV_BATCH) {
      for (let i = 0; i < CBC_IV_BATCH; i++) blocks.writeUInt32BE(++counter >>> 0, i * 16 + 4)
      batch = ecb.update(blocks)
      taken = 0
    }
    return take(batch, taken++ * 16)
  }
  const ns = (step: () => void): number => 1e9 / rate(1, step)
  const samples = {
    randomBytes: [] as number[],
    randomPool: [] as number[],
    encryptedCounter: [] as number[],
    encryptedCounterBatch: [] as number[]
  }
  for (let round = 0; round < ROUNDS; round++) {
    samples.randomBytes.push(ns(() => take(randomBytes(16), 0)))
    samples.randomPool.push(ns(fromPool))
    samples.encryptedCounter.push(ns(fromCounter))
    samples.encryptedCounterBatch.push(ns(fromBatch))
  }
  return {
    randomBytes: median(samples.randomBytes),
    randomPool: median(samples.randomPool),
    encryptedCounter: median(samples.encryptedCounter),
    encryptedCounterBatch: median(samples.encryptedCounterBatch)
  }
}

const k = (n: number): string => `${(n / 1000).toFixed(1)}k`

async function main(): Promise<void> {
  const single: Row[] = []
  if (ONLY !== 'workers') for (const suite of SUITES) single.push(...(await singleCore(suite)))
  if (single.length > 0) {
    console.log(
      `\nESP on one core (median of ${ROUNDS} paired slices of ${SLICE_MS} ms, packets/s; ` +
        (ISOLATE ? 'each phase in a fresh process)' : 'all phases in one process)')
    )
    console.log(
      'transform                         size  bare-enc  encap   ratio  q1-q3      (med)  (cpu)  bare-dec  decap   ratio  q1-q3      (med)  (cpu)'
    )
    const q = (x: [number, number]): string => `${x[0].toFixed(2)}-${x[1].toFixed(2)}`
    for (const r of single) {
      console.log(
        `${r.suite.padEnd(32)}  ${String(r.size).padStart(4)}  ${k(r.bareEncrypt).padStart(8)}  ${k(r.encapsulate).padStart(6)}  ${r.encapsulateRatio.toFixed(2).padStart(5)}  ${q(r.encapsulateRatioQuartiles)}  ${r.encapsulateRatioOfMedians.toFixed(2).padStart(5)}  ${r.encapsulateCpuRatio.toFixed(2).padStart(5)}  ${k(r.bareDecrypt).padStart(8)}  ${k(r.decapsulate).padStart(6)}  ${r.decapsulateRatio.toFixed(2).padStart(5)}  ${q(r.decapsulateRatioQuartiles)}  ${r.decapsulateRatioOfMedians.toFixed(2).padStart(5)}  ${r.decapsulateCpuRatio.toFixed(2).padStart(5)}`
      )
    }
    console.log(
      'ratio: engine / bare, median of per-round wall-clock ratios; q1-q3: their quartiles;\n' +
        '(med): median engine rate / median bare rate; (cpu): the ratio per CPU-second;\n' +
        `encapsulation rounds interleave bare and engine in chunks of ${CHUNK} packets;\n` +
        'bare: createCipheriv (+ createHmac for AES-CBC) per packet on the padded ESP plaintext'
    )
    const kept = single.filter((r) => r.bareKeptEncrypt !== undefined)
    if (kept.length > 0) {
      console.log(
        '\nAES-CBC beside a kept cipher (for information: the engine keeps one CBC cipher per SA)'
      )
      console.log('transform                         size  kept-enc  ratio')
      for (const r of kept) {
        console.log(
          `${r.suite.padEnd(32)}  ${String(r.size).padStart(4)}  ${k(r.bareKeptEncrypt as number).padStart(8)}  ${(r.encapsulateVsKeptRatio as number).toFixed(2).padStart(5)}`
        )
      }
      console.log(
        'kept-enc: one kept createCipheriv for all packets (IV block and plaintext in one update)\n' +
          'plus a createHmac per packet, paired with the engine in separate slices of each round'
      )
    }
  }
  const iv = ONLY === 'workers' ? undefined : ivCost()
  if (iv !== undefined) {
    console.log('\nAES-CBC IV, ns per packet (median of slices)')
    console.log(`crypto.randomBytes(16) per packet   ${iv.randomBytes.toFixed(0).padStart(6)}`)
    console.log(`randomFillSync into a 4 KB pool     ${iv.randomPool.toFixed(0).padStart(6)}`)
    console.log(`counter encrypted (AES-128-ECB)     ${iv.encryptedCounter.toFixed(0).padStart(6)}`)
    console.log(
      `  the same, ${CBC_IV_BATCH} per update          ${iv.encryptedCounterBatch.toFixed(0).padStart(6)}  (the engine's)`
    )
  }
  const { rows: threaded, scaling } =
    ONLY === 'single' ? { rows: [], scaling: {} } : await workerMode()
  if (threaded.length > 0) {
    console.log(
      `\nWorker-thread mode (batches of ${BATCH}, ${availableParallelism()} cores, packets/s)`
    )
    console.log(
      'size  workers  encap   cpu-us  decap   cpu-us   encap cpu-us by thread: main workers helpers'
    )
    const us = (n: number): string => n.toFixed(2).padStart(6)
    for (const r of threaded) {
      const t = r.encapsulateSplitUs
      console.log(
        `${String(r.size).padStart(4)}  ${(r.workers === 0 ? 'inline' : String(r.workers)).padStart(7)}  ${k(r.encapsulate).padStart(6)}  ${us(r.encapsulateCpuUs)}  ${k(r.decapsulate).padStart(6)}  ${us(r.decapsulateCpuUs)}  ${us(t.main).padStart(29)} ${us(t.workers).padStart(7)} ${us(t.helpers).padStart(7)}`
      )
    }
    console.log(
      'size  2 workers vs inline: encap  decap   2 workers vs 1: encap  decap   bare 2 threads vs 1'
    )
    for (const size of SIZES) {
      const x = scaling[size]
      console.log(
        `${String(size).padStart(4)}  ${x.encapsulateVsInline.toFixed(2).padStart(27)}  ${x.decapsulateVsInline.toFixed(2).padStart(5)}  ${x.encapsulate.toFixed(2).padStart(21)}  ${x.decapsulate.toFixed(2).padStart(5)}  ${x.bareCeiling.toFixed(2).padStart(19)}`
      )
    }
    console.log(
      'paired per round, medians; cpu-us: process CPU time (all threads) per packet; by thread:\n' +
        "helpers are the threads started before any worker (V8's concurrent GC); bare 2 threads vs 1:\n" +
        'the ceiling, bare AES-256-GCM (one createCipheriv per packet) measured in each round'
    )
  }
  console.log(
    JSON.stringify({
      bench: 'esp',
      node: process.version,
      cores: availableParallelism(),
      rounds: ROUNDS,
      sliceMs: SLICE_MS,
      singleCore: single,
      encapsulateRatio1400: Object.fromEntries(
        single.filter((r) => r.size === 1400).map((r) => [r.suite, r.encapsulateRatio])
      ),
      goal1400: 0.8,
      cbcIvNs: iv,
      workers: threaded,
      scaling2Workers: scaling
    })
  )
}

if (CHILD !== undefined) {
  // one isolated phase: its samples as the last line of stdout
  const { suite, size, phase } = JSON.parse(CHILD) as { suite: string; size: number; phase: Phase }
  const samples =
    phase === 'encapsulate'
      ? await encapsulationPhase(ALL_SUITES[suite], size)
      : await decapsulationPhase(ALL_SUITES[suite], size)
  console.log(JSON.stringify(samples))
} else {
  await main()
}
