/**
 * The shapes of coupling-store records, ownership records and mailbox messages, as checks. Each
 * check exists twice: `check(value, path)` throws a {@link CorruptRecordError} naming the first
 * field that is wrong, and `check.ok(value)` only says whether the value passes, without building
 * a path for every field it looks at. A decode runs `ok` and, only when it fails, the throwing
 * form for the error: a takeover reads and validates every record of a DVIPA before anything
 * else, and the stores write every record through the same checks.
 *
 * @module
 */
import { tryParseIp } from '@vipsec/wire'
import { CorruptRecordError } from './errors.js'
import type { RecordKind } from './records.js'

/** A check of one value: throws with its path, or (`ok`) says whether it passes. */
export interface Check {
  (value: unknown, path: string): void
  /** Whether `value` passes (exactly when the call does not throw). */
  ok: (value: unknown) => boolean
}

const check = (
  slow: (value: unknown, path: string) => void,
  ok: (value: unknown) => boolean
): Check => Object.assign(slow, { ok })

const fail = (path: string, message: string): never => {
  throw new CorruptRecordError(path, message)
}

const str = check(
  (v, p) => {
    if (typeof v !== 'string') fail(p, 'expected a string')
  },
  (v) => typeof v === 'string'
)
const nonEmpty = check(
  (v, p) => {
    str(v, p)
    if ((v as string).length === 0) fail(p, 'expected a non-empty string')
  },
  (v) => typeof v === 'string' && v.length > 0
)
const bool = check(
  (v, p) => {
    if (typeof v !== 'boolean') fail(p, 'expected a boolean')
  },
  (v) => typeof v === 'boolean'
)
const int = (min: number, max: number): Check => {
  const ok = (v: unknown): boolean =>
    typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max
  return check((v, p) => {
    if (!ok(v)) fail(p, `expected an integer from ${min} to ${max}`)
  }, ok)
}
const nonNegative = int(0, Number.MAX_SAFE_INTEGER)
const port = int(0, 65535)
const hex = (digits: number): Check => {
  const pattern = new RegExp(`^[0-9a-f]{${digits}}$`)
  return check(
    (v, p) => {
      str(v, p)
      if (!pattern.test(v as string)) fail(p, `expected ${digits} lower-case hex digits`)
    },
    (v) => typeof v === 'string' && pattern.test(v)
  )
}
const oneOf = (...allowed: readonly unknown[]): Check =>
  check(
    (v, p) => {
      if (!allowed.includes(v))
        fail(p, `expected one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`)
    },
    (v) => allowed.includes(v)
  )
const nullable = (inner: Check): Check =>
  check(
    (v, p) => {
      if (v !== null) inner(v, p)
    },
    (v) => v === null || inner.ok(v)
  )
const array = (item: Check, minLength = 0): Check =>
  check(
    (v, p) => {
      if (!Array.isArray(v)) return fail(p, 'expected an array')
      if (v.length < minLength) fail(p, `expected at least ${minLength} item(s)`)
      v.forEach((x, i) => item(x, `${p}[${i}]`))
    },
    (v) => {
      if (!Array.isArray(v) || v.length < minLength) return false
      for (const x of v) if (!item.ok(x)) return false
      return true
    }
  )
const tuple = (...items: Check[]): Check =>
  check(
    (v, p) => {
      if (!Array.isArray(v) || v.length !== items.length)
        return fail(p, `expected ${items.length} items`)
      items.forEach((c, i) => c(v[i], `${p}[${i}]`))
    },
    (v) => {
      if (!Array.isArray(v) || v.length !== items.length) return false
      for (let i = 0; i < items.length; i++) if (!items[i]!.ok(v[i])) return false
      return true
    }
  )
/** Checks that a field may leave out (present, it must pass `check`). */
const optionalFields = new WeakSet<Check>()
const optional = (inner: Check): Check => {
  const wrapped = check((v, p) => inner(v, p), inner.ok)
  optionalFields.add(wrapped)
  return wrapped
}
const object = (shape: Record<string, Check>): Check => {
  const fields = Object.entries(shape).map(([key, c]) => ({
    key,
    check: c,
    optional: optionalFields.has(c)
  }))
  return check(
    (v, p) => {
      if (v === null || typeof v !== 'object' || Array.isArray(v))
        return fail(p, 'expected an object')
      const o = v as Record<string, unknown>
      for (const { key, check: c, optional: canLack } of fields) {
        if (!(key in o)) {
          if (canLack) continue
          fail(`${p}.${key}`, 'missing')
        }
        c(o[key], `${p}.${key}`)
      }
      for (const key of Object.keys(o)) {
        if (!(key in shape)) fail(`${p}.${key}`, 'unknown field')
      }
    },
    (v) => {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) return false
      const o = v as Record<string, unknown>
      for (const { key, check: c, optional: canLack } of fields) {
        if (!(key in o)) {
          if (canLack) continue
          return false
        }
        if (!c.ok(o[key])) return false
      }
      for (const key of Object.keys(o)) if (!(key in shape)) return false
      return true
    }
  )
}

