/**
 * strongSwan's vocabulary (swanctl.conf) turned into vipsec's records: proposals such as
 * `aes256gcm16-prfsha256-x25519`, traffic selectors such as `10.77.0.0/24[udp/7]`, durations
 * such as `4h`, and identities as swanctl writes them. Each parser throws a {@link ConfigSyntaxError}
 * whose message says what was expected and, for a near miss, what was probably meant.
 *
 * @module
 */
import { isIP } from 'node:net'
import { didYouMean } from '@vipsec/container'
import type {
  ChildProposal,
  EncryptionTransform,
  Identity,
  IkeProposal,
  IntegrityAlgorithm,
  KeyExchangeGroup,
  PrfAlgorithm,
  TrafficSelector
} from '@vipsec/interface'

type Keyword =
  | { kind: 'encryption'; transform: EncryptionTransform; ike: boolean; esp: boolean }
  | { kind: 'integrity'; algorithm: IntegrityAlgorithm; prf: PrfAlgorithm }
  | { kind: 'prf'; algorithm: PrfAlgorithm }
  | { kind: 'ke'; group: KeyExchangeGroup }
  | { kind: 'esn'; value: boolean }
  | { kind: 'unsupported'; what: string }

const KEYWORDS = new Map<string, Keyword>()
for (const bits of [128, 192, 256] as const) {
  const gcm: Keyword = {
    kind: 'encryption',
    transform: { algorithm: 'aes-gcm-16', keyBits: bits },
    ike: true,
    esp: true
  }
  for (const name of [`aes${bits}gcm16`, `aes${bits}gcm128`, `aes${bits}gcm`])
    KEYWORDS.set(name, gcm)
  KEYWORDS.set(`aes${bits}`, {
    kind: 'encryption',
    transform: { algorithm: 'aes-cbc', keyBits: bits },
    ike: true,
    esp: true
  })
  KEYWORDS.set(`aes${bits}gmac`, {
    kind: 'encryption',
    transform: { algorithm: 'null-aes-gmac', keyBits: bits },
    ike: false,
    esp: true
  })
  for (const mode of ['gcm8', 'gcm12', 'gcm64', 'gcm96', 'ctr', 'ccm8', 'ccm12', 'ccm16'])
    KEYWORDS.set(`aes${bits}${mode}`, { kind: 'unsupported', what: 'encryption' })
  for (const c of ['camellia', 'camelliactr', 'camelliaccm16'])
    KEYWORDS.set(`${c.replace('camellia', `camellia${bits}`)}`, {
      kind: 'unsupported',
      what: 'encryption'
    })
}
KEYWORDS.set('chacha20poly1305', {
  kind: 'encryption',
  transform: { algorithm: 'chacha20-poly1305', keyBits: 256 },
  ike: true,
  esp: true
})
for (const name of ['3des', 'cast128', 'blowfish128', 'null', 'des'])
  KEYWORDS.set(name, { kind: 'unsupported', what: 'encryption' })
KEYWORDS.set('sha256', { kind: 'integrity', algorithm: 'hmac-sha2-256-128', prf: 'hmac-sha2-256' })
KEYWORDS.set('sha384', { kind: 'integrity', algorithm: 'hmac-sha2-384-192', prf: 'hmac-sha2-384' })
KEYWORDS.set('sha512', { kind: 'integrity', algorithm: 'hmac-sha2-512-256', prf: 'hmac-sha2-512' })
KEYWORDS.set('sha1', { kind: 'integrity', algorithm: 'hmac-sha1-96', prf: 'hmac-sha1' })
for (const name of ['md5', 'aesxcbc', 'aescmac', 'sha256_96'])
  KEYWORDS.set(name, { kind: 'unsupported', what: 'integrity' })
KEYWORDS.set('prfsha256', { kind: 'prf', algorithm: 'hmac-sha2-256' })
KEYWORDS.set('prfsha384', { kind: 'prf', algorithm: 'hmac-sha2-384' })
KEYWORDS.set('prfsha512', { kind: 'prf', algorithm: 'hmac-sha2-512' })
KEYWORDS.set('prfsha1', { kind: 'prf', algorithm: 'hmac-sha1' })
for (const name of ['prfmd5', 'prfaesxcbc', 'prfaescmac'])
  KEYWORDS.set(name, { kind: 'unsupported', what: 'PRF' })
