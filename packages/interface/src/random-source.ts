/**
 * Randomness for every vipsec component (nonces, SPIs, key-exchange secrets, jitter). Production
 * uses `node:crypto`; tests use a seeded source so that runs repeat exactly.
 */
export interface RandomSource {
  /**
   * Returns `length` random bytes.
   *
   * @param length - how many bytes, 0 or more
   */
  randomBytes(length: number): Uint8Array
  /**
   * Returns a uniformly distributed integer in `[0, max)`.
   *
   * @param max - the exclusive upper bound, 1 to 2^32
   */
  randomInt(max: number): number
}
