/**
 * Named error classes. Every condition a caller may want to handle has its own class, recognised
 * by `err.name` (stable across package copies, unlike `instanceof`). Each class has a static
 * `name` equal to the instance `name`. `VipsecError` and `InvalidParametersError` are defined in
 * `@vipsec/wire`, whose packet codecs throw them, and re-exported here.
 */

import { VipsecError } from '@vipsec/wire'

export { InvalidParametersError, VipsecError } from '@vipsec/wire'

/** Thrown when a record, SA, node or message that was asked for does not exist. */
export class NotFoundError extends VipsecError {
  /** The class name, `NotFoundError`, for matching errors by name. */
  static override readonly name = 'NotFoundError'
  /** Always `NotFoundError`. */
  override readonly name = 'NotFoundError'
  override readonly code = 'ERR_NOT_FOUND'
}

/** Thrown when an operation is aborted through its `signal`. */
export class AbortError extends VipsecError {
  /** The class name, `AbortError`, for matching errors by name. */
  static override readonly name = 'AbortError'
  /** Always `AbortError`. */
  override readonly name = 'AbortError'
  override readonly code = 'ERR_ABORTED'

  /** @param message - defaults to "The operation was aborted" */
  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super(message, options)
  }
}

/** Thrown when a component is used before `start()` or after `stop()`. */
export class NotStartedError extends VipsecError {
  /** The class name, `NotStartedError`, for matching errors by name. */
  static override readonly name = 'NotStartedError'
  /** Always `NotStartedError`. */
  override readonly name = 'NotStartedError'
  override readonly code = 'ERR_NOT_STARTED'
}

/** Thrown when a node or adapter configuration is invalid; `field` is the path of the bad field. */
export class InvalidConfigError extends VipsecError {
  /** The class name, `InvalidConfigError`, for matching errors by name. */
  static override readonly name = 'InvalidConfigError'
  /** Always `InvalidConfigError`. */
  override readonly name = 'InvalidConfigError'
  override readonly code = 'ERR_INVALID_CONFIG'
  /** The dotted path of the offending field, e.g. `store.type`. */
  readonly field: string

  /**
   * @param field - the dotted path of the offending field
   * @param message - why it was rejected
   */
  constructor(field: string, message: string) {
    super(`${field}: ${message}`)
    this.field = field
  }
}

/**
 * Thrown when a coupling-store record cannot be decoded: not valid JSON, a missing or mistyped
 * field, or a value out of range. `path` names the first bad field.
 */
export class CorruptRecordError extends VipsecError {
  /** The class name, `CorruptRecordError`, for matching errors by name. */
  static override readonly name = 'CorruptRecordError'
  /** Always `CorruptRecordError`. */
  override readonly name = 'CorruptRecordError'
  override readonly code = 'ERR_CORRUPT_RECORD'
  /** Where in the record the problem is, e.g. `phase2.selectors.local[0].startPort`. */
  readonly path: string

  /**
   * @param path - where in the record the problem is
   * @param message - what is wrong there
   */
  constructor(path: string, message: string, options?: { cause?: unknown }) {
    super(`${path}: ${message}`, options)
    this.path = path
  }
}

/** Thrown when a coupling-store record carries a format version this build does not know. */
export class UnsupportedRecordVersionError extends VipsecError {
  /** The class name, `UnsupportedRecordVersionError`, for matching errors by name. */
  static override readonly name = 'UnsupportedRecordVersionError'
  /** Always `UnsupportedRecordVersionError`. */
  override readonly name = 'UnsupportedRecordVersionError'
  override readonly code = 'ERR_UNSUPPORTED_RECORD_VERSION'
  /** The version found in the record. */
  readonly version: unknown

  /**
   * @param kind - the record kind that was being read
   * @param version - the version found in the record
   */
  constructor(kind: string, version: unknown) {
    super(`${kind} record has unsupported version ${JSON.stringify(version)}`)
    this.version = version
  }
}

/**
 * Thrown when a write to the coupling store carries an epoch (fencing token) or owner that is no
 * longer the DVIPA's current one: the writer has been superseded and must stop serving.
 */