KEYWORDS.set('x25519', { kind: 'ke', group: 'curve25519' })
KEYWORDS.set('curve25519', { kind: 'ke', group: 'curve25519' })
KEYWORDS.set('ecp256', { kind: 'ke', group: 'ecp256' })
KEYWORDS.set('modp2048', { kind: 'ke', group: 'modp2048' })
for (const group of ['ecp384', 'ecp521', 'modp3072', 'modp4096', 'curve448'] as const)
  KEYWORDS.set(group, { kind: 'ke', group })
KEYWORDS.set('x448', { kind: 'ke', group: 'curve448' })
for (const name of [
  'modp768',
  'modp1024',
  'modp1536',
  'modp6144',
  'modp8192',
  'ecp192',
  'ecp224',
  'ecp224bp',
  'ecp256bp',
  'ecp384bp',
  'ecp512bp',
  'mlkem512',
  'mlkem768',
  'mlkem1024'
])
  KEYWORDS.set(name, { kind: 'unsupported', what: 'key exchange' })
KEYWORDS.set('esn', { kind: 'esn', value: true })
KEYWORDS.set('noesn', { kind: 'esn', value: false })

const SUPPORTED = (pick: (k: Keyword) => boolean): string[] =>
  [...KEYWORDS].filter(([, k]) => pick(k)).map(([name]) => name)

/** Thrown when a strongSwan-style value cannot be read; the message says the expected form. */
export class ConfigSyntaxError extends Error {
  /** The class name, `ConfigSyntaxError`, for matching errors by name. */
  static override readonly name = 'ConfigSyntaxError'
  /** Always `ConfigSyntaxError`. */
  override readonly name = 'ConfigSyntaxError'
}

function keyword(token: string, side: 'IKE' | 'ESP'): Keyword {
  const k = KEYWORDS.get(token.toLowerCase())
  if (k === undefined) {
    const near = didYouMean(token, [...KEYWORDS.keys()])
    throw new ConfigSyntaxError(
      `unknown algorithm '${token}'${near === undefined ? ' (strongSwan names such as aes256gcm16, prfsha256, x25519)' : `; did you mean '${near}'?`}`
    )
  }
  if (k.kind === 'unsupported') {
    const kind = k.what
    const can = SUPPORTED((x) =>
      kind === 'encryption'
        ? x.kind === 'encryption' && (side === 'IKE' ? x.ike : x.esp)
        : kind === 'integrity'
          ? x.kind === 'integrity'
          : kind === 'PRF'
            ? x.kind === 'prf'
            : x.kind === 'ke'
    )
    throw new ConfigSyntaxError(
      `the ${side === 'IKE' ? 'IKE service' : 'ESP engine'} cannot do ${kind} '${token}'; it does ${can.join(', ')}`
    )
  }
  if (k.kind === 'encryption' && !(side === 'IKE' ? k.ike : k.esp)) {
    const can = SUPPORTED((x) => x.kind === 'encryption' && (side === 'IKE' ? x.ike : x.esp))
    throw new ConfigSyntaxError(
      `the ${side === 'IKE' ? 'IKE service' : 'ESP engine'} cannot do '${token}'; it does ${can.join(', ')}`
    )
  }
  return k
}

const AEAD = (t: EncryptionTransform): boolean => t.algorithm !== 'aes-cbc'

function split(list: string): string[] {
  const proposals = list
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '')
  if (proposals.length === 0) throw new ConfigSyntaxError('expected at least one proposal')
  return proposals
}

/** What `proposals = default` stands for: the strongest suites both engines do. */
export const DEFAULT_IKE_PROPOSALS = 'aes256gcm16-aes128gcm16-prfsha256-prfsha384-x25519-ecp256'

/**
 * Reads IKE proposals as swanctl's `proposals` writes them: comma-separated, each algorithms
 * joined by `-`, e.g. `aes256gcm16-prfsha256-x25519, aes256-sha256-modp2048`.
 *
 * @param list - the value
 * @throws ConfigSyntaxError naming the algorithm that is unknown or that the IKE service cannot do
 */
