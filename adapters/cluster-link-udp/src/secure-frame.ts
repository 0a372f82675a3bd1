import { hkdfSync } from 'node:crypto'
import { aeadKey, type AeadKey } from '@vipsec/aead'
import { InvalidParametersError, SequenceExhaustedError } from '@vipsec/interface'
import { ByteSlab, writeU32 } from '@vipsec/wire'
import { checkClusterKeys, type ClusterKey } from './cluster-key.js'
import { ReplayWindow } from './replay-window.js'

/** Why a cluster frame (link frame or heartbeat) was dropped. */
export type ClusterFrameDropReason =
  /** Longer than the receiver's `maxFrameBytes`. */
  | 'oversized'
  /** Not a frame of this protocol and version, truncated, or its contents do not decode. */
  | 'malformed'
  /** From a node that is not a peer, or not from that peer's address and port. */
  | 'unknown-sender'
  /** Names a key id this node does not hold (or no key, to a node that has keys, and the reverse). */
  | 'unknown-key'
  /** Its tag did not verify: forged, corrupted, or made with another secret under the same id. */
  | 'unauthenticated'
  /** Its counter was already seen in the sender's current incarnation. */
  | 'replayed'
  /** Its counter is below the replay window: reordered by more than the window, or replayed. */
  | 'too-old'
  /** From an earlier incarnation (boot) of the sender than one already authenticated. */
  | 'stale-incarnation'

/** Every {@link ClusterFrameDropReason}, in a fixed order (for counters and metrics). */
export const CLUSTER_FRAME_DROP_REASONS: readonly ClusterFrameDropReason[] = [
  'oversized',
  'malformed',
  'unknown-sender',
  'unknown-key',
  'unauthenticated',
  'replayed',
  'too-old',
  'stale-incarnation'
]

/** A counter per {@link ClusterFrameDropReason}, all zero. */
export function emptyDropCounts(): Record<ClusterFrameDropReason, number> {
  return Object.fromEntries(CLUSTER_FRAME_DROP_REASONS.map((r) => [r, 0])) as Record<
    ClusterFrameDropReason,
    number
  >
}

/** Length of the fixed part of a frame header, before the sender id. */
const FIXED_HEADER = 25
/** Length of the AES-GCM tag. */
export const FRAME_TAG_BYTES = 16
const VERSION = 2
const FLAG_ENCRYPTED = 0x01
const MAX_COUNTER = Number.MAX_SAFE_INTEGER

/** The cleartext header of a frame, parsed. */
export interface FrameHeader {
  /** The sending node's id. */
  sender: string
  /** The key id; 0 when the frame is not authenticated (insecure mode). */
  keyId: number
  /** The sender's incarnation. */
  incarnation: number
  /** The sender's counter in that incarnation. */
  counter: number
  /** Whether the payload is encrypted. */
  encrypted: boolean
  /** Where the payload starts. */
  payloadStart: number
}

/**
 * Makes a sender's next incarnation: wall-clock milliseconds times 1024 plus 10 random bits,
 * and always above the previous one. So a restarted node's incarnation is higher than its last
 * one (while its clock does not go back by more than its downtime), and two incarnations of a
 * node practically never coincide even when they start in the same millisecond; keys are
 * derived per incarnation, so that is what keeps AES-GCM nonces unique.
 *
 * @param nowMs - wall-clock time
 * @param previous - the incarnation this node used last in this process, or -1
 * @param random10 - a random integer from 0 to 1023
 */
export function nextIncarnation(nowMs: number, previous: number, random10: number): number {
  const fromClock = Math.max(0, Math.floor(nowMs)) * 1024 + (random10 & 1023)
  return Math.min(Number.MAX_SAFE_INTEGER, Math.max(previous + 1, fromClock))
}

function u64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, Math.floor(value / 2 ** 32))
  view.setUint32(offset + 4, value >>> 0)
}

function readU64(view: DataView, offset: number): number | undefined {
  const hi = view.getUint32(offset)
  if (hi > 0x1fffff) return undefined // above 2^53 - 1
  return hi * 2 ** 32 + view.getUint32(offset + 4)
}

const senderDecoder = new TextDecoder('utf-8', { fatal: true })

/** The sender id of a frame: ASCII by character, UTF-8 through a decoder; undefined if invalid. */
function senderId(frame: Uint8Array, end: number): string | undefined {
  let id = ''
  for (let i = FIXED_HEADER; i < end; i++) {
    const c = frame[i]!
    if (c > 0x7f) {
      try {
        return senderDecoder.decode(frame.subarray(FIXED_HEADER, end))
      } catch {
        return undefined
      }
    }
    id += String.fromCharCode(c)
  }
  return id
}

