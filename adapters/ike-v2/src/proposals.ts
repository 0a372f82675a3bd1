/**
 * SA proposals between vipsec policy (`IkeProposal`, `ChildProposal`) and the wire, and the
 * responder's choice (RFC 7296 section 2.7).
 *
 * @module
 */
import type {
  ChildProposal,
  EncryptionTransform,
  IkeProposal,
  IntegrityAlgorithm,
  KeyExchangeGroup,
  PrfAlgorithm
} from '@vipsec/interface'
import { EncrId, IntegId, PrfId, ProtocolId, TransformType } from './constants.js'
import { GROUP_NUMBER, groupByNumber } from './crypto.js'
import type { Proposal, Transform } from './message.js'

/** The transforms chosen for an IKE SA. */
export interface ChosenIke {
  /** Encryption. */
  encryption: EncryptionTransform
  /** Integrity (`none` with AEAD). */
  integrity: IntegrityAlgorithm
  /** PRF. */
  prf: PrfAlgorithm
  /** Key exchange group. */
  group: Exclude<KeyExchangeGroup, 'none'>
  /** The SPI of the chosen proposal (IKE rekey: the proposer's new SPI). */
  spi: Uint8Array
  /** The chosen proposal's number. */
  number: number
}

/** The transforms chosen for a Child SA. */
export interface ChosenChild {
  /** Encryption. */
  encryption: EncryptionTransform
  /** Integrity (`none` with AEAD). */
  integrity: IntegrityAlgorithm
  /** PFS group, or `none`. */
  group: KeyExchangeGroup
  /** Whether ESN is used. */
  esn: boolean
  /** The proposer's SPI. */
  spi: Uint8Array
  /** The chosen proposal's number. */
  number: number
}

const ENCR: Record<EncryptionTransform['algorithm'], number> = {
  'aes-gcm-16': EncrId.AES_GCM_16,
  'aes-cbc': EncrId.AES_CBC,
  'null-aes-gmac': EncrId.NULL_AUTH_AES_GMAC,
  'chacha20-poly1305': EncrId.CHACHA20_POLY1305
}
const INTEG: Record<IntegrityAlgorithm, number> = {
  none: IntegId.NONE,
  'hmac-sha2-256-128': IntegId.HMAC_SHA2_256_128,
  'hmac-sha2-384-192': IntegId.HMAC_SHA2_384_192,
  'hmac-sha2-512-256': IntegId.HMAC_SHA2_512_256,
  'hmac-sha1-96': IntegId.HMAC_SHA1_96
}
const PRF: Record<PrfAlgorithm, number> = {
  'hmac-sha2-256': PrfId.HMAC_SHA2_256,
  'hmac-sha2-384': PrfId.HMAC_SHA2_384,
  'hmac-sha2-512': PrfId.HMAC_SHA2_512,
  'hmac-sha1': PrfId.HMAC_SHA1
}

function encrTransforms(list: EncryptionTransform[]): Transform[] {
  return list.map((e) =>
    // ChaCha20-Poly1305 has one key size and no Key Length attribute (RFC 7634 section 4)
    e.algorithm === 'chacha20-poly1305'
      ? { type: TransformType.ENCR, id: ENCR[e.algorithm] }
      : { type: TransformType.ENCR, id: ENCR[e.algorithm], keyLength: e.keyBits }
  )
}

function integTransforms(list: IntegrityAlgorithm[]): Transform[] {
  return list.filter((i) => i !== 'none').map((i) => ({ type: TransformType.INTEG, id: INTEG[i] }))
}

function groupTransforms(list: KeyExchangeGroup[]): Transform[] {
  return list
    .filter((g): g is Exclude<KeyExchangeGroup, 'none'> => g !== 'none')
    .map((g) => ({ type: TransformType.KE, id: GROUP_NUMBER[g] }))
}

/**
 * Wire proposals for an IKE SA.
 *
 * @param proposals - the policy's proposals
 * @param spi - empty in IKE_SA_INIT, the new 8-byte SPI in an IKE rekey
 */
export function ikeProposals(
  proposals: IkeProposal[],
  spi: Uint8Array = new Uint8Array(0)
): Proposal[] {
  return proposals.map((p, i) => ({
    number: i + 1,
    protocol: ProtocolId.IKE,
    spi,
    transforms: [
      ...encrTransforms(p.encryption),
      ...p.prf.map((f) => ({ type: TransformType.PRF, id: PRF[f] })),
      ...integTransforms(p.integrity),
      ...groupTransforms(p.keyExchange)
    ]
  }))
}