export class StaleEpochError extends VipsecError {
  /** The class name, `StaleEpochError`, for matching errors by name. */
  static override readonly name = 'StaleEpochError'
  /** Always `StaleEpochError`. */
  override readonly name = 'StaleEpochError'
  override readonly code = 'ERR_STALE_EPOCH'
  /** The epoch the writer presented. */
  readonly presented: number
  /** The DVIPA's current epoch in the store (0 if it was never claimed). */
  readonly current: number

  /**
   * @param dvipa - the DVIPA the write was for
   * @param presented - the epoch the writer presented
   * @param current - the DVIPA's current epoch
   */
  constructor(dvipa: string, presented: number, current: number) {
    super(`write for ${dvipa} with epoch ${presented} rejected: current epoch is ${current}`)
    this.presented = presented
    this.current = current
  }
}

/**
 * Thrown when an ownership claim loses its compare-and-set: another node changed the ownership
 * record since the claimer read it. `current` is the record that won.
 */
export class OwnershipConflictError extends VipsecError {
  /** The class name, `OwnershipConflictError`, for matching errors by name. */
  static override readonly name = 'OwnershipConflictError'
  /** Always `OwnershipConflictError`. */
  override readonly name = 'OwnershipConflictError'
  override readonly code = 'ERR_OWNERSHIP_CONFLICT'
  /** The epoch the claimer expected to replace. */
  readonly expectedEpoch: number
  /** The DVIPA's current epoch. */
  readonly currentEpoch: number
  /** The current owner, if any. */
  readonly currentOwner: string | undefined

  /**
   * @param dvipa - the DVIPA that was claimed
   * @param expectedEpoch - the epoch the claimer expected
   * @param currentEpoch - the epoch found
   * @param currentOwner - the owner found
   */
  constructor(dvipa: string, expectedEpoch: number, currentEpoch: number, currentOwner?: string) {
    super(
      `claim of ${dvipa} expected epoch ${expectedEpoch} but found ${currentEpoch}` +
        (currentOwner != null ? ` owned by ${currentOwner}` : '')
    )
    this.expectedEpoch = expectedEpoch
    this.currentEpoch = currentEpoch
    this.currentOwner = currentOwner
  }
}

/**
 * Thrown when a coupling store cannot be reached or answered with an error of its own. When
 * `indeterminate` is true, a write may or may not have taken effect (its reply was lost or came
 * too late): read the state back before acting on it, never assume it failed.
 */
export class StoreUnavailableError extends VipsecError {
  /** The class name, `StoreUnavailableError`, for matching errors by name. */
  static override readonly name = 'StoreUnavailableError'
  /** Always `StoreUnavailableError`. */
  override readonly name = 'StoreUnavailableError'
  override readonly code = 'ERR_STORE_UNAVAILABLE'
  /** Whether the write may have been applied all the same; `false` when it certainly was not. */
  readonly indeterminate: boolean

  /**
   * @param message - what happened, for a person
   * @param options - the cause, and whether the outcome is unknown (default `false`)
   */
  constructor(message: string, options?: { cause?: unknown; indeterminate?: boolean }) {
    super(message, options)
    this.indeterminate = options?.indeterminate ?? false
  }
}

/**
 * Thrown when an SA can no longer protect traffic because its sequence counter would wrap:
 * using it again would reuse a (key, nonce) pair. The SA must be rekeyed or dropped.
 */
export class SequenceExhaustedError extends VipsecError {
  /** The class name, `SequenceExhaustedError`, for matching errors by name. */
  static override readonly name = 'SequenceExhaustedError'
  /** Always `SequenceExhaustedError`. */
  override readonly name = 'SequenceExhaustedError'
  override readonly code = 'ERR_SEQUENCE_EXHAUSTED'
}

/**
 * Warm mode: a sealed IKE SA state (a `warm` record) could not be opened. `reason`:
 * `unknown-key` when this node has no cluster key of the record's key id (rotated out, or a
 * record from another cluster), `authentication` when the AEAD tag did not verify (a changed
 * byte, or a blob moved to another record or epoch), `malformed` when what it held after
 * opening is not an IKE SA state. The IKE SA is then renegotiated, as without warm mode.
 */
