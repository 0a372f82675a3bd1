/**
 * A custom ESP engine wrapper: `MeteredEspEngine` decorates any `EspEngine` (here the
 * `SoftwareEspEngine`) and counts, per SA, the packets and bytes it protected or accepted, and
 * renders them in the Prometheus text format. Every call goes to the wrapped engine unchanged, so
 * the wrapper keeps the `EspEngine` contract: `test/examples-metered-esp.spec.ts` runs the
 * `espEngineSuite` of `@vipsec/compliance` against it.
 *
 * Run it: `node --import tsx --conditions=vipsec-source examples/metered-esp-engine.ts`.
 */
import { pathToFileURL } from 'node:url'
import { SystemClock } from '@vipsec/clock'
import { SoftwareEspEngine } from '@vipsec/esp-software'
import { buildIpPacket, buildUdp } from '@vipsec/wire'
import type {
  CleartextInboundResult,
  DynamicFilter,
  EspCounters,
  EspDirection,
  EspEngine,
  EspEvent,
  EspSaInfo,
  EspSaParams,
  FilterSelector,
  InboundResult,
  OutboundResult,
  UdpInboundResult
} from '@vipsec/interface'
import type { Observable } from 'rxjs'

/** Packets and bytes (of the inner, cleartext packets) that went through one SA. */
export interface SaMeter {
  spi: number
  direction: EspDirection
  tag?: string
  packets: number
  bytes: number
}

/** An `EspEngine` that meters the traffic of the engine it wraps. */
export class MeteredEspEngine implements EspEngine {
  private readonly meters = new Map<string, SaMeter>()

  constructor(private readonly inner: EspEngine) {}

  get events$(): Observable<EspEvent> {
    return this.inner.events$
  }

  start(): Promise<void> {
    return this.inner.start()
  }

  stop(): Promise<void> {
    return this.inner.stop()
  }

  isStarted(): boolean {
    return this.inner.isStarted()
  }

  addSa(params: EspSaParams): void {
    this.inner.addSa(params) // throws before we record anything if the engine refuses the SA
    this.meters.set(key(params.spi, params.direction), {
      spi: params.spi,
      direction: params.direction,
      tag: params.tag,
      packets: 0,
      bytes: 0
    })
  }

  removeSa(spi: number, direction: EspDirection): boolean {
    return this.inner.removeSa(spi, direction) // the meter stays: Prometheus counters never go back
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
    const result = this.inner.protect(packet)
    if (result.action === 'protect') this.count(result.spi, 'outbound', packet.length)
    return result
  }

  unprotect(packet: Uint8Array): InboundResult {
    const result = this.inner.unprotect(packet)
    if (result.action === 'accept') this.count(result.spi, 'inbound', result.packet.length)
    return result
  }

  unprotectUdp(payload: Uint8Array): UdpInboundResult {
    const result = this.inner.unprotectUdp(payload)
    if (result.action === 'accept') this.count(result.spi, 'inbound', result.packet.length)
    return result
  }

  checkInbound(packet: Uint8Array): CleartextInboundResult {
    return this.inner.checkInbound(packet)
  }

  counters(): EspCounters {
    return this.inner.counters()
  }

  /** A copy of the meters, one per SA ever installed. */
  meterSnapshot(): SaMeter[] {
    return [...this.meters.values()].map((m) => ({ ...m }))
  }

  /** The meters and the engine's drop counters in the Prometheus text exposition format. */
  renderPrometheus(): string {
    const lines: string[] = []
    const labels = (m: SaMeter): string =>
      `spi="0x${m.spi.toString(16).padStart(8, '0')}",direction="${m.direction}"` +
      (m.tag != null ? `,tag="${m.tag.replace(/["\\\n]/g, '_')}"` : '')
    lines.push('# HELP vipsec_esp_sa_packets_total Packets protected or accepted per SA.')
    lines.push('# TYPE vipsec_esp_sa_packets_total counter')
    for (const m of this.meters.values())
      lines.push(`vipsec_esp_sa_packets_total{${labels(m)}} ${m.packets}`)
    lines.push(
      '# HELP vipsec_esp_sa_bytes_total Bytes of inner packets protected or accepted per SA.'
    )
    lines.push('# TYPE vipsec_esp_sa_bytes_total counter')
    for (const m of this.meters.values())
      lines.push(`vipsec_esp_sa_bytes_total{${labels(m)}} ${m.bytes}`)
    lines.push('# HELP vipsec_esp_dropped_total Packets the engine dropped, by reason.')
    lines.push('# TYPE vipsec_esp_dropped_total counter')
    for (const [reason, n] of Object.entries(this.inner.counters().dropped))
      lines.push(`vipsec_esp_dropped_total{reason="${reason}"} ${n}`)
    return lines.join('\n') + '\n'
  }

