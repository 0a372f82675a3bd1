import { AbortError } from './errors.js'

/** Options accepted, last, by every asynchronous method of a vipsec contract. */
export interface AbortOptions {
  /** Aborts the operation; a pre-aborted signal makes the method reject at once with {@link AbortError}. */
  signal?: AbortSignal
}

/**
 * Throws {@link AbortError} if `signal` is already aborted.
 *
 * @param signal - the caller's signal, if any
 */
export function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted === true) {
    throw new AbortError(undefined, { cause: signal.reason })
  }
}
