/**
 * Warm mode on an owner: what it records beside the renegotiation records, so that an heir can
 * carry every SA on without a handshake.
 *
 * - Each IKE SA's state (keys, message IDs, with its records), sealed under the cluster key, as
 *   a `warm` record, written whenever the IKE service hands the sink a new state (before the new
 *   keys carry traffic).
 * - Each outbound Child SA's sequence reservation, as a `sequence` record: the owner may send
 *   sequence numbers up to `reservedEnd` only; it writes a higher end (fenced) before it raises
 *   the ESP engine's limit. So an heir that continues past the recorded end never repeats a
 *   (key, nonce) pair, whatever the dead owner had sent. Each reservation also records the
 *   inbound SA's highest received sequence number, where the heir's anti-replay window starts.
 *
 * @module
 */
import {
  NotStartedError,
  type Dvipa,
  type DvipaRecord,
  type EspDirection,
  type EspEngine,
  type EspEvent,
  type IkeSaState,
  type IkeStateSink,
  type Phase2Record,
  type RecordKind,
  type SequenceRecord,
  type WarmRecord
} from '@vipsec/interface'
import type { WarmKeySet } from './warm.js'

/** The key of one record to delete. */
export interface RecordKey {
  /** Its kind. */
  kind: RecordKind
  /** Its id. */
  id: string
}

/** The default reservation block: 2^20 sequence numbers. */
export const DEFAULT_SEQUENCE_BLOCK = 2n ** 20n

/** The largest sequence number of any SA (64-bit with ESN). */
const MAX_SEQUENCE = 0xffffffffffffffffn
/** The largest sequence number without ESN. */
const MAX_SEQUENCE_32 = 0xffffffffn

/** Counters of a {@link WarmRecorder}. */
export interface WarmRecorderCounters {
  /** Sealed states written. */
  statesRecorded: number
  /** Sequence blocks reserved (first blocks and further ones). */
  blocksReserved: number
  /** Writes that failed (the state or block is then not relied on). */
  writeFailures: number
}

/** What a {@link WarmRecorder} needs. */
export interface WarmRecorderOptions {
  /** The DVIPA. */
  dvipa: Dvipa
  /** The cluster key set. */
  keys: WarmKeySet
  /** Sequence numbers per reservation. */
  blockSize: bigint
  /** The node's ESP engine (limits are raised there, inbound sequence numbers read there). */
  esp: EspEngine
  /** The owner's current epoch (undefined when it does not own the DVIPA). */
  epoch(): number | undefined
  /**
   * A fenced write of the owner, resolved once the store acknowledged it; rejects (also with a
   * newer epoch) when it was not written.
   */
  write(put: DvipaRecord[], remove?: { kind: RecordKind; id: string }[]): Promise<void>
}

/** Records sealed states and sequence reservations for one DVIPA (see the module). */
export class WarmRecorder {
  private readonly sealed = new Map<string, WarmRecord>()
  private readonly sequences = new Map<string, SequenceRecord>()
  /** The highest reservation end whose write was started, by phase 2 id. */
  private readonly attempted = new Map<string, bigint>()
  /** phase 2 id by outbound SPI, for the low-water events. */
  private readonly bySpi = new Map<number, string>()
  /** phase 2 id by its inbound SPI, for the inbound sequence numbers. */
  private readonly inboundSpi = new Map<string, number>()
  private version = 0
  private readonly counts: WarmRecorderCounters = {
    statesRecorded: 0,
    blocksReserved: 0,
    writeFailures: 0
  }

  /** @param options - DVIPA, keys, block size, ESP engine, epoch and the fenced write */
  constructor(private readonly options: WarmRecorderOptions) {}

  /** The cluster key set it seals with. */
  get keys(): WarmKeySet {
    return this.options.keys
  }

  /** Counters (a copy). */
  counters(): WarmRecorderCounters {
    return { ...this.counts }
  }

  /** The sealed states and reservations this owner holds, for its full rewrites and audits. */
  records(): DvipaRecord[] {
    return [...this.sealed.values(), ...this.sequences.values()]
  }

  /** The reservation of a Child SA, if any. */
  reservation(phase2Id: string): SequenceRecord | undefined {
    return this.sequences.get(phase2Id)
  }

