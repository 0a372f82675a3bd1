import { InvalidParametersError } from './errors.js'

/** An IP prefix in binary form: the address bytes (4 or 16) and the prefix length in bits. */
export interface IpPrefix {
  /** The network address, with host bits cleared. */
  bytes: Uint8Array
  /** The prefix length in bits (0 to 32 or 0 to 128). */
  length: number
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/

/**
 * Parses a textual IPv4 or IPv6 address into 4 or 16 bytes; `undefined` if it is not one.
 *
 * @param text - e.g. `192.0.2.1`, `2001:db8::1`, `::ffff:192.0.2.1`
 */
export function tryParseIp(text: string): Uint8Array | undefined {
  if (typeof text !== 'string') return undefined
  const m = IPV4.exec(text)
  if (m != null) {
    const out = new Uint8Array(4)
    for (let i = 0; i < 4; i++) {
      const n = Number(m[i + 1])
      if (n > 255) return undefined
      out[i] = n
    }
    return out
  }
  return tryParseIpv6(text)
}

function tryParseIpv6(text: string): Uint8Array | undefined {
  if (!text.includes(':')) return undefined
  let tail4: Uint8Array | undefined
  let body = text
  const lastColon = text.lastIndexOf(':')
  if (text.slice(lastColon + 1).includes('.')) {
    tail4 = tryParseIp(text.slice(lastColon + 1))
    if (tail4 == null || tail4.length !== 4) return undefined
    body = text.slice(0, lastColon + 1) + '0:0'
  }
  const halves = body.split('::')
  if (halves.length > 2) return undefined
  const parse = (part: string): number[] | undefined => {
    if (part === '') return []
    const groups = part.split(':')
    const out: number[] = []
    for (const g of groups) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined
      out.push(parseInt(g, 16))
    }
    return out
  }
  const head = parse(halves[0])
  const rest = halves.length === 2 ? parse(halves[1]) : []
  if (head == null || rest == null) return undefined
  let groups: number[]
  if (halves.length === 2) {
    const fill = 8 - head.length - rest.length
    if (fill < 1) return undefined
    groups = [...head, ...new Array<number>(fill).fill(0), ...rest]
  } else {
    groups = head
  }
  if (groups.length !== 8) return undefined
  const out = new Uint8Array(16)
  for (let i = 0; i < 8; i++) {
    out[2 * i] = groups[i] >> 8
    out[2 * i + 1] = groups[i] & 0xff
  }
  if (tail4 != null) out.set(tail4, 12)
  return out
}

/**
 * Parses a textual IP address.
 *
 * @param text - the address
 * @param argument - the name reported in the error
 * @throws InvalidParametersError when `text` is not an IPv4 or IPv6 address
 */
export function parseIp(text: string, argument = 'address'): Uint8Array {
  const bytes = tryParseIp(text)
  if (bytes == null)
    throw new InvalidParametersError(argument, `not an IP address: ${String(text)}`)
  return bytes
}

/**
 * Formats 4 or 16 address bytes as text (IPv6 in RFC 5952 form, IPv4 dotted quad).
 *
 * @param bytes - the address
 * @param offset - where the address starts in `bytes`
 * @param length - 4 or 16
 */
export function formatIp(bytes: Uint8Array, offset = 0, length = bytes.length - offset): string {
  if (length === 4) {
    return `${bytes[offset]}.${bytes[offset + 1]}.${bytes[offset + 2]}.${bytes[offset + 3]}`
  }
  const groups: number[] = []
  for (let i = 0; i < 8; i++) groups.push((bytes[offset + 2 * i] << 8) | bytes[offset + 2 * i + 1])
  // the longest run of at least two zero groups becomes '::'
  let bestStart = -1
  let bestLength = 0
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLength && j - i >= 2) {
      bestStart = i
      bestLength = j - i
    }
    i = j
  }
  const hex = groups.map((g) => g.toString(16))
  if (bestStart < 0) return hex.join(':')
  return hex.slice(0, bestStart).join(':') + '::' + hex.slice(bestStart + bestLength).join(':')
}

/**
 * Parses a prefix `address/length` (a bare address is a host prefix) and clears the host bits.
 *
 * @param text - e.g. `10.0.0.0/8`, `2001:db8::/32`, `192.0.2.1`
 * @param argument - the name reported in the error
 * @throws InvalidParametersError when the prefix is malformed
 */
export function parsePrefix(text: string, argument = 'prefix'): IpPrefix {
  if (typeof text !== 'string') throw new InvalidParametersError(argument, 'not a string')
  const slash = text.indexOf('/')
  const bytes = parseIp(slash < 0 ? text : text.slice(0, slash), argument)
  const max = bytes.length * 8
  let length = max
  if (slash >= 0) {
    const lengthText = text.slice(slash + 1)
    if (!/^\d{1,3}$/.test(lengthText)) {
      throw new InvalidParametersError(argument, `bad prefix length in ${text}`)
    }
    length = Number(lengthText)
    if (length > max)
      throw new InvalidParametersError(argument, `prefix length > ${max} in ${text}`)
  }
  for (let bit = length; bit < max; bit++) bytes[bit >> 3] &= ~(0x80 >> (bit & 7))
  return { bytes, length }
}

/**
 * Whether the address at `offset` in `packet` (of the prefix's family) lies inside `prefix`.
 *
 * @param prefix - the prefix
 * @param packet - bytes holding the address
 * @param offset - where the address starts
 */
export function prefixContains(prefix: IpPrefix, packet: Uint8Array, offset: number): boolean {
  const full = prefix.length >> 3
  const p = prefix.bytes
  for (let i = 0; i < full; i++) if (packet[offset + i] !== p[i]) return false
  const rest = prefix.length & 7
  if (rest === 0) return true
  const mask = (0xff00 >> rest) & 0xff
  return (packet[offset + full] & mask) === p[full]
}

/**
 * Formats a prefix as `address/length`.
 *
 * @param prefix - the prefix
 */
export function formatPrefix(prefix: IpPrefix): string {
  return `${formatIp(prefix.bytes)}/${prefix.length}`
}