const isAddress = (v: unknown): boolean => typeof v === 'string' && tryParseIp(v) !== undefined
const address = check((v, p) => {
  str(v, p)
  if (tryParseIp(v as string) === undefined) fail(p, 'expected an IPv4 or IPv6 address')
}, isAddress)
const prefixOk = (v: unknown): boolean => {
  if (typeof v !== 'string') return false
  const [a, len, extra] = v.split('/')
  if (extra !== undefined || len === undefined) return false
  const ip = tryParseIp(a!)
  if (ip === undefined) return false
  return /^\d+$/.test(len) && Number(len) <= ip.length * 8
}
const prefix = check((v, p) => {
  str(v, p)
  const [a, len, extra] = (v as string).split('/')
  if (extra !== undefined || len === undefined) return fail(p, 'expected address/length')
  address(a, p)
  const max = tryParseIp(a as string)!.length * 8
  if (!/^\d+$/.test(len) || Number(len) > max) fail(p, `expected a prefix length from 0 to ${max}`)
}, prefixOk)

const endpoint = object({ address, port })
const identity = object({
  type: oneOf('ipv4', 'ipv6', 'fqdn', 'rfc822', 'der-dn', 'key-id'),
  value: nonEmpty
})
const encryption = object({
  algorithm: oneOf('aes-gcm-16', 'aes-cbc', 'null-aes-gmac', 'chacha20-poly1305'),
  keyBits: oneOf(128, 192, 256)
})
const integrity = oneOf(
  'hmac-sha2-256-128',
  'hmac-sha2-384-192',
  'hmac-sha2-512-256',
  'hmac-sha1-96',
  'none'
)
const keyExchange = oneOf(
  'curve25519',
  'curve448',
  'ecp256',
  'ecp384',
  'ecp521',
  'modp2048',
  'modp3072',
  'modp4096',
  'none'
)
const ikeProposal = object({
  encryption: array(encryption, 1),
  integrity: array(integrity, 1),
  prf: array(oneOf('hmac-sha2-256', 'hmac-sha2-384', 'hmac-sha2-512', 'hmac-sha1'), 1),
  keyExchange: array(keyExchange, 1)
})
const childProposal = object({
  protocol: oneOf('esp'),
  encryption: array(encryption, 1),
  integrity: array(integrity, 1),
  keyExchange: array(keyExchange, 1),
  extendedSequenceNumbers: array(bool, 1)
})
const trafficSelector = object({
  startAddress: address,
  endAddress: address,
  protocol: int(0, 255),
  startPort: port,
  endPort: port
})
const filterSelector = object({
  source: prefix,
  destination: prefix,
  protocol: int(0, 255),
  sourcePorts: tuple(port, port),
  destinationPorts: tuple(port, port)
})
const fiveTuple = object({
  protocol: int(0, 255),
  sourceAddress: address,
  sourcePort: port,
  destinationAddress: address,
  destinationPort: port
})
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/
const base64Length = (text: string): number =>
  (text.length / 4) * 3 - (text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0)
const base64 = (bytes?: number): Check =>
  check(
    (v, p) => {
      str(v, p)
      const text = v as string
      if (!BASE64.test(text) || text.length % 4 !== 0) return fail(p, 'expected base64')
      if (bytes !== undefined && base64Length(text) !== bytes) fail(p, `expected ${bytes} bytes`)
    },
    (v) =>
      typeof v === 'string' &&
      BASE64.test(v) &&
      v.length % 4 === 0 &&
      (bytes === undefined || base64Length(v) === bytes)
  )
const MAX_SEQUENCE = 0xffffffffffffffffn
const DECIMAL = /^(0|[1-9][0-9]{0,19})$/
const sequenceOk = (v: unknown): boolean =>
  typeof v === 'string' && DECIMAL.test(v) && BigInt(v) <= MAX_SEQUENCE
