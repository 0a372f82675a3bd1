/**
 * The message mutator of the in-process fuzz test (test/fuzz.spec.ts) and of the fuzz memory
 * bench (bench/fuzz-memory.bench.ts): a seeded PRNG, and one mutation of a real IKE message per
 * call, so that both run the same corpus of malformed messages on every run.
 */
import { wire } from '../../src/index.js'

/** A small fast PRNG (xorshift32): the same sequence of 32-bit values for the same seed. */
export function prng(seed: number): () => number {
  let x = seed >>> 0 || 1
  return () => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x
  }
}

const EDGE_BYTES = [0, 1, 0x7f, 0x80, 0xff]
const HEADER_OFFSETS = [16, 18, 19, 28]

function junk(next: () => number, length: number): Uint8Array {
  const out = new Uint8Array(length)
  for (let i = 0; i < length; i++) out[i] = next() & 0xff
  return out
}

/**
 * One mutation of `base` (never changed itself): bits flipped, an edge byte, a truncation, junk
 * appended, a corrupted length field, a changed next-payload or exchange type, a cut with the
 * header length fixed so the payload parser runs, or random bytes.
 *
 * @param next - the PRNG
 * @param base - a real IKE message (without the non-ESP marker)
 */
export function mutate(next: () => number, base: Uint8Array): Uint8Array {
  const b = base.slice()
  switch (next() % 8) {
    case 0: // flip a few bits
      for (let i = 1 + (next() % 4); i > 0; i--) b[next() % b.length] ^= 1 << (next() % 8)
      return b
    case 1: // set a byte to an edge value
      b[next() % b.length] = EDGE_BYTES[next() % EDGE_BYTES.length]
      return b
    case 2: // truncate
      return b.subarray(0, next() % b.length)
    case 3: // extend with junk
      return wire.concat(b, junk(next, 1 + (next() % 64)))
    case 4: {
      // corrupt a length field of the header or of a payload, keeping the header length consistent
      const o = 28 + (next() % Math.max(1, b.length - 28))
      if (o + 3 < b.length) {
        b[o + 2] = next() & 0xff
        b[o + 3] = next() & 0xff
      }
      return b
    }
    case 5: {
      // change the next-payload chain or the exchange type
      const o = HEADER_OFFSETS[next() % HEADER_OFFSETS.length]
      if (o < b.length) b[o] = next() & 0xff
      return b
    }
    case 6: {
      // fix the header length after a random cut, so the payload parser is exercised
      const c = b.subarray(0, 28 + (next() % Math.max(1, b.length - 27)))
      if (c.length >= 28) {
        c[24] = (c.length >>> 24) & 0xff
        c[25] = (c.length >>> 16) & 0xff
        c[26] = (c.length >>> 8) & 0xff
        c[27] = c.length & 0xff
      }
      return c
    }
    default: // random bytes
      return junk(next, next() % 600)
  }
}
