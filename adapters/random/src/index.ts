/**
 * Randomness sources for vipsec: {@link CryptoRandomSource} (node:crypto) for production, and
 * {@link SeededRandomSource}, which repeats exactly from a seed, for deterministic tests and
 * simulations.
 *
 * @example A repeatable source for a test
 * ```ts
 * import { SeededRandomSource } from '@vipsec/random'
 *
 * const a = new SeededRandomSource({ seed: 'test-1' })
 * const b = new SeededRandomSource({ seed: 'test-1' })
 * // a.randomBytes(16) and b.randomBytes(16) are equal
 * ```
 *
 * @packageDocumentation
 */
export { CryptoRandomSource, cryptoRandomSource, checkRandomArgs } from './crypto-random-source.js'
export {
  SeededRandomSource,
  seededRandomSource,
  type SeededRandomSourceInit
} from './seeded-random-source.js'