  /** The sink to install on the DVIPA's IKE service (`setStateSink`). */
  readonly sink: IkeStateSink = async (state) => {
    const put: DvipaRecord[] = []
    const warm = this.seal(state)
    if (warm === undefined)
      throw new NotStartedError(`${this.options.dvipa} is not owned here: nothing recorded`)
    put.push(warm)
    const limits: Record<string, bigint> = {}
    const fresh: SequenceRecord[] = []
    /** Child SAs already carrying traffic without a reservation (an earlier sink failed). */
    const paused: { spi: number; end: bigint }[] = []
    for (const child of state.records.phase2) {
      if (this.sequences.has(child.id)) continue
      const spi = Number.parseInt(child.outboundSpi, 16)
      const used = this.sequenceOf(spi, 'outbound')
      // A new Child SA starts at 0: its first block ends at blockSize. One the engine already
      // holds went on without a limit (its sink failed): it pauses where it is until a block
      // past that is in the store, never reserving below a number it may have sent.
      if (used !== undefined) this.options.esp.setSequenceLimit?.(spi, used)
      const end = (used ?? 0n) + this.options.blockSize
      const record = this.sequenceRecord(
        child.id,
        child.outboundSpi,
        end > MAX_SEQUENCE ? MAX_SEQUENCE : end,
        0n,
        Number.parseInt(child.inboundSpi, 16)
      )
      fresh.push(record)
      if (used === undefined) limits[child.id] = BigInt(record.reservedEnd)
      else paused.push({ spi, end: BigInt(record.reservedEnd) })
    }
    put.push(...fresh)
    try {
      await this.options.write(put)
    } catch (err) {
      this.counts.writeFailures++
      // nothing was reserved for them: they go on as before, unreserved (an heir finds no
      // reservation for them and renegotiates)
      for (const { spi } of paused) this.options.esp.setSequenceLimit?.(spi, undefined)
      throw err
    }
    this.sealed.set(warm.id, warm)
    for (const record of fresh) this.keep(record, Number.parseInt(record.outboundSpi, 16))
    for (const { spi, end } of paused) this.raise(spi, end)
    this.counts.statesRecorded++
    this.counts.blocksReserved += fresh.length
    return { sequenceLimits: limits }
  }

  /** Raises an SA's limit to a reserved end (capped at a 32-bit SA's last number). */
  private raise(spi: number, end: bigint): void {
    const esp = this.options.esp
    try {
      esp.setSequenceLimit?.(spi, end)
    } catch {
      // beyond a 32-bit SA's range: it is exhausted (and rekeyed) before it gets there
      esp.setSequenceLimit?.(spi, end > MAX_SEQUENCE_32 ? MAX_SEQUENCE_32 : end)
    }
  }

  /**
   * Seals a state under the current epoch (a new version each time).
   *
   * @returns the record, or undefined when this node owns no epoch
   */
  seal(state: IkeSaState): WarmRecord | undefined {
    const epoch = this.options.epoch()
    if (epoch === undefined) return undefined
    return this.options.keys.seal(state, {
      dvipa: this.options.dvipa,
      phase1Id: state.records.phase1.id,
      epoch,
      version: ++this.version
    })
  }

  /**
   * Keeps what an heir wrote for an adopted IKE SA (its sealed state under the new epoch and its
   * first reservations), so that its blocks are renewed and its records rewritten like an owner's.
   */
  adopted(
    warm: WarmRecord | undefined,
    reservations: SequenceRecord[],
    children: readonly Phase2Record[]
  ): void {
    if (warm !== undefined) this.sealed.set(warm.id, warm)
    const inbound = new Map(children.map((c) => [c.id, Number.parseInt(c.inboundSpi, 16)]))
    for (const record of reservations)
      this.keep(record, Number.parseInt(record.outboundSpi, 16), inbound.get(record.phase2Id))
  }

  /**
   * Handles an ESP engine event: on `sa:sequence-low` of one of this DVIPA's Child SAs, reserves
   * the next block (fenced), then raises the engine's limit. Resolves when done; never rejects
   * (a failed write leaves the limit where it was: the SA stops at it rather than risk a nonce).
   */
  async onEspEvent(event: EspEvent): Promise<void> {
    if (event.type !== 'sa:sequence-low') return
    const phase2Id = this.bySpi.get(event.spi)
    const current = phase2Id === undefined ? undefined : this.sequences.get(phase2Id)
    if (phase2Id === undefined || current === undefined) return
    const reserved = this.highestEnd(phase2Id, current)
    const from = reserved > event.limit ? reserved : event.limit
    const end =
      from + this.options.blockSize > MAX_SEQUENCE ? MAX_SEQUENCE : from + this.options.blockSize
    const record = this.sequenceRecord(
      phase2Id,
      current.outboundSpi,
      end,
      this.inboundTop(phase2Id),
      this.inboundSpi.get(phase2Id)
    )
    // from here on no write of this Child SA's reservation carries a lower end (a refresh of
    // the inbound value queued behind this write must not take the store's end back)
    this.attempted.set(phase2Id, end)
    try {
      await this.options.write([record])
    } catch {
      this.counts.writeFailures++
      return
    }
    // the Child SA may have gone while the write was under way
    if (!this.sequences.has(phase2Id)) return
    this.sequences.set(phase2Id, record)
    this.counts.blocksReserved++
    this.raise(event.spi, end)
  }

