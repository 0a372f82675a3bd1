import { expect } from 'chai'
import { InvalidConfigError, type IkeProposal } from '@vipsec/interface'
import { unsupportedInIkeProposal } from '../src/capability.js'
import { ikeEncryptionAllowed, validateInit } from '../src/validate.js'
import { GCM_PHASE1 } from './helpers/policies.js'

type Encryption = IkeProposal['encryption'][number]

const ENCRYPTIONS: Encryption[] = [
  { algorithm: 'aes-gcm-16', keyBits: 128 },
  { algorithm: 'aes-gcm-16', keyBits: 256 },
  { algorithm: 'aes-cbc', keyBits: 128 },
  { algorithm: 'aes-cbc', keyBits: 256 },
  { algorithm: 'chacha20-poly1305', keyBits: 256 },
  { algorithm: 'null-aes-gmac', keyBits: 128 },
  { algorithm: 'null-aes-gmac', keyBits: 256 }
] as Encryption[]

function proposal(e: Encryption): IkeProposal {
  return {
    encryption: [e],
    integrity: ['hmac-sha2-256-128'],
    prf: ['hmac-sha2-256'],
    keyExchange: ['curve25519']
  }
}

/** Whether a real service configuration with this IKE encryption is refused for it. */
function refusedByConfig(e: Encryption): boolean {
  try {
    validateInit({
      peers: [
        {
          localIdentity: { type: 'fqdn', value: 'a.example' },
          remoteIdentity: { type: 'fqdn', value: 'b.example' },
          phase1: { ...GCM_PHASE1, proposals: [proposal(e)] },
          children: []
        }
      ]
    })
    return false
  } catch (err) {
    expect(err).to.be.instanceOf(InvalidConfigError)
    expect((err as InvalidConfigError).message).to.match(/IKE cannot use/)
    return true
  }
}

describe('unsupportedInIkeProposal', () => {
  it('should take which encryption IKE may use from the rule of validate.ts', () => {
    expect(ikeEncryptionAllowed('aes-gcm-16')).to.equal(true)
    expect(ikeEncryptionAllowed('aes-cbc')).to.equal(true)
    expect(ikeEncryptionAllowed('chacha20-poly1305')).to.equal(true)
    // AES-GMAC protects ESP without encrypting: never an IKE SA's encryption
    expect(ikeEncryptionAllowed('null-aes-gmac')).to.equal(false)
    for (const e of ENCRYPTIONS) {
      const unsupported = unsupportedInIkeProposal(proposal(e)).length > 0
      expect(unsupported, `${e.algorithm}/${e.keyBits}`).to.equal(
        !ikeEncryptionAllowed(e.algorithm)
      )
      expect(refusedByConfig(e), `${e.algorithm}/${e.keyBits}`).to.equal(unsupported)
    }
  })

  it('should name an unknown algorithm and an unknown PRF, integrity and group', () => {
    const out = unsupportedInIkeProposal({
      encryption: [{ algorithm: 'des', keyBits: 64 } as unknown as Encryption],
      integrity: ['md5' as never],
      prf: ['prfmd5' as never],
      keyExchange: ['modp768' as never]
    })
    expect(out).to.deep.equal(['des/64', 'prfmd5', 'md5', 'modp768'])
  })
})
