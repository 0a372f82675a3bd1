import { VipsecError } from '@vipsec/interface'

/**
 * Thrown by `start()` when the Redis server runs without the append-only file and the store was
 * not told to accept that (`acceptNonDurableServer`): such a server forgets acknowledged
 * ownership claims on a restart.
 */
export class RedisDurabilityError extends VipsecError {
  /** The class name, `RedisDurabilityError`, for matching errors by name. */
  static override readonly name = 'RedisDurabilityError'
  /** Always `RedisDurabilityError`. */
  override readonly name = 'RedisDurabilityError'
  override readonly code = 'ERR_REDIS_DURABILITY'
}
