import type { DynamicFilter, EspDirection } from '@vipsec/interface'
import { packedPorts, prefixContains, type IpPacketInfo } from '@vipsec/wire'
import {
  compileFilter,
  copyFilter,
  type CompiledFilter,
  type SpdInstallResult
} from '../src/spd.js'

/**
 * The security policy database as it was before its index, kept as the reference the indexed
 * `Spd` must agree with and as the "before" of `npm run bench:spd`: one list per
 * direction in matching order, which every install scans for duplicates and every packet scans
 * for its first match.
 */
export class LinearSpd {
  private readonly byDirection: Record<EspDirection, CompiledFilter[]> = {
    inbound: [],
    outbound: []
  }
  private readonly byId = new Map<string, CompiledFilter>()
  private order = 0

  /**
   * Adds a filter; removes and returns the active filters it duplicates (same id, or same
   * direction and selector).
   *
   * @param filter - the filter
   */
  install(filter: DynamicFilter): SpdInstallResult {
    const compiled = compileFilter(filter, this.order++)
    const removed: CompiledFilter[] = []
    for (const existing of this.byId.values()) {
      if (existing.filter.id === compiled.filter.id || existing.key === compiled.key) {
        removed.push(existing)
      }
    }
    for (const old of removed) this.remove(old.filter.id)
    const list = this.byDirection[compiled.filter.direction]
    let i = list.length
    while (i > 0 && list[i - 1].filter.priority > compiled.filter.priority) i--
    list.splice(i, 0, compiled)
    this.byId.set(compiled.filter.id, compiled)
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
    const list = this.byDirection[compiled.filter.direction]
    list.splice(list.indexOf(compiled), 1)
    return true
  }

  /** Removes every filter. */
  clear(): void {
    this.byId.clear()
    this.byDirection.inbound.length = 0
    this.byDirection.outbound.length = 0
  }

  /** Every filter, outbound then inbound, each in matching order. */
  list(): DynamicFilter[] {
    return [...this.byDirection.outbound, ...this.byDirection.inbound].map((c) =>
      copyFilter(c.filter)
    )
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
    const list = this.byDirection[direction]
    if (list.length === 0) return null
    const ports = packedPorts(packet, info)
    if (ports < 0) return undefined
    const sourcePort = ports >>> 16
    const destinationPort = ports & 0xffff
    for (const c of list) {
      if (c.source.bytes.length !== info.addressLength) continue
      const s = c.filter.selector
      if (s.protocol !== 0 && s.protocol !== info.protocol) continue
      if (sourcePort < s.sourcePorts[0] || sourcePort > s.sourcePorts[1]) continue
      if (destinationPort < s.destinationPorts[0] || destinationPort > s.destinationPorts[1]) {
        continue
      }
      if (!prefixContains(c.source, packet, info.sourceOffset)) continue
      if (!prefixContains(c.destination, packet, info.destinationOffset)) continue
      return c
    }
    return null
  }
}
