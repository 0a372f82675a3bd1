/**
 * Builds the keys and arguments of each script call from the store's arguments: pure functions,
 * so that what is sent to the server can be tested without one.
 *
 * @module
 */
import {
  encodeDeleteMessage,
  encodeOwnership,
  encodeRecord,
  InvalidParametersError,
  type CouplingStoreEvent,
  type DeleteMessage,
  type Dvipa,
  type DvipaRecord,
  type Fence,
  type Ownership,
  type RecordKind
} from '@vipsec/interface'
import type { ReleasedOwnership } from '@vipsec/store-memory'
import type { RedisKeyLayout } from './keys.js'
import {
  asBuffer,
  CLAIM,
  DELETE,
  POST,
  PUT,
  RELEASE,
  SETTLE,
  TAKE,
  TAKE_MESSAGES,
  type RedisScript,
  type ScriptArg
} from './scripts.js'

/** One script call: which script, with which KEYS and ARGV. */
export interface ScriptCall {
  /** The script. */
  script: RedisScript
  /** KEYS. */
  keys: string[]
  /** ARGV. */
  args: ScriptArg[]
}

const json = (events: CouplingStoreEvent[]): string => JSON.stringify(events)

/** Checks a fence's shape (the one check every store shares). */
export { checkFence } from '@vipsec/store-memory'

/**
 * A claim: the new ownership is encoded (and validated) here; the script only compares epochs.
 *
 * @param keys - the key layout
 * @param ownership - the ownership the claim would write (epoch = expected + 1)
 * @param claimId - the request id
 */
export function claimCall(keys: RedisKeyLayout, ownership: Ownership, claimId: string): ScriptCall {
  const bytes = encodeOwnership(ownership)
  return {
    script: CLAIM,
    keys: [keys.owner(ownership.dvipa)],
    args: [
      String(ownership.epoch - 1),
      String(ownership.epoch),
      ownership.owner ?? '',
      asBuffer(bytes),
      claimId,
      keys.events,
      json([{ type: 'ownership:claimed', ownership }])
    ]
  }
}

/**
 * A release: `released` is the current ownership record without its owner.
 *
 * @param keys - the key layout
 * @param released - the ownership as it will be stored
 * @param fence - the releasing owner's fence
 * @param releaseId - the request id
 */
export function releaseCall(
  keys: RedisKeyLayout,
  released: ReleasedOwnership,
  fence: Fence,
  releaseId: string
): ScriptCall {
  return {
    script: RELEASE,
    keys: [keys.owner(released.dvipa)],
    args: [
      fence.owner,
      String(fence.epoch),
      asBuffer(encodeOwnership(released)),
      releaseId,
      keys.events,
      json([
        {
          type: 'ownership:released',
          dvipa: released.dvipa,
          epoch: fence.epoch,
          previousOwner: released.previousOwner
        }
      ])
    ]
  }
}

/**
 * A fenced put: every record is checked and encoded before anything is sent, so an invalid one
 * sends nothing.
 *
 * @param keys - the key layout
 * @param dvipa - the DVIPA written under
 * @param records - the batch
 * @param fence - the writer's fence
 * @throws InvalidParametersError when a record's dvipa differs
 * @throws CorruptRecordError when a record is invalid
 */
export function putCall(
  keys: RedisKeyLayout,
  dvipa: Dvipa,
  records: DvipaRecord[],
  fence: Fence
): ScriptCall {
  if (!Array.isArray(records)) throw new InvalidParametersError('records', 'expected an array')
  const fields: ScriptArg[] = []
  const events: CouplingStoreEvent[] = []
  records.forEach((record, i) => {
    if (record?.dvipa !== dvipa) {
      throw new InvalidParametersError(`records[${i}].dvipa`, `must be ${dvipa}`)
    }
    const bytes = encodeRecord(record)
    fields.push(keys.field(record.kind, record.id), asBuffer(bytes))
    events.push({ type: 'record:put', dvipa, kind: record.kind, id: record.id, epoch: fence.epoch })
  })
  return {
    script: PUT,
    keys: [keys.owner(dvipa), keys.records(dvipa)],
    args: [fence.owner, String(fence.epoch), keys.events, json(events), ...fields]
  }
}

