// ESP engines broken on purpose, each in one way, run through the EspEngine compliance suite by
// suite-catches-broken-engines.spec.ts in a child mocha process. Not a spec file on its own.
import { Subject, filter, type Observable } from 'rxjs'
import { espEngineSuite } from '@vipsec/compliance/esp-engine'
import { VirtualClock } from '@vipsec/clock'
import type {
  CleartextInboundResult,
  DynamicFilter,
  EspCounters,
  EspDirection,
  EspEngine,
  EspEvent,
  EspSaInfo,
  EspSaParams,
  InboundResult,
  OutboundResult,
  UdpInboundResult
} from '@vipsec/interface'
import { SoftwareEspEngine, espKey, espSequence, espSpi, openEsp, sealEsp } from '../src/index.js'

/** Passes everything to a working engine; subclasses break one thing. */
class Delegating implements EspEngine {
  protected readonly inner = new SoftwareEspEngine({ clock: new VirtualClock() })
  get events$(): Observable<EspEvent> {
    return this.inner.events$
  }
  async start(): Promise<void> {
    await this.inner.start()
  }
  async stop(): Promise<void> {
    await this.inner.stop()
  }
  isStarted(): boolean {
    return this.inner.isStarted()
  }
  addSa(params: EspSaParams): void {
    this.inner.addSa(params)
  }
  removeSa(spi: number, direction: EspDirection): boolean {
    return this.inner.removeSa(spi, direction)
  }
  listSas(): EspSaInfo[] {
    return this.inner.listSas()
  }
  installFilter(filter: DynamicFilter): string[] {
    return this.inner.installFilter(filter)
  }
  removeFilter(id: string): boolean {
    return this.inner.removeFilter(id)
  }
  listFilters(): DynamicFilter[] {
    return this.inner.listFilters()
  }
  protect(packet: Uint8Array): OutboundResult {
    return this.inner.protect(packet)
  }
  unprotect(packet: Uint8Array): InboundResult {
    return this.inner.unprotect(packet)
  }
  unprotectUdp(payload: Uint8Array): UdpInboundResult {
    return this.inner.unprotectUdp(payload)
  }
  checkInbound(packet: Uint8Array): CleartextInboundResult {
    return this.inner.checkInbound(packet)
  }
  counters(): EspCounters {
    return this.inner.counters()
  }
}

/** Accepts a replayed packet again, as an engine without a replay window would. */
class ReplayBlindEngine extends Delegating {
  private readonly seen = new Map<string, InboundResult>()
  override unprotect(packet: Uint8Array): InboundResult {
    const result = this.inner.unprotect(packet)
    if (!(packet instanceof Uint8Array)) return result
    const key = Buffer.from(packet).toString('hex')
    if (result.action === 'accept') this.seen.set(key, result)
    if (result.action === 'drop' && result.reason === 'replay') return this.seen.get(key) ?? result
    return result
  }
}

/** Seals every packet with the same IV (a valid packet otherwise): a nonce-reuse bug. */
class FixedIvEngine extends Delegating {
  private readonly keys = new Map<number, EspSaParams>()
  override addSa(params: EspSaParams): void {
    super.addSa(params)
    if (params.direction === 'outbound') this.keys.set(params.spi, params)
  }
  override protect(packet: Uint8Array): OutboundResult {
    const result = this.inner.protect(packet)
    if (result.action !== 'protect') return result
    const sa = this.keys.get(result.spi) as EspSaParams
    const key = espKey(sa.keyMaterial)
    const opened = openEsp({ algorithm: sa.algorithm, key, esn: false, packet: result.packet })
    if (!opened.ok) return result
    const resealed = sealEsp({
      algorithm: sa.algorithm,
      key,
      spi: espSpi(result.packet) as number,
      sequence: BigInt(espSequence(result.packet)),
      esn: sa.extendedSequenceNumbers,
      iv: new Uint8Array(8).fill(0x42),
      payload: opened.payload,
      nextHeader: opened.nextHeader
    })
    return { ...result, packet: resealed }
  }
}

/** Installs a duplicate filter without removing the old one or saying so. */
class DuplicateKeepingEngine extends Delegating {
  private readonly extra: DynamicFilter[] = []
  override installFilter(filter: DynamicFilter): string[] {
    const removed = this.inner.installFilter(filter)
    // pretend the old ones are still there
    for (const id of removed) this.extra.push({ ...filter, id })
    return []
  }
  override listFilters(): DynamicFilter[] {
    return [...this.inner.listFilters(), ...this.extra]
  }
  override get events$(): Observable<EspEvent> {
    return this.inner.events$.pipe(filter((e) => e.type !== 'filter:duplicate-removed'))
  }
}

/** Throws from the data path on input it cannot parse. */
class ThrowingEngine extends Delegating {
  override unprotect(packet: Uint8Array): InboundResult {
    const result = this.inner.unprotect(packet)
    if (result.action === 'drop' && result.reason === 'malformed') {
      throw new Error('cannot parse this ESP packet')
    }
    return result
  }
}

/** Passes events on but never completes its event stream. */
class OpenStreamEngine extends Delegating {
  private readonly subject = new Subject<EspEvent>()
  override get events$(): Observable<EspEvent> {
    return this.subject.asObservable()
  }
  override async start(): Promise<void> {
    await super.start()
    this.inner.events$.subscribe({ next: (e) => this.subject.next(e) })
  }
}

for (const Engine of [
  ReplayBlindEngine,
  FixedIvEngine,
  DuplicateKeepingEngine,
  ThrowingEngine,
  OpenStreamEngine
]) {
  describe(Engine.name, () => {
    espEngineSuite({ setup: () => new Engine() })
  })
}
