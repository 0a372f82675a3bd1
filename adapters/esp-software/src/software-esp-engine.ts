import { Subject, type Observable } from 'rxjs'
import {
  DuplicateSaError,
  ESP_DROP_REASONS,
  InvalidParametersError,
  NotStartedError,
  type CleartextInboundResult,
  type Clock,
  type DynamicFilter,
  type Endpoint,
  type EspCounters,
  type EspDirection,
  type EspDropReason,
  type EspEngine,
  type EspEvent,
  type EspProposalShape,
  type EspSaInfo,
  type EspIntegrityAlgorithm,
  type EspSaParams,
  type InboundResult,
  type OutboundResult,
  type RandomSource,
  type TimerHandle,
  type UdpInboundResult
} from '@vipsec/interface'
import { randomBytes } from 'node:crypto'
import {
  ESP_CBC_IV_KEY_LENGTH,
  EspSealer,
  espMinimumLength,
  espSequence,
  espTransformKey,
  espSpi,
  keyFingerprint,
  openRaw,
  type EspKey,
  type OpenResult
} from './esp-crypto.js'
import {
  SOFTWARE_ESP_CAPABILITIES,
  unsupportedInEspProposal,
  type EspTransformCapability
} from './capabilities.js'
import { CryptoWorkerPool, type OpenJob, type SealJob } from './crypto-worker-pool.js'
import {
  buildIpPacket,
  classifyUdpPayload,
  formatIp,
  parseIp,
  parseIpPacket,
  type IpPacketInfo
} from '@vipsec/wire'
import { DEFAULT_REPLAY_WINDOW, MAX_REPLAY_WINDOW, ReplayWindow } from './replay-window.js'
import { Spd, copyFilter } from './spd.js'

/** What a {@link SoftwareEspEngine} needs. */
export interface SoftwareEspEngineComponents {
  /** Time, for SA lifetimes. */
  clock: Clock
  /**
   * Randomness, drawn once per outbound AES-CBC SA for the local key of its IV generator (never
   * per packet). Default: node:crypto.
   */
  random?: RandomSource
}

/** Options of a {@link SoftwareEspEngine}. */
export interface SoftwareEspEngineInit {
  /** The anti-replay window of inbound SAs that do not set `replayWindow`. Default 128. */
  replayWindow?: number
  /**
   * An outbound SA is soft-expired (`sa:soft-expired` with limit `sequence`, so that IKE rekeys)
   * when it has fewer than this many sequence numbers left. Default 2^24.
   */
  sequenceSoftMargin?: number
  /**
   * Warm mode: an outbound SA with a sequence limit emits `sa:sequence-low` (once per limit)
   * when it has at most this many sequence numbers left below it, so that its owner reserves the
   * next block in time. Set it to half the reservation block. Default 2^19.
   */
  sequenceLowWater?: number
  /**
   * Worker threads for {@link SoftwareEspEngine.protectBatch} and
   * {@link SoftwareEspEngine.unprotectBatch}: the AES work of a batch is spread over them while
   * SAD, SPD, sequence numbers and replay windows stay on the calling thread. Default 0 (none:
   * batches run inline). The synchronous `protect`/`unprotect` never use workers.
   */
  workers?: number
  /**
   * How many retired outbound keys (as SHA-256 fingerprints, with the highest sequence number
   * used) the engine remembers, to refuse reinstalling one from a lower sequence number. The
   * oldest are forgotten first. Default 65536.
   */
  keyMemory?: number
}

const IPPROTO_IPV4 = 4
const IPPROTO_IPV6 = 41
const COMBINED_MODE = new Set<string>(['aes-gcm-16', 'null-aes-gmac', 'chacha20-poly1305'])
/** Expired SAs remembered so that late packets count as `sa-expired`, not `unknown-spi`. */
const EXPIRED_MEMORY = 1024

/** @internal one installed SA */
interface Sa {
  readonly id: number
  readonly spi: number
  readonly direction: EspDirection
  readonly mode: 'tunnel' | 'transport'
  readonly algorithm: EspSaParams['algorithm']
  readonly integrity: EspIntegrityAlgorithm | undefined
  readonly esn: boolean
  readonly tag: string | undefined
  readonly lifetime: EspSaParams['lifetime']
  readonly sealer: EspSealer | undefined
  readonly key: EspKey | undefined
  readonly gmac: boolean
  /** Inbound: shorter packets are malformed. */
  readonly minLength: number
  readonly window: ReplayWindow | undefined
  readonly to: Endpoint
  readonly udp: boolean
  readonly local: Uint8Array | undefined
  readonly remote: Uint8Array | undefined
  readonly fingerprint: string | undefined
  readonly installedAt: number
  readonly timers: TimerHandle[]
  packets: number
  bytes: number
  softExpired: boolean
  /** Warm mode: whether the SA has a limit whose low water was not yet reported. */
  watchLimit: boolean
}

