/**
 * Parser and builder of IKEv2 messages and payloads (RFC 7296 section 3): pure functions over
 * `Uint8Array`. Parsed payload fields are views into the bytes parsed (no copies): callers that
 * keep them beyond the message's life copy them. The parser checks every length and count against the bytes it was given and
 * throws `IkeProtocolError` with kind `INVALID_SYNTAX` (or `UNSUPPORTED_CRITICAL_PAYLOAD`,
 * `INVALID_MAJOR_VERSION`) on malformed input; it never reads out of bounds.
 *
 * @module
 */
import { IkeProtocolError } from '@vipsec/interface'
import { readU16 as u16, readU32 as u32, writeU16 as put16, writeU32 as put32 } from '@vipsec/wire'
import { ATTRIBUTE_KEY_LENGTH, IKE_HEADER_LENGTH, PayloadType, TsType } from './constants.js'

/** The fixed IKE header (RFC 7296 section 3.1). */
export interface IkeHeader {
  /** The initiator's SPI, 8 bytes. */
  spiI: Uint8Array
  /** The responder's SPI, 8 bytes (zero in the first IKE_SA_INIT request). */
  spiR: Uint8Array
  /** The type of the first payload. */
  nextPayload: number
  /** Major and minor version, 0x20 for IKEv2. */
  version: number
  /** The exchange type. */
  exchange: number
  /** Flags (`HeaderFlag`). */
  flags: number
  /** The message id. */
  messageId: number
  /** The length of the whole message. */
  length: number
}

/** One transform of a proposal. */
export interface Transform {
  /** The transform type (`TransformType`). */
  type: number
  /** The transform id. */
  id: number
  /** The Key Length attribute, in bits, if present. */
  keyLength?: number
}

/** One proposal of an SA payload. */
export interface Proposal {
  /** The proposal number, from 1. */
  number: number
  /** The protocol (`ProtocolId`). */
  protocol: number
  /** The SPI (empty in an IKE_SA_INIT proposal, 8 bytes for IKE rekeys, 4 for ESP). */
  spi: Uint8Array
  /** The transforms. */
  transforms: Transform[]
}

/** A traffic selector on the wire. */
export interface WireTrafficSelector {
  /** `TsType`: 7 IPv4, 8 IPv6. */
  type: number
  /** IP protocol, 0 for any. */
  protocol: number
  /** First port. */
  startPort: number
  /** Last port. */
  endPort: number
  /** First address (4 or 16 bytes). */
  startAddress: Uint8Array
  /** Last address (4 or 16 bytes). */
  endAddress: Uint8Array
}

/** Fields every payload has. */
interface PayloadBase {
  /** The critical bit. */
  critical?: boolean
}

/** Security Association payload. */
export interface SaPayload extends PayloadBase {
  /** Payload type. */
  type: typeof PayloadType.SA
  /** Proposals. */
  proposals: Proposal[]
}

/** Key Exchange payload. */
export interface KePayload extends PayloadBase {
  /** Payload type. */
  type: typeof PayloadType.KE
  /** The group. */
  group: number
  /** The public value. */
  data: Uint8Array
}

/** Identification payload (IDi or IDr). */
export interface IdPayload extends PayloadBase {
  /** Payload type. */
  type: typeof PayloadType.IDi | typeof PayloadType.IDr
  /** The id type (`IdType`). */
  idType: number
  /** The id data. */
  data: Uint8Array
}

/** Certificate or Certificate Request payload. */
export interface CertPayload extends PayloadBase {
  /** Payload type. */
  type: typeof PayloadType.CERT | typeof PayloadType.CERTREQ
  /** The encoding (`CertEncoding`). */
  encoding: number
  /** The data (a DER certificate, or concatenated SHA-1 hashes of CA keys). */
  data: Uint8Array
}