  private count(spi: number, direction: EspDirection, bytes: number): void {
    const meter = this.meters.get(key(spi, direction))
    if (meter == null) return
    meter.packets += 1
    meter.bytes += bytes
  }
}

function key(spi: number, direction: EspDirection): string {
  return `${direction}/${spi}`
}

/** The demonstration: one engine is both ends of a tunnel (a loopback), metered. */
async function main(): Promise<void> {
  const engine = new MeteredEspEngine(new SoftwareEspEngine({ clock: new SystemClock() }))
  await engine.start()

  // An SA pair with the same key and SPI makes a loopback: what we protect, we can unprotect.
  const common = {
    spi: 0xc0010001,
    mode: 'tunnel',
    algorithm: 'aes-gcm-16',
    keyMaterial: Uint8Array.from({ length: 36 }, (_, i) => i), // 32-byte AES key + 4-byte salt
    extendedSequenceNumbers: true,
    lifetime: {
      softSeconds: 0,
      hardSeconds: 0,
      softBytes: 0,
      hardBytes: 0,
      softPackets: 0,
      hardPackets: 0
    },
    tag: 'child-1'
  } as const
  engine.addSa({
    ...common,
    direction: 'outbound',
    tunnel: { local: '192.0.2.1', remote: '198.51.100.2' }
  })
  engine.addSa({
    ...common,
    direction: 'inbound',
    tunnel: { local: '198.51.100.2', remote: '192.0.2.1' }
  })
  const any: FilterSelector = {
    source: '0.0.0.0/0',
    destination: '0.0.0.0/0',
    protocol: 0,
    sourcePorts: [0, 65535],
    destinationPorts: [0, 65535]
  }
  engine.installFilter({
    id: 'out',
    direction: 'outbound',
    selector: any,
    action: 'protect',
    priority: 100,
    spi: common.spi
  })
  engine.installFilter({
    id: 'in',
    direction: 'inbound',
    selector: any,
    action: 'protect',
    priority: 100,
    spi: common.spi
  })

  // Five UDP packets from 10.1.0.5 to 10.2.0.7, each through protect and back through unprotect.
  for (let i = 1; i <= 5; i++) {
    const payload = new TextEncoder().encode(`request ${i}`)
    const udp = buildUdp({
      source: '10.1.0.5',
      destination: '10.2.0.7',
      sourcePort: 40000,
      destinationPort: 7,
      payload
    })
    const inner = buildIpPacket({
      source: '10.1.0.5',
      destination: '10.2.0.7',
      protocol: 17,
      payload: udp
    })
    const out = engine.protect(inner)
    if (out.action !== 'protect') throw new Error(`packet ${i} was not protected: ${out.action}`)
    const back = engine.unprotect(out.packet)
    if (back.action !== 'accept') throw new Error(`packet ${i} was not accepted: ${back.action}`)
  }
  // A tampered packet is dropped by the engine (and shows up in the drop counters, not the meters).
  const tampered = engine.protect(
    buildIpPacket({
      source: '10.1.0.5',
      destination: '10.2.0.7',
      protocol: 17,
      payload: buildUdp({
        source: '10.1.0.5',
        destination: '10.2.0.7',
        sourcePort: 40000,
        destinationPort: 7,
        payload: new Uint8Array(4)
      })
    })
  )
  if (tampered.action === 'protect') {
    tampered.packet[tampered.packet.length - 1] ^= 0xff
    console.log(`tampered packet: ${engine.unprotect(tampered.packet).action}`)
  }

  for (const m of engine.meterSnapshot())
    console.log(
      `SA 0x${m.spi.toString(16)} ${m.direction.padEnd(8)} ${m.packets} packets, ${m.bytes} bytes`
    )
  console.log()
  process.stdout.write(engine.renderPrometheus())
  await engine.stop()
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => {
    console.error(err)
    process.exitCode = 1
  })
}
