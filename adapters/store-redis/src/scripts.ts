/**
 * The Lua scripts behind every write of the Redis coupling store, and the building of their
 * arguments. Each script runs atomically on the server: it checks the fence or the expected epoch
 * and changes state and publishes the change in one step, or does nothing.
 *
 * Replies are arrays whose first element says what happened: `ok` (then the result),
 * `stale` (then the current epoch) or `conflict` (then the current epoch and owner).
 *
 * Scripts that cannot simply be run twice carry a request id, so that a call retried after a
 * lost connection returns the first outcome instead of applying itself again.
 *
 * @module
 */
import { createHash } from 'node:crypto'
import type { Redis } from 'ioredis'

/** A value passed to a script: text or bytes. */
export type ScriptArg = string | Buffer

/** Whether `err` is an error reply from the server (as opposed to a connection problem). */
export function isReplyError(err: unknown): err is Error {
  return err instanceof Error && err.name === 'ReplyError'
}

/** A Lua script run by EVALSHA, falling back to EVAL when the server does not have it cached. */
export class RedisScript {
  /** The SHA-1 of the source, as EVALSHA wants it. */
  readonly sha: string

  /**
   * @param name - for error messages
   * @param lua - the source
   */
  constructor(
    readonly name: string,
    readonly lua: string
  ) {
    this.sha = createHash('sha1').update(lua).digest('hex')
  }

  /**
   * Runs the script; replies come back as buffers.
   *
   * @param redis - the connection
   * @param keys - KEYS
   * @param args - ARGV
   */
  async run(redis: Redis, keys: string[], args: ScriptArg[]): Promise<unknown> {
    try {
      return await redis.callBuffer('EVALSHA', this.sha, keys.length, ...keys, ...args)
    } catch (err) {
      if (isReplyError(err) && err.message.startsWith('NOSCRIPT')) {
        return await redis.callBuffer('EVAL', this.lua, keys.length, ...keys, ...args)
      }
      throw err
    }
  }
}

/** How many values one HSET inside a script takes at most (Lua's unpack has a limit). */
const CHUNK = 4000

/**
 * Returns `false` when the fence (owner, epoch as a decimal string) names the DVIPA's current
 * owner and epoch, else the current epoch as a string ('0' when never claimed).
 */
const STALE = `
local function stale(own, owner, epoch)
  local cur = redis.call('HMGET', own, 'epoch', 'owner')
  local e = cur[1] or '0'
  if cur[2] ~= owner or e ~= epoch then return e end
  return false
end
local function hset_all(key, values, from)
  for i = from, #values, ${CHUNK} do
    redis.call('HSET', key, unpack(values, i, math.min(i + ${CHUNK} - 1, #values)))
  end
end
`

/**
 * Claim by compare-and-set.
 * KEYS: owner hash. ARGV: expected epoch, new epoch, owner, encoded ownership, claim id,
 * channel, event.
 */
export const CLAIM = new RedisScript(
  'claim',
  `
local cur = redis.call('HMGET', KEYS[1], 'epoch', 'owner', 'claimId')
local e = cur[1] or '0'
if cur[3] == ARGV[5] and e == ARGV[2] then return {'ok'} end
if e ~= ARGV[1] then return {'conflict', e, cur[2] or ''} end
redis.call('HSET', KEYS[1], 'epoch', ARGV[2], 'owner', ARGV[3], 'record', ARGV[4], 'claimId', ARGV[5])
redis.call('HDEL', KEYS[1], 'releaseId')
redis.call('PUBLISH', ARGV[6], ARGV[7])
return {'ok'}
`
)

/**
 * Release. KEYS: owner hash. ARGV: owner, epoch, encoded ownership without owner, release id,
 * channel, event.
 */
export const RELEASE = new RedisScript(
  'release',
  `
local cur = redis.call('HMGET', KEYS[1], 'epoch', 'owner', 'releaseId')
local e = cur[1] or '0'
if cur[2] == false and cur[3] == ARGV[4] and e == ARGV[2] then return {'ok'} end
if cur[2] ~= ARGV[1] or e ~= ARGV[2] then return {'stale', e} end
redis.call('HSET', KEYS[1], 'record', ARGV[3], 'releaseId', ARGV[4])
redis.call('HDEL', KEYS[1], 'owner')
redis.call('PUBLISH', ARGV[5], ARGV[6])
return {'ok'}
`
)

/**
 * Fenced put of a batch. KEYS: owner hash, records hash. ARGV: owner, epoch, channel, events
 * (a JSON array), then field and bytes of each record.
 */
export const PUT = new RedisScript(
  'put',
  `${STALE}
local e = stale(KEYS[1], ARGV[1], ARGV[2])
if e then return {'stale', e} end
hset_all(KEYS[2], ARGV, 5)
if #ARGV > 4 then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return {'ok'}
`
)

/**
 * Fenced delete. KEYS: owner hash, records hash. ARGV: owner, epoch, channel, then field and
 * event (a JSON object) of each key. Publishes the events of the records that existed.
 */
export const DELETE = new RedisScript(
  'delete',
  `${STALE}
local e = stale(KEYS[1], ARGV[1], ARGV[2])
if e then return {'stale', e} end
local out = {}
for i = 4, #ARGV, 2 do
  if redis.call('HDEL', KEYS[2], ARGV[i]) == 1 then out[#out + 1] = ARGV[i + 1] end
end
if #out > 0 then redis.call('PUBLISH', ARGV[3], '[' .. table.concat(out, ',') .. ']') end
return {'ok'}
`
)