/** Authentication payload. */
export interface AuthPayload extends PayloadBase {
  /** Payload type. */
  type: typeof PayloadType.AUTH
  /** The method (`AuthMethodId`). */
  method: number
  /** The authentication data. */
  data: Uint8Array
}

/** Nonce payload. */
export interface NoncePayload extends PayloadBase {
  /** Payload type. */
  type: typeof PayloadType.NONCE
  /** The nonce, 16 to 256 bytes. */
  data: Uint8Array
}

/** Notify payload. */
export interface NotifyPayload extends PayloadBase {
  /** Payload type. */
  type: typeof PayloadType.NOTIFY
  /** The protocol (0 when no SPI). */
  protocol: number
  /** The notify type (`NotifyType`). */
  notifyType: number
  /** The SPI, possibly empty. */
  spi: Uint8Array
  /** The notification data. */
  data: Uint8Array
}

/** Delete payload. */
export interface DeletePayload extends PayloadBase {
  /** Payload type. */
  type: typeof PayloadType.DELETE
  /** The protocol (`ProtocolId`). */
  protocol: number
  /** The SPIs (none for IKE). */
  spis: Uint8Array[]
}

/** Traffic selector payload (TSi or TSr). */
export interface TsPayload extends PayloadBase {
  /** Payload type. */
  type: typeof PayloadType.TSi | typeof PayloadType.TSr
  /** The selectors. */
  selectors: WireTrafficSelector[]
}

/** The Encrypted and Authenticated payload, as parsed before decryption. */
export interface SkPayload extends PayloadBase {
  /** Payload type. */
  type: typeof PayloadType.SK
  /** The type of the first payload inside. */
  innerType: number
  /** IV, ciphertext and ICV. */
  body: Uint8Array
  /** Where the SK payload's generic header starts in the message. */
  offset: number
}

/**
 * The Encrypted Fragment payload (RFC 7383 section 2.5), as parsed before decryption: one piece
 * of an SK payload's inner payloads, protected on its own.
 */
export interface SkfPayload extends PayloadBase {
  /** Payload type. */
  type: typeof PayloadType.SKF
  /** The type of the first inner payload (fragment 1 only; 0 in the others). */
  innerType: number
  /** The fragment's number, 1 to `totalFragments`. */
  fragmentNumber: number
  /** How many fragments the message was split into. */
  totalFragments: number
  /** IV, ciphertext and ICV. */
  body: Uint8Array
  /** Where the SKF payload's generic header starts in the message. */
  offset: number
}

/** Any other payload (Vendor ID, CP, EAP, unknown non-critical types): kept as bytes. */
export interface OpaquePayload extends PayloadBase {
  /** Payload type. */
  type: number
  /** The body. */
  body: Uint8Array
}

/** Any payload. */
export type Payload =
  | SaPayload
  | KePayload
  | IdPayload
  | CertPayload
  | AuthPayload
  | NoncePayload
  | NotifyPayload
  | DeletePayload
  | TsPayload
  | SkPayload
  | SkfPayload
  | OpaquePayload

/** A parsed message: its header, its (outer) payloads, and the bytes it came from. */
export interface IkeMessage {
  /** The header. */
  header: IkeHeader
  /** The payloads, in order. */
  payloads: Payload[]
  /** The message bytes. */
  raw: Uint8Array
}

function syntax(message: string): IkeProtocolError {
  return new IkeProtocolError('INVALID_SYNTAX', message)
}

/**
 * Parses the IKE header.
 *
 * @param b - the message, at least 28 bytes
 * @throws IkeProtocolError INVALID_SYNTAX or INVALID_MAJOR_VERSION
 */
export function parseHeader(b: Uint8Array): IkeHeader {
  if (b.length < IKE_HEADER_LENGTH) throw syntax('message shorter than the IKE header')
  const version = b[17]
  if (version >> 4 !== 2) {
    throw new IkeProtocolError('INVALID_MAJOR_VERSION', `major version ${version >> 4}`)
  }
  const length = u32(b, 24)
  if (length !== b.length) throw syntax(`header length ${length} but ${b.length} bytes`)
  return {
    spiI: b.subarray(0, 8),
    spiR: b.subarray(8, 16),
    nextPayload: b[16],
    version,
    exchange: b[18],
    flags: b[19],
    messageId: u32(b, 20),
    length
  }
}

