/**
 * A minimal DER reader (ITU-T X.690) for the few structures IKE reads itself: signature
 * AlgorithmIdentifiers and certificate extensions. Lengths up to 2^24.
 *
 * @module
 */

/** One TLV: its tag byte, its content, and the offset after it. */
export interface Tlv {
  /** The tag byte. */
  tag: number
  /** The content octets. */
  content: Uint8Array
  /** The offset right after this TLV in the buffer it was read from. */
  end: number
}

/**
 * Reads one TLV at `o`.
 *
 * @returns the TLV, or undefined when it is malformed or does not fit in `b`
 */
export function read(b: Uint8Array, o: number): Tlv | undefined {
  if (o + 2 > b.length) return undefined
  const tag = b[o]
  let n = b[o + 1]
  let start = o + 2
  if (n & 0x80) {
    const k = n & 0x7f
    if (k === 0 || k > 3 || start + k > b.length) return undefined
    n = 0
    for (let i = 0; i < k; i++) n = n * 256 + b[start + i]
    start += k
  }
  if (start + n > b.length) return undefined
  return { tag, content: b.subarray(start, start + n), end: start + n }
}

/**
 * The TLVs that make up a constructed value's content.
 *
 * @returns them, or undefined when they do not fill the content exactly
 */
export function children(content: Uint8Array): Tlv[] | undefined {
  const out: Tlv[] = []
  for (let o = 0; o < content.length;) {
    const t = read(content, o)
    if (t === undefined) return undefined
    out.push(t)
    o = t.end
  }
  return out
}
