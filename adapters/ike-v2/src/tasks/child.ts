/**
 * What IKE_AUTH and CREATE_CHILD_SA share about Child SAs: proposing one, accepting the
 * responder's answer, answering a proposal (choice and traffic-selector narrowing), keying,
 * and installing into / removing from the ESP engine.
 *
 * @module
 */
import { IDLE } from '../collision.js'
import {
  IkeProtocolError,
  type DynamicFilter,
  type EspDirection,
  type EspSaParams,
  type FilterSelector,
  type IkeErrorKind,
  type KeyExchangeGroup,
  type Phase2Policy
} from '@vipsec/interface'
import { ERROR_NOTIFY_NAMES, NotifyType, PayloadType } from '../constants.js'
import { deriveChildKeys, toHex, type ChildKeys } from '../crypto.js'
import type { IkeContext } from '../context.js'
import { childRecord, NO_LIFETIME, spiHex, type ChildSa, type IkeSa } from '../ike-sa.js'
import {
  concat,
  findNotify,
  findPayload,
  notify,
  u32Bytes,
  readU32,
  type NotifyPayload,
  type Payload,
  type SaPayload,
  type TsPayload,
  type WireTrafficSelector
} from '../message.js'
import {
  acceptChildAnswer,
  childChoiceProposal,
  childProposals,
  chooseChild,
  type ChosenChild
} from '../proposals.js'
import { bytesToIp, keptSelectors, narrow, toWireSelector, within } from '../selectors.js'
import type { IkeChildConfig } from '../config.js'

/** A Child SA to propose. */
export interface ChildRequest {
  /** The crypto policy. */
  policy: Phase2Policy
  /** The mode. */
  mode: 'tunnel' | 'transport'
  /** Our selectors. */
  local: WireTrafficSelector[]
  /** The peer's selectors. */
  remote: WireTrafficSelector[]
}

/** A proposal of ours in flight. */
export interface ChildOffer {
  /** The request. */
  request: ChildRequest
  /** Our new inbound SPI. */
  inboundSpi: number
  /** The payloads: [N(USE_TRANSPORT_MODE)], SA, TSi, TSr. */
  payloads: Payload[]
}

/** The wire form of each Child SA config, made once (a responder needs it in every IKE_AUTH). */
const requests = new WeakMap<IkeChildConfig, ChildRequest>()

/**
 * Converts a config's selectors to the wire form (once per config object: the result is
 * shared and read only).
 */
export function childRequest(c: IkeChildConfig): ChildRequest {
  const cached = requests.get(c)
  if (
    cached !== undefined &&
    cached.policy === c.policy &&
    cached.mode === c.mode &&
    cached.local.length === c.local.length &&
    cached.remote.length === c.remote.length
  ) {
    return cached
  }
  const made = {
    policy: c.policy,
    mode: c.mode,
    local: c.local.map(toWireSelector),
    remote: c.remote.map(toWireSelector)
  }
  requests.set(c, made)
  return made
}

/**
 * Builds the payloads that propose a Child SA.
 *
 * @param pfs - the PFS group for CREATE_CHILD_SA (`none` in IKE_AUTH)
 */
export function offerChild(
  ctx: IkeContext,
  request: ChildRequest,
  pfs: KeyExchangeGroup
): ChildOffer {
  const inboundSpi = ctx.newEspSpi()
  const payloads: Payload[] = []
  if (request.mode === 'transport') payloads.push(notify(NotifyType.USE_TRANSPORT_MODE))
  payloads.push(
    {
      type: PayloadType.SA,
      proposals: childProposals(request.policy.proposals, u32Bytes(inboundSpi), pfs)
    } as SaPayload,
    { type: PayloadType.TSi, selectors: request.local } as TsPayload,
    { type: PayloadType.TSr, selectors: request.remote } as TsPayload
  )
  return { request, inboundSpi, payloads }
}

/** The first error notify among payloads, as an error. */
export function errorNotify(payloads: Payload[]): IkeProtocolError | undefined {
  const n = payloads.find(
    (p) => p.type === PayloadType.NOTIFY && (p as NotifyPayload).notifyType < 16384
  ) as NotifyPayload | undefined
  if (n === undefined) return undefined
  const name = ERROR_NOTIFY_NAMES[n.notifyType] ?? `error notify ${n.notifyType}`
  const kind = (ERROR_NOTIFY_NAMES[n.notifyType] ?? 'INVALID_SYNTAX') as IkeErrorKind
  return new IkeProtocolError(kind, `peer answered ${name}`)
}

