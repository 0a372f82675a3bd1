import { createCipheriv, createHash } from 'node:crypto'
import { type RandomSource } from '@vipsec/interface'
import { checkRandomArgs } from './crypto-random-source.js'

/** Options of {@link SeededRandomSource}. */
export interface SeededRandomSourceInit {
  /** The seed: the same seed always gives the same sequence. A string or bytes. */
  seed: string | Uint8Array
}

/**
 * A deterministic random source for tests and simulations: the AES-256-CTR keystream under
 * SHA-256(seed). Two sources with the same seed give the same bytes in the same order. Never
 * use it in production: anyone who knows the seed knows every nonce and key it produced.
 */
export class SeededRandomSource implements RandomSource {
  private readonly stream: ReturnType<typeof createCipheriv>
  private static readonly chunk = new Uint8Array(4096)
  private buffer = new Uint8Array(0)
  private offset = 0

  /** @param init - the seed */
  constructor(init: SeededRandomSourceInit) {
    const key = createHash('sha256').update(init.seed).digest()
    this.stream = createCipheriv('aes-256-ctr', key, new Uint8Array(16))
  }

  /**
   * Returns the next `length` bytes of the keystream.
   *
   * @param length - how many
   */
  randomBytes(length: number): Uint8Array {
    checkRandomArgs(length)
    const out = new Uint8Array(length)
    let filled = 0
    while (filled < length) {
      if (this.offset === this.buffer.length) {
        this.buffer = new Uint8Array(this.stream.update(SeededRandomSource.chunk))
        this.offset = 0
      }
      const n = Math.min(length - filled, this.buffer.length - this.offset)
      out.set(this.buffer.subarray(this.offset, this.offset + n), filled)
      this.offset += n
      filled += n
    }
    return out
  }

  /**
   * Returns a uniform integer in `[0, max)` (rejection sampling, no modulo bias).
   *
   * @param max - exclusive bound, 1 to 2^32
   */
  randomInt(max: number): number {
    checkRandomArgs(undefined, max)
    const range = 2 ** 32
    const limit = range - (range % max)
    for (;;) {
      const b = this.randomBytes(4)
      const value = ((b[0]! << 24) >>> 0) + (b[1]! << 16) + (b[2]! << 8) + b[3]!
      if (value < limit) return value % max
    }
  }
}

/**
 * Creates a {@link SeededRandomSource}.
 *
 * @param seed - the seed
 */
export function seededRandomSource(seed: string | Uint8Array): SeededRandomSource {
  return new SeededRandomSource({ seed })
}
