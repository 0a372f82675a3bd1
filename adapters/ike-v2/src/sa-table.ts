/**
 * The IKE SAs of one service by our SPI, the ESP SPIs in use, and the tombstones of deleted
 * SAs: their last response, replayed when the peer retransmits the request that deleted them
 * (RFC 7296 section 2.1). Only SAs whose peer authenticated leave a tombstone, and there are
 * at most {@link MAX_TOMBSTONES} of them.
 *
 * @module
 */
import { NotFoundError, type Clock, type RandomSource, type TimerHandle } from '@vipsec/interface'
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

  /** Adds an SA (by its local SPI). */
  register(sa: IkeSa): void {
    this.sas.set(sa.key, sa)
  }

  /** Removes an SA. */
  unregister(sa: IkeSa): void {
    if (this.sas.get(sa.key) === sa) this.sas.delete(sa.key)
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
    for (const sa of this.sas.values())
      if (sa.id === phase1Id && sa.state === 'established') return sa
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