const sequenceNumber = check((v, p) => {
  str(v, p)
  if (!sequenceOk(v)) fail(p, 'expected a decimal number from 0 to 2^64-1')
}, sequenceOk)
const anyBase64 = base64()
const ikeSaId = object({ initiatorSpi: hex(16), responderSpi: hex(16) })
const spi = hex(8)
const common = { v: int(0, Number.MAX_SAFE_INTEGER), id: nonEmpty, dvipa: address }

/** The shape of each kind of record. */
export const recordShapes: { [K in RecordKind]: Check } = {
  phase1: object({
    ...common,
    kind: oneOf('phase1'),
    ikeSaId,
    role: oneOf('initiator', 'responder'),
    localIdentity: identity,
    remoteIdentity: identity,
    local: endpoint,
    peer: endpoint,
    nat: object({ localBehindNat: bool, remoteBehindNat: bool, encapsulated: bool }),
    policy: object({
      proposals: array(ikeProposal, 1),
      authMethod: oneOf('psk', 'ecdsa-p256-sha256', 'rsa-sha256', 'digital-signature'),
      lifetime: object({ rekeySeconds: nonNegative, reauthSeconds: nonNegative }),
      liveness: object({ intervalMs: nonNegative, timeoutMs: nonNegative })
    }),
    establishedAt: nonNegative
  }),
  phase2: object({
    ...common,
    kind: oneOf('phase2'),
    protocol: oneOf('esp'),
    inboundSpi: spi,
    outboundSpi: spi,
    mode: oneOf('tunnel', 'transport'),
    policy: object({
      proposals: array(childProposal, 1),
      pfsGroup: keyExchange,
      lifetime: object({
        softSeconds: nonNegative,
        hardSeconds: nonNegative,
        softBytes: nonNegative,
        hardBytes: nonNegative,
        softPackets: nonNegative,
        hardPackets: nonNegative
      })
    }),
    selectors: object({ local: array(trafficSelector, 1), remote: array(trafficSelector, 1) }),
    encapsulation: oneOf('none', 'udp'),
    establishedAt: nonNegative
  }),
  correlation: object({
    ...common,
    kind: oneOf('correlation'),
    phase1Id: nonEmpty,
    phase2Ids: array(nonEmpty)
  }),
  filter: object({
    ...common,
    kind: oneOf('filter'),
    phase2Id: nullable(nonEmpty),
    direction: oneOf('inbound', 'outbound'),
    selector: filterSelector,
    action: oneOf('protect', 'bypass', 'discard'),
    priority: int(0, 0xffffffff)
  }),
  connection: object({
    ...common,
    kind: oneOf('connection'),
    flow: fiveTuple,
    target: nonEmpty,
    distributed: bool,
    phase2Id: nullable(nonEmpty),
    createdAt: nonNegative
  }),
  warm: object({
    ...common,
    kind: oneOf('warm'),
    phase1Id: nonEmpty,
    keyId: nonEmpty,
    version: nonNegative,
    epoch: nonNegative,
    nonce: base64(12),
    // at least the 16-byte tag
    sealed: check(
      (v, p) => {
        anyBase64(v, p)
        if ((v as string).length < 24) fail(p, 'expected at least the 16-byte tag')
      },
      (v) => anyBase64.ok(v) && (v as string).length >= 24
    )
  }),
  sequence: object({
    ...common,
    kind: oneOf('sequence'),
    phase2Id: nonEmpty,
    outboundSpi: spi,
    reservedEnd: sequenceNumber,
    inbound: sequenceNumber,
    keyId: nonEmpty,
    mac: base64(16)
  })
}

/** The shape of an ownership record. */
export const ownershipShape = object({
  v: int(0, Number.MAX_SAFE_INTEGER),
  dvipa: address,
  owner: nullable(nonEmpty),
  epoch: int(1, Number.MAX_SAFE_INTEGER),
  ranks: array(nonEmpty),
  claimedAt: nonNegative,
  previousOwner: optional(nonEmpty)
})

/** The shape of a mailbox delete message. */
export const deleteMessageShape = object({
  v: int(0, Number.MAX_SAFE_INTEGER),
  id: nonEmpty,
  to: nonEmpty,
  from: nonEmpty,
  dvipa: address,
  epoch: int(1, Number.MAX_SAFE_INTEGER),
  ikeSas: array(ikeSaId),
  childSas: array(object({ inboundSpi: spi, outboundSpi: spi })),
  sentAt: nonNegative
})