/**
 * Parses the cleartext header of a frame; never throws.
 *
 * @param frame - the datagram
 * @param magic - the protocol's two magic bytes
 * @returns the header, or `'malformed'`
 */
export function parseFrameHeader(
  frame: Uint8Array,
  magic: readonly [number, number]
): FrameHeader | 'malformed' {
  if (frame.length < FIXED_HEADER + 1) return 'malformed'
  if (frame[0] !== magic[0] || frame[1] !== magic[1] || frame[2] !== VERSION) return 'malformed'
  const flags = frame[3]!
  if ((flags & ~FLAG_ENCRYPTED) !== 0) return 'malformed'
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength)
  const keyId = view.getUint32(4)
  const incarnation = readU64(view, 8)
  const counter = readU64(view, 16)
  const senderLength = frame[24]!
  const payloadStart = FIXED_HEADER + senderLength
  const tagLength = keyId === 0 ? 0 : FRAME_TAG_BYTES
  if (incarnation === undefined || counter === undefined || senderLength === 0) return 'malformed'
  if (frame.length < payloadStart + tagLength) return 'malformed'
  if (keyId === 0 && (flags & FLAG_ENCRYPTED) !== 0) return 'malformed'
  const sender = senderId(frame, payloadStart)
  if (sender === undefined) return 'malformed'
  return {
    sender,
    keyId,
    incarnation,
    counter,
    encrypted: (flags & FLAG_ENCRYPTED) !== 0,
    payloadStart
  }
}

/** Options of a {@link FrameGuard}. */
export interface FrameGuardInit {
  /** Two bytes that start every frame of the protocol. */
  magic: readonly [number, number]
  /** Separates the keys of one protocol from another's (link frames, heartbeats). */
  purpose: string
  /** The cluster keys, the one to send with first; empty for insecure mode (no tags). */
  keys: readonly ClusterKey[]
  /** Replay window per sender, in counters (a multiple of 32, 32 to 65536). */
  windowSize: number
}

interface DerivedKey {
  incarnation: number
  key: AeadKey
}

/** The empty input and output of a frame that is authenticated only. */
const NOTHING = new Uint8Array(0)

/**
 * Seals and opens the frames of one protocol: a cleartext header (magic, version, flags, key id,
 * the sender's incarnation and counter, its id), the payload, and an AES-256-GCM tag over all of
 * it; the payload is encrypted too when asked. The AES key is derived (HKDF-SHA-256) from the
 * cluster key for each purpose, sender and incarnation, and the nonce is the counter, which
 * grows by one per frame: a (key, nonce) pair never repeats. Received frames pass a replay
 * window per sender; a frame changes that window only once its tag verified.
 */
export class FrameGuard {
  private readonly magic: readonly [number, number]
  private readonly salt: Buffer
  private readonly windowSize: number
  private keys: Map<number, ClusterKey>
  private sendKeyId: number
  private sender: Uint8Array | undefined
  private incarnation = -1
  private counter = 0
  private sendKey: AeadKey | undefined
  private readonly windows = new Map<string, ReplayWindow>()
  private readonly derived = new Map<string, DerivedKey>()
  private readonly slab = new ByteSlab()

  /**
   * @param init - magic, purpose, keys and window size
   * @throws InvalidParametersError when the keys or the window size are invalid
   */
  constructor(init: FrameGuardInit) {
    if (!(
      Number.isInteger(init.windowSize) &&
      init.windowSize >= 32 &&
      init.windowSize <= 65536 &&
      init.windowSize % 32 === 0
    )) {
      throw new InvalidParametersError(
        'init.replayWindow',
        'must be a multiple of 32 from 32 to 65536'
      )
    }
    this.magic = init.magic
    this.salt = Buffer.from(`vipsec ${init.purpose} v${VERSION}`)
    this.windowSize = init.windowSize
    this.keys = new Map()
    this.sendKeyId = 0
    this.setKeys(init.keys)
  }

  /** Whether frames carry no tag (no keys). */
  get insecure(): boolean {
    return this.sendKeyId === 0
  }

  /** The key ids accepted, the sending one first. */
  get keyIds(): number[] {
    return [...this.keys.keys()]
  }

