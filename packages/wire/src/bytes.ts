/**
 * Big-endian integers in byte arrays, and concatenation: the helpers every codec of vipsec
 * (IKEv2 messages, ESP, the cluster link) shares.
 */

/**
 * Reads a big-endian 16-bit number.
 *
 * @param b - the bytes
 * @param o - where the number starts
 */
export function readU16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!
}

/**
 * Reads a big-endian 32-bit number (unsigned).
 *
 * @param b - the bytes
 * @param o - where the number starts
 */
export function readU32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) >>> 0) + ((b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!)
}

/**
 * Writes a big-endian 16-bit number (the low 16 bits of `v`).
 *
 * @param b - the bytes
 * @param o - where the number goes
 * @param v - the number
 */
export function writeU16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 0xff
  b[o + 1] = v & 0xff
}

/**
 * Writes a big-endian 32-bit number (the low 32 bits of `v`).
 *
 * @param b - the bytes
 * @param o - where the number goes
 * @param v - the number
 */
export function writeU32(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 24) & 0xff
  b[o + 1] = (v >>> 16) & 0xff
  b[o + 2] = (v >>> 8) & 0xff
  b[o + 3] = v & 0xff
}

/**
 * A big-endian 16-bit number in a new 2-byte array.
 *
 * @param v - the number
 */
export function u16Bytes(v: number): Uint8Array {
  const b = new Uint8Array(2)
  writeU16(b, 0, v)
  return b
}

/**
 * A big-endian 32-bit number in a new 4-byte array.
 *
 * @param v - the number
 */
export function u32Bytes(v: number): Uint8Array {
  const b = new Uint8Array(4)
  writeU32(b, 0, v)
  return b
}

/**
 * Concatenates byte arrays into a new one.
 *
 * @param parts - the arrays, in order
 */
export function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0
  for (const p of parts) n += p.length
  const out = new Uint8Array(n)
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

/**
 * Hands out packet-sized views of large zero-filled buffers, so that building a packet costs a
 * view rather than its own `ArrayBuffer` (which the garbage collector tracks one by one). A view
 * keeps its whole slab alive, as a pooled `Buffer` keeps its pool; a slab is never written again
 * after it handed out a view of it, except through that view.
 */
export class ByteSlab {
  private readonly size: number
  private buffer: ArrayBuffer
  private used = 0

  /** @param size - bytes per slab (default 64 KiB); larger requests get their own buffer */
  constructor(size = 65536) {
    this.size = size
    this.buffer = new ArrayBuffer(size)
  }

  /**
   * A fresh, zero-filled view of `length` bytes.
   *
   * @param length - its size
   */
  take(length: number): Uint8Array {
    if (length > this.size / 4) return new Uint8Array(length)
    if (this.used + length > this.size) {
      this.buffer = new ArrayBuffer(this.size)
      this.used = 0
    }
    const at = this.used
    this.used += (length + 7) & ~7
    return new Uint8Array(this.buffer, at, length)
  }
}
