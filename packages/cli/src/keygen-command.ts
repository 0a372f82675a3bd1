import { open } from 'node:fs/promises'
import { encodeKeyFile, generateClusterKey, type ClusterKey } from '@vipsec/cluster-link-udp'
import { InvalidParametersError } from '@vipsec/interface'

/** Options of {@link writeKeyFile}. */
export interface KeygenOptions {
  /** The key id; default a random one (so that two keys made apart never share an id). */
  id?: number
  /** Replace an existing file. Default false: an existing file is never overwritten. */
  force?: boolean
}

/**
 * `vipsec keygen`: makes a new cluster key (32 random bytes from node:crypto and an id) and
 * writes it to a key file that only its owner can read or write (mode 0600), for the node files'
 * `clusterKeys`. The file is created with that mode, so the key is never readable by others,
 * not even for a moment.
 *
 * @param path - the key file to write
 * @param options - key id, overwrite
 * @returns the key written
 * @throws InvalidParametersError naming `path` when the file exists (without `force`) or
 * cannot be written, or `id` when the id is out of range
 */
export async function writeKeyFile(path: string, options: KeygenOptions = {}): Promise<ClusterKey> {
  const key = generateClusterKey(options.id)
  let handle
  try {
    handle = await open(path, options.force === true ? 'w' : 'wx', 0o600)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    throw new InvalidParametersError(
      'path',
      e.code === 'EEXIST' ? `${path} exists (use --force to replace it)` : e.message
    )
  }
  try {
    // an existing file keeps its mode on open: tighten it before the secret goes in
    await handle.chmod(0o600)
    await handle.writeFile(encodeKeyFile(key), 'utf8')
  } finally {
    await handle.close()
  }
  return key
}
