import { expect } from 'chai'
import type { IkeProposal } from '@vipsec/interface'
import { IntegId, TransformType } from '../src/constants.js'
import { chooseIke, ikeProposals } from '../src/proposals.js'

const GCM: IkeProposal = {
  encryption: [{ algorithm: 'aes-gcm-16', keyBits: 256 }],
  integrity: ['none'],
  prf: ['hmac-sha2-256', 'hmac-sha2-384'],
  keyExchange: ['curve25519', 'ecp256']
}
const CBC: IkeProposal = {
  encryption: [{ algorithm: 'aes-cbc', keyBits: 256 }],
  integrity: ['hmac-sha2-256-128', 'hmac-sha2-512-256'],
  prf: ['hmac-sha2-256'],
  keyExchange: ['curve25519']
}

describe('chooseIke', () => {
  describe('when an AEAD proposal also carries an integrity transform', () => {
    it('should not choose it', () => {
      const [offered] = ikeProposals([GCM])
      offered!.transforms.push({ type: TransformType.INTEG, id: IntegId.HMAC_SHA2_256_128 })
      expect(chooseIke([offered!], [GCM])).to.equal(undefined)
    })
  })

  describe('when an AEAD proposal carries INTEG NONE', () => {
    it('should choose it, with no integrity', () => {
      const [offered] = ikeProposals([GCM])
      offered!.transforms.push({ type: TransformType.INTEG, id: 0 })
      expect(chooseIke([offered!], [GCM])).to.include({ integrity: 'none' })
    })
  })

  describe('when the initiator offers several PRFs, groups and integrity algorithms', () => {
    it("should take the first of each in the initiator's order that local policy allows", () => {
      const offered = ikeProposals([
        {
          ...GCM,
          prf: ['hmac-sha2-512', 'hmac-sha2-384', 'hmac-sha2-256'],
          keyExchange: ['ecp384', 'ecp256', 'curve25519']
        },
        { ...CBC, integrity: ['hmac-sha1-96', 'hmac-sha2-512-256', 'hmac-sha2-256-128'] }
      ])
      expect(chooseIke(offered, [GCM])).to.include({
        prf: 'hmac-sha2-384',
        group: 'ecp256',
        integrity: 'none',
        number: 1
      })
      expect(chooseIke(offered.slice(1), [CBC])).to.include({
        integrity: 'hmac-sha2-512-256',
        prf: 'hmac-sha2-256',
        group: 'curve25519',
        number: 2
      })
    })
  })

  describe('when no offered PRF or group is allowed', () => {
    it('should choose nothing', () => {
      expect(chooseIke(ikeProposals([{ ...GCM, prf: ['hmac-sha1'] }]), [GCM])).to.equal(undefined)
      expect(chooseIke(ikeProposals([{ ...GCM, keyExchange: ['modp2048'] }]), [GCM])).to.equal(
        undefined
      )
    })
  })
})
