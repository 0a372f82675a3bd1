/**
 * A minimal X.500 distinguished-name codec for ID_DER_ASN1_DN identities: text of the form
 * `C=CH, O=Example, CN=gw.example` (RDNs in DER order, as strongSwan and OpenSSL print them) to
 * DER and back. Attribute types: C, ST, L, O, OU, CN, serialNumber, E (emailAddress), DC; one
 * attribute per RDN. Values with `,` or `=` are not supported.
 *
 * @module
 */
import { IkeProtocolError, InvalidParametersError } from '@vipsec/interface'

const OIDS: Record<string, string> = {
  C: '2.5.4.6',
  ST: '2.5.4.8',
  L: '2.5.4.7',
  O: '2.5.4.10',
  OU: '2.5.4.11',
  CN: '2.5.4.3',
  serialNumber: '2.5.4.5',
  E: '1.2.840.113549.1.9.1',
  DC: '0.9.2342.19200300.100.1.25'
}
const NAMES: Record<string, string> = Object.fromEntries(
  Object.entries(OIDS).map(([k, v]) => [v, k])
)

/** Encodes a DER TLV. */
export function tlv(tag: number, content: Uint8Array): Uint8Array {
  const n = content.length
  const len =
    n < 0x80
      ? [n]
      : n < 0x100
        ? [0x81, n]
        : n < 0x10000
          ? [0x82, n >> 8, n & 0xff]
          : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]
  const out = new Uint8Array(1 + len.length + n)
  out[0] = tag
  out.set(len, 1)
  out.set(content, 1 + len.length)
  return out
}

/** Encodes an OBJECT IDENTIFIER's content octets. */
export function oidContent(oid: string): Uint8Array {
  const parts = oid.split('.').map(Number)
  const out: number[] = [parts[0] * 40 + parts[1]]
  for (const p of parts.slice(2)) {
    const bytes: number[] = []
    let v = p
    do {
      bytes.unshift(v & 0x7f)
      v = Math.floor(v / 128)
    } while (v > 0)
    for (let i = 0; i < bytes.length - 1; i++) bytes[i] |= 0x80
    out.push(...bytes)
  }
  return Uint8Array.from(out)
}

function oidText(b: Uint8Array): string {
  const parts = [Math.floor(b[0] / 40), b[0] % 40]
  let v = 0
  for (const x of b.subarray(1)) {
    v = v * 128 + (x & 0x7f)
    if ((x & 0x80) === 0) {
      parts.push(v)
      v = 0
    }
  }
  return parts.join('.')
}

function concatAll(parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(parts.flatMap((p) => Array.from(p)))
}

/**
 * Encodes a DN from text.
 *
 * @param text - e.g. `C=CH, O=Example, CN=gw.example`
 * @throws InvalidParametersError for an unknown attribute type
 */
export function encodeDn(text: string): Uint8Array {
  const rdns = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((rdn) => {
      const eq = rdn.indexOf('=')
      if (eq <= 0) throw new InvalidParametersError('dn', `bad RDN "${rdn}"`)
      const name = rdn.slice(0, eq).trim()
      const value = rdn.slice(eq + 1).trim()
      const oid = OIDS[name]
      if (oid === undefined) throw new InvalidParametersError('dn', `unknown attribute ${name}`)
      const tag = name === 'C' ? 0x13 : name === 'E' || name === 'DC' ? 0x16 : 0x0c
      const atv = tlv(
        0x30,
        concatAll([tlv(0x06, oidContent(oid)), tlv(tag, new TextEncoder().encode(value))])
      )
      return tlv(0x31, atv)
    })
  return tlv(0x30, concatAll(rdns))
}

interface Tlv {
  tag: number
  content: Uint8Array
  end: number
}

/** Reads one DER TLV at `o`. */
export function readTlv(b: Uint8Array, o: number): Tlv {
  if (o + 2 > b.length) throw new IkeProtocolError('INVALID_SYNTAX', 'truncated DER')
  const tag = b[o]
  let len = b[o + 1]
  let p = o + 2
  if (len & 0x80) {
    const n = len & 0x7f
    if (n === 0 || n > 3 || p + n > b.length)
      throw new IkeProtocolError('INVALID_SYNTAX', 'DER length')
    len = 0
    for (let i = 0; i < n; i++) len = len * 256 + b[p + i]
    p += n
  }
  if (p + len > b.length) throw new IkeProtocolError('INVALID_SYNTAX', 'truncated DER')
  return { tag, content: b.subarray(p, p + len), end: p + len }
}

/**
 * Decodes a DER DN to text (`C=CH, O=Example, CN=gw.example`); unknown attribute types are
 * written as their dotted OID.
 *
 * @throws IkeProtocolError INVALID_SYNTAX when it is not a DN
 */
export function decodeDn(der: Uint8Array): string {
  const seq = readTlv(der, 0)
  if (seq.tag !== 0x30 || seq.end !== der.length)
    throw new IkeProtocolError('INVALID_SYNTAX', 'not a DN')
  const out: string[] = []
  let o = 0
  while (o < seq.content.length) {
    const set = readTlv(seq.content, o)
    if (set.tag !== 0x31) throw new IkeProtocolError('INVALID_SYNTAX', 'RDN is not a SET')
    let a = 0
    while (a < set.content.length) {
      const atv = readTlv(set.content, a)
      const oid = readTlv(atv.content, 0)
      const value = readTlv(atv.content, oid.end)
      if (atv.tag !== 0x30 || oid.tag !== 0x06)
        throw new IkeProtocolError('INVALID_SYNTAX', 'bad ATV')
      const t = oidText(oid.content)
      out.push(`${NAMES[t] ?? t}=${new TextDecoder().decode(value.content)}`)
      a = atv.end
    }
    o = set.end
  }
  return out.join(', ')
}
