/**
 * The worker-thread side of {@link CryptoWorkerPool}: a pure ESP transform that seals and opens
 * batches of packets with the keys the main thread installs. Sequence numbers (and so IVs) are
 * always chosen by the main thread; a worker never picks one.
 *
 * @module
 */
import { parentPort } from 'node:worker_threads'
import { espKey, espPacketLength, openRaw, sealInto, type EspKey } from './esp-crypto.js'
import type { WorkerRequest } from './crypto-worker-pool.js'

interface WorkerSa {
  gmac: boolean
  key: EspKey
  spi: number
  esn: boolean
}

const sas = new Map<number, WorkerSa>()
const iv = Buffer.alloc(8)

function seal(input: ArrayBuffer, count: number): ArrayBuffer {
  const header = new Uint32Array(input, 0, count * 5)
  const data = new Uint8Array(input)
  // one output buffer, sized up front; each packet is sealed in place
  let total = 0
  for (let i = 0; i < count; i++) {
    if (sas.has(header[i * 5])) total += espPacketLength(header[i * 5 + 4])
  }
  const out = Buffer.allocUnsafeSlow(count * 2 * 4 + total)
  const index = new Uint32Array(out.buffer, out.byteOffset, count * 2)
  let offset = count * 5 * 4
  let at = count * 2 * 4
  for (let i = 0; i < count; i++) {
    const sa = sas.get(header[i * 5])
    const high = header[i * 5 + 1]
    const low = header[i * 5 + 2]
    const nextHeader = header[i * 5 + 3]
    const length = header[i * 5 + 4]
    const payload = data.subarray(offset, offset + length)
    offset += length
    index[i * 2] = at
    if (sa == null) {
      index[i * 2 + 1] = 0
      continue
    }
    iv.writeUInt32BE(high, 0)
    iv.writeUInt32BE(low, 4)
    const size = sealInto(
      out,
      at,
      sa.gmac,
      sa.key,
      sa.spi,
      high,
      low,
      sa.esn,
      iv,
      payload,
      nextHeader
    )
    index[i * 2 + 1] = size
    at += size
  }
  return out.buffer as ArrayBuffer
}

function open(input: ArrayBuffer, count: number): ArrayBuffer {
  const header = new Uint32Array(input, 0, count * 3)
  const data = new Uint8Array(input)
  const payloads: (Uint8Array | undefined)[] = []
  const status = new Uint32Array(count * 4)
  let offset = count * 3 * 4
  let total = 0
  for (let i = 0; i < count; i++) {
    const sa = sas.get(header[i * 3])
    const high = header[i * 3 + 1]
    const length = header[i * 3 + 2]
    const packet = data.subarray(offset, offset + length)
    offset += length
    if (sa == null) {
      status[i * 4] = 2
      payloads.push(undefined)
      continue
    }
    const opened = openRaw(sa.gmac, sa.key, sa.esn, high, packet)
    if (!opened.ok) {
      status[i * 4] = opened.reason === 'icv-failure' ? 1 : 2
      payloads.push(undefined)
      continue
    }
    status[i * 4 + 3] = opened.nextHeader
    payloads.push(opened.payload)
    total += opened.payload.length
  }
  const out = new ArrayBuffer(count * 4 * 4 + total)
  const index = new Uint32Array(out, 0, count * 4)
  index.set(status)
  const bytes = new Uint8Array(out)
  let at = count * 4 * 4
  for (let i = 0; i < count; i++) {
    const payload = payloads[i]
    if (payload == null) continue
    index[i * 4 + 1] = at
    index[i * 4 + 2] = payload.length
    bytes.set(payload, at)
    at += payload.length
  }
  return out
}

parentPort?.on('message', (message: WorkerRequest) => {
  switch (message.op) {
    case 'add':
      sas.set(message.id, {
        gmac: message.gmac,
        key: espKey(message.keyMaterial),
        spi: message.spi,
        esn: message.esn
      })
      break
    case 'remove':
      sas.delete(message.id)
      break
    case 'seal': {
      const buffer = seal(message.buffer, message.count)
      // the input goes back too, for the main thread to reuse
      const input = message.buffer
      parentPort?.postMessage({ job: message.job, buffer, input }, [buffer, input])
      break
    }
    case 'open': {
      const buffer = open(message.buffer, message.count)
      const input = message.buffer
      parentPort?.postMessage({ job: message.job, buffer, input }, [buffer, input])
      break
    }
  }
})
