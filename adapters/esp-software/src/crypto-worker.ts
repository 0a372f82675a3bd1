/**
 * The worker-thread side of {@link CryptoWorkerPool}: a pure ESP transform that seals and opens
 * batches of packets with the keys the main thread installs. Sequence numbers (and so IVs) are
 * always chosen by the main thread; a worker never picks one (an AES-CBC IV is made from the
 * sequence number with the same local IV key as the main thread's sealer).
 *
 * @module
 */
import { parentPort } from 'node:worker_threads'
import { ESP_HEADER_LENGTH, espTransformKey, openRaw, sealInto, type EspKey } from './esp-crypto.js'
import type { WorkerRequest } from './crypto-worker-pool.js'

interface WorkerSa {
  gmac: boolean
  key: EspKey
  spi: number
  esn: boolean
  /** What the high half of each explicit IV is XORed with (see `EspSealer.ivMask`). */
  ivMask: number
}

const sas = new Map<number, WorkerSa>()
const iv = Buffer.alloc(8)

/**
 * Seals a batch in place: each packet's slot in `input` holds its payload after header and IV and
 * room for the whole ESP packet, and ends up holding the packet; the header's length field becomes
 * the packet's length (0 for an SA this worker does not know). Each packet's header is six words:
 * SA id, sequence high and low, next header, payload length, slot length.
 */
function seal(input: ArrayBuffer, count: number): void {
  const header = new Uint32Array(input, 0, count * 6)
  const data = new Uint8Array(input)
  let at = count * 6 * 4
  for (let i = 0; i < count; i++) {
    const h = i * 6
    const length = header[h + 4]
    const slot = header[h + 5]
    const sa = sas.get(header[h])
    if (sa == null) {
      header[h + 4] = 0
    } else {
      const high = header[h + 1]
      const low = header[h + 2]
      iv.writeUInt32BE((high ^ sa.ivMask) >>> 0, 0)
      iv.writeUInt32BE(low, 4)
      const start = at + ESP_HEADER_LENGTH + sa.key.ivLength
      const payload = data.subarray(start, start + length)
      header[h + 4] = sealInto(
        data,
        at,
        sa.gmac,
        sa.key,
        sa.spi,
        high,
        low,
        sa.esn,
        sa.key.transform === 'cbc' ? undefined : iv,
        payload,
        header[h + 3]
      )
    }
    at += slot
  }
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
      status[i * 4] = opened.reason === 'icv-failure' ? 1 : opened.reason === 'bad-padding' ? 3 : 2
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
        gmac: message.keys.algorithm === 'null-aes-gmac',
        key: espTransformKey(
          message.keys.algorithm,
          message.keys.integrity,
          message.keys.keyMaterial,
          'keyMaterial',
          message.keys.ivKey
        ),
        spi: message.spi,
        esn: message.esn,
        ivMask: message.keys.ivMask ?? 0
      })
      break
    case 'remove':
      sas.delete(message.id)
      break
    case 'seal': {
      // sealed in place: the buffer goes back with the packets in it
      seal(message.buffer, message.count)
      const buffer = message.buffer
      parentPort?.postMessage({ job: message.job, buffer }, [buffer])
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