  /**
   * Replaces the keys (rotation): the first one sends from the next frame on; frames under any
   * of them are accepted.
   *
   * @param keys - one or two keys (none only for a guard made insecure)
   * @throws InvalidParametersError when they are invalid or insecure mode would change
   */
  setKeys(keys: readonly ClusterKey[]): void {
    if (keys.length > 0) checkClusterKeys(keys, 'init.keys')
    if (this.keys.size > 0 && keys.length === 0) {
      throw new InvalidParametersError('keys', 'cannot drop every key of a secure guard')
    }
    this.keys = new Map(keys.map((k) => [k.id, { id: k.id, secret: new Uint8Array(k.secret) }]))
    this.sendKeyId = keys[0]?.id ?? 0
    for (const entry of this.derived.values()) entry.key.dispose()
    this.derived.clear()
    this.sendKey?.dispose()
    this.sendKey =
      this.sender === undefined
        ? undefined
        : this.derive(this.sendKeyId, this.sender, this.incarnation)
  }

  /**
   * Starts a new incarnation of this node as a sender: the counter starts again at 0 under a
   * new derived key.
   *
   * @param node - this node's id (1 to 255 bytes of UTF-8)
   * @param incarnation - from {@link nextIncarnation}, above any this node used before
   */
  startSending(node: string, incarnation: number): void {
    const sender = new TextEncoder().encode(node)
    if (sender.length === 0 || sender.length > 255) {
      throw new InvalidParametersError('init.node', 'must be 1 to 255 bytes of UTF-8')
    }
    this.sender = sender
    this.incarnation = incarnation
    this.counter = 0
    this.sendKey?.dispose()
    this.sendKey = this.derive(this.sendKeyId, sender, incarnation)
  }

  /** This node's current incarnation as a sender (-1 before {@link FrameGuard.startSending}). */
  get sendingIncarnation(): number {
    return this.incarnation
  }

  /**
   * Seals a payload into a frame with this node's next counter.
   *
   * @param payload - the protocol's bytes
   * @param encrypt - encrypt the payload (it is authenticated either way)
   * @throws SequenceExhaustedError when the counter would pass 2^53 - 1 (restart for a new incarnation)
   */
  seal(payload: Uint8Array, encrypt = false): Uint8Array {
    return this.sealWith(payload.length, copyPayload, payload, encrypt)
  }

  /**
   * Seals a frame whose payload `write` puts straight into the frame buffer (no intermediate
   * copy): the frame is a view into a shared slab, one allocation per frame at most.
   *
   * @param length - the payload's length in bytes
   * @param write - writes exactly `length` bytes of payload into `out` at `offset`
   * @param value - what `write` encodes
   * @param encrypt - encrypt the payload (it is authenticated either way)
   * @throws SequenceExhaustedError when the counter would pass 2^53 - 1 (restart for a new incarnation)
   */
  sealWith<T>(
    length: number,
    write: (out: Uint8Array, offset: number, value: T) => unknown,
    value: T,
    encrypt = false
  ): Uint8Array {
    const sender = this.sender
    if (sender === undefined) throw new InvalidParametersError('sender', 'startSending() first')
    if (this.counter >= MAX_COUNTER)
      throw new SequenceExhaustedError('cluster frame counter exhausted')
    const secure = this.sendKey !== undefined
    const payloadStart = FIXED_HEADER + sender.length
    const end = payloadStart + length
    const frame = this.slab.take(end + (secure ? FRAME_TAG_BYTES : 0))
    write(frame, payloadStart, value)
    const counter = this.counter++
    frame[0] = this.magic[0]
    frame[1] = this.magic[1]
    frame[2] = VERSION
    frame[3] = secure && encrypt ? FLAG_ENCRYPTED : 0
    writeU32(frame, 4, this.sendKeyId)
    writeU64(frame, 8, this.incarnation)
    writeU64(frame, 16, counter)
    frame[24] = sender.length
    frame.set(sender, FIXED_HEADER)
    if (!secure) return frame
    const tag = frame.subarray(end, end + FRAME_TAG_BYTES)
    if (encrypt) {
      // encrypted in place
      const payload = frame.subarray(payloadStart, end)
      this.sendKey!.seal(nonce(counter), frame.subarray(0, payloadStart), payload, payload, tag)
    } else {
      this.sendKey!.seal(nonce(counter), frame.subarray(0, end), NOTHING, NOTHING, tag)
    }
    return frame
  }