/**
 * Encodes an IKE header.
 *
 * @param h - the header; `length` is the total message length
 */
export function encodeHeader(h: IkeHeader): Uint8Array {
  if (h.spiI.length !== 8) throw syntax('spiI must be 8 bytes')
  if (h.spiR.length !== 8) throw syntax('spiR must be 8 bytes')
  const b = new Uint8Array(IKE_HEADER_LENGTH)
  b.set(h.spiI, 0)
  b.set(h.spiR, 8)
  b[16] = h.nextPayload
  b[17] = h.version
  b[18] = h.exchange
  b[19] = h.flags
  put32(b, 20, h.messageId)
  put32(b, 24, h.length)
  return b
}

function parseProposals(body: Uint8Array): Proposal[] {
  const proposals: Proposal[] = []
  let o = 0
  let last = false
  while (!last) {
    if (body.length - o < 8) throw syntax('truncated proposal')
    const more = body[o]
    if (more !== 0 && more !== 2) throw syntax('bad proposal last-substructure value')
    last = more === 0
    const plen = u16(body, o + 2)
    if (plen < 8 || o + plen > body.length) throw syntax('bad proposal length')
    const number = body[o + 4]
    const protocol = body[o + 5]
    const spiSize = body[o + 6]
    const count = body[o + 7]
    if (8 + spiSize > plen) throw syntax('proposal SPI exceeds proposal')
    const spi = body.subarray(o + 8, o + 8 + spiSize)
    const transforms: Transform[] = []
    let t = o + 8 + spiSize
    const end = o + plen
    for (let i = 0; i < count; i++) {
      if (end - t < 8) throw syntax('truncated transform')
      const tmore = body[t]
      if ((tmore !== 0 && tmore !== 3) || (tmore === 0) !== (i === count - 1)) {
        throw syntax('bad transform last-substructure value')
      }
      const tlen = u16(body, t + 2)
      if (tlen < 8 || t + tlen > end) throw syntax('bad transform length')
      const transform: Transform = { type: body[t + 4], id: u16(body, t + 6) }
      let a = t + 8
      while (a < t + tlen) {
        if (t + tlen - a < 4) throw syntax('truncated transform attribute')
        const af = body[a] & 0x80
        const atype = u16(body, a) & 0x7fff
        if (af !== 0) {
          if (atype === ATTRIBUTE_KEY_LENGTH) transform.keyLength = u16(body, a + 2)
          a += 4
        } else {
          const alen = u16(body, a + 2)
          if (a + 4 + alen > t + tlen) throw syntax('bad attribute length')
          a += 4 + alen
        }
      }
      transforms.push(transform)
      t += tlen
    }
    if (t !== end) throw syntax('proposal length does not match its transforms')
    // an offer numbers its proposals from 1 (RFC 7296 section 3.3.1); an answer is one
    // proposal that keeps the number of the one accepted, whatever it was
    const prev = proposals.at(-1)?.number
    const alone = prev === undefined && last
    if (number === 0 || (!alone && number !== (prev ?? 0) + 1 && number !== prev)) {
      throw syntax('proposal numbers out of sequence')
    }
    proposals.push({ number, protocol, spi, transforms })
    o = end
  }
  if (o !== body.length) throw syntax('bytes after the last proposal')
  return proposals
}

function proposalsLength(proposals: Proposal[]): number {
  let n = 0
  for (const p of proposals) {
    n += 8 + p.spi.length
    for (const t of p.transforms) n += t.keyLength !== undefined ? 12 : 8
  }
  return n
}