/**
 * Fenced read-and-clear into the journal. KEYS: owner hash, records hash, journal hash.
 * ARGV: owner, epoch, take id, channel, the event's JSON up to its count.
 * Live records replace journal entries of the same field; the reply is the whole journal. At most
 * one take per epoch is applied: the owner hash keeps the epoch of the last one (`takenEpoch`,
 * kept through the settle), and a second take at that epoch (a retry under another request id, or
 * a duplicate delivered late) changes nothing and answers with the journal as it stands.
 */
export const TAKE = new RedisScript(
  'take',
  `${STALE}
local e = stale(KEYS[1], ARGV[1], ARGV[2])
if e then return {'stale', e} end
local taken = redis.call('HMGET', KEYS[1], 'takeId', 'takenEpoch')
if taken[1] ~= ARGV[3] and taken[2] ~= ARGV[2] then
  if redis.call('EXISTS', KEYS[2]) == 1 then
    if redis.call('EXISTS', KEYS[3]) == 1 then
      hset_all(KEYS[3], redis.call('HGETALL', KEYS[2]), 1)
      redis.call('DEL', KEYS[2])
    else
      redis.call('RENAME', KEYS[2], KEYS[3])
    end
  end
  redis.call('HSET', KEYS[1], 'takeId', ARGV[3], 'journalEpoch', ARGV[2], 'takenEpoch', ARGV[2])
  redis.call('PUBLISH', ARGV[4], ARGV[5] .. redis.call('HLEN', KEYS[3]) .. '}]')
end
return {'ok', redis.call('HGETALL', KEYS[3])}
`
)

/** Fenced settle: drops the journal. KEYS: owner hash, journal hash. ARGV: owner, epoch. */
export const SETTLE = new RedisScript(
  'settle',
  `${STALE}
local e = stale(KEYS[1], ARGV[1], ARGV[2])
if e then return {'stale', e} end
redis.call('DEL', KEYS[2])
redis.call('HDEL', KEYS[1], 'journalEpoch')
return {'ok'}
`
)

/**
 * Post to a mailbox, once per request id. KEYS: mailbox list, post receipt. ARGV: encoded
 * message, receipt time to live in ms, channel, event.
 */
export const POST = new RedisScript(
  'post',
  `
if not redis.call('SET', KEYS[2], '1', 'PX', ARGV[2], 'NX') then return {'ok'} end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return {'ok'}
`
)

/**
 * Take a whole mailbox, once per request id: the list is renamed to the take's receipt, which a
 * retry of the same request reads again. KEYS: mailbox list, take receipt. ARGV: receipt time to
 * live in ms.
 */
export const TAKE_MESSAGES = new RedisScript(
  'take-messages',
  `
if redis.call('EXISTS', KEYS[2]) == 0 then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {'ok', {}} end
  redis.call('RENAME', KEYS[1], KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
end
return {'ok', redis.call('LRANGE', KEYS[2], 0, -1)}
`
)

/** Every script, by name. */
export const SCRIPTS: readonly RedisScript[] = [
  CLAIM,
  RELEASE,
  PUT,
  DELETE,
  TAKE,
  SETTLE,
  POST,
  TAKE_MESSAGES
]

/** What a script answered, decoded from its reply array. */
export type ScriptOutcome =
  | {
      /** Done. */
      status: 'ok'
      /** The second element of the reply, if any. */
      result: unknown
    }
  | {
      /** The fence was not current. */
      status: 'stale'
      /** The DVIPA's current epoch. */
      current: number
    }
  | {
      /** The claim's expected epoch was not current. */
      status: 'conflict'
      /** The DVIPA's current epoch. */
      current: number
      /** The current owner, if any. */
      owner: string | undefined
    }

const text = (v: unknown): string => (Buffer.isBuffer(v) ? v.toString('utf8') : String(v))

/**
 * Decodes a script's reply.
 *
 * @param reply - what EVALSHA returned (buffers)
 * @throws Error when the reply has an unexpected shape
 */
export function parseOutcome(reply: unknown): ScriptOutcome {
  if (!Array.isArray(reply) || reply.length === 0) {
    throw new Error(`unexpected script reply ${String(reply)}`)
  }
  const status = text(reply[0])
  if (status === 'ok') return { status, result: reply[1] }
  if (status === 'stale') return { status, current: Number(text(reply[1])) }
  if (status === 'conflict') {
    const owner = text(reply[2])
    return { status, current: Number(text(reply[1])), owner: owner === '' ? undefined : owner }
  }
  throw new Error(`unexpected script reply status ${status}`)
}

/**
 * Pairs a flat `[field, value, field, value, ...]` reply (HGETALL) into entries.
 *
 * @param flat - the reply
 */
export function pairs(flat: unknown): Array<[string, Buffer]> {
  const out: Array<[string, Buffer]> = []
  if (!Array.isArray(flat)) return out
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const value = flat[i + 1]
    out.push([text(flat[i]), Buffer.isBuffer(value) ? value : Buffer.from(String(value))])
  }
  return out
}

/**
 * A view of bytes as a Buffer without copying.
 *
 * @param bytes - any bytes
 */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}