function zeroCounters(): EspCounters {
  const dropped = {} as Record<EspDropReason, number>
  for (const reason of ESP_DROP_REASONS) dropped[reason] = 0
  return { encapsulated: 0, decapsulated: 0, bypassed: 0, keepalives: 0, dropped }
}

const LIFETIME_FIELDS = [
  'softSeconds',
  'hardSeconds',
  'softBytes',
  'hardBytes',
  'softPackets',
  'hardPackets'
] as const

/**
 * The software ESP engine: ESP (RFC 4303) with AES-GCM (RFC 4106), AES-GMAC (RFC 4543),
 * ChaCha20-Poly1305 (RFC 7634) and AES-CBC (RFC 3602) with HMAC-SHA-2 (RFC 4868) or HMAC-SHA-1-96
 * (RFC 2404) on node:crypto, tunnel and transport mode, ESP-in-UDP (RFC 3948), a SAD keyed by SPI, an SPD of
 * ordered dynamic filters with duplicate removal, anti-replay windows up to 4096 packets, and SA
 * lifetimes by time, bytes, packets and sequence numbers.
 *
 * Nonce reuse is made impossible: each packet's IV is its SA's sequence number (AES-CBC: the
 * sequence number encrypted under a local random key and then the SA's key, so unpredictable),
 * an SA is removed
 * rather than wrapped, and an outbound SA cannot be installed with keying material that another
 * outbound SA of this engine uses or used, unless it continues above the highest sequence number
 * used with it.
 */
export class SoftwareEspEngine implements EspEngine {
  /** The ESP transform combinations this engine implements, with their IKEv2 transform IDs. */
  static readonly capabilities: readonly EspTransformCapability[] = SOFTWARE_ESP_CAPABILITIES

  /** {@inheritDoc @vipsec/interface!EspEngine.unsupportedIn} */
  unsupportedIn(proposal: EspProposalShape): string[] {
    return unsupportedInEspProposal(proposal)
  }

  private readonly clock: Clock
  private readonly random: RandomSource | undefined
  private readonly defaultWindow: number
  private readonly sequenceSoftMargin: number
  private readonly sequenceLowWater: number
  private readonly inbound = new Map<number, Sa>()
  private readonly outbound = new Map<number, Sa>()
  private readonly spd = new Spd()
  private readonly expired = new Set<string>()
  private readonly liveKeys = new Map<string, number>()
  private readonly usedKeys = new Map<string, bigint>()
  private stats = zeroCounters()
  private subject = new Subject<EspEvent>()
  private observable: Observable<EspEvent> = this.subject.asObservable()
  private started = false
  private readonly workerCount: number
  private readonly keyMemory: number
  private pool: CryptoWorkerPool | undefined
  private nextSaId = 1
  /** What the last successful `prepareOutbound` found, taken at once by its caller. */
  private outboundPayload: Uint8Array | undefined
  private outboundNextHeader = 0
  /** The sequence number halves the last successful `prepareInbound` found. */
  private inboundHigh = 0
  private inboundLow = 0
  /** While a batch is being prepared: SAs whose keys the workers must forget after its jobs. */
  private deferredRemovals: number[] | undefined

  /**
   * @param components - the clock
   * @param init - options, see {@link SoftwareEspEngineInit}
   */
  constructor(components: SoftwareEspEngineComponents, init: SoftwareEspEngineInit = {}) {
    if (components?.clock == null) {
      throw new InvalidParametersError('components.clock', 'a Clock is required')
    }
    this.clock = components.clock
    this.random = components.random
    this.defaultWindow = init.replayWindow ?? DEFAULT_REPLAY_WINDOW
    checkWindow(this.defaultWindow, 'init.replayWindow')
    this.sequenceSoftMargin = init.sequenceSoftMargin ?? 2 ** 24
    if (!Number.isInteger(this.sequenceSoftMargin) || this.sequenceSoftMargin < 0) {
      throw new InvalidParametersError('init.sequenceSoftMargin', 'must be an integer >= 0')
    }
    this.sequenceLowWater = init.sequenceLowWater ?? 2 ** 19
    if (!Number.isInteger(this.sequenceLowWater) || this.sequenceLowWater < 0) {
      throw new InvalidParametersError('init.sequenceLowWater', 'must be an integer >= 0')
    }
    this.keyMemory = init.keyMemory ?? 65536
    if (!Number.isInteger(this.keyMemory) || this.keyMemory < 0) {
      throw new InvalidParametersError('init.keyMemory', 'must be an integer >= 0')
    }
    this.workerCount = init.workers ?? 0
    if (!Number.isInteger(this.workerCount) || this.workerCount < 0 || this.workerCount > 64) {
      throw new InvalidParametersError('init.workers', 'must be an integer from 0 to 64')
    }
  }

  /** SA and filter events; completes on `stop()`. */
  get events$(): Observable<EspEvent> {
    return this.observable
  }

