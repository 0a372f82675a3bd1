import { randomBytes, randomInt } from 'node:crypto'
import { InvalidParametersError } from '@vipsec/interface'

/** How long a cluster key's secret is, in bytes (AES-256). */
export const CLUSTER_KEY_BYTES = 32

/** How many keys a node accepts at once: the current one and the one being rotated in or out. */
export const MAX_CLUSTER_KEYS = 2

/**
 * A key shared by the nodes of a cluster, which authenticates (and may encrypt) cluster-link
 * frames and heartbeats. Each purpose uses a key derived from it, never the secret itself.
 */
export interface ClusterKey {
  /** Names the key on the wire (every frame carries it): an integer from 1 to 2^32 - 1. */
  id: number
  /** The secret: {@link CLUSTER_KEY_BYTES} random bytes. */
  secret: Uint8Array
}

const KEY_FILE_TYPE = 'vipsec-cluster-key'

/**
 * Checks a list of cluster keys: at most {@link MAX_CLUSTER_KEYS}, distinct ids from 1 to
 * 2^32 - 1, secrets of {@link CLUSTER_KEY_BYTES} bytes.
 *
 * @param keys - the keys, the one to send with first
 * @param argument - the option's name, for the error
 * @throws InvalidParametersError naming `argument`
 */
export function checkClusterKeys(keys: readonly ClusterKey[], argument: string): void {
  if (keys.length === 0) throw new InvalidParametersError(argument, 'expected at least one key')
  if (keys.length > MAX_CLUSTER_KEYS) {
    throw new InvalidParametersError(argument, `at most ${MAX_CLUSTER_KEYS} keys at once`)
  }
  const ids = new Set<number>()
  for (const [i, key] of keys.entries()) {
    if (!Number.isInteger(key.id) || key.id < 1 || key.id > 0xffffffff) {
      throw new InvalidParametersError(
        `${argument}[${i}].id`,
        'must be an integer from 1 to 2^32 - 1'
      )
    }
    if (ids.has(key.id)) throw new InvalidParametersError(`${argument}[${i}].id`, 'used twice')
    ids.add(key.id)
    if (!(key.secret instanceof Uint8Array) || key.secret.length !== CLUSTER_KEY_BYTES) {
      throw new InvalidParametersError(
        `${argument}[${i}].secret`,
        `must be ${CLUSTER_KEY_BYTES} bytes`
      )
    }
  }
}

/**
 * Makes a new cluster key from node:crypto.
 *
 * @param id - its id; default a random one from 1 to 2^31, so that two keys made apart differ
 */
export function generateClusterKey(id?: number): ClusterKey {
  const key = {
    id: id ?? randomInt(1, 2 ** 31),
    secret: new Uint8Array(randomBytes(CLUSTER_KEY_BYTES))
  }
  checkClusterKeys([key], 'id')
  return key
}

/**
 * Writes a cluster key as the text of a key file: one JSON line
 * `{"type":"vipsec-cluster-key","id":N,"secret":"<64 hex digits>"}`.
 *
 * @param key - the key
 */
export function encodeKeyFile(key: ClusterKey): string {
  checkClusterKeys([key], 'key')
  return `${JSON.stringify({ type: KEY_FILE_TYPE, id: key.id, secret: Buffer.from(key.secret).toString('hex') })}\n`
}

/**
 * Reads the text of a key file made by {@link encodeKeyFile} (`vipsec keygen`).
 *
 * @param text - the file's contents
 * @param argument - what to name in the error (the file or the option)
 * @throws InvalidParametersError naming `argument` when it is not a cluster key
 */
export function decodeKeyFile(text: string, argument = 'keyFile'): ClusterKey {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw new InvalidParametersError(argument, 'not a vipsec cluster key file (not JSON)')
  }
  const v = value as { type?: unknown; id?: unknown; secret?: unknown }
  if (
    v === null ||
    typeof v !== 'object' ||
    v.type !== KEY_FILE_TYPE ||
    typeof v.id !== 'number' ||
    typeof v.secret !== 'string' ||
    !/^([0-9a-fA-F]{2})*$/.test(v.secret)
  ) {
    throw new InvalidParametersError(
      argument,
      `expected {"type":"${KEY_FILE_TYPE}","id":number,"secret":hex}`
    )
  }
  const key = { id: v.id, secret: new Uint8Array(Buffer.from(v.secret, 'hex')) }
  checkClusterKeys([key], argument)
  return key
}