/** Writes the proposals at `o` of `b`; returns the offset after them. */
function writeProposals(proposals: Proposal[], b: Uint8Array, o: number): number {
  for (let pi = 0; pi < proposals.length; pi++) {
    const p = proposals[pi]!
    const start = o
    b[o] = pi === proposals.length - 1 ? 0 : 2
    b[o + 1] = 0
    b[o + 4] = p.number
    b[o + 5] = p.protocol
    b[o + 6] = p.spi.length
    b[o + 7] = p.transforms.length
    b.set(p.spi, o + 8)
    o += 8 + p.spi.length
    for (let ti = 0; ti < p.transforms.length; ti++) {
      const t = p.transforms[ti]!
      const length = t.keyLength !== undefined ? 12 : 8
      b[o] = ti === p.transforms.length - 1 ? 0 : 3
      b[o + 1] = 0
      put16(b, o + 2, length)
      b[o + 4] = t.type
      b[o + 5] = 0
      put16(b, o + 6, t.id)
      if (t.keyLength !== undefined) {
        put16(b, o + 8, 0x8000 | ATTRIBUTE_KEY_LENGTH)
        put16(b, o + 10, t.keyLength)
      }
      o += length
    }
    put16(b, start + 2, o - start)
  }
  return o
}

function parseSelectors(body: Uint8Array): WireTrafficSelector[] {
  if (body.length < 4) throw syntax('truncated TS payload')
  const count = body[0]
  if (count === 0) throw syntax('TS payload without selectors')
  const out: WireTrafficSelector[] = []
  let o = 4
  for (let i = 0; i < count; i++) {
    if (body.length - o < 8) throw syntax('truncated traffic selector')
    const type = body[o]
    const len = u16(body, o + 2)
    const alen = type === TsType.IPV4_ADDR_RANGE ? 4 : type === TsType.IPV6_ADDR_RANGE ? 16 : -1
    if (alen < 0) throw syntax(`unknown traffic selector type ${type}`)
    if (len !== 8 + 2 * alen || o + len > body.length) throw syntax('bad traffic selector length')
    out.push({
      type,
      protocol: body[o + 1],
      startPort: u16(body, o + 4),
      endPort: u16(body, o + 6),
      startAddress: body.subarray(o + 8, o + 8 + alen),
      endAddress: body.subarray(o + 8 + alen, o + 8 + 2 * alen)
    })
    o += len
  }
  if (o !== body.length) throw syntax('bytes after the last traffic selector')
  return out
}

function selectorsLength(selectors: WireTrafficSelector[]): number {
  let n = 4
  for (const sel of selectors) n += 8 + 2 * sel.startAddress.length
  return n
}

/** Writes a TS payload's body at `o` of `b`. */
function writeSelectors(selectors: WireTrafficSelector[], b: Uint8Array, o: number): void {
  b[o] = selectors.length
  b[o + 1] = b[o + 2] = b[o + 3] = 0
  o += 4
  for (const sel of selectors) {
    const length = 8 + 2 * sel.startAddress.length
    b[o] = sel.type
    b[o + 1] = sel.protocol
    put16(b, o + 2, length)
    put16(b, o + 4, sel.startPort)
    put16(b, o + 6, sel.endPort)
    b.set(sel.startAddress, o + 8)
    b.set(sel.endAddress, o + 8 + sel.startAddress.length)
    o += length
  }
}

/** Payload types this parser understands (and may therefore see with the critical bit). */
const KNOWN = new Set<number>([
  PayloadType.SA,
  PayloadType.KE,
  PayloadType.IDi,
  PayloadType.IDr,
  PayloadType.CERT,
  PayloadType.CERTREQ,
  PayloadType.AUTH,
  PayloadType.NONCE,
  PayloadType.NOTIFY,
  PayloadType.DELETE,
  PayloadType.VENDOR,
  PayloadType.TSi,
  PayloadType.TSr,
  PayloadType.SK,
  PayloadType.SKF,
  PayloadType.CP,
  PayloadType.EAP
])