/**
 * Accepts the responder's answer to our Child SA offer and builds the Child SA (not installed).
 *
 * @throws IkeProtocolError with the peer's error notify, or INVALID_SYNTAX / NO_PROPOSAL_CHOSEN /
 *   TS_UNACCEPTABLE when the answer is not a subset of the offer
 */
export function acceptChild(
  ctx: IkeContext,
  sa: IkeSa,
  offer: ChildOffer,
  payloads: Payload[],
  ni: Uint8Array,
  nr: Uint8Array,
  pfs: KeyExchangeGroup,
  sharedSecret?: Uint8Array
): ChildSa {
  const err = errorNotify(payloads)
  if (err !== undefined) throw err
  const saP = findPayload<SaPayload>(payloads, PayloadType.SA)
  const tsi = findPayload<TsPayload>(payloads, PayloadType.TSi)
  const tsr = findPayload<TsPayload>(payloads, PayloadType.TSr)
  if (saP === undefined || tsi === undefined || tsr === undefined) {
    throw new IkeProtocolError('INVALID_SYNTAX', 'Child SA answer lacks SA, TSi or TSr')
  }
  if (saP.proposals.length !== 1) {
    throw new IkeProtocolError('INVALID_SYNTAX', 'responder chose more than one proposal')
  }
  const chosen = acceptChildAnswer(saP.proposals, offer.request.policy.proposals, pfs)
  if (chosen === undefined) {
    throw new IkeProtocolError('NO_PROPOSAL_CHOSEN', 'responder chose a proposal we did not offer')
  }
  if (!within(tsi.selectors, offer.request.local) || !within(tsr.selectors, offer.request.remote)) {
    throw new IkeProtocolError('TS_UNACCEPTABLE', 'responder widened the traffic selectors')
  }
  const transport =
    offer.request.mode === 'transport' &&
    findNotify(payloads, NotifyType.USE_TRANSPORT_MODE) !== undefined
  const keys = deriveChildKeys(
    sa.chosen!.prf,
    sa.keys!.skD,
    ni,
    nr,
    chosen.encryption,
    chosen.integrity,
    sharedSecret
  )
  const inboundSpi = offer.inboundSpi
  return {
    id: `esp-${spiHex(inboundSpi)}`,
    inboundSpi,
    outboundSpi: readU32(chosen.spi, 0),
    chosen: keptChoice(chosen),
    policy: offer.request.policy,
    mode: transport ? 'transport' : 'tunnel',
    local: keptSelectors(tsi.selectors, offer.request.local),
    remote: keptSelectors(tsr.selectors, offer.request.remote),
    encapsulated: sa.nat.encapsulated,
    keys,
    initiator: true,
    nonces: [ni, nr],
    rekey: IDLE,
    establishedAt: ctx.clock.now(),
    filters: []
  }
}

/** No bytes (shared: nothing writes into an empty array). */
const NO_BYTES = new Uint8Array(0)

/**
 * A Child SA's choice as it keeps it: without the proposal's SPI, a view of the message it came
 * in (read into `outboundSpi` once).
 */
function keptChoice(chosen: ChosenChild): ChosenChild {
  return { ...chosen, spi: NO_BYTES }
}

/** The responder's answer to a Child SA proposal. */
export interface ChildAnswer {
  /** The payloads to send: SA, TSi, TSr (or an error notify). */
  payloads: Payload[]
  /** The new Child SA (not installed), when accepted. */
  child?: ChildSa
  /** The error, when refused. */
  error?: IkeErrorKind
}

/**
 * Answers a Child SA proposal: chooses a proposal among the configs, narrows the selectors.
 *
 * @param configs - the Child SAs local policy accepts, tried in order
 * @param pfsGroup - the group of the KE payload of the request, if any
 * @param sharedSecret - the PFS shared secret (computed by the caller once the group is known)
 */