/**
 * Wire proposals for a Child SA.
 *
 * @param proposals - the policy's proposals
 * @param spi - this side's inbound SPI (4 bytes)
 * @param pfs - the PFS group for CREATE_CHILD_SA, or `none` (IKE_AUTH carries no KE transforms)
 */
export function childProposals(
  proposals: ChildProposal[],
  spi: Uint8Array,
  pfs: KeyExchangeGroup
): Proposal[] {
  return proposals.map((p, i) => ({
    number: i + 1,
    protocol: ProtocolId.ESP,
    spi,
    transforms: [
      ...encrTransforms(p.encryption),
      ...integTransforms(p.integrity),
      ...(pfs === 'none' ? [] : groupTransforms([pfs])),
      ...p.extendedSequenceNumbers.map((e) => ({ type: TransformType.ESN, id: e ? 1 : 0 }))
    ]
  }))
}

// the choice below is made for every IKE_SA_INIT and Child SA: loops rather than `find`,
// `some` and `filter`, which would make a closure or an array per call

function pickEncr(
  offered: Transform[],
  ours: EncryptionTransform[]
): EncryptionTransform | undefined {
  for (const t of offered) {
    if (t.type !== TransformType.ENCR) continue
    for (const e of ours) {
      if (
        ENCR[e.algorithm] === t.id &&
        (e.algorithm === 'chacha20-poly1305'
          ? t.keyLength === undefined
          : e.keyBits === t.keyLength)
      ) {
        return e
      }
    }
  }
  return undefined
}

/** Whether `t` is an INTEG transform other than NONE (id 0). */
function isInteg(t: Transform): boolean {
  return t.type === TransformType.INTEG && t.id !== 0
}

function pickInteg(
  offered: Transform[],
  ours: IntegrityAlgorithm[],
  aead: boolean
): IntegrityAlgorithm | undefined {
  if (aead) {
    for (const t of offered) if (isInteg(t)) return undefined
    return 'none'
  }
  for (const t of offered) {
    if (!isInteg(t)) continue
    for (const i of ours) if (i !== 'none' && INTEG[i] === t.id) return i
  }
  return undefined
}

/** The first of `offered` of `type` whose id is one of `ids`' (as `number` maps them). */
function firstOf<T extends string>(
  offered: Transform[],
  type: number,
  ids: readonly T[],
  number: (id: T) => number | undefined
): T | undefined {
  for (const t of offered) {
    if (t.type !== type) continue
    for (const id of ids) if (number(id) === t.id) return id
  }
  return undefined
}

function prfNumber(f: PrfAlgorithm): number {
  return PRF[f]
}

function groupNumber(g: KeyExchangeGroup): number | undefined {
  return g === 'none' ? undefined : GROUP_NUMBER[g]
}

function isAead(e: EncryptionTransform): boolean {
  return e.algorithm !== 'aes-cbc'
}

function hasEsn(transforms: Transform[]): boolean {
  for (const t of transforms) if (t.type === TransformType.ESN) return true
  return false
}

/**
 * Chooses an IKE SA proposal: the first offered proposal that one of ours accepts, in the
 * initiator's order.
 *
 * @param offered - the initiator's proposals
 * @param ours - the local policy's proposals
 * @returns the choice, or undefined (NO_PROPOSAL_CHOSEN)
 */
export function chooseIke(offered: Proposal[], ours: IkeProposal[]): ChosenIke | undefined {
  for (const p of offered) {
    if (p.protocol !== ProtocolId.IKE) continue
    if (hasEsn(p.transforms)) continue
    for (const o of ours) {
      const encryption = pickEncr(p.transforms, o.encryption)
      if (encryption === undefined) continue
      const integrity = pickInteg(p.transforms, o.integrity, isAead(encryption))
      if (integrity === undefined) continue
      // the first offered PRF that we take, and the first offered group
      const prf = firstOf(p.transforms, TransformType.PRF, o.prf, prfNumber)
      if (prf === undefined) continue
      const group = firstOf(p.transforms, TransformType.KE, o.keyExchange, groupNumber)
      if (group === undefined || group === 'none') continue
      return { encryption, integrity, prf, group, spi: p.spi, number: p.number }
    }
  }
  return undefined
}

/**
 * Chooses a Child SA proposal.
 *
 * @param offered - the initiator's proposals
 * @param ours - the local policy's proposals
 * @param pfs - whether the exchange carries a KE payload (then a KE transform must match)
 * @param pfsGroups - the groups local policy accepts for PFS
 */