function parseBody(type: number, body: Uint8Array, critical: boolean, offset: number): Payload {
  switch (type) {
    case PayloadType.SA:
      return { type, critical, proposals: parseProposals(body) }
    case PayloadType.KE:
      if (body.length < 4) throw syntax('truncated KE payload')
      return { type, critical, group: u16(body, 0), data: body.subarray(4) }
    case PayloadType.IDi:
    case PayloadType.IDr:
      if (body.length < 4) throw syntax('truncated ID payload')
      return { type, critical, idType: body[0], data: body.subarray(4) }
    case PayloadType.CERT:
    case PayloadType.CERTREQ:
      if (body.length < 1) throw syntax('truncated CERT payload')
      return { type, critical, encoding: body[0], data: body.subarray(1) }
    case PayloadType.AUTH:
      if (body.length < 4) throw syntax('truncated AUTH payload')
      return { type, critical, method: body[0], data: body.subarray(4) }
    case PayloadType.NONCE:
      if (body.length < 16 || body.length > 256) throw syntax('nonce must be 16 to 256 bytes')
      return { type, critical, data: body }
    case PayloadType.NOTIFY: {
      if (body.length < 4) throw syntax('truncated Notify payload')
      const spiSize = body[1]
      if (4 + spiSize > body.length) throw syntax('Notify SPI exceeds payload')
      return {
        type,
        critical,
        protocol: body[0],
        notifyType: u16(body, 2),
        spi: body.subarray(4, 4 + spiSize),
        data: body.subarray(4 + spiSize)
      }
    }
    case PayloadType.DELETE: {
      if (body.length < 4) throw syntax('truncated Delete payload')
      const spiSize = body[1]
      const count = u16(body, 2)
      if (body.length !== 4 + spiSize * count) throw syntax('Delete SPIs do not match length')
      const spis: Uint8Array[] = []
      for (let i = 0; i < count; i++)
        spis.push(body.subarray(4 + i * spiSize, 4 + (i + 1) * spiSize))
      return { type, critical, protocol: body[0], spis }
    }
    case PayloadType.TSi:
    case PayloadType.TSr:
      return { type, critical, selectors: parseSelectors(body) }
    case PayloadType.SK:
      return { type, critical, innerType: 0, body: body, offset }
    case PayloadType.SKF: {
      if (body.length < 4) throw syntax('truncated Encrypted Fragment payload')
      const fragmentNumber = u16(body, 0)
      const totalFragments = u16(body, 2)
      // RFC 7383 section 2.5: neither is zero, and the number is at most the total
      if (fragmentNumber === 0 || totalFragments === 0 || fragmentNumber > totalFragments)
        throw syntax(`fragment ${fragmentNumber} of ${totalFragments}`)
      return {
        type,
        critical,
        innerType: 0,
        fragmentNumber,
        totalFragments,
        body: body.subarray(4),
        offset
      }
    }
    default:
      return { type, critical, body: body }
  }
}

/**
 * Parses a chain of payloads.
 *
 * @param first - the type of the first payload (from the header or the SK payload)
 * @param b - the bytes holding the chain, exactly
 * @param base - the offset of `b` in the message (recorded in an SK payload)
 * @throws IkeProtocolError INVALID_SYNTAX, or UNSUPPORTED_CRITICAL_PAYLOAD for an unknown
 *   payload with the critical bit
 */
