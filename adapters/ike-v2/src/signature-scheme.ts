/**
 * The signature schemes of RFC 7427 digital-signature authentication, as the ASN.1
 * AlgorithmIdentifier (DER) that precedes the signature in the AUTH payload: ECDSA and RSA
 * PKCS#1 v1.5 with SHA-256, -384, -512 (RFC 7427 appendix A), and RSASSA-PSS with those hashes,
 * MGF1 with the same hash (RFC 4055, RFC 8017). Built and read here with a minimal DER codec.
 *
 * @module
 */
import { children, read, type Tlv } from './der.js'

/** The hash algorithms of SIGNATURE_HASH_ALGORITHMS that vipsec signs and verifies with. */
export type SignatureHash = 'sha256' | 'sha384' | 'sha512'

/** A signature scheme: the key kind, the padding for RSA, and the hash. */
export interface SignatureScheme {
  /** `ecdsa`, RSA `pkcs1` (v1.5) or RSA `pss`. */
  kind: 'ecdsa' | 'pkcs1' | 'pss'
  /** The hash. */
  hash: SignatureHash
  /** For `pss`: the salt length in bytes. */
  saltLength?: number
}

/** The hashes by their number in the IANA "Hash Algorithms" registry of RFC 7427. */
export const SIGNATURE_HASH_NUMBER: Record<SignatureHash, number> = {
  sha256: 2,
  sha384: 3,
  sha512: 4
}

/** The output length of each hash, in bytes. */
export const HASH_LENGTH: Record<SignatureHash, number> = { sha256: 32, sha384: 48, sha512: 64 }

const HASH_OID: Record<SignatureHash, string> = {
  sha256: '608648016503040201',
  sha384: '608648016503040202',
  sha512: '608648016503040203'
}
const ECDSA_OID: Record<SignatureHash, string> = {
  sha256: '2a8648ce3d040302',
  sha384: '2a8648ce3d040303',
  sha512: '2a8648ce3d040304'
}
const PKCS1_OID: Record<SignatureHash, string> = {
  sha256: '2a864886f70d01010b',
  sha384: '2a864886f70d01010c',
  sha512: '2a864886f70d01010d'
}
const PSS_OID = '2a864886f70d01010a'
const MGF1_OID = '2a864886f70d010108'
const NULL = Uint8Array.of(0x05, 0x00)

function tlv(tag: number, content: Uint8Array): Uint8Array {
  const n = content.length
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff]
  const out = new Uint8Array(1 + len.length + n)
  out[0] = tag
  out.set(len, 1)
  out.set(content, 1 + len.length)
  return out
}

function cat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0))
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

const oid = (hex: string): Uint8Array => tlv(0x06, Uint8Array.from(Buffer.from(hex, 'hex')))
const seq = (...parts: Uint8Array[]): Uint8Array => tlv(0x30, cat(...parts))

function integer(v: number): Uint8Array {
  const bytes: number[] = []
  do {
    bytes.unshift(v & 0xff)
    v >>= 8
  } while (v > 0)
  if (bytes[0] & 0x80) bytes.unshift(0)
  return tlv(0x02, Uint8Array.from(bytes))
}

/**
 * The DER AlgorithmIdentifier of a scheme: ECDSA without parameters, PKCS#1 v1.5 with NULL
 * parameters, RSASSA-PSS with its hash, MGF1 with the same hash and the salt length (default
 * the hash length), the trailer field left at its default.
 */
export function encodeScheme(scheme: SignatureScheme): Uint8Array {
  switch (scheme.kind) {
    case 'ecdsa':
      return seq(oid(ECDSA_OID[scheme.hash]))
    case 'pkcs1':
      return seq(oid(PKCS1_OID[scheme.hash]), NULL)
    case 'pss': {
      const hash = seq(oid(HASH_OID[scheme.hash]), NULL)
      const salt = scheme.saltLength ?? HASH_LENGTH[scheme.hash]
      return seq(
        oid(PSS_OID),
        seq(tlv(0xa0, hash), tlv(0xa1, seq(oid(MGF1_OID), hash)), tlv(0xa2, integer(salt)))
      )
    }
  }
}