export function answerChild(
  ctx: IkeContext,
  sa: IkeSa,
  configs: ChildRequest[],
  payloads: Payload[],
  ni: Uint8Array,
  nr: Uint8Array,
  pfsGroup: KeyExchangeGroup,
  sharedSecret?: Uint8Array
): ChildAnswer {
  const saP = findPayload<SaPayload>(payloads, PayloadType.SA)
  const tsi = findPayload<TsPayload>(payloads, PayloadType.TSi)
  const tsr = findPayload<TsPayload>(payloads, PayloadType.TSr)
  if (saP === undefined || tsi === undefined || tsr === undefined) {
    return { payloads: [notify(NotifyType.INVALID_SYNTAX)], error: 'INVALID_SYNTAX' }
  }
  let proposalOk = false
  for (const config of configs) {
    const chosen = chooseChild(saP.proposals, config.policy.proposals, pfsGroup !== 'none', [
      pfsGroup
    ])
    if (chosen === undefined) continue
    proposalOk = true
    // the initiator's TSi are the peer's selectors (our remote), TSr ours
    const remote = narrow(tsi.selectors, config.remote)
    const local = narrow(tsr.selectors, config.local)
    if (remote.length === 0 || local.length === 0) continue
    const transport =
      config.mode === 'transport' &&
      findNotify(payloads, NotifyType.USE_TRANSPORT_MODE) !== undefined
    const inboundSpi = ctx.newEspSpi()
    const keys = deriveChildKeys(
      sa.chosen!.prf,
      sa.keys!.skD,
      ni,
      nr,
      chosen.encryption,
      chosen.integrity,
      sharedSecret
    )
    const child: ChildSa = {
      id: `esp-${spiHex(inboundSpi)}`,
      inboundSpi,
      outboundSpi: readU32(chosen.spi, 0),
      chosen: keptChoice(chosen),
      policy: config.policy,
      mode: transport ? 'transport' : 'tunnel',
      local,
      remote,
      encapsulated: sa.nat.encapsulated,
      keys,
      initiator: false,
      nonces: [ni, nr],
      rekey: IDLE,
      establishedAt: ctx.clock.now(),
      filters: []
    }
    const out: Payload[] = []
    if (transport) out.push(notify(NotifyType.USE_TRANSPORT_MODE))
    out.push(
      {
        type: PayloadType.SA,
        proposals: [childChoiceProposal(chosen, u32Bytes(inboundSpi))]
      } as SaPayload,
      { type: PayloadType.TSi, selectors: remote } as TsPayload,
      { type: PayloadType.TSr, selectors: local } as TsPayload
    )
    return { payloads: out, child }
  }
  const error: IkeErrorKind = proposalOk ? 'TS_UNACCEPTABLE' : 'NO_PROPOSAL_CHOSEN'
  return { payloads: [notify(NotifyType[error as 'TS_UNACCEPTABLE'])], error }
}

const prefixCache = new Map<string, string[]>()

function rangeToPrefixes(start: Uint8Array, end: Uint8Array): string[] {
  // an IPv4 range keyed by four UTF-16 code units (a short flat string, cheap to hash)
  const key =
    start.length === 4 && end.length === 4
      ? String.fromCharCode(
          (start[0]! << 8) | start[1]!,
          (start[2]! << 8) | start[3]!,
          (end[0]! << 8) | end[1]!,
          (end[2]! << 8) | end[3]!
        )
      : `${toHex(start)}-${toHex(end)}`
  const cached = prefixCache.get(key)
  if (cached !== undefined) return cached
  const prefixes = computePrefixes(start, end)
  if (prefixCache.size >= 1024) prefixCache.clear()
  prefixCache.set(key, prefixes)
  return prefixes
}

function computePrefixes(start: Uint8Array, end: Uint8Array): string[] {
  const bits = start.length * 8
  const toBig = (b: Uint8Array): bigint => b.reduce((a, x) => (a << 8n) | BigInt(x), 0n)
  const toBytes = (v: bigint): Uint8Array => {
    const out = new Uint8Array(start.length)
    for (let i = out.length - 1; i >= 0; i--) {
      out[i] = Number(v & 0xffn)
      v >>= 8n
    }
    return out
  }
  let lo = toBig(start)
  const hi = toBig(end)
  const out: string[] = []
  while (lo <= hi && out.length < 64) {
    let size = 0
    while (size < bits) {
      const block = 1n << BigInt(size + 1)
      if (lo % block !== 0n || lo + block - 1n > hi) break
      size++
    }
    out.push(`${bytesToIp(toBytes(lo))}/${bits - size}`)
    lo += 1n << BigInt(size)
  }
  return out
}

function selectorsFor(src: WireTrafficSelector, dst: WireTrafficSelector): FilterSelector[] {
  const out: FilterSelector[] = []
  const protocol = src.protocol !== 0 ? src.protocol : dst.protocol
  for (const s of rangeToPrefixes(src.startAddress, src.endAddress)) {
    for (const d of rangeToPrefixes(dst.startAddress, dst.endAddress)) {
      out.push({
        source: s,
        destination: d,
        protocol,
        sourcePorts: [src.startPort, src.endPort],
        destinationPorts: [dst.startPort, dst.endPort]
      })
    }
  }
  return out
}

function filterKey(f: DynamicFilter): string {
  const s = f.selector
  return `${f.direction}|${s.source}|${s.destination}|${s.protocol}|${s.sourcePorts.join('-')}|${s.destinationPorts.join('-')}`
}

