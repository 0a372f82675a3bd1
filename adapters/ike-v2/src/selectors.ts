/**
 * Addresses, identities and traffic selectors between their vipsec form (text) and their wire
 * form (bytes), with traffic-selector narrowing (RFC 7296 section 2.9).
 *
 * @module
 */
import {
  IkeProtocolError,
  InvalidParametersError,
  type Identity,
  type TrafficSelector
} from '@vipsec/interface'
import { formatIp, parseIp } from '@vipsec/wire'
import { IdType, type PayloadType, TsType } from './constants.js'
import type { IdPayload, WireTrafficSelector } from './message.js'
import { decodeDn, encodeDn } from './dn.js'

/**
 * Converts a textual IPv4 or IPv6 address to its 4 or 16 bytes.
 *
 * @param address - the address
 * @throws InvalidParametersError when it is not an address
 */
export function ipToBytes(address: string): Uint8Array {
  return readIpBytes(address).slice()
}

/**
 * The bytes of a textual address, shared with every caller: for reading only (a hash input),
 * where {@link ipToBytes} would copy them.
 *
 * @param address - an IPv4 or IPv6 address
 */
export function readIpBytes(address: string): Uint8Array {
  const cached = ipCache.get(address)
  if (cached !== undefined) return cached
  const bytes = parseIp(address)
  if (ipCache.size >= 1024) ipCache.clear()
  ipCache.set(address, bytes)
  return bytes
}

const ipCache = new Map<string, Uint8Array>()

/**
 * Converts 4 or 16 bytes to a textual address (IPv6 in the RFC 5952 short form).
 *
 * @param b - the bytes
 */
export function bytesToIp(b: Uint8Array): string {
  if (b.length !== 4 && b.length !== 16)
    throw new InvalidParametersError('b', 'must be 4 or 16 bytes')
  return formatIp(b)
}

function compare(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i]
  return 0
}

/** Converts a vipsec traffic selector to its wire form. */
export function toWireSelector(ts: TrafficSelector): WireTrafficSelector {
  const startAddress = ipToBytes(ts.startAddress)
  const endAddress = ipToBytes(ts.endAddress)
  if (startAddress.length !== endAddress.length) {
    throw new InvalidParametersError('ts', 'start and end addresses of different families')
  }
  return {
    type: startAddress.length === 4 ? TsType.IPV4_ADDR_RANGE : TsType.IPV6_ADDR_RANGE,
    protocol: ts.protocol,
    startPort: ts.startPort,
    endPort: ts.endPort,
    startAddress,
    endAddress
  }
}

/** Converts a wire traffic selector to the vipsec form. */
export function fromWireSelector(ts: WireTrafficSelector): TrafficSelector {
  return {
    startAddress: bytesToIp(ts.startAddress),
    endAddress: bytesToIp(ts.endAddress),
    protocol: ts.protocol,
    startPort: ts.startPort,
    endPort: ts.endPort
  }
}

/**
 * The intersection of two traffic selectors, or undefined when they do not overlap.
 *
 * @param a - one selector
 * @param b - the other
 */
export function intersect(
  a: WireTrafficSelector,
  b: WireTrafficSelector
): WireTrafficSelector | undefined {
  if (a.type !== b.type) return undefined
  if (a.protocol !== 0 && b.protocol !== 0 && a.protocol !== b.protocol) return undefined
  const startPort = Math.max(a.startPort, b.startPort)
  const endPort = Math.min(a.endPort, b.endPort)
  if (startPort > endPort) return undefined
  const startAddress =
    compare(a.startAddress, b.startAddress) >= 0 ? a.startAddress : b.startAddress
  const endAddress = compare(a.endAddress, b.endAddress) <= 0 ? a.endAddress : b.endAddress
  if (compare(startAddress, endAddress) > 0) return undefined
  const protocol = a.protocol !== 0 ? a.protocol : b.protocol
  const i = { type: a.type, protocol, startPort, endPort, startAddress, endAddress }
  // one of the two itself when it lies inside the other (the usual case: a proposal that fits
  // the policy), `b` first: no view of the message `a` may have come in is kept
  return sameSelector(b, i) ? b : sameSelector(a, i) ? a : i
}

/**
 * Narrows the proposed selectors to what the local policy allows (RFC 7296 section 2.9): the
 * union of the pairwise intersections, without duplicates.
 *
 * @param proposed - what the initiator proposed
 * @param allowed - what local policy allows
 */
export function narrow(
  proposed: WireTrafficSelector[],
  allowed: WireTrafficSelector[]
): WireTrafficSelector[] {
  const out: WireTrafficSelector[] = []
  for (const p of proposed) {
    for (const a of allowed) {
      const i = intersect(p, a)
      if (i === undefined || out.some((o) => sameSelector(o, i))) continue
      out.push(i)
    }
  }
  return out
}

/**
 * The selectors of a responder's answer as the Child SA keeps them: the offered list itself when
 * the answer is the offer (the usual case), otherwise each selector an offered one that is the
 * same, or a copy; never a view of the message the answer came in, which it would keep alive.
 *
 * @param answer - the selectors of the answer (parsed: views of the message)
 * @param offered - what we offered (shared, read only)
 */
