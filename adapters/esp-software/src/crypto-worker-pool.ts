import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { Worker } from 'node:worker_threads'
import type { EspAlgorithm, EspIntegrityAlgorithm } from '@vipsec/interface'
import {
  ESP_HEADER_LENGTH,
  copyPacket,
  espPacketLength,
  espTransformKey,
  type EspShape
} from './esp-crypto.js'

/** What a worker needs to know of an SA's transform and keys. */
export interface WorkerSaKeys {
  /** The encryption transform. */
  algorithm: EspAlgorithm
  /** The integrity transform (AES-CBC). */
  integrity?: EspIntegrityAlgorithm
  /** The keying material. */
  keyMaterial: Uint8Array
  /** AES-CBC, outbound: the local key of the IV generator, the same as the sealer's. */
  ivKey?: Uint8Array
  /** AEAD, outbound: the sealer's `ivMask` (default 0). */
  ivMask?: number
}

/** @internal a message to a crypto worker */
export type WorkerRequest =
  | { op: 'add'; id: number; keys: WorkerSaKeys; spi: number; esn: boolean }
  | { op: 'remove'; id: number }
  | { op: 'seal' | 'open'; job: number; buffer: ArrayBuffer; count: number }

/** One packet to seal: the SA's pool id, its reserved sequence number, payload and next header. */
export interface SealJob {
  /** The SA's id in the pool. */
  sa: number
  /** High half of the sequence number (and of the IV). */
  high: number
  /** Low half. */
  low: number
  /** The payload. */
  payload: Uint8Array
  /** Next header. */
  nextHeader: number
}

/** One packet to open. */
export interface OpenJob {
  /** The SA's id in the pool. */
  sa: number
  /** The inferred high half of the sequence number. */
  high: number
  /** The ESP packet. */
  packet: Uint8Array
}

/** What a worker made of one packet to open. */
export type OpenOutcome =
  | { ok: true; payload: Uint8Array; nextHeader: number }
  | { ok: false; reason: 'icv-failure' | 'malformed' | 'bad-padding' }

interface Pending {
  resolve: (buffer: ArrayBuffer) => void
  reject: (err: Error) => void
}

/** Input buffers kept for reuse (they come back from the workers with each reply). */
const MAX_SPARE_BUFFERS = 32
/** Input buffers are at least this large, so that one fits most batches. */
const MIN_INPUT_BUFFER = 256 * 1024

/**
 * Starts a crypto worker. Built code runs `crypto-worker.js`; the TypeScript sources (tests and
 * benchmarks run them through tsx) need the tsx loader registered inside the worker first, as
 * loader hooks do not pass to worker threads on Node 20.
 */
function spawnWorker(): Worker {
  if (!import.meta.url.endsWith('.ts'))
    return new Worker(new URL('./crypto-worker.js', import.meta.url))
  const script = new URL('./crypto-worker.ts', import.meta.url).href
  // tsx's ESM API (its `./esm/api` export), registered inside the worker
  const packageJson = createRequire(import.meta.url).resolve('tsx/package.json')
  const tsx = pathToFileURL(join(dirname(packageJson), 'dist/esm/api/index.mjs')).href
  const code =
    `import(${JSON.stringify(tsx)}).then((api) => { api.register(); ` +
    `return import(${JSON.stringify(script)}) })`
  const execArgv = process.execArgv.filter((a) => !a.startsWith('--import'))
  return new Worker(code, { eval: true, execArgv })
}

const GCM_SHAPE: EspShape = { ivLength: 8, icvLength: 16, blockSize: 4 }

/** Chunks smaller than this are not split further across workers. */
const MIN_CHUNK = 32

/**
 * A pool of worker threads that run the ESP transforms (AES-GCM/GMAC, ChaCha20-Poly1305, AES-CBC with HMAC) for the main thread, so
 * that one engine's crypto spreads over several cores. The main thread keeps the SAD, SPD,
 * replay windows and sequence counters; workers get keys and (SA, sequence number, payload)
 * triples, in batches, and hand back the packets.
 */
export class CryptoWorkerPool {
  private readonly workers: Worker[] = []
  private readonly pending = new Map<number, Pending>()
  private readonly spare: ArrayBuffer[] = []
  private readonly shapes = new Map<number, EspShape>()
  private nextJob = 1
  private turn = 0
  private failure: Error | undefined

  /** @param size - the number of worker threads */
  constructor(size: number) {
    for (let i = 0; i < size; i++) {
      const worker = spawnWorker()
      worker.on('message', (reply: { job: number; buffer: ArrayBuffer; input?: ArrayBuffer }) => {
        if (reply.input !== undefined) this.recycle(reply.input)
        const pending = this.pending.get(reply.job)
        if (pending == null) return
        this.pending.delete(reply.job)
        pending.resolve(reply.buffer)
      })
      worker.on('error', (err) => this.fail(err))
      this.workers.push(worker)
    }
  }

  private fail(err: Error): void {
    this.failure = err
    for (const pending of this.pending.values()) pending.reject(err)
    this.pending.clear()
  }

  /** The number of workers. */
  get size(): number {
    return this.workers.length
  }

  /**
   * Gives every worker an SA's keys.
   *
   * @param id - the SA's id in the pool
   * @param keys - transforms and keying material
   * @param spi - the SPI
   * @param esn - extended sequence numbers
   */
  addSa(id: number, keys: WorkerSaKeys, spi: number, esn: boolean): void {
    const { ivLength, icvLength, blockSize } = espTransformKey(
      keys.algorithm,
      keys.integrity,
      keys.keyMaterial
    )
    this.shapes.set(id, { ivLength, icvLength, blockSize })
    for (const worker of this.workers) {
      worker.postMessage({ op: 'add', id, keys, spi, esn } satisfies WorkerRequest)
    }
  }