export function ikeProposals(list: string): IkeProposal[] {
  return split(list === 'default' ? DEFAULT_IKE_PROPOSALS : list).map((proposal) => {
    const p: IkeProposal = { encryption: [], integrity: [], prf: [], keyExchange: [] }
    const implied: PrfAlgorithm[] = []
    for (const token of proposal.split('-')) {
      const k = keyword(token, 'IKE')
      if (k.kind === 'encryption') p.encryption.push(k.transform)
      else if (k.kind === 'integrity') {
        p.integrity.push(k.algorithm)
        implied.push(k.prf)
      } else if (k.kind === 'prf') p.prf.push(k.algorithm)
      else if (k.kind === 'ke') p.keyExchange.push(k.group)
      else throw new ConfigSyntaxError(`'${token}' belongs in esp_proposals, not in IKE proposals`)
    }
    if (p.encryption.length === 0)
      throw new ConfigSyntaxError(`'${proposal}' has no encryption algorithm (e.g. aes256gcm16)`)
    if (p.keyExchange.length === 0)
      throw new ConfigSyntaxError(`'${proposal}' has no key exchange group (e.g. x25519)`)
    const aead = p.encryption.every(AEAD)
    if (!aead && p.encryption.some(AEAD))
      throw new ConfigSyntaxError(
        `'${proposal}' mixes AEAD and non-AEAD encryption; split it in two`
      )
    if (aead) {
      if (p.integrity.length > 0)
        throw new ConfigSyntaxError(`'${proposal}': an AEAD algorithm takes no integrity algorithm`)
      if (p.prf.length === 0)
        throw new ConfigSyntaxError(
          `'${proposal}' has no PRF; AEAD proposals need one (e.g. prfsha256)`
        )
      p.integrity = ['none']
    } else {
      if (p.integrity.length === 0)
        throw new ConfigSyntaxError(`'${proposal}' has no integrity algorithm (e.g. sha256)`)
      if (p.prf.length === 0) p.prf = implied
    }
    return p
  })
}

/**
 * Reads ESP proposals as swanctl's `esp_proposals` writes them, e.g. `aes256gcm16`,
 * `aes128gcm16-x25519-esn` (a group means PFS on rekeying).
 *
 * @param list - the value
 * @throws ConfigSyntaxError naming the algorithm that is unknown or that the ESP engine cannot do
 */
export function espProposals(list: string): ChildProposal[] {
  return split(list === 'default' ? 'aes256gcm16-aes128gcm16' : list).map((proposal) => {
    const p: ChildProposal = {
      protocol: 'esp',
      encryption: [],
      integrity: [],
      keyExchange: [],
      extendedSequenceNumbers: []
    }
    for (const token of proposal.split('-')) {
      const k = keyword(token, 'ESP')
      if (k.kind === 'encryption') p.encryption.push(k.transform)
      else if (k.kind === 'integrity') p.integrity.push(k.algorithm)
      else if (k.kind === 'ke') p.keyExchange.push(k.group)
      else if (k.kind === 'esn') p.extendedSequenceNumbers.push(k.value)
      else
        throw new ConfigSyntaxError(
          `'${token}' is a PRF: it belongs in proposals, not esp_proposals`
        )
    }
    if (p.encryption.length === 0)
      throw new ConfigSyntaxError(`'${proposal}' has no encryption algorithm (e.g. aes256gcm16)`)
    const aead = p.encryption.every(AEAD)
    if (!aead && p.encryption.some(AEAD))
      throw new ConfigSyntaxError(
        `'${proposal}' mixes AEAD and non-AEAD encryption; split it in two`
      )
    if (aead) {
      if (p.integrity.length > 0)
        throw new ConfigSyntaxError(`'${proposal}': an AEAD algorithm takes no integrity algorithm`)
      p.integrity = ['none']
    } else if (p.integrity.length === 0)
      throw new ConfigSyntaxError(`'${proposal}' has no integrity algorithm (e.g. sha256)`)
    if (p.keyExchange.length === 0) p.keyExchange = ['none']
    if (p.extendedSequenceNumbers.length === 0) p.extendedSequenceNumbers = [false]
    return p
  })
}

const UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 }