const hexOf = (b: Uint8Array): string => Buffer.from(b).toString('hex')

function hashByOid(hex: string): SignatureHash | undefined {
  return (Object.keys(HASH_OID) as SignatureHash[]).find((h) => HASH_OID[h] === hex)
}

/** A hash AlgorithmIdentifier (parameters absent or NULL). */
function readHashAlgorithm(t: Tlv | undefined): SignatureHash | undefined {
  if (t?.tag !== 0x30) return undefined
  const parts = children(t.content)
  if (parts === undefined || parts.length < 1 || parts.length > 2 || parts[0].tag !== 0x06) {
    return undefined
  }
  if (parts.length === 2 && (parts[1].tag !== 0x05 || parts[1].content.length !== 0)) {
    return undefined
  }
  return hashByOid(hexOf(parts[0].content))
}

function readPssParams(t: Tlv | undefined): SignatureScheme | undefined {
  if (t?.tag !== 0x30) return undefined
  const parts = children(t.content)
  if (parts === undefined) return undefined
  let hash: SignatureHash | undefined
  let mgfHash: SignatureHash | undefined
  let saltLength = 20
  for (const p of parts) {
    const inner = children(p.content)
    if (inner === undefined || inner.length !== 1) return undefined
    if (p.tag === 0xa0) hash = readHashAlgorithm(inner[0])
    else if (p.tag === 0xa1) {
      const mgf = inner[0].tag === 0x30 ? children(inner[0].content) : undefined
      if (mgf?.length !== 2 || mgf[0].tag !== 0x06 || hexOf(mgf[0].content) !== MGF1_OID) {
        return undefined
      }
      mgfHash = readHashAlgorithm(mgf[1])
    } else if (p.tag === 0xa2) {
      const c = inner[0].content
      if (inner[0].tag !== 0x02 || c.length === 0 || c.length > 2) return undefined
      saltLength = c.reduce((a, x) => (a << 8) | x, 0)
    } else if (p.tag === 0xa3) {
      // the trailer field must be 1 (0xbc)
      const c = inner[0].content
      if (inner[0].tag !== 0x02 || c.length !== 1 || c[0] !== 1) return undefined
    } else return undefined
  }
  // the defaults (SHA-1, MGF1 with SHA-1) are not accepted; MGF1 must use the same hash
  if (hash === undefined || mgfHash !== hash) return undefined
  return { kind: 'pss', hash, saltLength }
}

/**
 * Reads the AlgorithmIdentifier of an AUTH payload.
 *
 * @returns the scheme, or undefined when it is malformed or not one vipsec verifies
 */
export function parseScheme(der: Uint8Array): SignatureScheme | undefined {
  const top = read(der, 0)
  if (top === undefined || top.tag !== 0x30 || top.end !== der.length) return undefined
  const parts = children(top.content)
  if (parts === undefined || parts.length < 1 || parts[0].tag !== 0x06) return undefined
  const id = hexOf(parts[0].content)
  const params = parts.slice(1)
  const hashes = Object.keys(HASH_OID) as SignatureHash[]
  const ecdsa = hashes.find((h) => ECDSA_OID[h] === id)
  if (ecdsa !== undefined) return params.length === 0 ? { kind: 'ecdsa', hash: ecdsa } : undefined
  const pkcs1 = hashes.find((h) => PKCS1_OID[h] === id)
  if (pkcs1 !== undefined) {
    const ok =
      params.length === 0 ||
      (params.length === 1 && params[0].tag === 0x05 && params[0].content.length === 0)
    return ok ? { kind: 'pkcs1', hash: pkcs1 } : undefined
  }
  if (id === PSS_OID && params.length === 1) return readPssParams(params[0])
  return undefined
}
