/**
 * The IKE SAs of one service by our SPI, the ESP SPIs in use, and the tombstones of deleted
 * SAs: their last response, replayed when the peer retransmits the request that deleted them
 * (RFC 7296 section 2.1). Only SAs whose peer authenticated leave a tombstone, and there are
 * at most {@link MAX_TOMBSTONES} of them.
 *
 * @module
 */
import {
  NotFoundError,
  type Clock,
  type Identity,
  type RandomSource,
  type TimerHandle
} from '@vipsec/interface'
import { identityKey } from './identity-index.js'
import type { ChildSa, IkeSa } from './ike-sa.js'
import type { CachedResponse } from './task-manager.js'

/**
 * The table key of an IKE SPI: its 8 bytes as 4 UTF-16 code units, a short flat string that is
 * cheap to make and to hash (a hex string of 16 digits is built from 8 pieces), one per SPI.
 *
 * @param spi - the 8-byte SPI
 */
export function spiKey(spi: Uint8Array): string {
  return String.fromCharCode(
    (spi[0]! << 8) | spi[1]!,
    (spi[2]! << 8) | spi[3]!,
    (spi[4]! << 8) | spi[5]!,
    (spi[6]! << 8) | spi[7]!
  )
}

/** The {@link spiKey} of an SPI written as 16 hex digits; undefined when it is not that. */
export function hexSpiKey(hex: string): string | undefined {
  if (!/^[0-9a-fA-F]{16}$/.test(hex)) return undefined
  return String.fromCharCode(
    Number.parseInt(hex.slice(0, 4), 16),
    Number.parseInt(hex.slice(4, 8), 16),
    Number.parseInt(hex.slice(8, 12), 16),
    Number.parseInt(hex.slice(12, 16), 16)
  )
}

/** Most tombstones kept; the oldest goes first. */
export const MAX_TOMBSTONES = 4096

/** What is kept of a deleted SA. */
export interface Tombstone {
  /** SPIi of the SA. */
  readonly spiI: Uint8Array
  /** Its last response and the hash of the request it answered. */
  readonly response: CachedResponse
  /** Whether it was carried on port 4500. */
  readonly natT: boolean
  /** The timer that removes it. */
  readonly timer: TimerHandle
}

/** The SA table of one service. */
export class SaTable {
  private readonly sas = new Map<string, IkeSa>()
  private readonly tombstones = new Map<string, Tombstone>()
  private readonly espSpis = new Set<number>()
  /** SAs by their peer's identity ({@link identityKey}), and the key each is filed under. */
  private readonly byRemote = new Map<string, Set<IkeSa>>()
  private readonly remoteKeys = new Map<IkeSa, string>()

  /**
   * @param clock - for the tombstone timers
   * @param random - for SPIs
   */
  constructor(
    private readonly clock: Clock,
    private readonly random: RandomSource
  ) {}

  /** The SA whose local SPI has the key `key` ({@link spiKey}). */
  get(key: string): IkeSa | undefined {
    return this.sas.get(key)
  }

  /** Adds an SA (by its local SPI), and by its peer's identity when it is known. */
  register(sa: IkeSa): void {
    this.sas.set(sa.key, sa)
    this.noteIdentity(sa)
  }

  /** Removes an SA. */
  unregister(sa: IkeSa): void {
    if (this.sas.get(sa.key) === sa) this.sas.delete(sa.key)
    if (this.remoteKeys.has(sa)) this.unregisterIdentity(sa)
  }

  /**
   * Files an SA under its peer's identity, once that is known (a responder learns it in
   * IKE_AUTH), so that INITIAL_CONTACT finds the SAs it ends without looking at every SA.
   */
  noteIdentity(sa: IkeSa): void {
    if (sa.remoteIdentity === undefined || this.sas.get(sa.key) !== sa) return
    const key = identityKey(sa.remoteIdentity)
    if (key === undefined || this.remoteKeys.get(sa) === key) return
    if (this.remoteKeys.has(sa)) this.unregisterIdentity(sa)
    this.remoteKeys.set(sa, key)
    const same = this.byRemote.get(key)
    if (same === undefined) this.byRemote.set(key, new Set([sa]))
    else same.add(sa)
  }

  /** The registered SAs whose peer's identity is `id` (a copy: safe to destroy them). */
  withRemoteIdentity(id: Identity): IkeSa[] {
    const key = identityKey(id)
    const same = key === undefined ? undefined : this.byRemote.get(key)
    return same === undefined ? [] : [...same]
  }