/**
 * Reads a duration as strongSwan writes them: a number of seconds, or with a unit `s`, `m`,
 * `h`, `d` (and `ms` for vipsec's own timings), e.g. `4h`, `90s`, `100ms`.
 *
 * @param value - the value (a bare number is seconds)
 * @returns seconds
 * @throws ConfigSyntaxError when it is not of that form
 */
export function seconds(value: string | number): number {
  if (typeof value === 'number') {
    if (value >= 0) return value
    throw new ConfigSyntaxError(`expected a duration >= 0, got ${value}`)
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(value)
  if (m === null)
    throw new ConfigSyntaxError(`expected a duration such as 90s, 30m, 4h or 1d, got '${value}'`)
  return Number(m[1]) * UNITS[m[2] ?? 's']!
}

/**
 * Reads a byte or packet count, with an optional `k`, `m` or `g` (powers of 1024), e.g. `500m`.
 *
 * @param value - the value
 * @throws ConfigSyntaxError when it is not of that form
 */
export function count(value: string | number): number {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value
  const m = /^\s*(\d+)\s*([kmg])?\s*$/i.exec(String(value))
  if (m === null)
    throw new ConfigSyntaxError(`expected a count such as 1000000 or 500m, got '${value}'`)
  return Number(m[1]) * 1024 ** ' kmg'.indexOf((m[2] ?? ' ').toLowerCase())
}

/**
 * Reads an identity as swanctl's `id` writes it: an IP address; a DN (`C=CH, O=x, CN=y`); an
 * e-mail address (`user@host` or `@@user@host`); a key id (`@#` and hex); an FQDN (`@name`
 * or a plain name); or with an explicit type `fqdn:`, `email:`, `keyid:`, `ipv4:`, `ipv6:`,
 * `asn1dn:`.
 *
 * @param value - the value
 * @throws ConfigSyntaxError when it is empty or a key id is not hex
 */
export function identity(value: string): Identity {
  const v = value.trim()
  if (v === '') throw new ConfigSyntaxError('expected an identity, e.g. vpn.example.com')
  const typed = /^(fqdn|email|rfc822|keyid|ipv4|ipv6|asn1dn):(.+)$/.exec(v)
  if (typed !== null) {
    const [, t, rest] = typed
    const type = (
      {
        fqdn: 'fqdn',
        email: 'rfc822',
        rfc822: 'rfc822',
        keyid: 'key-id',
        ipv4: 'ipv4',
        ipv6: 'ipv6',
        asn1dn: 'der-dn'
      } as const
    )[t as 'fqdn']
    return checkKeyId({ type, value: rest! })
  }
  if (v.startsWith('@#')) return checkKeyId({ type: 'key-id', value: v.slice(2) })
  if (v.startsWith('@@')) return { type: 'rfc822', value: v.slice(2) }
  if (v.startsWith('@')) return { type: 'fqdn', value: v.slice(1) }
  const ip = isIP(v)
  if (ip === 4) return { type: 'ipv4', value: v }
  if (ip === 6) return { type: 'ipv6', value: v }
  if (v.includes('=')) return { type: 'der-dn', value: v }
  if (v.includes('@')) return { type: 'rfc822', value: v }
  return { type: 'fqdn', value: v }
}

function checkKeyId(id: Identity): Identity {
  if (id.type === 'key-id' && !/^([0-9a-fA-F]{2})+$/.test(id.value))
    throw new ConfigSyntaxError(`a key id is hex digits, got '${id.value}'`)
  return id
}

function toBig(address: string): bigint {
  if (isIP(address) === 4)
    return address.split('.').reduce((n, o) => (n << 8n) | BigInt(Number(o)), 0n)
  const [head, tail = ''] = address.includes('::') ? address.split('::') : [address, undefined]
  const h = head === '' ? [] : head!.split(':')
  const t = tail === undefined || tail === '' ? [] : tail.split(':')
  const groups =
    tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t]
  return groups.reduce((n, g) => (n << 16n) | BigInt(parseInt(g, 16)), 0n)
}

function fromBig(n: bigint, family: 4 | 6): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 255n)).join('.')
  const groups: string[] = []
  for (let s = 112n; s >= 0n; s -= 16n) groups.push(((n >> s) & 0xffffn).toString(16))
  return groups.join(':')
}