/**
 * Puts the filters of the Child SAs of `sa` in the engine as they should be now. The engine keeps
 * one filter per selector, the last installed, so while two Child SAs of the same selectors live
 * (a rekey's overlap, a collision's redundant SA) the newest one's filters are the ones in
 * place, with the inbound ones not pinned to an SPI: packets that either SA carried are let in
 * (none is lost at a rekey for arriving on the other). When one of them goes, what it shadowed
 * comes back and what is left alone is pinned to its SPI again.
 */
function syncFilters(ctx: IkeContext, sa: IkeSa, changed: ChildSa): void {
  // alone in its IKE SA (the usual case): nothing shared, its filters go in as they are
  if (sa.children.size === 0) return
  if (sa.children.size === 1 && sa.children.get(changed.id) === changed) {
    for (const f of changed.filters) ctx.engine.installFilter(f)
    return
  }
  const owners = new Map<string, number>()
  for (const c of sa.children.values()) {
    for (const f of c.filters) {
      const k = filterKey(f)
      owners.set(k, (owners.get(k) ?? 0) + 1)
    }
  }
  const keys = changed.filters.map(filterKey)
  if (
    !keys.some((k) => owners.has(k) && (sa.children.has(changed.id) ? owners.get(k)! > 1 : true))
  ) {
    // nothing shared (the usual case): a new Child SA's filters go in as they are
    if (sa.children.has(changed.id)) for (const f of changed.filters) ctx.engine.installFilter(f)
    return
  }
  let present: Map<string, DynamicFilter>
  try {
    present = new Map(ctx.engine.listFilters().map((f) => [f.id, f]))
  } catch {
    return // the engine is stopped
  }
  // the newest Child SA first: it holds the selectors it shares with older ones; except that
  // one we answered (a peer's rekey) sends nothing until the older goes: the peer may not have
  // installed its inbound half yet (strongSwan installs it after our answer, and sends its
  // DELETE of the old one after that), so our outbound stays on the older until then
  const taken = new Set<string>()
  const newestFirst = [...sa.children.values()].reverse()
  for (const c of newestFirst) {
    for (const f of c.filters) {
      const key = filterKey(f)
      if (taken.has(key)) continue
      if (f.direction === 'outbound' && !c.initiator && (owners.get(key) ?? 0) > 1) {
        const older = newestFirst.slice(newestFirst.indexOf(c) + 1)
        if (older.some((o) => o.filters.some((g) => filterKey(g) === key))) continue
      }
      taken.add(key)
      const spi = f.direction === 'inbound' && (owners.get(key) ?? 0) > 1 ? undefined : f.spi
      const now = present.get(f.id)
      if (now !== undefined && now.spi === spi) continue
      const { spi: _pinned, ...rest } = f
      try {
        ctx.engine.installFilter(spi === undefined ? rest : { ...rest, spi })
      } catch {
        return
      }
    }
  }
}

/**
 * `a` then `b`: `a` itself when `b` is empty (an AEAD has no integrity key), a view when `b`
 * follows `a` in the same memory (both cut from one KEYMAT), else a copy.
 */
function joined(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (b.length === 0) return a
  if (a.buffer === b.buffer && a.byteOffset + a.length === b.byteOffset) {
    return new Uint8Array(a.buffer, a.byteOffset, a.length + b.length)
  }
  return concat(a, b)
}

/** The keys of a Child SA once the ESP engine has them (none kept). */
const INSTALLED: ChildKeys = Object.freeze({
  encrI: new Uint8Array(0),
  integI: new Uint8Array(0),
  encrR: new Uint8Array(0),
  integR: new Uint8Array(0)
})

/**
 * The parameters of one of a Child SA's two ESP SAs, written out (not spread from a common
 * object: a handshake makes four of them).
 */
function espSaParams(
  child: ChildSa,
  direction: EspDirection,
  spi: number,
  keyMaterial: Uint8Array,
  tunnel: EspSaParams['tunnel'],
  udpEncapsulation: EspSaParams['udpEncapsulation']
): EspSaParams {
  const p: EspSaParams = {
    spi,
    direction,
    mode: child.mode,
    algorithm: child.chosen.encryption.algorithm,
    keyMaterial,
    extendedSequenceNumbers: child.chosen.esn,
    lifetime: child.policy.lifetime ?? NO_LIFETIME,
    tunnel,
    udpEncapsulation,
    tag: child.id
  }
  if (child.chosen.integrity !== 'none') p.integrity = child.chosen.integrity
  const seq = child.sequences
  if (seq !== undefined) {
    const initial = direction === 'outbound' ? seq.outbound : seq.inbound
    if (initial !== undefined) p.initialSequence = initial
    if (direction === 'outbound' && seq.limit !== undefined) p.sequenceLimit = seq.limit
  }
  return p
}

