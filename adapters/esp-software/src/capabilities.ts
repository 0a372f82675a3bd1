import type { EspAlgorithm, EspIntegrityAlgorithm, EspProposalShape } from '@vipsec/interface'

/**
 * One ESP transform combination the software engine implements, with its IKEv2 transform IDs
 * (RFC 7296 section 3.3.2, IANA "Transform Type Values") and the strongSwan ESP proposal keyword
 * that selects it, so that a configuration validator can check Child SA proposals against it.
 */
export interface EspTransformCapability {
  /** The encryption transform. */
  readonly algorithm: EspAlgorithm
  /** The key lengths, in bits. */
  readonly keyBits: readonly number[]
  /** The integrity transform; absent for the combined-mode (AEAD) algorithms. */
  readonly integrity?: EspIntegrityAlgorithm
  /** Transform Type 1 (ENCR) ID. */
  readonly encrTransformId: number
  /** Transform Type 3 (INTEG) ID; absent for AEAD (which negotiates no INTEG transform, or NONE). */
  readonly integTransformId?: number
  /** strongSwan `esp_proposals` keywords, `%d` standing for the key length in bits. */
  readonly strongswan: string
}

/** IANA IKEv2 Transform Type 1 IDs of the encryption transforms the engine implements. */
export const ESP_ENCR_TRANSFORM_IDS: Readonly<Record<EspAlgorithm, number>> = {
  'aes-cbc': 12,
  'aes-gcm-16': 20,
  'null-aes-gmac': 21,
  'chacha20-poly1305': 28
}

/** IANA IKEv2 Transform Type 3 IDs of the integrity transforms the engine implements. */
export const ESP_INTEG_TRANSFORM_IDS: Readonly<Record<EspIntegrityAlgorithm, number>> = {
  'hmac-sha1-96': 2,
  'hmac-sha2-256-128': 12,
  'hmac-sha2-384-192': 13,
  'hmac-sha2-512-256': 14
}

const AES_BITS = [128, 192, 256] as const

/**
 * Every ESP transform combination `SoftwareEspEngine` implements. AES-CBC goes with each
 * integrity transform; the combined-mode algorithms stand alone.
 */
export const SOFTWARE_ESP_CAPABILITIES: readonly EspTransformCapability[] = [
  { algorithm: 'aes-gcm-16', keyBits: AES_BITS, encrTransformId: 20, strongswan: 'aes%dgcm16' },
  { algorithm: 'null-aes-gmac', keyBits: AES_BITS, encrTransformId: 21, strongswan: 'aes%dgmac' },
  {
    algorithm: 'chacha20-poly1305',
    keyBits: [256],
    encrTransformId: 28,
    strongswan: 'chacha20poly1305'
  },
  ...(
    [
      ['hmac-sha2-256-128', 'sha256'],
      ['hmac-sha2-384-192', 'sha384'],
      ['hmac-sha2-512-256', 'sha512'],
      ['hmac-sha1-96', 'sha1']
    ] as const
  ).map(([integrity, keyword]): EspTransformCapability => ({
    algorithm: 'aes-cbc',
    keyBits: AES_BITS,
    integrity,
    encrTransformId: 12,
    integTransformId: ESP_INTEG_TRANSFORM_IDS[integrity],
    strongswan: `aes%d-${keyword}`
  }))
]

/**
 * Whether the engine implements an encryption transform, key length and integrity transform
 * together. `integrity` `none` or absent means none (as a combined-mode algorithm needs).
 *
 * @param algorithm - the encryption algorithm, as a proposal names it
 * @param keyBits - its key length in bits
 * @param integrity - the integrity algorithm, as a proposal names it
 */
export function supportsEspTransform(
  algorithm: string,
  keyBits: number,
  integrity?: string
): boolean {
  const wanted = integrity === 'none' ? undefined : integrity
  return SOFTWARE_ESP_CAPABILITIES.some(
    (c) => c.algorithm === algorithm && c.keyBits.includes(keyBits) && c.integrity === wanted
  )
}

/** The parts of a Child SA proposal the engine's capabilities are checked against. */
export type { EspProposalShape } from '@vipsec/interface'

/**
 * What in a Child SA proposal the engine cannot do: each encryption transform (as
 * `algorithm/keyBits`) that goes with none of the proposal's integrity algorithms, and each
 * integrity algorithm that goes with none of its encryption transforms. Empty when every
 * transform listed can be used, so a validator can reject a proposal that names something the
 * data plane would never be able to install.
 *
 * @param proposal - the proposal (a `ChildProposal`)
 */
export function unsupportedInEspProposal(proposal: EspProposalShape): string[] {
  const problems: string[] = []
  for (const e of proposal.encryption) {
    if (!proposal.integrity.some((i) => supportsEspTransform(e.algorithm, e.keyBits, i))) {
      problems.push(`${e.algorithm}/${e.keyBits}`)
    }
  }
  for (const i of proposal.integrity) {
    if (!proposal.encryption.some((e) => supportsEspTransform(e.algorithm, e.keyBits, i))) {
      problems.push(i)
    }
  }
  return problems
}
