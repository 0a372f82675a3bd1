import {
  InvalidParametersError,
  type DynamicFilter,
  type EspDirection,
  type FilterSelector
} from '@vipsec/interface'
import {
  formatPrefix,
  packedPorts,
  parsePrefix,
  prefixContains,
  type IpPacketInfo,
  type IpPrefix
} from '@vipsec/wire'

/** A filter with its selector in binary form, ready for matching. */
export interface CompiledFilter {
  /** The filter as installed (a private copy). */
  readonly filter: DynamicFilter
  /** The source prefix. */
  readonly source: IpPrefix
  /** The destination prefix. */
  readonly destination: IpPrefix
  /** A canonical form of direction and selector: equal keys mean duplicate filters. */
  readonly key: string
  /** Installation order, to break priority ties. */
  readonly order: number
}

/** What {@link Spd.install} did. */
export interface SpdInstallResult {
  /** The filter as installed. */
  compiled: CompiledFilter
  /** The active filters it replaced (same id, or same direction and selector). */
  removed: CompiledFilter[]
}

const ACTIONS = new Set(['protect', 'bypass', 'discard'])

function checkPortRange(value: unknown, argument: string): [number, number] {
  if (
    !Array.isArray(value) ||
    value.length !== 2 ||
    !value.every((n) => Number.isInteger(n) && n >= 0 && n <= 0xffff) ||
    value[0] > value[1]
  ) {
    throw new InvalidParametersError(
      argument,
      'must be [first, last] with 0 <= first <= last <= 65535'
    )
  }
  return [value[0], value[1]]
}

/**
 * Validates a filter and compiles its selector. Prefixes are normalised (host bits cleared), so
 * `10.0.0.1/8` and `10.0.0.0/8` are the same selector.
 *
 * @param filter - the filter
 * @param order - its installation order
 * @throws InvalidParametersError naming the bad field (`filter.selector.source`, ...)
 */
export function compileFilter(filter: DynamicFilter, order: number): CompiledFilter {
  if (filter == null || typeof filter !== 'object') {
    throw new InvalidParametersError('filter', 'must be an object')
  }
  if (typeof filter.id !== 'string' || filter.id === '') {
    throw new InvalidParametersError('filter.id', 'must be a non-empty string')
  }
  if (filter.direction !== 'inbound' && filter.direction !== 'outbound') {
    throw new InvalidParametersError('filter.direction', 'must be inbound or outbound')
  }
  if (!ACTIONS.has(filter.action)) {
    throw new InvalidParametersError('filter.action', 'must be protect, bypass or discard')
  }
  if (typeof filter.priority !== 'number' || !Number.isFinite(filter.priority)) {
    throw new InvalidParametersError('filter.priority', 'must be a finite number')
  }
  if (
    filter.spi !== undefined &&
    (!Number.isInteger(filter.spi) || filter.spi < 1 || filter.spi > 0xffffffff)
  ) {
    throw new InvalidParametersError('filter.spi', 'must be an integer from 1 to 2^32-1')
  }
  const selector = filter.selector
  if (selector == null || typeof selector !== 'object') {
    throw new InvalidParametersError('filter.selector', 'must be an object')
  }
  const source = parsePrefix(selector.source, 'filter.selector.source')
  const destination = parsePrefix(selector.destination, 'filter.selector.destination')
  if (source.bytes.length !== destination.bytes.length) {
    throw new InvalidParametersError(
      'filter.selector.destination',
      'address family differs from the source'
    )
  }
  if (!Number.isInteger(selector.protocol) || selector.protocol < 0 || selector.protocol > 255) {
    throw new InvalidParametersError('filter.selector.protocol', 'must be an integer 0 to 255')
  }
  const sourcePorts = checkPortRange(selector.sourcePorts, 'filter.selector.sourcePorts')
  const destinationPorts = checkPortRange(
    selector.destinationPorts,
    'filter.selector.destinationPorts'
  )
  const copy: FilterSelector = {
    source: formatPrefix(source),
    destination: formatPrefix(destination),
    protocol: selector.protocol,
    sourcePorts,
    destinationPorts
  }
  const key = [
    filter.direction,
    copy.source,
    copy.destination,
    copy.protocol,
    sourcePorts.join('-'),
    destinationPorts.join('-')
  ].join('|')
  return {
    filter: {
      id: filter.id,
      direction: filter.direction,
      selector: copy,
      action: filter.action,
      priority: filter.priority,
      ...(filter.spi !== undefined ? { spi: filter.spi } : {})
    },
    source,
    destination,
    key,
    order
  }
}

