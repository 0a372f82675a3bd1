/**
 * Argument and configuration checks, with errors that name the offending field.
 *
 * @module
 */
import { isIP } from 'node:net'
import {
  InvalidConfigError,
  InvalidParametersError,
  type ChildProposal,
  type IkeConnectRequest,
  type IkeProposal
} from '@vipsec/interface'
import type { IkeV2ServiceInit } from './config.js'
import { GROUP_NUMBER } from './crypto.js'

type Fail = (field: string, message: string) => never

const ESP_ALGORITHMS = new Set(['aes-gcm-16', 'null-aes-gmac', 'aes-cbc', 'chacha20-poly1305'])
const IKE_ALGORITHMS = new Set(['aes-gcm-16', 'aes-cbc', 'chacha20-poly1305'])

/**
 * Whether an IKE SA (not a Child SA) may be encrypted with this algorithm: AES-GCM-16, AES-CBC
 * or ChaCha20-Poly1305 (not AES-GMAC, which does not encrypt). The one rule that both the
 * configuration checks and `unsupportedInIkeProposal` (capability.ts) apply.
 *
 * @param algorithm - an encryption transform's algorithm
 */
export function ikeEncryptionAllowed(algorithm: string): boolean {
  return IKE_ALGORITHMS.has(algorithm)
}

/** An AES-CBC proposal needs an integrity algorithm beside it. */
function checkIntegrity(p: IkeProposal | ChildProposal, at: string, fail: Fail): void {
  const cbc = p.encryption.some((e) => e.algorithm === 'aes-cbc')
  if (cbc && !p.integrity.some((i) => i !== 'none')) {
    fail(`${at}.integrity`, 'aes-cbc needs an integrity algorithm')
  }
}

function checkIkeProposals(proposals: IkeProposal[] | undefined, at: string, fail: Fail): void {
  if (!Array.isArray(proposals) || proposals.length === 0) fail(at, 'needs at least one proposal')
  proposals!.forEach((p, i) => {
    p.encryption.forEach((e, j) => {
      if (!ikeEncryptionAllowed(e.algorithm)) {
        fail(`${at}[${i}].encryption[${j}].algorithm`, `IKE cannot use ${e.algorithm}`)
      }
    })
    checkIntegrity(p, `${at}[${i}]`, fail)
    if (p.keyExchange.every((g) => g === 'none')) fail(`${at}[${i}].keyExchange`, 'needs a group')
    if (p.prf.length === 0) fail(`${at}[${i}].prf`, 'needs a PRF')
  })
}

function checkChildProposals(proposals: ChildProposal[] | undefined, at: string, fail: Fail): void {
  if (!Array.isArray(proposals) || proposals.length === 0) fail(at, 'needs at least one proposal')
  proposals!.forEach((p, i) => {
    p.encryption.forEach((e, j) => {
      if (!ESP_ALGORITHMS.has(e.algorithm)) {
        fail(`${at}[${i}].encryption[${j}].algorithm`, `the ESP engine cannot do ${e.algorithm}`)
      }
    })
    checkIntegrity(p, `${at}[${i}]`, fail)
    if (p.extendedSequenceNumbers.length === 0)
      fail(`${at}[${i}].extendedSequenceNumbers`, 'is empty')
  })
}

/**
 * Checks a connect request.
 *
 * @throws InvalidParametersError naming the field, e.g. `request.peer.address`
 */
export function validateConnectRequest(request: IkeConnectRequest): void {
  const fail: Fail = (field, message) => {
    throw new InvalidParametersError(`request.${field}`, message)
  }
  if (request == null || typeof request !== 'object') fail('', 'must be an object')
  for (const k of ['local', 'peer'] as const) {
    const e = request[k]
    if (e == null || isIP(e.address) === 0) fail(`${k}.address`, 'must be an IP address')
    if (!Number.isInteger(e.port) || e.port < 1 || e.port > 65535)
      fail(`${k}.port`, 'must be 1 to 65535')
  }
  for (const k of ['localIdentity', 'remoteIdentity'] as const) {
    if (request[k] == null || typeof request[k].value !== 'string' || request[k].value === '') {
      fail(k, 'must be an identity with a value')
    }
  }
  checkIkeProposals(request.phase1?.proposals, 'phase1.proposals', fail)
  checkChildProposals(request.child?.policy?.proposals, 'child.policy.proposals', fail)
  if (!Array.isArray(request.child.local) || request.child.local.length === 0) {
    fail('child.local', 'needs at least one traffic selector')
  }
  if (!Array.isArray(request.child.remote) || request.child.remote.length === 0) {
    fail('child.remote', 'needs at least one traffic selector')
  }
}