  /**
   * Makes every worker forget an SA (after the jobs already sent to it).
   *
   * @param id - the SA's id in the pool
   */
  removeSa(id: number): void {
    this.shapes.delete(id)
    for (const worker of this.workers) {
      worker.postMessage({ op: 'remove', id } satisfies WorkerRequest)
    }
  }

  private run(op: 'seal' | 'open', buffer: ArrayBuffer, count: number): Promise<ArrayBuffer> {
    if (this.failure != null) return Promise.reject(this.failure)
    const job = this.nextJob++
    const worker = this.workers[this.turn++ % this.workers.length]
    return new Promise<ArrayBuffer>((resolve, reject) => {
      this.pending.set(job, { resolve, reject })
      worker.postMessage({ op, job, buffer, count } satisfies WorkerRequest, [buffer])
    })
  }

  private recycle(buffer: ArrayBuffer): void {
    if (this.spare.length < MAX_SPARE_BUFFERS) this.spare.push(buffer)
  }

  /** An input buffer of at least `size` bytes, reused when one is spare. */
  private inputBuffer(size: number): ArrayBuffer {
    for (let i = this.spare.length - 1; i >= 0; i--) {
      if (this.spare[i].byteLength >= size) {
        const buffer = this.spare[i]
        this.spare[i] = this.spare[this.spare.length - 1]
        this.spare.pop()
        return buffer
      }
    }
    return Buffer.allocUnsafeSlow(Math.max(size, MIN_INPUT_BUFFER)).buffer as ArrayBuffer
  }

  private chunks<T>(jobs: T[]): T[][] {
    const parts = Math.max(1, Math.min(this.workers.length, Math.floor(jobs.length / MIN_CHUNK)))
    const size = Math.ceil(jobs.length / parts)
    const out: T[][] = []
    for (let i = 0; i < jobs.length; i += size) out.push(jobs.slice(i, i + size))
    return out
  }

  /**
   * Seals packets on the workers; resolves with the ESP packets in order (empty for an SA the
   * workers did not know).
   *
   * @param jobs - what to seal
   */
  async seal(jobs: SealJob[]): Promise<Uint8Array[]> {
    const parts = await Promise.all(
      this.chunks(jobs).map(async (chunk) => {
        // each packet gets a slot the size of its ESP packet, the payload after header and IV:
        // the worker seals in place and the buffer comes back for reuse
        const slots = chunk.map((j) =>
          espPacketLength(j.payload.length, this.shapes.get(j.sa) ?? GCM_SHAPE)
        )
        let bytes = chunk.length * 24
        for (const slot of slots) bytes += slot
        const buffer = this.inputBuffer(bytes)
        const header = new Uint32Array(buffer, 0, chunk.length * 6)
        const data = new Uint8Array(buffer)
        let at = chunk.length * 24
        for (let i = 0; i < chunk.length; i++) {
          const j = chunk[i]
          const h = i * 6
          header[h] = j.sa
          header[h + 1] = j.high
          header[h + 2] = j.low
          header[h + 3] = j.nextHeader
          header[h + 4] = j.payload.length
          header[h + 5] = slots[i]
          const ivLength = this.shapes.get(j.sa)?.ivLength ?? GCM_SHAPE.ivLength
          data.set(j.payload, at + ESP_HEADER_LENGTH + ivLength)
          at += slots[i]
        }
        const out = await this.run('seal', buffer, chunk.length)
        const sealed = new Uint32Array(out, 0, chunk.length * 6)
        const bytesOut = new Uint8Array(out)
        const packets: Uint8Array[] = new Array(chunk.length)
        at = chunk.length * 24
        for (let i = 0; i < chunk.length; i++) {
          // the packets are copied out of the buffer into packet-sized views, as inline
          packets[i] = copyPacket(bytesOut, at, sealed[i * 6 + 4])
          at += slots[i]
        }
        this.recycle(out)
        return packets
      })
    )
    return parts.length === 1 ? parts[0] : parts.flat()
  }

  /**
   * Verifies and decrypts packets on the workers; resolves with the outcomes in order.
   *
   * @param jobs - what to open
   */
  async open(jobs: OpenJob[]): Promise<OpenOutcome[]> {
    const parts = await Promise.all(
      this.chunks(jobs).map(async (chunk) => {
        let bytes = 0
        for (const j of chunk) bytes += j.packet.length
        const buffer = this.inputBuffer(chunk.length * 12 + bytes)
        const header = new Uint32Array(buffer, 0, chunk.length * 3)
        const data = new Uint8Array(buffer)
        let at = chunk.length * 12
        for (let i = 0; i < chunk.length; i++) {
          const j = chunk[i]
          header[i * 3] = j.sa
          header[i * 3 + 1] = j.high
          header[i * 3 + 2] = j.packet.length
          data.set(j.packet, at)
          at += j.packet.length
        }
        const out = await this.run('open', buffer, chunk.length)
        const index = new Uint32Array(out, 0, chunk.length * 4)
        return chunk.map((_, i): OpenOutcome => {
          const status = index[i * 4]
          if (status === 1) return { ok: false, reason: 'icv-failure' }
          if (status === 3) return { ok: false, reason: 'bad-padding' }
          if (status !== 0) return { ok: false, reason: 'malformed' }
          return {
            ok: true,
            payload: new Uint8Array(out, index[i * 4 + 1], index[i * 4 + 2]),
            nextHeader: index[i * 4 + 3]
          }
        })
      })
    )
    return parts.flat()
  }

  /** Terminates the workers; pending jobs reject. */
  async close(): Promise<void> {
    this.fail(new Error('the crypto worker pool was closed'))
    await Promise.all(this.workers.map((w) => w.terminate()))
    this.workers.length = 0
  }
}