/**
 * A map whose deletions leave the key behind with no value until there are as many such keys as
 * live ones, and is then rebuilt. V8's Map takes time proportional to its size when the same key
 * is deleted and set again and again (about 20 us a cycle at 20,000 keys on Node 20), which is
 * what reinstalling a filter does; setting a key that is already there costs no such time.
 */
class SparseMap<K, V> {
  private map = new Map<K, V | undefined>()
  private dead = 0

  get(key: K): V | undefined {
    return this.map.get(key)
  }

  set(key: K, value: V): void {
    if (this.dead > 0 && this.map.get(key) === undefined && this.map.has(key)) this.dead--
    this.map.set(key, value)
  }

  delete(key: K): void {
    if (this.map.get(key) === undefined) return
    this.map.set(key, undefined)
    if (++this.dead > 64 && this.dead > this.map.size - this.dead) {
      const live = new Map<K, V | undefined>()
      for (const [k, v] of this.map) if (v !== undefined) live.set(k, v)
      this.map = live
      this.dead = 0
    }
  }

  *values(): IterableIterator<V> {
    for (const v of this.map.values()) if (v !== undefined) yield v
  }

  clear(): void {
    this.map.clear()
    this.dead = 0
  }
}

/** Whether `a` comes before `b` in matching order: lower priority first, then installed first. */
function before(a: CompiledFilter, b: CompiledFilter): boolean {
  return (
    a.filter.priority < b.filter.priority ||
    (a.filter.priority === b.filter.priority && a.order < b.order)
  )
}

/** The big-endian 32-bit word of `bytes` at `at` (as a signed 32-bit integer). */
function word(bytes: Uint8Array, at: number): number {
  return (bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]
}

/** The masks of the 32-bit words a prefix of `length` bits covers (partial or whole). */
function wordMasks(length: number): number[] {
  const masks: number[] = []
  for (let bits = length; bits > 0; bits -= 32) masks.push(bits >= 32 ? -1 : ~(-1 >>> bits))
  return masks
}

function mix(h: number, w: number): number {
  const x = Math.imul(h ^ w, 0x85ebca6b)
  return x ^ (x >>> 13)
}

/**
 * The filters of one direction and address family whose source and destination prefixes have
 * the same lengths, in buckets by a hash of both prefixes: a packet's candidates in this group
 * are the filters of one bucket, the one its own addresses, masked to those lengths, hash to.
 */
interface PrefixGroup {
  readonly sourceMasks: number[]
  readonly destinationMasks: number[]
  /** Each bucket in matching order. */
  readonly buckets: SparseMap<number, CompiledFilter[]>
  size: number
}

/** The prefix groups of one direction and address family. */
interface FamilyIndex {
  /** By source length * 256 + destination length. */
  readonly byLengths: Map<number, PrefixGroup>
  /** The same groups, as an array for matching (no iterator per packet). */
  readonly list: PrefixGroup[]
}

/** Up to this many filters a direction is also kept as one list in matching order. */
const SMALL = 8

/** The filters of one direction: how many, and their prefix groups per address family. */
interface DirectionIndex {
  size: number
  readonly v4: FamilyIndex
  readonly v6: FamilyIndex
  /**
   * All the direction's filters in matching order while there are at most {@link SMALL}:
   * scanning them costs less than hashing, as with one tunnel. `undefined` above that.
   */
  small: CompiledFilter[] | undefined
}

function emptyIndex(): DirectionIndex {
  return {
    size: 0,
    v4: { byLengths: new Map(), list: [] },
    v6: { byLengths: new Map(), list: [] },
    small: []
  }
}

/** Inserts `compiled` into `list` (in matching order) at its place. */
function insertInOrder(list: CompiledFilter[], compiled: CompiledFilter): void {
  let i = list.length
  while (i > 0 && before(compiled, list[i - 1])) i--
  list.splice(i, 0, compiled)
}

/** Whether `c` matches a packet with these ports (in its family: the caller checks). */
function matches(
  c: CompiledFilter,
  packet: Uint8Array,
  info: IpPacketInfo,
  sourcePort: number,
  destinationPort: number
): boolean {
  const s = c.filter.selector
  return (
    (s.protocol === 0 || s.protocol === info.protocol) &&
    sourcePort >= s.sourcePorts[0] &&
    sourcePort <= s.sourcePorts[1] &&
    destinationPort >= s.destinationPorts[0] &&
    destinationPort <= s.destinationPorts[1] &&
    prefixContains(c.source, packet, info.sourceOffset) &&
    prefixContains(c.destination, packet, info.destinationOffset)
  )
}