  /** Starts the engine; a second call does nothing. */
  async start(): Promise<void> {
    if (this.started) return
    if (this.subject.closed || this.subject.isStopped) {
      this.subject = new Subject<EspEvent>()
      this.observable = this.subject.asObservable()
    }
    if (this.workerCount > 0) this.pool = new CryptoWorkerPool(this.workerCount)
    this.started = true
  }

  /** Stops the engine: removes every SA and filter, cancels timers, completes `events$`. */
  async stop(): Promise<void> {
    if (!this.started) return
    this.started = false
    for (const sa of [...this.inbound.values(), ...this.outbound.values()]) this.forget(sa)
    this.spd.clear()
    this.expired.clear()
    const pool = this.pool
    this.pool = undefined
    await pool?.close()
    this.subject.complete()
  }

  /** Whether the engine is started. */
  isStarted(): boolean {
    return this.started
  }

  private requireStarted(): void {
    if (!this.started) throw new NotStartedError('the ESP engine is not started')
  }

  private emit(event: EspEvent): void {
    this.subject.next(event)
  }

  /**
   * Installs an SA.
   *
   * @param params - the SA
   * @throws DuplicateSaError when an SA with this SPI and direction exists
   * @throws InvalidParametersError when a parameter is out of range (named in `argument`)
   * @throws NotStartedError when the engine is not started
   */
  addSa(params: EspSaParams): void {
    this.requireStarted()
    const sa = this.validateSa(params)
    const table = sa.direction === 'inbound' ? this.inbound : this.outbound
    table.set(sa.spi, sa)
    if (sa.fingerprint != null) this.liveKeys.set(sa.fingerprint, sa.spi)
    this.pool?.addSa(
      sa.id,
      {
        algorithm: sa.algorithm,
        ...(sa.integrity !== undefined ? { integrity: sa.integrity } : {}),
        keyMaterial: params.keyMaterial,
        ...(sa.sealer?.ivKey !== undefined ? { ivKey: sa.sealer.ivKey } : {}),
        ...(sa.sealer !== undefined && sa.sealer.ivMask !== 0 ? { ivMask: sa.sealer.ivMask } : {})
      },
      sa.spi,
      sa.esn
    )
    this.expired.delete(`${sa.direction}:${sa.spi}`)
    const { softSeconds, hardSeconds } = sa.lifetime
    if (softSeconds > 0) {
      sa.timers.push(this.clock.setTimeout(() => this.softExpire(sa, 'time'), softSeconds * 1000))
    }
    if (hardSeconds > 0) {
      sa.timers.push(
        this.clock.setTimeout(() => this.removeExpired(sa, 'hard-expired'), hardSeconds * 1000)
      )
    }
    this.emit({
      type: 'sa:installed',
      spi: sa.spi,
      direction: sa.direction,
      ...(sa.tag !== undefined ? { tag: sa.tag } : {})
    })
  }