/** An address range of one family. */
export interface AddressRange {
  /** The first address. */
  start: string
  /** The last address. */
  end: string
  /** 4 or 6. */
  family: 4 | 6
}

/**
 * The first and last address of a prefix, e.g. `10.77.0.0/24`.
 *
 * @param prefix - `address/length` (a bare address is a host)
 * @throws ConfigSyntaxError when the address or the length is wrong
 */
export function prefixRange(prefix: string): AddressRange {
  const [address = '', length] = prefix.split('/')
  const family = isIP(address)
  if (family === 0) throw new ConfigSyntaxError(`'${address}' is not an IP address`)
  const bits = family === 4 ? 32 : 128
  const len = length === undefined ? bits : Number(length)
  if (!/^\d+$/.test(length ?? String(bits)) || len > bits)
    throw new ConfigSyntaxError(`'/${length}' is not a prefix length of 0 to ${bits}`)
  const host = (1n << BigInt(bits - len)) - 1n
  const base = toBig(address) & ~host & ((1n << BigInt(bits)) - 1n)
  return {
    start: fromBig(base, family as 4 | 6),
    end: fromBig(base | host, family as 4 | 6),
    family: family as 4 | 6
  }
}

/**
 * Whether an address lies inside a prefix.
 *
 * @param address - the address
 * @param prefix - `address/length`
 */
export function inPrefix(address: string, prefix: string): boolean {
  const r = prefixRange(prefix)
  if (isIP(address) !== r.family) return false
  const a = toBig(address)
  return a >= toBig(r.start) && a <= toBig(r.end)
}

const PROTOCOLS: Record<string, number> = {
  any: 0,
  icmp: 1,
  tcp: 6,
  udp: 17,
  ipv6icmp: 58,
  icmpv6: 58
}

/**
 * Reads traffic selectors as swanctl's `local_ts`/`remote_ts` write them: comma-separated
 * prefixes (`10.77.0.0/24`), ranges (`10.0.0.1-10.0.0.9`) or addresses, each with an optional
 * `[protocol/port]` (`[udp/53]`, `[tcp/1024-2048]`, `[17]`). `dynamic` stands for `dynamic`'s
 * address (the DVIPA on vipsec's side).
 *
 * @param value - the value, or a list of them
 * @param dynamic - what `dynamic` means here (absent: not allowed)
 * @throws ConfigSyntaxError naming the selector that is not of that form
 */
export function trafficSelectors(value: string | string[], dynamic?: string): TrafficSelector[] {
  const items = (Array.isArray(value) ? value : value.split(','))
    .map((s) => s.trim())
    .filter((s) => s !== '')
  if (items.length === 0)
    throw new ConfigSyntaxError('expected at least one selector, e.g. 10.77.0.0/24')
  return items.map((item) => {
    const m = /^([^[\]]+?)(?:\[([^\]]*)\])?$/.exec(item)
    if (m === null)
      throw new ConfigSyntaxError(`'${item}' is not a selector such as 10.77.0.0/24[udp/53]`)
    const proto = m[2]
    let range = m[1] ?? ''
    if (range === 'dynamic') {
      if (dynamic === undefined)
        throw new ConfigSyntaxError(
          `'dynamic' is not known here; write the prefix, e.g. 172.16.2.1/32`
        )
      range = dynamic
    }
    let start: string
    let end: string
    try {
      if (range.includes('-')) {
        ;[start = '', end = ''] = range.split('-').map((s) => s.trim())
        if (isIP(start) === 0 || isIP(end) !== isIP(start) || toBig(start) > toBig(end))
          throw new ConfigSyntaxError('')
      } else ({ start, end } = prefixRange(range))
    } catch {
      throw new ConfigSyntaxError(
        `'${item}' is not a selector: expected a prefix (10.77.0.0/24), a range (10.0.0.1-10.0.0.9) or an address`
      )
    }
    let protocol = 0
    let startPort = 0
    let endPort = 65535
    if (proto !== undefined) {
      const [p = '', ports] = proto.split('/')
      if (p !== '') {
        const n = /^\d+$/.test(p) ? Number(p) : PROTOCOLS[p.toLowerCase()]
        if (n === undefined || n > 255)
          throw new ConfigSyntaxError(
            `'${p}' in '${item}' is not a protocol (tcp, udp, icmp or 0 to 255)`
          )
        protocol = n
      }
      if (ports !== undefined && ports !== '' && ports !== '%any') {
        const pm = /^(\d+)(?:-(\d+))?$/.exec(ports)
        if (
          pm === null ||
          Number(pm[1]) > 65535 ||
          Number(pm[2] ?? pm[1]) > 65535 ||
          Number(pm[2] ?? pm[1]) < Number(pm[1])
        )
          throw new ConfigSyntaxError(`'${ports}' in '${item}' is not a port or range of ports`)
        startPort = Number(pm[1])
        endPort = Number(pm[2] ?? pm[1])
      }
    }
    return { startAddress: start, endAddress: end, protocol, startPort, endPort }
  })
}