/** A record's address within a DVIPA. */
export interface RecordAddress {
  /** The kind. */
  kind: RecordKind
  /** The id. */
  id: string
}

/**
 * A fenced delete: each key goes with the event published if it existed.
 *
 * @param keys - the key layout
 * @param dvipa - the DVIPA
 * @param addresses - the records to delete
 * @param fence - the writer's fence
 */
export function deleteCall(
  keys: RedisKeyLayout,
  dvipa: Dvipa,
  addresses: RecordAddress[],
  fence: Fence
): ScriptCall {
  if (!Array.isArray(addresses)) throw new InvalidParametersError('keys', 'expected an array')
  const args: ScriptArg[] = [fence.owner, String(fence.epoch), keys.events]
  for (const { kind, id } of addresses) {
    args.push(
      keys.field(kind, id),
      JSON.stringify({ type: 'record:deleted', dvipa, kind, id, epoch: fence.epoch })
    )
  }
  return { script: DELETE, keys: [keys.owner(dvipa), keys.records(dvipa)], args }
}

/**
 * A fenced read-and-clear. The event's JSON is sent up to its count, which the script appends.
 *
 * @param keys - the key layout
 * @param dvipa - the DVIPA
 * @param fence - the taker's fence
 * @param takeId - the request id
 */
export function takeCall(
  keys: RedisKeyLayout,
  dvipa: Dvipa,
  fence: Fence,
  takeId: string
): ScriptCall {
  const head = JSON.stringify({ type: 'records:taken', dvipa, epoch: fence.epoch })
  return {
    script: TAKE,
    keys: [keys.owner(dvipa), keys.records(dvipa), keys.journal(dvipa)],
    args: [fence.owner, String(fence.epoch), takeId, keys.events, `[${head.slice(0, -1)},"count":`]
  }
}

/**
 * A fenced settle.
 *
 * @param keys - the key layout
 * @param dvipa - the DVIPA
 * @param fence - the new owner's fence
 */
export function settleCall(keys: RedisKeyLayout, dvipa: Dvipa, fence: Fence): ScriptCall {
  return {
    script: SETTLE,
    keys: [keys.owner(dvipa), keys.journal(dvipa)],
    args: [fence.owner, String(fence.epoch)]
  }
}

/**
 * A mailbox post, once per request id.
 *
 * @param keys - the key layout
 * @param message - validated and encoded here
 * @param postId - the request id
 * @param receiptTtlMs - how long the receipt is kept
 */
export function postCall(
  keys: RedisKeyLayout,
  message: DeleteMessage,
  postId: string,
  receiptTtlMs: number
): ScriptCall {
  const bytes = encodeDeleteMessage(message)
  return {
    script: POST,
    keys: [keys.mailbox(message.to), keys.receipt(message.to, 'posted', postId)],
    args: [
      asBuffer(bytes),
      String(receiptTtlMs),
      keys.events,
      json([{ type: 'mailbox:posted', to: message.to, id: message.id }])
    ]
  }
}

/**
 * A mailbox take, once per request id.
 *
 * @param keys - the key layout
 * @param node - the recipient
 * @param takeId - the request id
 * @param receiptTtlMs - how long the receipt is kept
 */
export function takeMessagesCall(
  keys: RedisKeyLayout,
  node: string,
  takeId: string,
  receiptTtlMs: number
): ScriptCall {
  return {
    script: TAKE_MESSAGES,
    keys: [keys.mailbox(node), keys.receipt(node, 'taken', takeId)],
    args: [String(receiptTtlMs)]
  }
}
