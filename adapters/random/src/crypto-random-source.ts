import { randomBytes, randomInt } from 'node:crypto'
import { InvalidParametersError, type RandomSource } from '@vipsec/interface'

/**
 * Checks the arguments every {@link RandomSource} takes.
 *
 * @param length - for randomBytes, or undefined
 * @param max - for randomInt, or undefined
 * @throws InvalidParametersError naming the bad argument
 */
export function checkRandomArgs(length?: number, max?: number): void {
  if (length !== undefined && (!Number.isSafeInteger(length) || length < 0)) {
    throw new InvalidParametersError('length', 'must be an integer >= 0')
  }
  if (max !== undefined && (!Number.isSafeInteger(max) || max < 1 || max > 2 ** 32)) {
    throw new InvalidParametersError('max', 'must be an integer from 1 to 2^32')
  }
}

/** Randomness from the operating system through `node:crypto`. Use it in production. */
export class CryptoRandomSource implements RandomSource {
  /**
   * Returns `length` cryptographically strong random bytes.
   *
   * @param length - how many
   */
  randomBytes(length: number): Uint8Array {
    checkRandomArgs(length)
    return new Uint8Array(randomBytes(length))
  }

  /**
   * Returns a uniform integer in `[0, max)`.
   *
   * @param max - exclusive bound, 1 to 2^32
   */
  randomInt(max: number): number {
    checkRandomArgs(undefined, max)
    return max === 1 ? 0 : randomInt(0, max)
  }
}

/** Creates a {@link CryptoRandomSource}. */
export function cryptoRandomSource(): CryptoRandomSource {
  return new CryptoRandomSource()
}
