/**
 * strongSwan proposal strings (`aes256gcm16-prfsha256-x25519`) turned into vipsec's proposal
 * types, for the interop matrix: each cell is written once, in strongSwan's syntax, and both
 * ends are configured from it. Written for the tests, apart from the CLI's parser, so that the
 * matrix checks the IKE service against charon and not one parser against itself. Only the
 * algorithms vipsec implements have a keyword here (the types make sure of it).
 */
import type {
  ChildProposal,
  EncryptionTransform,
  IkeProposal,
  IntegrityAlgorithm,
  KeyExchangeGroup,
  PrfAlgorithm
} from '@vipsec/interface'

const ENCRYPTION = new Map<string, EncryptionTransform>()
for (const bits of [128, 192, 256] as const) {
  ENCRYPTION.set(`aes${bits}gcm16`, { algorithm: 'aes-gcm-16', keyBits: bits })
  ENCRYPTION.set(`aes${bits}`, { algorithm: 'aes-cbc', keyBits: bits })
}
ENCRYPTION.set('chacha20poly1305', { algorithm: 'chacha20-poly1305', keyBits: 256 })
const INTEGRITY = new Map<string, { integrity: IntegrityAlgorithm; prf: PrfAlgorithm }>([
  ['sha256', { integrity: 'hmac-sha2-256-128', prf: 'hmac-sha2-256' }],
  ['sha384', { integrity: 'hmac-sha2-384-192', prf: 'hmac-sha2-384' }],
  ['sha512', { integrity: 'hmac-sha2-512-256', prf: 'hmac-sha2-512' }],
  ['sha1', { integrity: 'hmac-sha1-96', prf: 'hmac-sha1' }]
])
const PRFS = new Map<string, PrfAlgorithm>([
  ['prfsha256', 'hmac-sha2-256'],
  ['prfsha384', 'hmac-sha2-384'],
  ['prfsha512', 'hmac-sha2-512'],
  ['prfsha1', 'hmac-sha1']
])
const GROUPS = new Map<string, KeyExchangeGroup>([
  ['x25519', 'curve25519'],
  ['x448', 'curve448'],
  ['curve448', 'curve448'],
  ['ecp256', 'ecp256'],
  ['ecp384', 'ecp384'],
  ['ecp521', 'ecp521'],
  ['modp2048', 'modp2048'],
  ['modp3072', 'modp3072'],
  ['modp4096', 'modp4096']
])

/** Thrown when a proposal string names something the matrix has no vipsec name for. */
export class UnknownKeywordError extends Error {
  static override readonly name = 'UnknownKeywordError'
  override readonly name = 'UnknownKeywordError'
}

interface Parts {
  encryption: EncryptionTransform[]
  integrity: IntegrityAlgorithm[]
  prf: PrfAlgorithm[]
  keyExchange: KeyExchangeGroup[]
}

function parts(proposal: string): Parts {
  const p: Parts = { encryption: [], integrity: [], prf: [], keyExchange: [] }
  const impliedPrf: PrfAlgorithm[] = []
  for (const token of proposal.split('-')) {
    const e = ENCRYPTION.get(token)
    const i = INTEGRITY.get(token)
    const f = PRFS.get(token)
    const g = GROUPS.get(token)
    if (e !== undefined) p.encryption.push(e)
    else if (i !== undefined) {
      p.integrity.push(i.integrity)
      impliedPrf.push(i.prf)
    } else if (f !== undefined) p.prf.push(f)
    else if (g !== undefined) p.keyExchange.push(g)
    else throw new UnknownKeywordError(`no vipsec name for ${token} (in ${proposal})`)
  }
  // strongSwan: without a PRF keyword, the PRFs of the integrity algorithms
  if (p.prf.length === 0) p.prf = impliedPrf
  if (p.integrity.length === 0) p.integrity = ['none']
  return p
}

/** IKE proposals from a strongSwan `proposals` value (comma-separated, most preferred first). */
export function ikeProposals(list: string): IkeProposal[] {
  return list.split(',').map((one) => {
    const p = parts(one.trim())
    return {
      encryption: p.encryption,
      integrity: p.integrity,
      prf: p.prf,
      keyExchange: p.keyExchange
    }
  })
}

/** ESP proposals from a strongSwan `esp_proposals` value; a group in one asks for PFS. */
export function espProposals(list: string): ChildProposal[] {
  return list.split(',').map((one) => {
    const p = parts(one.trim())
    return {
      protocol: 'esp',
      encryption: p.encryption,
      integrity: p.integrity,
      keyExchange: p.keyExchange.length === 0 ? ['none'] : p.keyExchange,
      extendedSequenceNumbers: [false]
    }
  })
}

/** The PFS group of an `esp_proposals` value: its first proposal's first group, or `none`. */
export function pfsGroup(list: string): KeyExchangeGroup {
  return espProposals(list)[0]?.keyExchange[0] ?? 'none'
}