export class SealedStateError extends VipsecError {
  /** The class name, `SealedStateError`, for matching errors by name. */
  static override readonly name = 'SealedStateError'
  /** Always `SealedStateError`. */
  override readonly name = 'SealedStateError'
  override readonly code = 'ERR_SEALED_STATE'
  /** Why it could not be opened. */
  readonly reason: 'unknown-key' | 'authentication' | 'malformed'
  /** The key id the record named. */
  readonly keyId: string

  /**
   * @param reason - why it could not be opened
   * @param keyId - the key id the record named
   * @param message - details
   */
  constructor(
    reason: 'unknown-key' | 'authentication' | 'malformed',
    keyId: string,
    message: string,
    options?: { cause?: unknown }
  ) {
    super(message, options)
    this.reason = reason
    this.keyId = keyId
  }
}

/** Thrown when an SA with the same SPI (and direction) is already installed. */
export class DuplicateSaError extends VipsecError {
  /** The class name, `DuplicateSaError`, for matching errors by name. */
  static override readonly name = 'DuplicateSaError'
  /** Always `DuplicateSaError`. */
  override readonly name = 'DuplicateSaError'
  override readonly code = 'ERR_DUPLICATE_SA'
}

/** The IKEv2 error notify types (RFC 7296 section 3.10.1) that vipsec raises or reports. */
export type IkeErrorKind =
  | 'UNSUPPORTED_CRITICAL_PAYLOAD'
  | 'INVALID_IKE_SPI'
  | 'INVALID_MAJOR_VERSION'
  | 'INVALID_SYNTAX'
  | 'INVALID_MESSAGE_ID'
  | 'INVALID_SPI'
  | 'NO_PROPOSAL_CHOSEN'
  | 'INVALID_KE_PAYLOAD'
  | 'AUTHENTICATION_FAILED'
  | 'SINGLE_PAIR_REQUIRED'
  | 'NO_ADDITIONAL_SAS'
  | 'INTERNAL_ADDRESS_FAILURE'
  | 'FAILED_CP_REQUIRED'
  | 'TS_UNACCEPTABLE'
  | 'INVALID_SELECTORS'
  | 'TEMPORARY_FAILURE'
  | 'CHILD_SA_NOT_FOUND'
  | 'TIMEOUT'

/**
 * Thrown when an IKE exchange fails: the peer answered with an error notify, the peer did not
 * answer, or what it sent could not be accepted. `kind` names the condition.
 */
export class IkeProtocolError extends VipsecError {
  /** The class name, `IkeProtocolError`, for matching errors by name. */
  static override readonly name = 'IkeProtocolError'
  /** Always `IkeProtocolError`. */
  override readonly name = 'IkeProtocolError'
  override readonly code = 'ERR_IKE_PROTOCOL'
  /** The notify type (or `TIMEOUT`) behind the failure. */
  readonly kind: IkeErrorKind

  /**
   * @param kind - the notify type or `TIMEOUT`
   * @param message - details for a person
   */
  constructor(kind: IkeErrorKind, message: string, options?: { cause?: unknown }) {
    super(`${kind}: ${message}`, options)
    this.kind = kind
  }
}

/** Thrown when a takeover cannot proceed, for example because this node lost the claim. */
export class TakeoverError extends VipsecError {
  /** The class name, `TakeoverError`, for matching errors by name. */
  static override readonly name = 'TakeoverError'
  /** Always `TakeoverError`. */
  override readonly name = 'TakeoverError'
  override readonly code = 'ERR_TAKEOVER'
}

/**
 * Thrown when a command that changes the host's network (`ip addr add`, for example) fails;
 * `command` names it and the message carries what it printed.
 */
export class NetworkCommandError extends VipsecError {
  /** The class name, `NetworkCommandError`, for matching errors by name. */
  static override readonly name = 'NetworkCommandError'
  /** Always `NetworkCommandError`. */
  override readonly name = 'NetworkCommandError'
  override readonly code = 'ERR_NETWORK_COMMAND'
  /** The command line that failed, e.g. `ip addr add 10.0.0.100/32 dev eth0`. */
  readonly command: string

  /**
   * @param command - the command line that failed
   * @param message - why it failed (exit status, what it printed)
   */
  constructor(command: string, message: string, options?: { cause?: unknown }) {
    super(`${command}: ${message}`, options)
    this.command = command
  }
}
