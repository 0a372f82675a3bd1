import { expect } from 'chai'
import { buildIpPacket, buildUdp, type SoftwareEspEngine } from '@vipsec/esp-software'
import type { IkeProposal } from '@vipsec/interface'
import { wire } from '../src/index.js'
import { ESP_PROPOSAL, IKE_PROPOSAL, makePair, phase1, phase2 } from './helpers/pair.js'

const { ExchangeType, HeaderFlag, parseHeader } = wire

function header(data: Uint8Array) {
  const d =
    data[0] === 0 && data[1] === 0 && data[2] === 0 && data[3] === 0 ? data.subarray(4) : data
  return parseHeader(d)
}

function udp(from: string, to: string): Uint8Array {
  return buildIpPacket({
    source: from,
    destination: to,
    protocol: 17,
    payload: buildUdp({
      source: from,
      destination: to,
      sourcePort: 4000,
      destinationPort: 5000,
      payload: new TextEncoder().encode('x')
    })
  })
}

/** ESP packets protected by `sender` now, to be delivered later. */
function protect(sender: SoftwareEspEngine, from: string, to: string): Uint8Array {
  const out = sender.protect(udp(from, to))
  if (out.action !== 'protect') throw new Error(`protect: ${JSON.stringify(out)}`)
  return out.packet
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

  describe('when ESP packets sent on the old Child SA arrive during a rekey', () => {
    for (const side of ['initiator', 'responder'] as const) {
      it(`should accept them at the ${side} until the old SA is deleted, then pin the new SPI`, async () => {
        const p = makePair()
        await p.start()
        const r = await p.drive(p.a.connect(p.request()))
        await p.settle()
        // packets in flight on the old SA, protected before the rekey
        const toA = [protect(p.bEngine, '172.16.2.7', '172.16.1.5')]
        const toB = [protect(p.aEngine, '172.16.1.5', '172.16.2.7')]
        // hold the Delete of the old Child SA so that both Child SAs live at once
        p.net.filter = (x) =>
          header(x.data).exchange === ExchangeType.INFORMATIONAL ? 'drop' : 'deliver'
        const rekey = p.a.rekeyChildSa(r.phase2[0].id)
        await p.settle()
        const [engine, old] = side === 'initiator' ? [p.aEngine, toA] : [p.bEngine, toB]
        expect(engine.listSas()).to.have.length(4)
        for (const packet of old) expect(engine.unprotect(packet).action).to.equal('accept')
        // and on the new SA too
        const fresh =
          side === 'initiator'
            ? protect(p.bEngine, '172.16.2.7', '172.16.1.5')
            : protect(p.aEngine, '172.16.1.5', '172.16.2.7')
        expect(engine.unprotect(fresh).action).to.equal('accept')
        expect(engine.counters().dropped['policy-mismatch']).to.equal(0)
        // once the old Child SA is gone, the filters name the new SPI only
        p.net.filter = () => 'deliver'
        const next = await p.drive(rekey)
        await p.settle()
        expect(p.a.list()[0].phase2.map((c) => c.id)).to.deep.equal([next.id])
        const spi = parseInt(side === 'initiator' ? next.inboundSpi : next.outboundSpi, 16)
        const inbound = engine.listFilters().filter((f) => f.direction === 'inbound')
        expect(inbound).to.have.length.greaterThan(0)
        for (const f of inbound) expect(f.spi).to.equal(spi)
        await p.stop()
      })
    }
  })

  describe('when both sides rekey the same Child SA at once', () => {
    it('should carry traffic both ways on the Child SA left, its filters pinned to it', async () => {
      const p = makePair()
      await p.start()
      const r = await p.drive(p.a.connect(p.request()))
      await p.settle()
      const bId = p.b.list()[0].phase2[0].id
      await p.drive(Promise.all([p.a.rekeyChildSa(r.phase2[0].id), p.b.rekeyChildSa(bId)]))
      await p.clock.advance(5000)
      await p.settle()
      const [child] = p.a.list()[0].phase2
      expect(p.bEngine.unprotect(protect(p.aEngine, '172.16.1.5', '172.16.2.7')).action).to.equal(
        'accept'
      )
      expect(p.aEngine.unprotect(protect(p.bEngine, '172.16.2.7', '172.16.1.5')).action).to.equal(
        'accept'
      )
      for (const f of p.aEngine.listFilters()) {
        const spi = f.direction === 'inbound' ? child.inboundSpi : child.outboundSpi
        expect(f.spi).to.equal(parseInt(spi, 16))
      }
      await p.stop()
    })
  })

  describe('when the first Child SA is refused with NO_PROPOSAL_CHOSEN', () => {
    it('should leave no childless IKE SA at the responder, even if the initiator keeps its own', async () => {
      const p = makePair({
        bPhase2: phase2({
          proposals: [{ ...ESP_PROPOSAL, encryption: [{ algorithm: 'aes-gcm-16', keyBits: 128 }] }]
        })
      })
      await p.start()
      // an initiator that keeps the IKE SA (strongSwan's default): its Delete never arrives
      p.net.filter = (x) =>
        x.from.address === '10.0.0.1' &&
        header(x.data).exchange === ExchangeType.INFORMATIONAL &&
        (header(x.data).flags & HeaderFlag.RESPONSE) === 0
          ? 'drop'
          : 'deliver'
      const err = await p.drive(p.a.connect(p.request())).catch((e) => e)
      expect(err.kind).to.equal('NO_PROPOSAL_CHOSEN')
      await p.clock.advance(60_000)
      await p.settle()
      expect(p.b.list()).to.deep.equal([])
      expect(p.bEvents.map((e) => e.type)).to.include('ike:deleted')
      // the responder asked the initiator to delete it too
      const deletes = p.net.log.filter(
        (x) =>
          x.from.address === '10.0.0.2' &&
          header(x.data).exchange === ExchangeType.INFORMATIONAL &&
          (header(x.data).flags & HeaderFlag.RESPONSE) === 0
      )
      expect(deletes.length).to.be.greaterThan(0)
      await p.stop()
    })
  })
})
