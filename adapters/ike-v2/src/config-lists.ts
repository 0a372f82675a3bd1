/**
 * Edit counts of the configuration lists an {@link IkeV2ServiceInit} holds (peer configs,
 * pre-shared keys, certificates, trust anchors), so that what the service derives from a list
 * (an index by identity, the proposals of every peer) is checked for freshness in constant time
 * per handshake rather than by comparing every entry.
 *
 * @module
 */
import type { IkeV2ServiceInit } from './config.js'

const edits = new WeakMap<object, number>()

/**
 * How many times {@link configChanged} was told of edits to `list` (0 if never).
 *
 * @param list - one of the service's configuration lists
 */
export function editsOf(list: readonly unknown[]): number {
  return edits.get(list) ?? 0
}

/**
 * Tells every IKE service built from `init` that its lists were edited in place: call it after
 * replacing, reordering, adding or removing entries of `peers`, `psks`, `certificates` or
 * `trustAnchors` (a configuration reload that keeps the arrays and changes what they hold, as
 * `vipsec reload` does). The next negotiation of every such service then reads the lists as
 * they are now. A list given a new length, or a new array in its place, is noticed without it;
 * an edit that keeps the length may go unnoticed until this is called (the services keep an
 * index of each list by identity, so that a handshake does not look at every entry).
 *
 * Entries are read as values: to change a peer config or a key, put a new object in its place
 * (and call this), rather than changing a field of the one in the list.
 *
 * @param init - the options the services were built with (the same arrays)
 */
export function configChanged(
  init: Pick<IkeV2ServiceInit, 'peers' | 'psks' | 'certificates' | 'trustAnchors'>
): void {
  for (const list of [init.peers, init.psks, init.certificates, init.trustAnchors]) {
    if (list !== undefined) edits.set(list, editsOf(list) + 1)
  }
}