  /**
   * Checks a received frame whose header parsed and whose sender is known: key id, replay
   * window, tag, then the payload's own decoding. Only when all pass does the frame move the
   * sender's replay window.
   *
   * @param frame - the datagram
   * @param header - its header from {@link parseFrameHeader}
   * @param decode - decodes the (decrypted) payload, or says `'malformed'`
   * @returns what `decode` made, or why the frame was dropped
   */
  open<T>(
    frame: Uint8Array,
    header: FrameHeader,
    decode: (payload: Uint8Array) => T | 'malformed'
  ): T | ClusterFrameDropReason {
    const secure = this.sendKeyId !== 0
    if (secure !== (header.keyId !== 0)) return 'unknown-key'
    if (secure && !this.keys.has(header.keyId)) return 'unknown-key'
    let window = this.windows.get(header.sender)
    // without keys anyone can claim any incarnation: ordering them would let one forged frame
    // with a huge incarnation silence the sender, so another incarnation restarts the window
    if (!secure && window !== undefined && header.incarnation !== window.incarnation) window.reset()
    const verdict = window?.check(header.incarnation, header.counter)
    if (verdict !== undefined) return verdict
    const payload = secure ? this.verify(frame, header) : frame.subarray(header.payloadStart)
    if (payload === undefined) return 'unauthenticated'
    const decoded = decode(payload)
    if (decoded === 'malformed') return 'malformed'
    if (window === undefined) {
      window = new ReplayWindow(this.windowSize)
      this.windows.set(header.sender, window)
    }
    window.accept(header.incarnation, header.counter)
    return decoded
  }

  /**
   * Forgets a sender's replay state (when it stops being a peer).
   *
   * @param sender - its id
   */
  forget(sender: string): void {
    this.windows.delete(sender)
    for (const id of this.keys.keys()) {
      this.derived.get(`${id}/${sender}`)?.key.dispose()
      this.derived.delete(`${id}/${sender}`)
    }
  }

  private verify(frame: Uint8Array, header: FrameHeader): Uint8Array | undefined {
    const cacheKey = `${header.keyId}/${header.sender}`
    const cached = this.derived.get(cacheKey)
    const key =
      cached?.incarnation === header.incarnation
        ? cached.key
        : this.derive(
            header.keyId,
            frame.subarray(FIXED_HEADER, header.payloadStart),
            header.incarnation
          )
    if (key === undefined) return undefined
    const tagStart = frame.length - FRAME_TAG_BYTES
    const fresh = key !== cached?.key
    let payload: Uint8Array | undefined
    if (tagStart >= header.payloadStart) {
      const tag = frame.subarray(tagStart)
      const n = nonce(header.counter)
      if (header.encrypted) {
        // the plaintext gets bytes of its own: the datagram stays as it came
        const text = new Uint8Array(tagStart - header.payloadStart)
        const aad = frame.subarray(0, header.payloadStart)
        if (key.open(n, aad, frame.subarray(header.payloadStart, tagStart), text, tag)) {
          payload = text
        }
      } else if (key.open(n, frame.subarray(0, tagStart), NOTHING, NOTHING, tag)) {
        payload = frame.subarray(header.payloadStart, tagStart)
      }
    }
    // cache the derived key only for an incarnation that authenticated, so that forgeries
    // naming new incarnations cannot evict the real one; a key not kept is freed now
    if (fresh) {
      if (
        payload !== undefined &&
        (cached === undefined || header.incarnation > cached.incarnation)
      ) {
        cached?.key.dispose()
        this.derived.set(cacheKey, { incarnation: header.incarnation, key })
      } else {
        key.dispose()
      }
    }
    return payload
  }

  private derive(keyId: number, sender: Uint8Array, incarnation: number): AeadKey | undefined {
    const key = this.keys.get(keyId)
    if (key === undefined) return undefined
    const info = new Uint8Array(sender.length + 9)
    info.set(sender)
    u64(new DataView(info.buffer), sender.length + 1, incarnation)
    const bytes = new Uint8Array(hkdfSync('sha256', key.secret, this.salt, info, 32))
    const derived = aeadKey('aes-256-gcm', bytes, { tagLength: FRAME_TAG_BYTES })
    bytes.fill(0)
    return derived
  }
}

/** One nonce buffer, rewritten per frame: node:crypto copies the IV when a cipher is made. */
const nonceBytes = Buffer.alloc(12)

function nonce(counter: number): Buffer {
  nonceBytes.writeUInt32BE(Math.floor(counter / 2 ** 32), 4)
  nonceBytes.writeUInt32BE(counter >>> 0, 8)
  return nonceBytes
}

function copyPayload(out: Uint8Array, offset: number, payload: Uint8Array): void {
  out.set(payload, offset)
}

function writeU64(b: Uint8Array, offset: number, v: number): void {
  writeU32(b, offset, Math.floor(v / 2 ** 32))
  writeU32(b, offset + 4, v >>> 0)
}
