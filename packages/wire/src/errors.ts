/**
 * The two error classes the packet layer throws. They are defined here, below every other
 * vipsec package, and `@vipsec/interface` re-exports them with the rest of vipsec's named errors.
 */

/** The base of every vipsec error; `code` is a stable machine-readable form of the name. */
export class VipsecError extends Error {
  /** The class name, `VipsecError`, for matching errors by name. */
  static override readonly name: string = 'VipsecError'
  /** Always `VipsecError`. */
  override readonly name: string = 'VipsecError'
  /** A stable code for logs and metrics, derived from the class, e.g. `ERR_NOT_FOUND`. */
  readonly code: string = 'ERR_VIPSEC'

  /**
   * @param message - what happened, for a person
   * @param options - the underlying cause, if any
   */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
  }
}

/** Thrown when a function is called with an argument it cannot accept; `argument` names it. */
export class InvalidParametersError extends VipsecError {
  /** The class name, `InvalidParametersError`, for matching errors by name. */
  static override readonly name = 'InvalidParametersError'
  /** Always `InvalidParametersError`. */
  override readonly name = 'InvalidParametersError'
  override readonly code = 'ERR_INVALID_PARAMETERS'
  /** The name of the offending argument (or `argument.field`). */
  readonly argument: string

  /**
   * @param argument - the name of the argument that was rejected
   * @param message - why it was rejected
   */
  constructor(argument: string, message: string) {
    super(`${argument}: ${message}`)
    this.argument = argument
  }
}
