import { InvalidConfigError } from '@vipsec/interface'

/**
 * A configuration under which the fencing promise would be false: an owner cut off from the
 * store could still serve when a backup takes over, or could never confirm its epoch. Thrown
 * by the distribution processor's `validate()` at start, before anything is claimed or bound.
 * An `InvalidConfigError` (its `field` is the first of `fields`) that names every field of the
 * conflict.
 */
export class FencingConfigError extends InvalidConfigError {
  /** The fields that conflict, as dotted paths (`selfFenceMs`, `detector.minDetectionMs`, ...). */
  readonly fields: string[]

  /**
   * @param fields - the conflicting fields, the one to change first
   * @param message - why they conflict
   */
  constructor(fields: [string, ...string[]], message: string) {
    super(fields[0], `${message} (fields: ${fields.join(', ')})`)
    this.fields = fields
  }
}

/**
 * A Child SA proposal names algorithms the ESP engine cannot do (a node with it would negotiate
 * SAs it could never install), or an IKE SA proposal names what the IKE engine cannot do (it
 * could never negotiate them). Thrown by `validate()` at start, before anything is claimed or
 * bound. An `InvalidConfigError` for the proposal's field.
 */
export class UnsupportedProposalError extends InvalidConfigError {
  /** What the engine cannot do (`aes-cbc/192`, `hmac-md5`, ...). */
  readonly unsupported: string[]

  /** Which engine cannot do it. */
  readonly engine: 'ESP' | 'IKE'

  /**
   * @param field - the dotted path of the proposal
   * @param unsupported - what the engine cannot do
   * @param engine - which engine: the ESP engine (a Child SA proposal, the default) or the IKE engine
   */
  constructor(field: string, unsupported: string[], engine: 'ESP' | 'IKE' = 'ESP') {
    super(field, `the ${engine} engine cannot do ${unsupported.join(', ')}`)
    this.unsupported = unsupported
    this.engine = engine
  }
}

/**
 * A join window too short to learn what the cluster knows before a claim: a node that starts
 * (or re-joins) while the store lost data could then claim an epoch at or below one a live owner
 * holds. Thrown by `validate()` at start. An `InvalidConfigError` naming every field of the bound.
 */
export class JoinWindowConfigError extends InvalidConfigError {
  /** The fields of the bound (`joinWindowMs`, `ownershipCheckMs`, `detector.detectionTimeMs`). */
  readonly fields: string[]
  /** The shortest window the configuration allows, ms. */
  readonly minimumMs: number

  /**
   * @param fields - the fields of the bound, `joinWindowMs` first
   * @param minimumMs - the shortest window allowed, ms
   * @param message - why
   */
  constructor(fields: [string, ...string[]], minimumMs: number, message: string) {
    super(fields[0], `${message} (fields: ${fields.join(', ')})`)
    this.fields = fields
    this.minimumMs = minimumMs
  }
}