function familyOf(index: DirectionIndex, addressLength: number): FamilyIndex {
  return addressLength === 4 ? index.v4 : index.v6
}

/** A direction's filters in matching order, from its groups (for at most {@link SMALL}). */
function smallList(index: DirectionIndex): CompiledFilter[] {
  const all: CompiledFilter[] = []
  for (const family of [index.v4, index.v6]) {
    for (const group of family.list)
      for (const bucket of group.buckets.values()) all.push(...bucket)
  }
  return all.sort((a, b) => (before(a, b) ? -1 : 1))
}

/**
 * The security policy database: filters per direction, matched first by priority (lower first)
 * and then by installation order, with duplicate detection.
 *
 * Indexed so that installing, removing and matching cost the same with ten filters or ten
 * thousand: ids and selectors are in maps, and the filters of a direction are grouped by the
 * lengths of their source and destination prefixes, each group hashed by the prefixes. A packet
 * costs one hash and one bucket per group (there are as many groups as distinct pairs of prefix
 * lengths, a handful in practice), and each filter of the bucket is checked in full, so hash
 * collisions cost time but never change the result. The hash is seeded per database.
 */
export class Spd {
  private readonly index: Record<EspDirection, DirectionIndex> = {
    inbound: emptyIndex(),
    outbound: emptyIndex()
  }
  private readonly byId = new SparseMap<string, CompiledFilter>()
  private readonly byKey = new SparseMap<string, CompiledFilter>()
  private order = 0
  private readonly seed = (Math.random() * 0x100000000) | 0

  /**
   * Adds a filter; removes and returns the active filters it duplicates (same id, or same
   * direction and selector), in the order they were installed.
   *
   * @param filter - the filter
   */
  install(filter: DynamicFilter): SpdInstallResult {
    const compiled = compileFilter(filter, this.order++)
    const removed: CompiledFilter[] = []
    const sameId = this.byId.get(compiled.filter.id)
    const sameKey = this.byKey.get(compiled.key)
    if (sameId !== undefined) removed.push(sameId)
    if (sameKey !== undefined && sameKey !== sameId) {
      if (sameId !== undefined && sameKey.order < sameId.order) removed.unshift(sameKey)
      else removed.push(sameKey)
    }
    for (const old of removed) this.remove(old.filter.id)
    insertInOrder(this.bucketFor(compiled), compiled)
    const direction = this.index[compiled.filter.direction]
    if (++direction.size > SMALL) direction.small = undefined
    else insertInOrder(direction.small as CompiledFilter[], compiled)
    this.byId.set(compiled.filter.id, compiled)
    this.byKey.set(compiled.key, compiled)
    return { compiled, removed }
  }

  /**
   * Removes a filter by id; returns whether it existed.
   *
   * @param id - the id
   */
  remove(id: string): boolean {
    const compiled = this.byId.get(id)
    if (compiled == null) return false
    this.byId.delete(id)
    this.byKey.delete(compiled.key)
    const direction = this.index[compiled.filter.direction]
    const family = familyOf(direction, compiled.source.bytes.length)
    const groupKey = compiled.source.length * 256 + compiled.destination.length
    const group = family.byLengths.get(groupKey) as PrefixGroup
    const key = this.prefixHash(group, compiled.source.bytes, 0, compiled.destination.bytes, 0)
    const bucket = group.buckets.get(key) as CompiledFilter[]
    bucket.splice(bucket.indexOf(compiled), 1)
    if (bucket.length === 0) group.buckets.delete(key)
    if (--group.size === 0) {
      family.byLengths.delete(groupKey)
      family.list.splice(family.list.indexOf(group), 1)
    }
    direction.size--
    if (direction.small !== undefined) {
      direction.small.splice(direction.small.indexOf(compiled), 1)
    } else if (direction.size <= SMALL) {
      direction.small = smallList(direction)
    }
    return true
  }

  /** Removes every filter. */
  clear(): void {
    this.byId.clear()
    this.byKey.clear()
    this.index.inbound = emptyIndex()
    this.index.outbound = emptyIndex()
  }