export function keptSelectors(
  answer: WireTrafficSelector[],
  offered: WireTrafficSelector[]
): WireTrafficSelector[] {
  if (answer.length === offered.length && answer.every((s, i) => sameSelector(s, offered[i]!))) {
    return offered
  }
  return answer.map(
    (s) =>
      offered.find((o) => sameSelector(o, s)) ?? {
        ...s,
        startAddress: s.startAddress.slice(),
        endAddress: s.endAddress.slice()
      }
  )
}

/** Whether two selectors are the same range of the same protocol and ports. */
function sameSelector(a: WireTrafficSelector, b: WireTrafficSelector): boolean {
  return (
    a.type === b.type &&
    a.protocol === b.protocol &&
    a.startPort === b.startPort &&
    a.endPort === b.endPort &&
    compare(a.startAddress, b.startAddress) === 0 &&
    compare(a.endAddress, b.endAddress) === 0
  )
}

/** Whether every selector of `inner` lies inside one of `outer`. */
export function within(inner: WireTrafficSelector[], outer: WireTrafficSelector[]): boolean {
  return inner.every((i) =>
    outer.some((o) => {
      const x = intersect(i, o)
      return (
        x !== undefined &&
        compare(x.startAddress, i.startAddress) === 0 &&
        compare(x.endAddress, i.endAddress) === 0 &&
        x.startPort === i.startPort &&
        x.endPort === i.endPort &&
        (o.protocol === 0 || o.protocol === i.protocol)
      )
    })
  )
}

const ID_TYPES: Record<Identity['type'], number> = {
  ipv4: IdType.IPV4_ADDR,
  ipv6: IdType.IPV6_ADDR,
  fqdn: IdType.FQDN,
  rfc822: IdType.RFC822_ADDR,
  'der-dn': IdType.DER_ASN1_DN,
  'key-id': IdType.KEY_ID
}

/**
 * Encodes an identity as an ID payload.
 *
 * @param id - the identity
 * @param type - IDi or IDr
 */
export function encodeIdentity(
  id: Identity,
  type: typeof PayloadType.IDi | typeof PayloadType.IDr
): IdPayload {
  const idType = ID_TYPES[id.type]
  if (idType === undefined) throw new InvalidParametersError('id.type', `unknown ${id.type}`)
  let data: Uint8Array
  switch (id.type) {
    case 'ipv4':
    case 'ipv6':
      data = ipToBytes(id.value)
      break
    case 'der-dn':
      data = encodeDn(id.value)
      break
    case 'key-id':
      data = new Uint8Array(Buffer.from(id.value, 'hex'))
      break
    default:
      data = new TextEncoder().encode(id.value)
  }
  return { type, idType, data }
}

/**
 * Decodes an ID payload into an identity.
 *
 * @throws IkeProtocolError INVALID_SYNTAX for an unknown type or bad data
 */
export function decodeIdentity(p: IdPayload): Identity {
  switch (p.idType) {
    case IdType.IPV4_ADDR:
      if (p.data.length !== 4) throw new IkeProtocolError('INVALID_SYNTAX', 'IPv4 id length')
      return { type: 'ipv4', value: bytesToIp(p.data) }
    case IdType.IPV6_ADDR:
      if (p.data.length !== 16) throw new IkeProtocolError('INVALID_SYNTAX', 'IPv6 id length')
      return { type: 'ipv6', value: bytesToIp(p.data) }
    case IdType.FQDN:
      return { type: 'fqdn', value: new TextDecoder().decode(p.data) }
    case IdType.RFC822_ADDR:
      return { type: 'rfc822', value: new TextDecoder().decode(p.data) }
    case IdType.DER_ASN1_DN:
      return { type: 'der-dn', value: decodeDn(p.data) }
    case IdType.KEY_ID:
      return { type: 'key-id', value: Buffer.from(p.data).toString('hex') }
    default:
      throw new IkeProtocolError('INVALID_SYNTAX', `unsupported ID type ${p.idType}`)
  }
}

/** Whether two identities are the same (DNs compared in their canonical text form). */
export function sameIdentity(a: Identity, b: Identity): boolean {
  if (a.type !== b.type) return false
  if (a.type === 'fqdn') {
    // the same text (the usual case) needs no lower-case copies
    return a.value === b.value || asciiLower(a.value) === asciiLower(b.value)
  }
  if (a.type === 'der-dn') {
    try {
      return decodeDn(encodeDn(a.value)) === decodeDn(encodeDn(b.value))
    } catch {
      return false
    }
  }
  if (a.type === 'ipv6') return bytesToIp(ipToBytes(a.value)) === bytesToIp(ipToBytes(b.value))
  return a.value === b.value
}

/** `s` in lower case, with no copy when it has no upper-case letter (the usual case). */
export function asciiLower(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if ((c >= 65 && c <= 90) || c > 127) return s.toLowerCase()
  }
  return s
}