  private unregisterIdentity(sa: IkeSa): void {
    const key = this.remoteKeys.get(sa)!
    this.remoteKeys.delete(sa)
    const same = this.byRemote.get(key)
    same?.delete(sa)
    if (same?.size === 0) this.byRemote.delete(key)
  }

  /** Every SA, in insertion order. */
  values(): IterableIterator<IkeSa> {
    return this.sas.values()
  }

  /** Every SA, as an array (safe to change the table while iterating). */
  all(): IkeSa[] {
    return [...this.sas.values()]
  }

  /** A fresh IKE SPI: 8 bytes, not all zero, not in use. */
  newIkeSpi(): Uint8Array {
    for (;;) {
      const spi = this.random.randomBytes(8)
      if (spi.every((b) => b === 0)) continue
      if (!this.sas.has(spiKey(spi))) return spi
    }
  }

  /** A fresh ESP SPI, 256 to 2^32-1, not in use. */
  newEspSpi(): number {
    for (;;) {
      const spi = 256 + this.random.randomInt(0xffffffff - 256)
      if (!this.espSpis.has(spi)) {
        this.espSpis.add(spi)
        return spi
      }
    }
  }

  /** Claims a given ESP SPI (an adopted Child SA's); false when it is in use. */
  claimEspSpi(spi: number): boolean {
    if (this.espSpis.has(spi)) return false
    this.espSpis.add(spi)
    return true
  }

  /** Returns an ESP SPI once its Child SA is gone. */
  releaseEspSpi(spi: number): void {
    this.espSpis.delete(spi)
  }

  /**
   * Keeps the last response of a deleted SA for `spanMs`, when its peer had authenticated.
   *
   * @param authenticated - whether IKE_AUTH completed on it (half-open SAs leave nothing)
   */
  bury(sa: IkeSa, authenticated: boolean, spanMs: number): void {
    const response = sa.tasks.lastResponse
    if (!authenticated || response === undefined) return
    const key = sa.key
    const previous = this.tombstones.get(key)
    if (previous !== undefined) {
      this.clock.clearTimeout(previous.timer)
      this.tombstones.delete(key)
    }
    if (this.tombstones.size >= MAX_TOMBSTONES) {
      const [oldest, t] = this.tombstones.entries().next().value as [string, Tombstone]
      this.clock.clearTimeout(t.timer)
      this.tombstones.delete(oldest)
    }
    this.tombstones.set(key, {
      spiI: sa.spiI,
      response,
      natT: sa.natT,
      timer: this.clock.setTimeout(() => this.tombstones.delete(key), spanMs)
    })
  }

  /** The tombstone of a deleted SA whose local SPI was `key`. */
  tombstone(key: string): Tombstone | undefined {
    return this.tombstones.get(key)
  }

  /** How many tombstones are kept. */
  get tombstoneCount(): number {
    return this.tombstones.size
  }

  /** Forgets every tombstone (on stop). */
  clearTombstones(): void {
    for (const t of this.tombstones.values()) this.clock.clearTimeout(t.timer)
    this.tombstones.clear()
  }

  /**
   * The established IKE SA with this phase 1 record id.
   *
   * @throws NotFoundError
   */
  findIke(phase1Id: string): IkeSa {
    // the id spells both SPIs ("ike-<SPIi>-<SPIr>") and the table is keyed by the local one,
    // which is one of the two: two lookups, not a scan of every SA
    if (phase1Id.length === 37 && phase1Id.startsWith('ike-') && phase1Id[20] === '-') {
      for (const hex of [phase1Id.slice(4, 20), phase1Id.slice(21)]) {
        const key = hexSpiKey(hex)
        const sa = key === undefined ? undefined : this.sas.get(key)
        if (sa !== undefined && sa.id === phase1Id && sa.state === 'established') return sa
      }
    }
    throw new NotFoundError(`no IKE SA ${phase1Id}`)
  }

  /**
   * The Child SA with this phase 2 record id and its established IKE SA.
   *
   * @throws NotFoundError
   */
  findChild(phase2Id: string): { sa: IkeSa; child: ChildSa } {
    for (const sa of this.sas.values()) {
      const child = sa.children.get(phase2Id)
      if (child !== undefined && sa.state === 'established') return { sa, child }
    }
    throw new NotFoundError(`no Child SA ${phase2Id}`)
  }
}