  private validateSa(params: EspSaParams): Sa {
    if (params == null || typeof params !== 'object') {
      throw new InvalidParametersError('params', 'must be an object')
    }
    const { spi, direction, mode, algorithm } = params
    if (!Number.isInteger(spi) || spi < 256 || spi > 0xffffffff) {
      throw new InvalidParametersError('params.spi', 'must be an integer from 256 to 2^32-1')
    }
    if (direction !== 'inbound' && direction !== 'outbound') {
      throw new InvalidParametersError('params.direction', 'must be inbound or outbound')
    }
    if ((direction === 'inbound' ? this.inbound : this.outbound).has(spi)) {
      throw new DuplicateSaError(`an ${direction} SA with SPI ${spi} is installed`)
    }
    if (mode !== 'tunnel' && mode !== 'transport') {
      throw new InvalidParametersError('params.mode', 'must be tunnel or transport')
    }
    if (!COMBINED_MODE.has(algorithm) && algorithm !== 'aes-cbc') {
      throw new InvalidParametersError(
        'params.algorithm',
        'must be aes-gcm-16, null-aes-gmac, chacha20-poly1305 or aes-cbc'
      )
    }
    const integrity = params.integrity
    if (algorithm === 'aes-cbc' ? integrity == null : integrity !== undefined) {
      throw new InvalidParametersError(
        'params.integrity',
        algorithm === 'aes-cbc'
          ? 'required with aes-cbc: hmac-sha2-256-128, hmac-sha2-384-192, hmac-sha2-512-256 or hmac-sha1-96'
          : `must be absent with the combined-mode ${algorithm}`
      )
    }
    if (typeof params.extendedSequenceNumbers !== 'boolean') {
      throw new InvalidParametersError('params.extendedSequenceNumbers', 'must be a boolean')
    }
    const esn = params.extendedSequenceNumbers
    // an outbound AES-CBC SA's key carries its IV generator: made once here, and the sealer
    // takes the same key rather than building its own
    const ivKey =
      direction === 'outbound' && algorithm === 'aes-cbc'
        ? (this.random?.randomBytes(ESP_CBC_IV_KEY_LENGTH) ?? randomBytes(ESP_CBC_IV_KEY_LENGTH))
        : undefined
    let key: EspKey
    try {
      key = espTransformKey(algorithm, integrity, params.keyMaterial, 'params.keyMaterial', ivKey)
    } catch (err) {
      if (err instanceof InvalidParametersError && err.argument === 'integrity') {
        throw new InvalidParametersError('params.integrity', err.message)
      }
      throw err
    }
    const lifetime = params.lifetime
    if (lifetime == null || typeof lifetime !== 'object') {
      throw new InvalidParametersError('params.lifetime', 'must be an object')
    }
    for (const field of LIFETIME_FIELDS) {
      const value = lifetime[field]
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
        throw new InvalidParametersError(`params.lifetime.${field}`, 'must be a number >= 0')
      }
    }
    for (const kind of ['Seconds', 'Bytes', 'Packets'] as const) {
      const soft = lifetime[`soft${kind}`]
      const hard = lifetime[`hard${kind}`]
      if (soft > 0 && hard > 0 && soft > hard) {
        throw new InvalidParametersError(`params.lifetime.soft${kind}`, `exceeds hard${kind}`)
      }
    }
    let local: Uint8Array | undefined
    let remote: Uint8Array | undefined
    if (params.tunnel != null) {
      local = parseIp(params.tunnel.local, 'params.tunnel.local')
      remote = parseIp(params.tunnel.remote, 'params.tunnel.remote')
      if (local.length !== remote.length) {
        throw new InvalidParametersError(
          'params.tunnel.remote',
          'address family differs from local'
        )
      }
    } else if (mode === 'tunnel' && direction === 'outbound') {
      throw new InvalidParametersError('params.tunnel', 'required for an outbound tunnel-mode SA')
    } else if (mode === 'transport' && direction === 'inbound') {
      throw new InvalidParametersError(
        'params.tunnel',
        "required for an inbound transport-mode SA: the hosts' addresses"
      )
    }
    const udp = params.udpEncapsulation
    if (udp != null) {
      for (const side of ['local', 'remote'] as const) {
        const endpoint = udp[side]
        parseIp(endpoint?.address, `params.udpEncapsulation.${side}.address`)
        if (!Number.isInteger(endpoint.port) || endpoint.port < 1 || endpoint.port > 0xffff) {
          throw new InvalidParametersError(
            `params.udpEncapsulation.${side}.port`,
            'must be an integer from 1 to 65535'
          )
        }
      }
    }
    if (params.tag !== undefined && typeof params.tag !== 'string') {
      throw new InvalidParametersError('params.tag', 'must be a string')
    }
    let sealer: EspSealer | undefined
    let window: ReplayWindow | undefined
    let fingerprint: string | undefined
    if (direction === 'outbound') {
      const initial = params.initialSequence ?? 0n
      fingerprint = keyFingerprint(params.keyMaterial)
      const live = this.liveKeys.get(fingerprint)
      if (live !== undefined) {
        throw new InvalidParametersError(
          'params.keyMaterial',
          `in use by outbound SA ${live}: the same key would repeat nonces`
        )
      }
      const used = this.usedKeys.get(fingerprint)
      if (used !== undefined && typeof initial === 'bigint' && initial < used) {
        throw new InvalidParametersError(
          'params.initialSequence',
          `this key was used up to sequence ${used}: continue above it or use a new key`
        )
      }
      if (params.sequenceLimit !== undefined) {
        const max = esn ? 0xffffffffffffffffn : 0xffffffffn
        const limit = params.sequenceLimit
        if (typeof limit !== 'bigint' || limit < 0n || limit > max) {
          throw new InvalidParametersError(
            'params.sequenceLimit',
            `must be a bigint from 0 to ${max}`
          )
        }
      }
      try {
        sealer = new EspSealer(
          algorithm,
          params.keyMaterial,
          spi,
          esn,
          initial,
          integrity,
          ivKey,
          key
        )
        sealer.setLimit(params.sequenceLimit)
      } catch (err) {
        if (err instanceof InvalidParametersError) {
          throw new InvalidParametersError('params.initialSequence', err.message)
        }
        throw err
      }
    } else {
      const size = params.replayWindow ?? this.defaultWindow
      checkWindow(size, 'params.replayWindow')
      const top = params.initialSequence ?? 0n
      const max = esn ? 0xffffffffffffffffn : 0xffffffffn
      if (typeof top !== 'bigint' || top < 0n || top > max) {
        throw new InvalidParametersError(
          'params.initialSequence',
          `must be a bigint from 0 to ${max}`
        )
      }
      window = new ReplayWindow(size, top)
    }
    const to: Endpoint =
      udp != null
        ? { address: udp.remote.address, port: udp.remote.port }
        : { address: params.tunnel?.remote ?? '', port: 0 }
    return {
      id: this.nextSaId++,
      spi,
      direction,
      mode,
      algorithm,
      integrity,
      esn,
      tag: params.tag,
      lifetime: { ...lifetime },
      sealer,
      key: direction === 'inbound' ? key : undefined,
      gmac: algorithm === 'null-aes-gmac',
      minLength: espMinimumLength(key),
      window,
      to,
      udp: udp != null,
      local,
      remote,
      fingerprint,
      installedAt: this.clock.monotonic(),
      timers: [],
      packets: 0,
      bytes: 0,
      softExpired: false,
      watchLimit: direction === 'outbound' && params.sequenceLimit !== undefined
    }
  }

  /**
   * Warm mode: sets the highest sequence number an outbound SA may use; `undefined` removes the
   * limit. The low-water event is armed again for the new limit.
   *
   * @param spi - the outbound SA's SPI
   * @param limit - the new limit
   * @returns whether the SA exists
   * @throws InvalidParametersError when `limit` is out of the SA's sequence range
   */
  setSequenceLimit(spi: number, limit: bigint | undefined): boolean {
    const sa = this.outbound.get(spi)
    if (sa == null) return false
    try {
      ;(sa.sealer as EspSealer).setLimit(limit)
    } catch (err) {
      if (err instanceof InvalidParametersError)
        throw new InvalidParametersError('limit', err.message)
      throw err
    }
    sa.watchLimit = limit !== undefined
    return true
  }

  /**
   * Removes an SA; returns whether it existed.
   *
   * @param spi - its SPI
   * @param direction - its direction
   */
  removeSa(spi: number, direction: EspDirection): boolean {
    const sa = (direction === 'inbound' ? this.inbound : this.outbound).get(spi)
    if (sa == null) return false
    this.forget(sa)
    this.emit({ type: 'sa:removed', spi, direction, ...tagOf(sa), reason: 'deleted' })
    return true
  }

  private forget(sa: Sa): void {
    const table = sa.direction === 'inbound' ? this.inbound : this.outbound
    if (table.get(sa.spi) !== sa) return
    table.delete(sa.spi)
    for (const timer of sa.timers) this.clock.clearTimeout(timer)
    if (this.deferredRemovals != null) this.deferredRemovals.push(sa.id)
    else this.pool?.removeSa(sa.id)
    if (sa.fingerprint != null && sa.sealer != null) {
      this.liveKeys.delete(sa.fingerprint)
      this.usedKeys.delete(sa.fingerprint)
      this.usedKeys.set(sa.fingerprint, sa.sealer.sequence)
      if (this.usedKeys.size > this.keyMemory) {
        this.usedKeys.delete(this.usedKeys.keys().next().value as string)
      }
    }
  }

  private removeExpired(sa: Sa, reason: 'hard-expired' | 'sequence-exhausted'): void {
    const table = sa.direction === 'inbound' ? this.inbound : this.outbound
    if (table.get(sa.spi) !== sa) return
    this.forget(sa)
    this.expired.add(`${sa.direction}:${sa.spi}`)
    if (this.expired.size > EXPIRED_MEMORY) {
      this.expired.delete(this.expired.values().next().value as string)
    }
    this.emit({ type: 'sa:removed', spi: sa.spi, direction: sa.direction, ...tagOf(sa), reason })
  }

  private softExpire(sa: Sa, limit: 'time' | 'bytes' | 'packets' | 'sequence'): void {
    if (sa.softExpired) return
    sa.softExpired = true
    this.emit({
      type: 'sa:soft-expired',
      spi: sa.spi,
      direction: sa.direction,
      ...tagOf(sa),
      limit
    })
  }

  /** The installed SAs, outbound then inbound. */
  listSas(): EspSaInfo[] {
    return [...this.outbound.values(), ...this.inbound.values()].map(saInfoOf)
  }

  /**
   * One installed SA, as {@link listSas} lists it, without listing the others.
   *
   * @param spi - its SPI
   * @param direction - its direction
   */
  saInfo(spi: number, direction: EspDirection): EspSaInfo | undefined {
    const sa = (direction === 'inbound' ? this.inbound : this.outbound).get(spi >>> 0)
    return sa === undefined ? undefined : saInfoOf(sa)
  }

  /**
   * Installs a dynamic filter, removing active duplicates (same id, or same direction and
   * selector) with a `filter:duplicate-removed` event each.
   *
   * @param filter - the filter
   * @returns the ids of the removed duplicates
   */
  installFilter(filter: DynamicFilter): string[] {
    this.requireStarted()
    const { compiled, removed } = this.spd.install(filter)
    for (const old of removed) {
      this.emit({ type: 'filter:duplicate-removed', removed: old.filter.id, keptId: filter.id })
    }
    this.emit({ type: 'filter:installed', filter: copyFilter(compiled.filter) })
    return removed.map((old) => old.filter.id)
  }

  /**
   * Removes a filter; returns whether it existed.
   *
   * @param id - its id
   */
  removeFilter(id: string): boolean {
    const removed = this.spd.remove(id)
    if (removed) this.emit({ type: 'filter:removed', id })
    return removed
  }

  /** The active filters, outbound then inbound, each in matching order. */
  listFilters(): DynamicFilter[] {
    return this.spd.list()
  }

  private drop(reason: EspDropReason): { action: 'drop'; reason: EspDropReason } {
    this.stats.dropped[reason]++
    return { action: 'drop', reason }
  }

  /**
   * Protects an outbound IP packet: SPD lookup, then ESP with the filter's SA.
   *
   * @param packet - an IPv4 or IPv6 packet
   */
  protect(packet: Uint8Array): OutboundResult {
    const sa = this.prepareOutbound(packet)
    if ('action' in sa) return sa
    const payload = this.outboundPayload as Uint8Array
    this.outboundPayload = undefined
    const esp = (sa.sealer as EspSealer).seal(payload, this.outboundNextHeader)
    return this.finishOutbound(sa, payload.length, esp, packet)
  }

  /**
   * Protects a batch of outbound packets; with `workers` configured the encryption runs on the
   * worker threads (sequence numbers are still taken here, in order), otherwise it is
   * `packets.map(protect)`. Results are in the order of `packets`.
   *
   * @param packets - IPv4 or IPv6 packets
   */
  async protectBatch(packets: Uint8Array[]): Promise<OutboundResult[]> {
    const pool = this.pool
    if (pool == null) return packets.map((p) => this.protect(p))
    const results: OutboundResult[] = new Array(packets.length)
    const jobs: SealJob[] = []
    const waiting: { index: number; sa: Sa; length: number }[] = []
    let sealing: Promise<Uint8Array[]> | undefined
    this.deferredRemovals = []
    try {
      for (let i = 0; i < packets.length; i++) {
        const sa = this.prepareOutbound(packets[i])
        if ('action' in sa) {
          results[i] = sa
          continue
        }
        const payload = this.outboundPayload as Uint8Array
        this.outboundPayload = undefined
        const nextHeader = this.outboundNextHeader
        const [high, low] = (sa.sealer as EspSealer).reserve()
        jobs.push({ sa: sa.id, high, low, payload, nextHeader })
        waiting.push({ index: i, sa, length: payload.length })
        // account now, so that limits and exhaustion hold for the rest of the batch
        this.afterSeal(sa, payload.length)
      }
      // the jobs are posted before any removal of an SA that this batch exhausted
      sealing = jobs.length > 0 ? pool.seal(jobs) : undefined
    } finally {
      const removals = this.deferredRemovals
      this.deferredRemovals = undefined
      for (const id of removals) pool.removeSa(id)
    }
    if (sealing != null) {
      const sealed = await sealing
      waiting.forEach((w, j) => {
        results[w.index] = this.outboundResult(w.sa, sealed[j], packets[w.index])
      })
    }
    return results
  }

  /**
   * SPD and SAD lookup and limit checks of an outbound packet: the SA, with the payload and next
   * header left in `outboundPayload` and `outboundNextHeader` (no object per packet), or the
   * result when the packet is not to be sealed.
   */
  private prepareOutbound(packet: Uint8Array): OutboundResult | Sa {
    const info = parseIpPacket(packet)
    if (info == null) return this.drop('malformed')
    const match = this.spd.match('outbound', packet, info)
    if (match === undefined) return this.drop('malformed')
    if (match === null) return this.drop('no-policy')
    const filter = match.filter
    if (filter.action === 'discard') return this.drop('discard-policy')
    if (filter.action === 'bypass') {
      this.stats.bypassed++
      return { action: 'bypass', packet }
    }
    const sa = filter.spi === undefined ? undefined : this.outbound.get(filter.spi)
    if (sa == null) {
      return this.drop(this.expired.has(`outbound:${filter.spi}`) ? 'sa-expired' : 'no-sa')
    }
    let payload: Uint8Array
    let nextHeader: number
    if (sa.mode === 'tunnel') {
      payload = info.totalLength === packet.length ? packet : packet.subarray(0, info.totalLength)
      nextHeader = info.version === 4 ? IPPROTO_IPV4 : IPPROTO_IPV6
    } else {
      payload = packet.subarray(info.payloadOffset, info.totalLength)
      nextHeader = info.protocol
    }
    if (!this.admit(sa, payload.length)) return this.drop('sa-expired')
    if ((sa.sealer as EspSealer).exhausted) {
      this.removeExpired(sa, 'sequence-exhausted')
      return this.drop('sa-expired')
    }
    // warm mode: no number past what the owner reserved in the coupling store
    if ((sa.sealer as EspSealer).atLimit) return this.drop('sequence-unreserved')
    this.outboundPayload = payload
    this.outboundNextHeader = nextHeader
    return sa
  }

  private finishOutbound(
    sa: Sa,
    length: number,
    esp: Uint8Array,
    packet: Uint8Array
  ): OutboundResult {
    this.afterSeal(sa, length)
    return this.outboundResult(sa, esp, packet)
  }

  private afterSeal(sa: Sa, length: number): void {
    const sealer = sa.sealer as EspSealer
    this.stats.encapsulated++
    this.account(sa, length)
    if (!sa.softExpired && sealer.remaining < this.sequenceSoftMargin) {
      this.softExpire(sa, 'sequence')
    }
    if (sa.watchLimit && sealer.toLimit <= this.sequenceLowWater) this.lowWater(sa)
    if (sealer.exhausted) this.removeExpired(sa, 'sequence-exhausted')
  }

  private lowWater(sa: Sa): void {
    sa.watchLimit = false
    const sealer = sa.sealer as EspSealer
    this.emit({
      type: 'sa:sequence-low',
      spi: sa.spi,
      direction: 'outbound',
      ...tagOf(sa),
      sequence: sealer.sequence,
      limit: sealer.limit as bigint
    })
  }

  private outboundResult(sa: Sa, esp: Uint8Array, packet: Uint8Array): OutboundResult {
    let to: Endpoint
    if (sa.to.address === '') {
      // transport mode without addresses: to the inner destination
      const info = parseIpPacket(packet) as IpPacketInfo
      to = {
        address: formatIp(packet, info.destinationOffset, info.addressLength),
        port: sa.to.port
      }
    } else {
      to = { address: sa.to.address, port: sa.to.port }
    }
    return { action: 'protect', packet: esp, spi: sa.spi, to, udp: sa.udp }
  }

  /** Whether the SA may process `bytes` more inner bytes; removes it at a hard limit if not. */
  private admit(sa: Sa, bytes: number): boolean {
    const { hardPackets, hardBytes } = sa.lifetime
    if (
      (hardPackets > 0 && sa.packets >= hardPackets) ||
      (hardBytes > 0 && sa.bytes + bytes > hardBytes)
    ) {
      this.removeExpired(sa, 'hard-expired')
      return false
    }
    return true
  }

  private account(sa: Sa, bytes: number): void {
    sa.packets++
    sa.bytes += bytes
    const { softPackets, softBytes, hardPackets, hardBytes } = sa.lifetime
    if (!sa.softExpired) {
      if (softPackets > 0 && sa.packets >= softPackets) this.softExpire(sa, 'packets')
      else if (softBytes > 0 && sa.bytes >= softBytes) this.softExpire(sa, 'bytes')
    }
    if (
      (hardPackets > 0 && sa.packets >= hardPackets) ||
      (hardBytes > 0 && sa.bytes >= hardBytes)
    ) {
      this.removeExpired(sa, 'hard-expired')
    }
  }

  /**
   * Processes an inbound ESP packet: SAD lookup, anti-replay check, ICV, window update, then the
   * SPD check of the inner packet.
   *
   * @param packet - the ESP packet, from the SPI
   */
  unprotect(packet: Uint8Array): InboundResult {
    const sa = this.prepareInbound(packet)
    if ('action' in sa) return sa
    const high = this.inboundHigh
    const low = this.inboundLow
    return this.finishInbound(
      sa,
      high,
      low,
      openRaw(sa.gmac, sa.key as EspKey, sa.esn, high, packet)
    )
  }

  /**
   * Unprotects a batch of inbound ESP packets; with `workers` configured the decryption runs on
   * the worker threads, while the replay windows are checked here before and updated here after
   * (in the order of `packets`). Otherwise it is `packets.map(unprotect)`.
   *
   * @param packets - ESP packets
   */
  async unprotectBatch(packets: Uint8Array[]): Promise<InboundResult[]> {
    const pool = this.pool
    if (pool == null) return packets.map((p) => this.unprotect(p))
    const results: InboundResult[] = new Array(packets.length)
    const jobs: OpenJob[] = []
    const waiting: { index: number; sa: Sa; high: number; low: number }[] = []
    for (let i = 0; i < packets.length; i++) {
      const sa = this.prepareInbound(packets[i])
      if ('action' in sa) {
        results[i] = sa
        continue
      }
      const high = this.inboundHigh
      jobs.push({ sa: sa.id, high, packet: packets[i] })
      waiting.push({ index: i, sa, high, low: this.inboundLow })
    }
    if (jobs.length > 0) {
      const opened = await pool.open(jobs)
      waiting.forEach((w, j) => {
        // the SA may have gone while the workers ran
        const current = this.inbound.get(w.sa.spi)
        results[w.index] =
          current === w.sa
            ? this.finishInbound(w.sa, w.high, w.low, opened[j])
            : this.drop(this.expired.has(`inbound:${w.sa.spi}`) ? 'sa-expired' : 'unknown-spi')
      })
    }
    return results
  }

  /**
   * SAD lookup and anti-replay check of an inbound packet: the SA, with the sequence number's
   * halves left in `inboundHigh` and `inboundLow` (no object per packet), or the drop.
   */
  private prepareInbound(packet: Uint8Array): InboundResult | Sa {
    if (!(packet instanceof Uint8Array)) return this.drop('malformed')
    const spi = espSpi(packet)
    if (spi === undefined) return this.drop('malformed')
    const sa = this.inbound.get(spi)
    if (sa == null) {
      return this.drop(this.expired.has(`inbound:${spi}`) ? 'sa-expired' : 'unknown-spi')
    }
    if (packet.length < sa.minLength) return this.drop('malformed')
    const window = sa.window as ReplayWindow
    const low = espSequence(packet)
    const high = window.inferHigh(low, sa.esn)
    const verdict = window.check(high, low)
    if (verdict !== 'ok') return this.drop(verdict)
    this.inboundHigh = high
    this.inboundLow = low
    return sa
  }

  private finishInbound(sa: Sa, high: number, low: number, opened: OpenResult): InboundResult {
    if (!opened.ok) return this.drop(opened.reason)
    const window = sa.window as ReplayWindow
    // checked again: another packet with this number may have been accepted meanwhile (batches)
    const verdict = window.check(high, low)
    if (verdict !== 'ok') return this.drop(verdict)
    window.accept(high, low)
    let inner: Uint8Array
    const nextHeader = opened.nextHeader
    if (sa.mode === 'tunnel') {
      if (nextHeader !== IPPROTO_IPV4 && nextHeader !== IPPROTO_IPV6) return this.drop('malformed')
      inner = opened.payload
    } else {
      inner = buildIpPacket({
        source: sa.remote as Uint8Array,
        destination: sa.local as Uint8Array,
        protocol: nextHeader,
        payload: opened.payload
      })
    }
    const info = parseIpPacket(inner)
    if (info == null) return this.drop('malformed')
    if (sa.mode === 'tunnel' && info.version !== (nextHeader === IPPROTO_IPV4 ? 4 : 6)) {
      return this.drop('malformed')
    }
    if (info.totalLength < inner.length) inner = inner.subarray(0, info.totalLength)
    const match = this.spd.match('inbound', inner, info)
    if (match === undefined) return this.drop('malformed')
    if (
      match === null ||
      match.filter.action !== 'protect' ||
      (match.filter.spi !== undefined && match.filter.spi !== sa.spi)
    ) {
      return this.drop('policy-mismatch')
    }
    if (!this.admit(sa, opened.payload.length)) return this.drop('sa-expired')
    this.stats.decapsulated++
    this.account(sa, opened.payload.length)
    return { action: 'accept', packet: inner, spi: sa.spi, nextHeader }
  }

  /**
   * Processes the payload of a UDP datagram received on the NAT-T port (RFC 3948).
   *
   * @param payload - the UDP payload
   */
  unprotectUdp(payload: Uint8Array): UdpInboundResult {
    switch (classifyUdpPayload(payload)) {
      case 'keepalive':
        this.stats.keepalives++
        return { action: 'keepalive' }
      case 'ike':
        return { action: 'ike', message: payload.subarray(4) }
      case 'esp':
        return this.unprotect(payload)
      default:
        return this.drop('malformed')
    }
  }

  /**
   * Checks an inbound cleartext packet against the inbound filters: only `bypass` admits it.
   *
   * @param packet - an IPv4 or IPv6 packet
   */
  checkInbound(packet: Uint8Array): CleartextInboundResult {
    const info = parseIpPacket(packet)
    if (info == null) return this.drop('malformed')
    const match = this.spd.match('inbound', packet, info)
    if (match === undefined) return this.drop('malformed')
    if (match === null) return this.drop('no-policy')
    if (match.filter.action === 'bypass') {
      this.stats.bypassed++
      return { action: 'bypass', packet }
    }
    return this.drop(match.filter.action === 'discard' ? 'discard-policy' : 'policy-mismatch')
  }

  /** The counters (a copy). */
  counters(): EspCounters {
    return { ...this.stats, dropped: { ...this.stats.dropped } }
  }
}