  /** Every filter, outbound then inbound, each in matching order. */
  list(): DynamicFilter[] {
    const all = [...this.byId.values()]
    const sorted = (direction: EspDirection): CompiledFilter[] =>
      all
        .filter((c) => c.filter.direction === direction)
        .sort((a, b) => a.filter.priority - b.filter.priority || a.order - b.order)
    return [...sorted('outbound'), ...sorted('inbound')].map((c) => copyFilter(c.filter))
  }

  /**
   * The first filter of `direction` that matches the packet; `null` when none does, `undefined`
   * when the packet's upper-layer header is truncated.
   *
   * @param direction - which filters
   * @param packet - the IP packet
   * @param info - its parsed header
   */
  match(
    direction: EspDirection,
    packet: Uint8Array,
    info: IpPacketInfo
  ): CompiledFilter | null | undefined {
    const index = this.index[direction]
    if (index.size === 0) return null
    const ports = packedPorts(packet, info)
    if (ports < 0) return undefined
    const sourcePort = ports >>> 16
    const destinationPort = ports & 0xffff
    const small = index.small
    if (small !== undefined) {
      for (let i = 0; i < small.length; i++) {
        const c = small[i]
        if (
          c.source.bytes.length === info.addressLength &&
          matches(c, packet, info, sourcePort, destinationPort)
        ) {
          return c
        }
      }
      return null
    }
    const groups = familyOf(index, info.addressLength).list
    let best: CompiledFilter | null = null
    for (let g = 0; g < groups.length; g++) {
      const group = groups[g]
      const key = this.prefixHash(group, packet, info.sourceOffset, packet, info.destinationOffset)
      const bucket = group.buckets.get(key)
      if (bucket === undefined) continue
      for (let i = 0; i < bucket.length; i++) {
        const c = bucket[i]
        if (best !== null && !before(c, best)) break
        if (matches(c, packet, info, sourcePort, destinationPort)) {
          best = c
          break
        }
      }
    }
    return best
  }

  /** The bucket of a compiled filter's prefixes, made (with its group) if need be. */
  private bucketFor(compiled: CompiledFilter): CompiledFilter[] {
    const family = familyOf(this.index[compiled.filter.direction], compiled.source.bytes.length)
    const groupKey = compiled.source.length * 256 + compiled.destination.length
    let group = family.byLengths.get(groupKey)
    if (group === undefined) {
      group = {
        sourceMasks: wordMasks(compiled.source.length),
        destinationMasks: wordMasks(compiled.destination.length),
        buckets: new SparseMap(),
        size: 0
      }
      family.byLengths.set(groupKey, group)
      family.list.push(group)
    }
    group.size++
    const key = this.prefixHash(group, compiled.source.bytes, 0, compiled.destination.bytes, 0)
    let bucket = group.buckets.get(key)
    if (bucket === undefined) {
      bucket = []
      group.buckets.set(key, bucket)
    }
    return bucket
  }

  /** The group's hash of a source address at `sourceAt` and a destination address at `destinationAt`. */
  private prefixHash(
    group: PrefixGroup,
    source: Uint8Array,
    sourceAt: number,
    destination: Uint8Array,
    destinationAt: number
  ): number {
    let h = this.seed
    const sourceMasks = group.sourceMasks
    for (let i = 0; i < sourceMasks.length; i++) {
      h = mix(h, word(source, sourceAt + 4 * i) & sourceMasks[i])
    }
    h = mix(h, 0x5bd1e995)
    const destinationMasks = group.destinationMasks
    for (let i = 0; i < destinationMasks.length; i++) {
      h = mix(h, word(destination, destinationAt + 4 * i) & destinationMasks[i])
    }
    return h & 0x3fffffff
  }
}

/**
 * A deep copy of a compiled filter (its fields are plain values and two port pairs): what
 * `structuredClone` would make, at a small part of its cost, for each `filter:installed` event.
 */
export function copyFilter(f: DynamicFilter): DynamicFilter {
  const s = f.selector
  return {
    id: f.id,
    direction: f.direction,
    selector: {
      source: s.source,
      destination: s.destination,
      protocol: s.protocol,
      sourcePorts: [s.sourcePorts[0], s.sourcePorts[1]],
      destinationPorts: [s.destinationPorts[0], s.destinationPorts[1]]
    },
    action: f.action,
    priority: f.priority,
    ...(f.spi !== undefined ? { spi: f.spi } : {})
  }
}
