import { expect } from 'chai'
import type { IkeSa } from '../src/ike-sa.js'
import { makePair } from './helpers/pair.js'

/** The IKE SAs of a service (an internal accessor of the service context). */
function sasOf(service: unknown): IkeSa[] {
  return (service as { sas(): IkeSa[] }).sas()
}

describe('IkeV2Service', () => {
  describe('once an IKE SA is established', () => {
    it('should keep neither its IKE_SA_INIT messages, its half-open timer nor Child SA keys', async () => {
      const p = makePair()
      await p.start()
      await p.drive(p.a.connect(p.request()))
      await p.settle()
      // no timer is left pending: neither side has liveness, lifetimes or a half-open expiry
      expect(p.clock.pending()).to.equal(0)
      for (const [side, service] of [
        ['initiator', p.a],
        ['responder', p.b]
      ] as const) {
        const [sa] = sasOf(service)
        expect(sa, side).to.not.equal(undefined)
        expect(sa!.state, side).to.equal('established')
        // only the AUTH payloads sign them, and those are made and checked
        expect(sa!.ourInit.length, side).to.equal(0)
        expect(sa!.peerInit.length, side).to.equal(0)
        expect(sa!.halfOpenTimer, side).to.equal(undefined)
        // SKEYSEED and SK_pi / SK_pr served AUTH only; SK_d and SK_e stay for rekeys and messages
        const keys = sa!.keys!
        expect(
          [keys.skeyseed, keys.skPi, keys.skPr].map((k) => k.length),
          side
        ).to.deep.equal([0, 0, 0])
        expect(
          [keys.skD, keys.skEi, keys.skEr].map((k) => k.length),
          side
        ).to.deep.equal([32, 36, 36])
        // the nonces are copies, not views of the IKE_SA_INIT datagrams
        for (const nonce of [sa!.ni, sa!.nr]) {
          expect(nonce.length, side).to.equal(32)
          expect(nonce.buffer.byteLength, side).to.equal(32)
        }
        for (const child of sa!.children.values()) {
          const k = child.keys
          expect(k.encrI.length + k.encrR.length + k.integI.length + k.integR.length).to.equal(0)
        }
      }
      // the ESP engines hold the keys: traffic still goes through (a rekey makes new ones)
      const [child] = p.a.list()[0]!.phase2
      await p.drive(p.a.rekeyChildSa(child!.id))
      await p.settle()
      expect(p.a.list()[0]!.phase2).to.have.length(1)
      expect(p.b.list()[0]!.phase2).to.have.length(1)
      await p.stop()
    })
  })
})