const ENCRYPTION_NAMES: Record<string, string> = {
  'aes-gcm-16': 'gcm16',
  'aes-cbc': '',
  'null-aes-gmac': 'gmac'
}
const INTEGRITY_NAMES: Record<string, string> = {
  'hmac-sha2-256-128': 'sha256',
  'hmac-sha2-384-192': 'sha384',
  'hmac-sha2-512-256': 'sha512',
  'hmac-sha1-96': 'sha1'
}
const PRF_NAMES: Record<string, string> = {
  'hmac-sha2-256': 'prfsha256',
  'hmac-sha2-384': 'prfsha384',
  'hmac-sha2-512': 'prfsha512',
  'hmac-sha1': 'prfsha1'
}
const GROUP_NAMES: Record<string, string> = {
  curve25519: 'x25519',
  ecp256: 'ecp256',
  modp2048: 'modp2048',
  modp3072: 'modp3072',
  modp4096: 'modp4096',
  ecp384: 'ecp384',
  ecp521: 'ecp521',
  curve448: 'curve448'
}

/**
 * A proposal in strongSwan's words, the inverse of {@link ikeProposals} and
 * {@link espProposals}: e.g. `aes256gcm16-prfsha256-x25519`.
 *
 * @param proposal - an IKE or Child SA proposal
 */
export function proposalName(proposal: IkeProposal | ChildProposal): string {
  const parts = proposal.encryption.map((e) =>
    e.algorithm === 'chacha20-poly1305'
      ? 'chacha20poly1305'
      : `aes${e.keyBits}${ENCRYPTION_NAMES[e.algorithm] ?? e.algorithm}`
  )
  parts.push(...proposal.integrity.filter((i) => i !== 'none').map((i) => INTEGRITY_NAMES[i] ?? i))
  if ('prf' in proposal) parts.push(...proposal.prf.map((p) => PRF_NAMES[p] ?? p))
  parts.push(...proposal.keyExchange.filter((g) => g !== 'none').map((g) => GROUP_NAMES[g] ?? g))
  if ('extendedSequenceNumbers' in proposal && proposal.extendedSequenceNumbers.includes(true))
    parts.push(proposal.extendedSequenceNumbers.includes(false) ? 'esn-noesn' : 'esn')
  return parts.join('-')
}

/**
 * A traffic selector as swanctl prints it: a prefix where the range is one, else `first-last`,
 * with `[protocol/ports]` unless they are any.
 *
 * @param ts - the selector
 */
export function selectorName(ts: TrafficSelector): string {
  const family = isIP(ts.startAddress) as 4 | 6
  const bits = family === 4 ? 32 : 128
  const start = toBig(ts.startAddress)
  const size = toBig(ts.endAddress) - start + 1n
  let range = `${ts.startAddress}-${ts.endAddress}`
  for (let len = 0; len <= bits; len++) {
    if (size === 1n << BigInt(bits - len) && start % size === 0n) {
      range = `${fromBig(start, family)}/${len}`
      break
    }
  }
  const anyPorts = ts.startPort === 0 && ts.endPort === 65535
  if (ts.protocol === 0 && anyPorts) return range
  const name =
    Object.entries(PROTOCOLS).find(([, n]) => n === ts.protocol)?.[0] ?? String(ts.protocol)
  const ports = anyPorts
    ? ''
    : ts.startPort === ts.endPort
      ? `/${ts.startPort}`
      : `/${ts.startPort}-${ts.endPort}`
  return `${range}[${name}${ports}]`
}
