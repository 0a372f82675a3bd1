import { expect } from 'chai'
import type { IkeProposal } from '@vipsec/interface'
import { wire } from '../src/index.js'
import { ESP_PROPOSAL, IKE_PROPOSAL, makePair, phase1, phase2 } from './helpers/pair.js'

const { parseHeader } = wire

function header(data: Uint8Array) {
  const d =
    data[0] === 0 && data[1] === 0 && data[2] === 0 && data[3] === 0 ? data.subarray(4) : data
  return parseHeader(d)
}

const CBC: IkeProposal = {
  encryption: [{ algorithm: 'aes-cbc', keyBits: 128 }],
  integrity: ['hmac-sha2-256-128'],
  prf: ['hmac-sha2-256'],
  keyExchange: ['curve25519']
}

describe('issue 12: what real peers do', () => {
  describe('when the responder chooses the initiator’s second proposal (RFC 7296 section 3.3.1)', () => {
    it('should accept the answer numbered 2 for the IKE SA, the Child SA and their rekeys', async () => {
      const ours = phase1({ proposals: [CBC, IKE_PROPOSAL] })
      const esp = phase2({
        proposals: [
          { ...ESP_PROPOSAL, encryption: [{ algorithm: 'aes-gcm-16', keyBits: 128 }] },
          ESP_PROPOSAL
        ]
      })
      const p = makePair()
      await p.start()
      const r = await p.drive(
        p.a.connect(
          p.request({
            phase1: ours,
            child: { ...p.request().child, policy: esp }
          })
        )
      )
      // the responder's SA payloads carry proposal number 2
      const numbers = p.net.log
        .filter((x) => x.from.address === '10.0.0.2' && header(x.data).exchange === 34)
        .map((x) => x.data[28 + 4 + 4])
      expect(numbers).to.deep.equal([2])
      const child = await p.drive(p.a.rekeyChildSa(r.phase2[0].id))
      expect(child.id).to.not.equal(r.phase2[0].id)
      await p.drive(p.a.rekeyIkeSa(r.phase1.id))
      await p.settle()
      expect(p.a.list()).to.have.length(1)
      expect(p.a.counters().dropped.malformed).to.equal(0)
      await p.stop()
    })
  })
})