export function parsePayloads(first: number, b: Uint8Array, base = 0): Payload[] {
  const out: Payload[] = []
  let type = first
  let o = 0
  while (type !== PayloadType.NONE) {
    if (b.length - o < 4) throw syntax('truncated payload header')
    const next = b[o]
    const critical = (b[o + 1] & 0x80) !== 0
    const len = u16(b, o + 2)
    if (len < 4 || o + len > b.length) throw syntax(`bad length ${len} of payload ${type}`)
    if (!KNOWN.has(type) && critical) {
      throw Object.assign(
        new IkeProtocolError('UNSUPPORTED_CRITICAL_PAYLOAD', `payload type ${type}`),
        { payloadType: type }
      )
    }
    const payload = parseBody(type, b.subarray(o + 4, o + len), critical, base + o)
    if (type === PayloadType.SK || type === PayloadType.SKF) {
      ;(payload as SkPayload | SkfPayload).innerType = next
      out.push(payload)
      if (o + len !== b.length) throw syntax('SK payload is not the last payload')
      return out
    }
    out.push(payload)
    type = next
    o += len
  }
  if (o !== b.length) throw syntax('bytes after the last payload')
  return out
}

/**
 * Parses a whole message (without the non-ESP marker). An SK payload is left encrypted.
 *
 * @param raw - the message
 * @throws IkeProtocolError when malformed
 */
export function parseMessage(raw: Uint8Array): IkeMessage {
  const header = parseHeader(raw)
  const payloads = parsePayloads(
    header.nextPayload,
    raw.subarray(IKE_HEADER_LENGTH),
    IKE_HEADER_LENGTH
  )
  return { header, payloads, raw }
}

/**
 * Encodes one payload's body (without the generic header).
 *
 * @param p - the payload (not SK)
 */
export function encodeBody(p: Payload): Uint8Array {
  const b = new Uint8Array(bodyLength(p))
  writeBody(p, b, 0)
  return b
}

/** The length of a payload's body (without its generic header). */
function bodyLength(p: Payload): number {
  switch (p.type) {
    case PayloadType.SA:
      return proposalsLength((p as SaPayload).proposals)
    case PayloadType.KE:
      return 4 + (p as KePayload).data.length
    case PayloadType.IDi:
    case PayloadType.IDr:
      return 4 + (p as IdPayload).data.length
    case PayloadType.CERT:
    case PayloadType.CERTREQ:
      return 1 + (p as CertPayload).data.length
    case PayloadType.AUTH:
      return 4 + (p as AuthPayload).data.length
    case PayloadType.NONCE:
      return (p as NoncePayload).data.length
    case PayloadType.NOTIFY: {
      const k = p as NotifyPayload
      return 4 + k.spi.length + k.data.length
    }
    case PayloadType.DELETE: {
      let n = 4
      for (const spi of (p as DeletePayload).spis) n += spi.length
      return n
    }
    case PayloadType.TSi:
    case PayloadType.TSr:
      return selectorsLength((p as TsPayload).selectors)
    default:
      return (p as OpaquePayload).body.length
  }
}

/** Writes a payload's body at `o` of `b` (zeroed or not: every byte is written). */
function writeBody(p: Payload, b: Uint8Array, o: number): void {
  switch (p.type) {
    case PayloadType.SA:
      writeProposals((p as SaPayload).proposals, b, o)
      return
    case PayloadType.KE: {
      const k = p as KePayload
      put16(b, o, k.group)
      b[o + 2] = b[o + 3] = 0
      b.set(k.data, o + 4)
      return
    }
    case PayloadType.IDi:
    case PayloadType.IDr: {
      const k = p as IdPayload
      b[o] = k.idType
      b[o + 1] = b[o + 2] = b[o + 3] = 0
      b.set(k.data, o + 4)
      return
    }
    case PayloadType.CERT:
    case PayloadType.CERTREQ: {
      const k = p as CertPayload
      b[o] = k.encoding
      b.set(k.data, o + 1)
      return
    }
    case PayloadType.AUTH: {
      const k = p as AuthPayload
      b[o] = k.method
      b[o + 1] = b[o + 2] = b[o + 3] = 0
      b.set(k.data, o + 4)
      return
    }
    case PayloadType.NONCE:
      b.set((p as NoncePayload).data, o)
      return
    case PayloadType.NOTIFY: {
      const k = p as NotifyPayload
      b[o] = k.protocol
      b[o + 1] = k.spi.length
      put16(b, o + 2, k.notifyType)
      b.set(k.spi, o + 4)
      b.set(k.data, o + 4 + k.spi.length)
      return
    }
    case PayloadType.DELETE: {
      const k = p as DeletePayload
      b[o] = k.protocol
      b[o + 1] = k.spis[0]?.length ?? 0
      put16(b, o + 2, k.spis.length)
      o += 4
      for (const spi of k.spis) {
        b.set(spi, o)
        o += spi.length
      }
      return
    }
    case PayloadType.TSi:
    case PayloadType.TSr:
      writeSelectors((p as TsPayload).selectors, b, o)
      return
    default:
      b.set((p as OpaquePayload).body, o)
  }
}