export function chooseChild(
  offered: Proposal[],
  ours: ChildProposal[],
  pfs: boolean,
  pfsGroups: KeyExchangeGroup[]
): ChosenChild | undefined {
  for (const p of offered) {
    if (p.protocol !== ProtocolId.ESP || p.spi.length !== 4) continue
    for (const o of ours) {
      const encryption = pickEncr(p.transforms, o.encryption)
      if (encryption === undefined) continue
      const integrity = pickInteg(p.transforms, o.integrity, isAead(encryption))
      if (integrity === undefined) continue
      const esnT = p.transforms.filter((t) => t.type === TransformType.ESN)
      const esnOffered = esnT.length === 0 ? [false] : esnT.map((t) => t.id === 1)
      const esn = esnOffered.find((e) => o.extendedSequenceNumbers.includes(e))
      if (esn === undefined) continue
      let group: KeyExchangeGroup = 'none'
      if (pfs) {
        const groupT = p.transforms.find(
          (t) =>
            t.type === TransformType.KE &&
            pfsGroups.some((g) => g !== 'none' && GROUP_NUMBER[g] === t.id)
        )
        const g = groupT === undefined ? undefined : groupByNumber(groupT.id)
        if (g === undefined) continue
        group = g
      }
      return { encryption, integrity, group, esn, spi: p.spi, number: p.number }
    }
  }
  return undefined
}

/** Whether a responder's proposal has exactly one transform of each type it names. */
function oneOfEach(p: Proposal): boolean {
  const seen = new Set<number>()
  for (const t of p.transforms) {
    if (seen.has(t.type)) return false
    seen.add(t.type)
  }
  return true
}

/**
 * Checks the responder's answer to our IKE SA offer: one proposal, carrying the number of the
 * proposal of ours it accepted (RFC 7296 section 3.3.1, any of them, not only the first), with
 * one transform of each type, all of them from that proposal.
 *
 * @param answer - the proposals of the response's SA payload
 * @param offered - our proposals, in the order they were numbered
 * @returns the choice, or undefined when the answer is not a subset of what we offered
 */
export function acceptIkeAnswer(answer: Proposal[], offered: IkeProposal[]): ChosenIke | undefined {
  if (answer.length !== 1 || !oneOfEach(answer[0])) return undefined
  const ours = offered[answer[0].number - 1]
  return ours === undefined ? undefined : chooseIke(answer, [ours])
}

/**
 * Checks the responder's answer to our Child SA offer, as {@link acceptIkeAnswer} does.
 *
 * @param answer - the proposals of the response's SA payload
 * @param offered - our proposals, in the order they were numbered
 * @param pfs - the PFS group we sent a KE payload for, or `none`
 */
export function acceptChildAnswer(
  answer: Proposal[],
  offered: ChildProposal[],
  pfs: KeyExchangeGroup
): ChosenChild | undefined {
  if (answer.length !== 1 || !oneOfEach(answer[0])) return undefined
  const ours = offered[answer[0].number - 1]
  return ours === undefined ? undefined : chooseChild(answer, [ours], pfs !== 'none', [pfs])
}

/** The wire proposal that states a choice (the responder's SA payload). */
export function ikeChoiceProposal(c: ChosenIke, spi: Uint8Array = new Uint8Array(0)): Proposal {
  return {
    number: c.number,
    protocol: ProtocolId.IKE,
    spi,
    transforms: [
      ...encrTransforms([c.encryption]),
      { type: TransformType.PRF, id: PRF[c.prf] },
      ...integTransforms([c.integrity]),
      ...groupTransforms([c.group])
    ]
  }
}

/** The wire proposal that states a Child SA choice, with the responder's SPI. */
export function childChoiceProposal(c: ChosenChild, spi: Uint8Array): Proposal {
  return {
    number: c.number,
    protocol: ProtocolId.ESP,
    spi,
    transforms: [
      ...encrTransforms([c.encryption]),
      ...integTransforms([c.integrity]),
      ...groupTransforms([c.group]),
      { type: TransformType.ESN, id: c.esn ? 1 : 0 }
    ]
  }
}

/** The groups offered in the proposals of an IKE policy, in order. */
export function offeredGroups(proposals: IkeProposal[]): Exclude<KeyExchangeGroup, 'none'>[] {
  const out: Exclude<KeyExchangeGroup, 'none'>[] = []
  for (const p of proposals) {
    for (const g of p.keyExchange) if (g !== 'none' && !out.includes(g)) out.push(g)
  }
  return out
}
