/**
 * Certification paths (RFC 5280 section 6, the parts IKE peers rely on): from the peer's
 * end-entity certificate through the intermediate CA certificates it sent to one of our trust
 * anchors. Every CA on the path, the anchor included, must be valid at the time, say cA=true in
 * basicConstraints, allow certificate signing if it has a keyUsage, and have no fewer in its
 * pathLenConstraint than the intermediates below it.
 *
 * @module
 */
import type { X509Certificate } from 'node:crypto'
import { children, read } from './der.js'

/** The most intermediate certificates looked at, and so the longest path (DoS bound). */
export const MAX_INTERMEDIATES = 4

/** What a certificate says about being a CA. */
export interface CaConstraints {
  /** basicConstraints cA. */
  ca: boolean
  /** basicConstraints pathLenConstraint, if any. */
  pathLen?: number
  /** keyUsage keyCertSign; undefined without a keyUsage extension. */
  keyCertSign?: boolean
}

const BASIC_CONSTRAINTS = '551d13'
const KEY_USAGE = '551d0f'

/**
 * Reads basicConstraints and keyUsage from a DER certificate.
 *
 * @returns them, or undefined when the certificate does not parse
 */
export function caConstraints(der: Uint8Array): CaConstraints | undefined {
  const cert = read(der, 0)
  const tbs = cert?.tag === 0x30 ? children(cert.content)?.[0] : undefined
  const fields = tbs?.tag === 0x30 ? children(tbs.content) : undefined
  if (fields === undefined) return undefined
  const out: CaConstraints = { ca: false }
  const wrapper = fields.find((f) => f.tag === 0xa3)
  if (wrapper === undefined) return out
  const list = children(wrapper.content)?.[0]
  const extensions = list?.tag === 0x30 ? children(list.content) : undefined
  if (extensions === undefined) return undefined
  for (const e of extensions) {
    const parts = e.tag === 0x30 ? children(e.content) : undefined
    if (parts === undefined || parts.length < 2 || parts[0].tag !== 0x06) return undefined
    const id = Buffer.from(parts[0].content).toString('hex')
    const value = parts.at(-1)!
    if (value.tag !== 0x04) return undefined
    if (id === BASIC_CONSTRAINTS) {
      const bc = read(value.content, 0)
      const items = bc?.tag === 0x30 ? children(bc.content) : undefined
      if (items === undefined) return undefined
      for (const item of items) {
        if (item.tag === 0x01) out.ca = item.content[0] !== 0
        else if (item.tag === 0x02 && item.content.length <= 2) {
          out.pathLen = item.content.reduce((a, x) => (a << 8) | x, 0)
        }
      }
    } else if (id === KEY_USAGE) {
      const bits = read(value.content, 0)
      if (bits?.tag !== 0x03 || bits.content.length < 1) return undefined
      // bit 5 of the first content byte after the unused-bits count
      out.keyCertSign = bits.content.length > 1 && (bits.content[1] & 0x04) !== 0
    }
  }
  return out
}

function validAt(cert: X509Certificate, now: number): boolean {
  return Date.parse(cert.validFrom) <= now && now <= Date.parse(cert.validTo)
}

/** Why a CA may not issue the certificate below it, with `below` intermediates under it. */
function caRefusal(cert: X509Certificate, below: number, now: number): string | undefined {
  const name = cert.subject.replace(/\n/g, ', ')
  if (!validAt(cert, now)) return `CA ${name} not valid now`
  const c = caConstraints(new Uint8Array(cert.raw))
  if (c === undefined) return `CA ${name} does not parse`
  if (!c.ca) return `${name} is not a CA (basicConstraints)`
  if (c.keyCertSign === false) return `CA ${name} may not sign certificates (keyUsage)`
  if (c.pathLen !== undefined && below > c.pathLen) {
    return `CA ${name} allows ${c.pathLen} intermediates below it (pathLenConstraint)`
  }
  return undefined
}

function issued(child: X509Certificate, parent: X509Certificate): boolean {
  try {
    return child.checkIssued(parent) && child.verify(parent.publicKey)
  } catch {
    return false
  }
}

/**
 * Verifies the path from `ee` to a trust anchor.
 *
 * @param ee - the peer's end-entity certificate (its validity is the caller's to check)
 * @param intermediates - the other certificates the peer sent, in any order (the first
 *   {@link MAX_INTERMEDIATES} are used)
 * @param anchors - our trust anchors
 * @param now - the time, in ms since the epoch
 * @returns true, or why not
 */
export function verifyChain(
  ee: X509Certificate,
  intermediates: X509Certificate[],
  anchors: X509Certificate[],
  now: number
): true | string {
  const pool = intermediates.slice(0, MAX_INTERMEDIATES)
  const path: X509Certificate[] = []
  let current = ee
  for (let depth = 0; depth <= pool.length; depth++) {
    const anchor = anchors.find((a) => issued(current, a))
    if (anchor !== undefined) return caRefusal(anchor, path.length, now) ?? true
    const next = pool.find((c) => !path.includes(c) && c !== current && issued(current, c))
    if (next === undefined) break
    const refusal = caRefusal(next, path.length, now)
    if (refusal !== undefined) return refusal
    path.push(next)
    current = next
  }
  return path.length === 0
    ? 'certificate not issued by a trust anchor'
    : 'certificate not issued by a trust anchor (through the intermediates sent)'
}