function checkWindow(size: number, argument: string): void {
  if (!Number.isInteger(size) || size < 0 || size > MAX_REPLAY_WINDOW) {
    throw new InvalidParametersError(argument, `must be an integer from 0 to ${MAX_REPLAY_WINDOW}`)
  }
}

function tagOf(sa: Sa): { tag?: string } {
  return sa.tag !== undefined ? { tag: sa.tag } : {}
}

/**
 * Makes a {@link SoftwareEspEngine}.
 *
 * @param components - the clock
 * @param init - options
 */
export function softwareEspEngine(
  components: SoftwareEspEngineComponents,
  init?: SoftwareEspEngineInit
): SoftwareEspEngine {
  return new SoftwareEspEngine(components, init)
}

/** What the engine reports of one SA. */
function saInfoOf(sa: Sa): EspSaInfo {
  return {
    spi: sa.spi,
    direction: sa.direction,
    mode: sa.mode,
    algorithm: sa.algorithm,
    ...(sa.integrity !== undefined ? { integrity: sa.integrity } : {}),
    ...tagOf(sa),
    sequence: sa.sealer != null ? sa.sealer.sequence : (sa.window as ReplayWindow).top,
    ...(sa.sealer?.limit !== undefined ? { sequenceLimit: sa.sealer.limit } : {}),
    packets: sa.packets,
    bytes: sa.bytes,
    installedAt: sa.installedAt,
    softExpired: sa.softExpired
  }
}