/**
 * Encodes a chain of payloads (no SK payload among them).
 *
 * @param payloads - the payloads, in order
 * @returns the type of the first payload and the bytes
 */
export function encodePayloads(payloads: Payload[]): {
  /** The type of the first payload. */
  first: number
  /** The encoded chain. */
  bytes: Uint8Array
} {
  return { first: payloads[0]?.type ?? PayloadType.NONE, bytes: encodeChain(payloads, 0) }
}

/**
 * The chain of payloads, encoded in one pass into one array, behind `lead` bytes left for the
 * caller (the IKE header).
 */
function encodeChain(payloads: Payload[], lead: number): Uint8Array {
  let total = lead
  for (const p of payloads) total += 4 + bodyLength(p)
  const b = new Uint8Array(total)
  let o = lead
  for (let i = 0; i < payloads.length; i++) {
    const p = payloads[i]!
    const length = 4 + bodyLength(p)
    b[o] = i + 1 < payloads.length ? payloads[i + 1]!.type : PayloadType.NONE
    b[o + 1] = p.critical === true ? 0x80 : 0
    put16(b, o + 2, length)
    writeBody(p, b, o + 4)
    o += length
  }
  return b
}

/**
 * Encodes an unencrypted message.
 *
 * @param header - the header (`nextPayload` and `length` are filled in)
 * @param payloads - the payloads
 */
export function encodeMessage(
  header: Omit<IkeHeader, 'nextPayload' | 'length'>,
  payloads: Payload[]
): Uint8Array {
  if (header.spiI.length !== 8) throw syntax('spiI must be 8 bytes')
  if (header.spiR.length !== 8) throw syntax('spiR must be 8 bytes')
  const b = encodeChain(payloads, IKE_HEADER_LENGTH)
  b.set(header.spiI, 0)
  b.set(header.spiR, 8)
  b[16] = payloads[0]?.type ?? PayloadType.NONE
  b[17] = header.version
  b[18] = header.exchange
  b[19] = header.flags
  put32(b, 20, header.messageId)
  put32(b, 24, b.length)
  return b
}

/** Finds the first payload of a type. */
export function findPayload<T extends Payload>(payloads: Payload[], type: number): T | undefined {
  // a loop, not `find`: no closure per call (a handshake makes a few dozen of these)
  for (let i = 0; i < payloads.length; i++) if (payloads[i]!.type === type) return payloads[i] as T
  return undefined
}

/** Finds a notify of a type. */
export function findNotify(payloads: Payload[], notifyType: number): NotifyPayload | undefined {
  for (let i = 0; i < payloads.length; i++) {
    const p = payloads[i]!
    if (p.type === PayloadType.NOTIFY && (p as NotifyPayload).notifyType === notifyType) {
      return p as NotifyPayload
    }
  }
  return undefined
}

/** Builds a notify payload. */
export function notify(
  notifyType: number,
  data: Uint8Array = new Uint8Array(0),
  protocol = 0,
  spi: Uint8Array = new Uint8Array(0)
): NotifyPayload {
  return { type: PayloadType.NOTIFY, protocol, notifyType, spi, data }
}

export { concat, readU16, readU32, u16Bytes, u32Bytes } from '@vipsec/wire'