/**
 * Checks the service's options.
 *
 * @throws InvalidConfigError naming the field, e.g. `peers[0].children[0].policy.proposals`
 */
export function validateInit(init: IkeV2ServiceInit): void {
  const fail: Fail = (field, message) => {
    throw new InvalidConfigError(field, message)
  }
  ;(init.peers ?? []).forEach((peer, i) => {
    checkIkeProposals(peer.phase1?.proposals, `peers[${i}].phase1.proposals`, fail)
    peer.children.forEach((c, j) =>
      checkChildProposals(c.policy?.proposals, `peers[${i}].children[${j}].policy.proposals`, fail)
    )
  })
  const n = init.nonceLength
  if (n !== undefined && (!Number.isInteger(n) || n < 16 || n > 256))
    fail('nonceLength', 'must be 16 to 256')
  const r = init.retransmit
  if (r?.timeoutMs !== undefined && !(r.timeoutMs > 0)) fail('retransmit.timeoutMs', 'must be > 0')
  if (r?.backoff !== undefined && !(r.backoff >= 1)) fail('retransmit.backoff', 'must be >= 1')
  if (r?.tries !== undefined && !(Number.isInteger(r.tries) && r.tries >= 0)) {
    fail('retransmit.tries', 'must be an integer >= 0')
  }
  for (const k of [
    'halfOpenLimitPerPeer',
    'cookieThreshold',
    'halfOpenLimit',
    'unprotectedNotifiesPerSecond'
  ] as const) {
    const v = init[k]
    if (v !== undefined && !(Number.isInteger(v) && v >= 0)) fail(k, 'must be an integer >= 0')
  }
  const pool = init.keyExchangePool
  for (const k of ['size', 'idleMs'] as const) {
    const v = pool?.[k]
    if (v !== undefined && !(Number.isInteger(v) && v >= 0))
      fail(`keyExchangePool.${k}`, 'must be an integer >= 0')
  }
  if (pool?.batch !== undefined && !(Number.isInteger(pool.batch) && pool.batch >= 1))
    fail('keyExchangePool.batch', 'must be an integer >= 1')
  ;(pool?.groups ?? []).forEach((g, i) => {
    if (!Object.hasOwn(GROUP_NUMBER, g))
      fail(`keyExchangePool.groups[${i}]`, 'is not a supported group')
  })
  const w = init.warm
  if (w?.midSyncMargin !== undefined) {
    const m = w.midSyncMargin
    if (!(Number.isInteger(m) && m >= 0 && m < 0x1000_0000))
      fail('warm.midSyncMargin', 'must be an integer from 0 to 2^28-1')
  }
  if (w?.adoptConcurrency !== undefined) {
    const c = w.adoptConcurrency
    if (!(Number.isInteger(c) && c >= 1)) fail('warm.adoptConcurrency', 'must be an integer >= 1')
  }
  if (w?.rekeyAfterAdoptMs !== undefined) {
    const r = w.rekeyAfterAdoptMs
    if (!(Number.isInteger(r) && r >= 0 && r <= 0x7fff_ffff))
      fail('warm.rekeyAfterAdoptMs', 'must be an integer from 0 (off) to 2^31-1')
  }
  const f = init.fragmentation
  if (f !== undefined) {
    const size = f.fragmentSize
    if (
      size !== undefined &&
      !(Number.isInteger(size) && (size === 0 || (size >= 256 && size <= 65535)))
    )
      fail('fragmentation.fragmentSize', 'must be 0 (576 on IPv4, 1280 on IPv6) or 256 to 65535')
    for (const k of ['maxFragments', 'maxMessageBytes', 'reassemblyTimeoutMs'] as const) {
      const v = f[k]
      if (v !== undefined && !(Number.isInteger(v) && v >= 1))
        fail(`fragmentation.${k}`, 'must be an integer >= 1')
    }
  }
}
