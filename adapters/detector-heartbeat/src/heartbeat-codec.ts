import { createHmac, timingSafeEqual } from 'node:crypto'

const MAGIC = [0x56, 0x48, 0x42, 0x31] // "VHB1"
const TAG_LENGTH = 16

/** A decoded heartbeat. */
export interface Heartbeat {
  /** The sending node. */
  node: string
  /** Identifies one run of the sender (its start time): a restarted node has a higher one. */
  incarnation: number
  /** Its sequence number within the incarnation, increasing by one per heartbeat. */
  sequence: number
}

function tag(key: Uint8Array, data: Uint8Array): Uint8Array {
  return createHmac('sha256', key).update(data).digest().subarray(0, TAG_LENGTH)
}

/**
 * Encodes a heartbeat: `VHB1`, node id length and bytes, 8-byte incarnation, 8-byte sequence;
 * with a key, an
 * HMAC-SHA-256-128 tag follows.
 *
 * @param heartbeat - what to send
 * @param key - the cluster key, if heartbeats are authenticated
 */
export function encodeHeartbeat(heartbeat: Heartbeat, key?: Uint8Array): Uint8Array {
  const id = new TextEncoder().encode(heartbeat.node)
  const body = new Uint8Array(4 + 1 + id.length + 16)
  body.set(MAGIC)
  body[4] = id.length
  body.set(id, 5)
  const view = new DataView(body.buffer)
  view.setBigUint64(5 + id.length, BigInt(heartbeat.incarnation))
  view.setBigUint64(13 + id.length, BigInt(heartbeat.sequence))
  if (key === undefined) return body
  const out = new Uint8Array(body.length + TAG_LENGTH)
  out.set(body)
  out.set(tag(key, body), body.length)
  return out
}

/**
 * Decodes a heartbeat; never throws.
 *
 * @param data - the datagram payload
 * @param key - the cluster key, if heartbeats are authenticated
 * @returns the heartbeat, or undefined when it is malformed or its tag does not verify
 */
export function decodeHeartbeat(data: Uint8Array, key?: Uint8Array): Heartbeat | undefined {
  let body = data
  if (key !== undefined) {
    if (data.length < TAG_LENGTH) return undefined
    body = data.subarray(0, data.length - TAG_LENGTH)
    if (!timingSafeEqual(tag(key, body), data.subarray(body.length))) return undefined
  }
  if (body.length < 5 || MAGIC.some((b, i) => body[i] !== b)) return undefined
  const idLength = body[4]!
  if (body.length !== 5 + idLength + 16 || idLength === 0) return undefined
  try {
    const node = new TextDecoder('utf-8', { fatal: true }).decode(body.subarray(5, 5 + idLength))
    const view = new DataView(body.buffer, body.byteOffset + 5 + idLength, 16)
    const incarnation = view.getBigUint64(0)
    const sequence = view.getBigUint64(8)
    const max = BigInt(Number.MAX_SAFE_INTEGER)
    if (sequence > max || incarnation > max) return undefined
    return { node, incarnation: Number(incarnation), sequence: Number(sequence) }
  } catch {
    return undefined
  }
}