  /**
   * Records the inbound sequence number of every Child SA whose inbound SA went past what its
   * reservation says (one fenced write for all), so that an heir's anti-replay window starts
   * near where the owner's was even when the outbound side is quiet. The owner calls it
   * periodically (with its records audit).
   *
   * @returns how many reservations were rewritten
   */
  async refreshInbound(): Promise<number> {
    if (this.sequences.size === 0) return 0
    const tops = new Map<number, bigint>()
    for (const sa of this.options.esp.listSas())
      if (sa.direction === 'inbound') tops.set(sa.spi, sa.sequence)
    const changed: SequenceRecord[] = []
    for (const [id, record] of this.sequences) {
      const spi = this.inboundSpi.get(id)
      const top = spi === undefined ? undefined : tops.get(spi)
      if (top === undefined || top <= BigInt(record.inbound)) continue
      changed.push(
        this.options.keys.authenticate({
          ...record,
          reservedEnd: this.highestEnd(id, record).toString(),
          inbound: top.toString()
        })
      )
    }
    if (changed.length === 0) return 0
    try {
      await this.options.write(changed)
    } catch {
      this.counts.writeFailures++
      return 0
    }
    for (const record of changed) {
      const current = this.sequences.get(record.id)
      if (current === undefined) continue
      // keep the newest end (a reservation may have landed meanwhile)
      const end = this.highestEnd(record.id, current)
      this.sequences.set(
        record.id,
        this.options.keys.authenticate({
          ...current,
          inbound: record.inbound,
          reservedEnd: end.toString()
        })
      )
    }
    return changed.length
  }

  /** The highest end written or being written for a Child SA. */
  private highestEnd(phase2Id: string, record: SequenceRecord): bigint {
    const stored = BigInt(record.reservedEnd)
    const attempted = this.attempted.get(phase2Id) ?? 0n
    return attempted > stored ? attempted : stored
  }

  /**
   * Forgets a Child SA (deleted or rekeyed away).
   *
   * @returns the key of its reservation record, to delete
   */
  forgetChild(phase2Id: string): RecordKey[] {
    const record = this.sequences.get(phase2Id)
    if (record === undefined) return []
    this.sequences.delete(phase2Id)
    this.attempted.delete(phase2Id)
    this.bySpi.delete(Number.parseInt(record.outboundSpi, 16))
    this.inboundSpi.delete(phase2Id)
    return [{ kind: 'sequence', id: phase2Id }]
  }

  /**
   * Forgets an IKE SA's sealed state (deleted, or rekeyed to a new id).
   *
   * @returns the key of its warm record, to delete
   */
  forgetIke(phase1Id: string): RecordKey[] {
    if (!this.sealed.delete(phase1Id)) return []
    return [{ kind: 'warm', id: phase1Id }]
  }

  /** Forgets everything (the DVIPA closed). */
  clear(): void {
    this.sealed.clear()
    this.sequences.clear()
    this.attempted.clear()
    this.bySpi.clear()
    this.inboundSpi.clear()
  }

  private keep(record: SequenceRecord, outboundSpi: number, inboundSpi?: number): void {
    this.sequences.set(record.phase2Id, record)
    this.bySpi.set(outboundSpi, record.phase2Id)
    if (inboundSpi !== undefined) this.inboundSpi.set(record.phase2Id, inboundSpi)
  }

  /** The inbound SA's highest received sequence number, 0 if unknown. */
  private inboundTop(phase2Id: string): bigint {
    const spi = this.inboundSpi.get(phase2Id)
    if (spi === undefined) return 0n
    return this.sequenceOf(spi, 'inbound') ?? 0n
  }

  /**
   * The engine's sequence number of one SA (outbound: the last used; inbound: the highest
   * received), undefined when it does not hold it: one lookup where the engine has `saInfo`,
   * a listing of every SA otherwise.
   */
  private sequenceOf(spi: number, direction: EspDirection): bigint | undefined {
    const esp = this.options.esp
    if (esp.saInfo !== undefined) return esp.saInfo(spi, direction)?.sequence
    for (const sa of esp.listSas())
      if (sa.direction === direction && sa.spi === spi) return sa.sequence
    return undefined
  }

  private sequenceRecord(
    phase2Id: string,
    outboundSpi: string,
    end: bigint,
    inbound: bigint,
    inboundSpi: number | undefined
  ): SequenceRecord {
    if (inboundSpi !== undefined) this.inboundSpi.set(phase2Id, inboundSpi)
    return this.options.keys.authenticate({
      v: 1,
      kind: 'sequence',
      id: phase2Id,
      dvipa: this.options.dvipa,
      phase2Id,
      outboundSpi,
      reservedEnd: end.toString(),
      inbound: inbound.toString()
    })
  }
}
