/**
 * First-match lookups by identity in the service's ordered configuration lists (peer configs,
 * pre-shared keys) without comparing against every entry: with thousands of peers, a scan per
 * handshake made a takeover's renegotiation grow as N^2. A list edited in place is noticed by
 * its length and its edit count (`configChanged`), not by comparing it with a copy.
 *
 * @module
 */
import type { Identity } from '@vipsec/interface'
import type { IkePeerConfig, PskCredential } from './config.js'
import { editsOf } from './config-lists.js'
import { decodeDn, encodeDn } from './dn.js'
import { asciiLower, bytesToIp, ipToBytes } from './selectors.js'

/**
 * A text that two identities share exactly when `sameIdentity` holds for them (FQDNs without
 * case, DNs in canonical form, IPv6 addresses in one spelling), or undefined for an identity
 * that equals nothing (a DN that does not parse).
 */
export function identityKey(id: Identity): string | undefined {
  switch (id.type) {
    case 'fqdn':
      return `fqdn:${asciiLower(id.value)}`
    case 'der-dn':
      try {
        return `der-dn:${decodeDn(encodeDn(id.value))}`
      } catch {
        return undefined
      }
    case 'ipv6':
      try {
        return `ipv6:${bytesToIp(ipToBytes(id.value))}`
      } catch {
        return `ipv6:${id.value}`
      }
    default:
      return `${id.type}:${id.value}`
  }
}

interface Built<T> {
  /** The entries the index was built from, by position. */
  entries: T[]
  /** The list's edit count ({@link editsOf}) when it was built. */
  edits: number
  /** Positions in the list by identity key, ascending. */
  byKey: Map<string, number[]>
  /** Positions of the entries that match any identity, ascending. */
  wildcards: number[]
}

/**
 * An index of an ordered list by one identity of each entry (`keyOf`; undefined: the entry
 * matches any identity). {@link find} returns what `list.find` would, for entries whose
 * identity is the one asked for and that `accept` takes, in constant time per lookup (for a
 * bounded number of entries per identity). The list may change in place (a configuration
 * reload splices it): the index is built again when its length or its edit count
 * (`configChanged`) changed, or when an entry it looks at is no longer where it was, so
 * that an entry taken out of the list is never returned.
 */
export class IdentityIndex<T> {
  private readonly built = new WeakMap<readonly T[], Built<T>>()

  constructor(private readonly keyOf: (entry: T) => Identity | undefined) {}

  /**
   * The first entry of `list` whose identity is `id` (or any) and that `accept` takes.
   *
   * @param list - the ordered list
   * @param id - the identity asked for
   * @param accept - the other conditions
   */
  find(list: readonly T[], id: Identity, accept: (entry: T) => boolean): T | undefined {
    const key = identityKey(id)
    const found = this.walk(this.indexOf(list), list, key, accept)
    // an entry looked at was replaced without a new edit count: build again, then look again
    return found === MOVED
      ? (this.walk(this.build(list), list, key, accept) as T | undefined)
      : found
  }

  private walk(
    index: Built<T>,
    list: readonly T[],
    key: string | undefined,
    accept: (entry: T) => boolean
  ): T | undefined | typeof MOVED {
    const exact = key === undefined ? EMPTY : (index.byKey.get(key) ?? EMPTY)
    const any = index.wildcards
    // both position lists ascend: walk them together so that the first in the list wins
    let i = 0
    let j = 0
    while (i < exact.length || j < any.length) {
      const next =
        j >= any.length || (i < exact.length && exact[i]! < any[j]!) ? exact[i++]! : any[j++]!
      const entry = list[next]!
      if (entry !== index.entries[next]) return MOVED
      if (accept(entry)) return entry
    }
    return undefined
  }

  private indexOf(list: readonly T[]): Built<T> {
    const had = this.built.get(list)
    if (had !== undefined && had.entries.length === list.length && had.edits === editsOf(list))
      return had
    return this.build(list)
  }

  private build(list: readonly T[]): Built<T> {
    const byKey = new Map<string, number[]>()
    const wildcards: number[] = []
    list.forEach((entry, i) => {
      const id = this.keyOf(entry)
      if (id === undefined) return void wildcards.push(i)
      const key = identityKey(id)
      if (key === undefined) return
      const at = byKey.get(key)
      if (at === undefined) byKey.set(key, [i])
      else at.push(i)
    })
    const built = { entries: [...list], edits: editsOf(list), byKey, wildcards }
    this.built.set(list, built)
    return built
  }
}

const EMPTY: readonly number[] = []

/** What a walk returns when an entry it looked at is no longer at its position. */
const MOVED: unique symbol = Symbol('moved')

/** The peer configs by the identity the peer must prove (any, for a config without one). */
export const peersByRemote = new IdentityIndex<IkePeerConfig>((p) => p.remoteIdentity)

/** The pre-shared keys by the peer identity they are shared with. */
export const psksByRemote = new IdentityIndex<PskCredential>((p) => p.remote)