/**
 * Installs a Child SA's two ESP SAs (and, unless turned off, its protect filters) in the engine.
 *
 * @throws whatever the engine throws (the caller reports it)
 */
export function installChild(ctx: IkeContext, sa: IkeSa, child: ChildSa): void {
  const { encrI, encrR, integI, integR } = child.keys
  // the ESP engine takes the encryption key then the integrity key (RFC 7296 section 2.17)
  const outKey = child.initiator ? joined(encrI, integI) : joined(encrR, integR)
  const inKey = child.initiator ? joined(encrR, integR) : joined(encrI, integI)
  const tunnel = { local: sa.local.address, remote: sa.remote.address }
  const udpEncapsulation = child.encapsulated
    ? {
        local: { address: sa.local.address, port: 4500 },
        remote: { address: sa.remote.address, port: sa.natT ? sa.remote.port : 4500 }
      }
    : undefined
  const inbound = espSaParams(child, 'inbound', child.inboundSpi, inKey, tunnel, udpEncapsulation)
  const outbound = espSaParams(
    child,
    'outbound',
    child.outboundSpi,
    outKey,
    tunnel,
    udpEncapsulation
  )
  ctx.engine.addSa(inbound)
  try {
    ctx.engine.addSa(outbound)
  } catch (err) {
    ctx.engine.removeSa(child.inboundSpi, 'inbound')
    throw err
  }
  // the engine holds the keys now: the Child SA does not keep a second copy for its lifetime
  // (except in warm mode, where they are part of the state an heir adopts)
  if (!ctx.init.warm.enabled) child.keys = INSTALLED
  if (!ctx.init.installFilters) return
  const filters: DynamicFilter[] = []
  const priority = ctx.init.filterPriority
  for (const l of child.local) {
    for (const r of child.remote) {
      for (const selector of selectorsFor(l, r)) {
        filters.push({
          id: `${child.id}/out/${filters.length}`,
          direction: 'outbound',
          selector,
          action: 'protect',
          priority,
          spi: child.outboundSpi
        })
      }
      for (const selector of selectorsFor(r, l)) {
        filters.push({
          id: `${child.id}/in/${filters.length}`,
          direction: 'inbound',
          selector,
          action: 'protect',
          priority,
          spi: child.inboundSpi
        })
      }
    }
  }
  child.filters = filters
  // the caller adds the Child SA to its IKE SA afterwards: count it in now
  const listed = sa.children.has(child.id)
  if (!listed) sa.children.set(child.id, child)
  try {
    syncFilters(ctx, sa, child)
  } finally {
    if (!listed) sa.children.delete(child.id)
  }
}

/** Removes a Child SA's ESP SAs and filters from the engine (what is already gone is ignored). */
export function uninstallChild(ctx: IkeContext, child: ChildSa): void {
  // the engine may already be stopped (and refuse calls): what is gone is gone
  const attempt = (fn: () => unknown): void => {
    try {
      fn()
    } catch {
      // ignored
    }
  }
  for (const f of child.filters) attempt(() => ctx.engine.removeFilter(f.id))
  child.filters = []
  attempt(() => ctx.engine.removeSa(child.inboundSpi, 'inbound'))
  attempt(() => ctx.engine.removeSa(child.outboundSpi, 'outbound'))
  ctx.releaseEspSpi(child.inboundSpi)
}

/** Installs a Child SA, adds it to its IKE SA and emits `sa:established`. */
export function establishChild(ctx: IkeContext, sa: IkeSa, child: ChildSa): void {
  installChild(ctx, sa, child)
  sa.children.set(child.id, child)
  ctx.emit({ type: 'sa:established', phase1Id: sa.id, phase2: childRecord(sa, child) })
}

/** Removes a Child SA from its IKE SA and the engine and emits `sa:deleted`. */
export function removeChild(
  ctx: IkeContext,
  sa: IkeSa,
  child: ChildSa,
  reason: 'local' | 'remote' | 'expired' | 'parent-deleted'
): void {
  if (!sa.children.delete(child.id)) return
  const filters = child.filters
  uninstallChild(ctx, child)
  if (ctx.init.installFilters) syncFilters(ctx, sa, { ...child, filters })
  if (child.silent !== true) ctx.emit({ type: 'sa:deleted', phase2Id: child.id, reason })
}
