import { expect } from 'chai'
import { wire } from '../src/index.js'
import type { IkeEvent } from '@vipsec/interface'
import {
  A_NET,
  B_NET,
  ESP_PROPOSAL,
  IKE_PROPOSAL,
  makePair,
  phase1,
  phase2
} from './helpers/pair.js'

const { ExchangeType, HeaderFlag, parseHeader } = wire

function header(data: Uint8Array) {
  const d =
    data[0] === 0 && data[1] === 0 && data[2] === 0 && data[3] === 0 ? data.subarray(4) : data
  return parseHeader(d)
}

describe('IkeV2Service', () => {
  describe('.connect', () => {
    describe('when messages are lost', () => {
      it('should retransmit and recover, and the peer should replay its cached response', async () => {
        const p = makePair()
        await p.start()
        let n = 0
        // lose the first IKE_SA_INIT request, the first IKE_SA_INIT response and the first IKE_AUTH response
        p.net.filter = () => {
          n++
          return n === 1 || n === 3 || n === 5 ? 'drop' : 'deliver'
        }
        const r = await p.drive(p.a.connect(p.request()))
        expect(r.phase2).to.have.length(1)
        expect(p.a.counters().retransmitted).to.equal(3)
        expect(p.b.counters().responsesReplayed).to.be.greaterThanOrEqual(2)
        await p.settle()
        expect(p.b.list()).to.have.length(1)
        await p.stop()
      })
    })

    describe('when the network loses 25% and duplicates 20% of all messages', () => {
      it('should still connect, rekey both SAs, check liveness and delete, leaving both sides in agreement', async () => {
        const p = makePair({
          a: { retransmit: { timeoutMs: 1000, backoff: 1.5, tries: 12 } },
          b: { retransmit: { timeoutMs: 1000, backoff: 1.5, tries: 12 } }
        })
        await p.start()
        let x = 0x1234567
        const next = (): number => {
          x ^= x << 13
          x ^= x >>> 17
          x ^= x << 5
          return (x >>> 0) / 2 ** 32
        }
        p.net.filter = () => {
          const r = next()
          return r < 0.25 ? 'drop' : r < 0.45 ? 'duplicate' : 'deliver'
        }
        const r = await p.drive(p.a.connect(p.request()))
        const child = await p.drive(p.a.rekeyChildSa(r.phase2[0].id))
        const ike = await p.drive(p.b.rekeyIkeSa(r.phase1.id))
        await p.drive(p.a.checkLiveness(ike.id))
        const child2 = await p.drive(p.b.rekeyChildSa(p.b.list()[0].phase2[0].id))
        p.net.filter = () => 'deliver'
        await p.clock.advance(60_000)
        await p.settle()
        const a = p.a.list()
        const b = p.b.list()
        expect(a.map((s) => s.phase1.ikeSaId)).to.deep.equal(b.map((s) => s.phase1.ikeSaId))
        expect(a[0].phase2.map((c) => c.inboundSpi)).to.deep.equal(
          b[0].phase2.map((c) => c.outboundSpi)
        )
        expect(b[0].phase2.map((c) => c.id)).to.deep.equal([child2.id])
        expect(child.id).to.not.equal(r.phase2[0].id)
        expect(p.aEngine.listSas()).to.have.length(2)
        expect(p.bEngine.listSas()).to.have.length(2)
        expect(p.a.counters().retransmitted + p.b.counters().retransmitted).to.be.greaterThan(0)
        await p.drive(p.a.deleteIkeSa(a[0].phase1.id))
        await p.clock.advance(60_000)
        await p.settle()
        expect(p.b.list()).to.have.length(0)
        await p.stop()
      })
    })

    describe('when every message is duplicated', () => {
      it('should establish exactly one IKE SA and one Child SA on each side', async () => {
        const p = makePair()
        await p.start()
        p.net.filter = () => 'duplicate'
        await p.drive(p.a.connect(p.request()))
        await p.settle()
        expect(p.a.list()).to.have.length(1)
        expect(p.b.list()).to.have.length(1)
        expect(p.b.list()[0].phase2).to.have.length(1)
        expect(p.aEngine.listSas()).to.have.length(2)
        expect(p.bEngine.listSas()).to.have.length(2)
        expect(p.a.counters().dropped['invalid-message-id']).to.be.greaterThan(0)
        await p.stop()
      })
    })

    for (const [name, ike] of [
      [
        'AES-CBC-256 + HMAC-SHA2-256-128, PRF-SHA384, ECP-256',
        {
          encryption: [{ algorithm: 'aes-cbc', keyBits: 256 }],
          integrity: ['hmac-sha2-256-128'],
          prf: ['hmac-sha2-384'],
          keyExchange: ['ecp256']
        }
      ],
      [
        'AES-GCM-128, MODP-2048',
        {
          encryption: [{ algorithm: 'aes-gcm-16', keyBits: 128 }],
          integrity: ['none'],
          prf: ['hmac-sha2-256'],
          keyExchange: ['modp2048']
        }
      ]
    ] as const) {
      describe(`when the IKE proposal is ${name}`, () => {
        it('should establish', async () => {
          const pol = phase1({ proposals: [ike as never] })
          const p = makePair({ bPhase1: pol })
          await p.start()
          const r = await p.drive(p.a.connect(p.request({ phase1: pol })))
          expect(r.phase2).to.have.length(1)
          await p.stop()
        })
      })
    }

    describe('when the initiator guesses a KE group the responder does not take', () => {
      it('should retry with the group named in INVALID_KE_PAYLOAD', async () => {
        const p = makePair({
          bPhase1: phase1({ proposals: [{ ...IKE_PROPOSAL, keyExchange: ['ecp256'] }] })
        })
        await p.start()
        const pol = phase1({
          proposals: [{ ...IKE_PROPOSAL, keyExchange: ['curve25519', 'ecp256'] }]
        })
        await p.drive(p.a.connect(p.request({ phase1: pol })))
        const inits = p.net.log.filter(
          (x) =>
            header(x.data).exchange === ExchangeType.IKE_SA_INIT &&
            (header(x.data).flags & HeaderFlag.RESPONSE) === 0
        )
        expect(inits).to.have.length(2)
        await p.stop()
      })
    })

    describe('when the IKE proposal chosen fits another peer of the responder, not this one', () => {
      it('should refuse the IKE SA with AUTHENTICATION_FAILED', async () => {
        const p = makePair({
          bPhase1: phase1({ proposals: [{ ...IKE_PROPOSAL, keyExchange: ['ecp256'] }] }),
          b: {
            peers: [
              {
                localIdentity: { type: 'fqdn', value: 'b.example' },
                remoteIdentity: { type: 'fqdn', value: 'a.example' },
                phase1: phase1({ proposals: [{ ...IKE_PROPOSAL, keyExchange: ['ecp256'] }] }),
                children: [{ policy: phase2(), mode: 'tunnel', local: [B_NET], remote: [A_NET] }]
              },
              {
                localIdentity: { type: 'fqdn', value: 'b.example' },
                remoteIdentity: { type: 'fqdn', value: 'c.example' },
                phase1: phase1(),
                children: [{ policy: phase2(), mode: 'tunnel', local: [B_NET], remote: [A_NET] }]
              }
            ]
          }
        })
        await p.start()
        const err = await p.drive(p.a.connect(p.request())).catch((e) => e)
        expect(err.kind).to.equal('AUTHENTICATION_FAILED')
        expect(p.b.list()).to.have.length(0)
        // each end's failure names the identities: the responder the ones the peer claimed and
        // asked for, the initiator its own and the one it expected
        await p.settle()
        const failed = (events: IkeEvent[]) => events.find((e) => e.type === 'ike:failed')
        expect(failed(p.bEvents)).to.include({
          reason: 'AUTHENTICATION_FAILED',
          localId: 'b.example',
          remoteId: 'a.example'
        })
        expect(failed(p.aEvents)).to.include({ localId: 'a.example', remoteId: 'b.example' })
        await p.stop()
      })
    })

    describe('when no proposal matches', () => {
      it('should reject with NO_PROPOSAL_CHOSEN', async () => {
        const p = makePair({
          bPhase1: phase1({ proposals: [{ ...IKE_PROPOSAL, prf: ['hmac-sha2-512'] }] })
        })
        await p.start()
        const err = await p.drive(p.a.connect(p.request())).catch((e) => e)
        expect(err.kind).to.equal('NO_PROPOSAL_CHOSEN')
        expect(p.a.list()).to.have.length(0)
        await p.stop()
      })
    })

    describe('when the pre-shared keys differ', () => {
      it('should reject with AUTHENTICATION_FAILED and leave no SA on either side', async () => {
        const p = makePair({
          b: { psks: [{ remote: { type: 'fqdn', value: 'a.example' }, secret: 'another secret' }] }
        })
        await p.start()
        const err = await p.drive(p.a.connect(p.request())).catch((e) => e)
        expect(err.kind).to.equal('AUTHENTICATION_FAILED')
        await p.settle()
        expect(p.a.list()).to.have.length(0)
        expect(p.b.list()).to.have.length(0)
        expect(p.bEvents.map((e) => e.type)).to.include('ike:failed')
        await p.stop()
      })
    })

    describe('when the initiator proposes wider selectors than the responder allows', () => {
      it('should narrow them to the responder policy', async () => {
        const p = makePair()
        await p.start()
        const wide = {
          startAddress: '172.16.0.0',
          endAddress: '172.16.255.255',
          protocol: 0,
          startPort: 0,
          endPort: 65535
        }
        const r = await p.drive(
          p.a.connect(
            p.request({
              child: { policy: phase2(), mode: 'tunnel', local: [wide], remote: [wide] }
            })
          )
        )
        expect(r.phase2[0].selectors.local).to.deep.equal([A_NET])
        expect(r.phase2[0].selectors.remote).to.deep.equal([B_NET])
        await p.stop()
      })
    })

    describe('when the selectors do not overlap', () => {
      it('should reject with TS_UNACCEPTABLE and delete the IKE SA', async () => {
        const p = makePair()
        await p.start()
        const other = { ...B_NET, startAddress: '192.168.9.0', endAddress: '192.168.9.255' }
        const err = await p
          .drive(
            p.a.connect(
              p.request({
                child: { policy: phase2(), mode: 'tunnel', local: [A_NET], remote: [other] }
              })
            )
          )
          .catch((e) => e)
        expect(err.kind).to.equal('TS_UNACCEPTABLE')
        await p.settle()
        expect(p.a.list()).to.have.length(0)
        expect(p.b.list()).to.have.length(0)
        await p.stop()
      })
    })

    describe('when the peer never answers', () => {
      it('should give up after the retransmissions with TIMEOUT', async () => {
        const p = makePair()
        await p.start()
        p.net.filter = () => 'drop'
        const err = await p.drive(p.a.connect(p.request())).catch((e) => e)
        expect(err.kind).to.equal('TIMEOUT')
        expect(p.a.counters().retransmitted).to.equal(4)
        await p.stop()
      })
    })

    describe('when the responder has many half-open SAs', () => {
      it('should demand a COOKIE and the initiator should retry with it', async () => {
        const p = makePair({ b: { cookieThreshold: 0 } })
        await p.start()
        const r = await p.drive(p.a.connect(p.request()))
        expect(r.phase2).to.have.length(1)
        expect(p.b.counters().cookiesSent).to.equal(1)
        await p.stop()
      })
    })

    describe('when a NAT sits in front of the initiator', () => {
      it('should switch to port 4500 and encapsulate ESP in UDP', async () => {
        const p = makePair()
        p.net.nat.set('10.0.0.1', '198.51.100.1')
        await p.start()
        const r = await p.drive(p.a.connect(p.request()))
        expect(r.phase1.nat.localBehindNat).to.equal(true)
        expect(r.phase2[0].encapsulation).to.equal('udp')
        await p.settle()
        const b = p.b.list()[0]
        expect(b.phase1.nat.remoteBehindNat).to.equal(true)
        expect(b.phase1.peer.port).to.equal(14500)
        const auth = p.net.log.find((x) => x.to.port === 4500)
        expect(auth).to.not.equal(undefined)
        expect(Array.from(auth!.data.subarray(0, 4))).to.deep.equal([0, 0, 0, 0])
        // ESP goes in UDP to port 4500 both ways (towards A through the NAT's public port)
        const { buildIpPacket, buildUdp } = await import('@vipsec/esp-software')
        const inner = (src: string, dst: string): Uint8Array =>
          buildIpPacket({
            source: src,
            destination: dst,
            protocol: 17,
            payload: buildUdp({
              source: src,
              destination: dst,
              sourcePort: 1,
              destinationPort: 2,
              payload: new Uint8Array(8)
            })
          })
        const out = p.aEngine.protect(inner('172.16.1.5', '172.16.2.7'))
        expect(out.action === 'protect' && out.udp && out.to.port).to.equal(4500)
        if (out.action === 'protect')
          expect(p.bEngine.unprotectUdp(out.packet).action).to.equal('accept')
        const back = p.bEngine.protect(inner('172.16.2.7', '172.16.1.5'))
        expect(back.action === 'protect' && back.udp && back.to).to.deep.equal({
          address: '198.51.100.1',
          port: 14500
        })
        // keep-alives from the side behind the NAT
        await p.clock.advance(20_000)
        expect(p.net.log.some((x) => x.data.length === 1 && x.data[0] === 0xff)).to.equal(true)
        await p.stop()
      })
    })
  })

  describe('.rekeyChildSa', () => {
    for (const pfs of ['none', 'curve25519'] as const) {
      describe(`when the PFS group is ${pfs}`, () => {
        it('should replace the Child SA on both sides and delete the old one', async () => {
          const pol = phase2({ pfsGroup: pfs, proposals: [ESP_PROPOSAL] })
          const p = makePair()
          await p.start()
          const r = await p.drive(
            p.a.connect(
              p.request({ child: { policy: pol, mode: 'tunnel', local: [A_NET], remote: [B_NET] } })
            )
          )
          const next = await p.drive(p.a.rekeyChildSa(r.phase2[0].id))
          await p.settle()
          expect(next.id).to.not.equal(r.phase2[0].id)
          expect(p.a.list()[0].phase2.map((c) => c.id)).to.deep.equal([next.id])
          expect(p.b.list()[0].phase2.map((c) => c.outboundSpi)).to.deep.equal([next.inboundSpi])
          expect(p.aEngine.listSas()).to.have.length(2)
          expect(p.bEngine.listSas()).to.have.length(2)
          expect(p.bEvents.map((e) => e.type)).to.include.members(['sa:rekeyed', 'sa:deleted'])
          await p.stop()
        })
      })
    }

    describe('when both sides rekey the same Child SA at once', () => {
      it('should leave exactly one new Child SA, the same on both sides', async () => {
        const p = makePair()
        await p.start()
        const r = await p.drive(p.a.connect(p.request()))
        await p.settle()
        const bId = p.b.list()[0].phase2[0].id
        await p.drive(Promise.all([p.a.rekeyChildSa(r.phase2[0].id), p.b.rekeyChildSa(bId)]))
        await p.settle()
        await p.clock.advance(5000)
        const a = p.a.list()[0].phase2
        const b = p.b.list()[0].phase2
        expect(a).to.have.length(1)
        expect(b).to.have.length(1)
        expect(a[0].inboundSpi).to.equal(b[0].outboundSpi)
        expect(a[0].outboundSpi).to.equal(b[0].inboundSpi)
        expect(p.aEngine.listSas()).to.have.length(2)
        expect(p.bEngine.listSas()).to.have.length(2)
        await p.stop()
      })
    })
  })

  describe('when a Child SA reaches its lifetimes in the ESP engine', () => {
    it('should rekey at the soft limit and delete at the hard limit', async () => {
      const lifetime = {
        softSeconds: 60,
        hardSeconds: 0,
        softBytes: 0,
        hardBytes: 0,
        softPackets: 0,
        hardPackets: 0
      }
      const pol = phase2({ lifetime })
      const p = makePair({ bPhase2: pol })
      await p.start()
      const r = await p.drive(
        p.a.connect(
          p.request({ child: { policy: pol, mode: 'tunnel', local: [A_NET], remote: [B_NET] } })
        )
      )
      await p.clock.advance(65_000)
      await p.settle()
      const a = p.a.list()[0].phase2
      expect(a).to.have.length(1)
      expect(a[0].id).to.not.equal(r.phase2[0].id)
      expect(p.b.list()[0].phase2.map((c) => c.inboundSpi)).to.deep.equal([a[0].outboundSpi])
      await p.stop()
    })

    it('should delete the Child SA on both sides when its hard limit passes', async () => {
      const lifetime = {
        softSeconds: 0,
        hardSeconds: 30,
        softBytes: 0,
        hardBytes: 0,
        softPackets: 0,
        hardPackets: 0
      }
      const pol = phase2({ lifetime })
      const p = makePair({ bPhase2: phase2() })
      await p.start()
      await p.drive(
        p.a.connect(
          p.request({ child: { policy: pol, mode: 'tunnel', local: [A_NET], remote: [B_NET] } })
        )
      )
      await p.clock.advance(31_000)
      await p.settle()
      expect(p.a.list()[0].phase2).to.have.length(0)
      expect(p.b.list()[0].phase2).to.have.length(0)
      expect(p.aEvents.some((e) => e.type === 'sa:deleted' && e.reason === 'expired')).to.equal(
        true
      )
      await p.stop()
    })
  })

  describe('CREATE_CHILD_SA with a PFS group the responder does not take', () => {
    it('should retry with the group named in INVALID_KE_PAYLOAD', async () => {
      const pfsProposal = { ...ESP_PROPOSAL, keyExchange: ['ecp256' as const] }
      const p = makePair({ bPhase2: phase2({ proposals: [pfsProposal], pfsGroup: 'ecp256' }) })
      await p.start()
      const aPol = phase2({
        pfsGroup: 'modp2048',
        proposals: [{ ...ESP_PROPOSAL, keyExchange: ['modp2048', 'ecp256'] }]
      })
      const r = await p.drive(
        p.a.connect(
          p.request({ child: { policy: aPol, mode: 'tunnel', local: [A_NET], remote: [B_NET] } })
        )
      )
      const before = p.net.log.length
      const next = await p.drive(p.a.rekeyChildSa(r.phase2[0].id))
      expect(next.id).to.not.equal(r.phase2[0].id)
      const requests = p.net.log
        .slice(before)
        .filter(
          (x) =>
            header(x.data).exchange === ExchangeType.CREATE_CHILD_SA &&
            (header(x.data).flags & HeaderFlag.RESPONSE) === 0
        )
      expect(requests).to.have.length(2)
      await p.stop()
    })
  })

  describe('when an IKE_SA_INIT request cannot be parsed', () => {
    for (const [name, version, payloads, notifyType] of [
      [
        'it has an unknown critical payload',
        0x20,
        [{ type: 99, critical: true, body: new Uint8Array(4) }],
        1
      ],
      ['its major version is 3', 0x30, [], 5]
    ] as const) {
      it(`should answer with the RFC 7296 notify when ${name}, and count it`, async () => {
        const p = makePair()
        await p.start()
        const probe = p.net.bind('10.0.0.9', 500)
        const got: Uint8Array[] = []
        probe.datagrams$.subscribe((d) => got.push(d.data))
        const spiI = Uint8Array.of(9, 9, 9, 9, 9, 9, 9, 9)
        const req = wire.encodeMessage(
          {
            spiI,
            spiR: new Uint8Array(8),
            version,
            exchange: ExchangeType.IKE_SA_INIT,
            flags: HeaderFlag.INITIATOR,
            messageId: 0
          },
          payloads as never
        )
        probe.send(req, { address: '10.0.0.2', port: 500 })
        await p.settle()
        expect(got).to.have.length(1)
        const m = wire.parseMessage(got[0])
        expect(Array.from(m.header.spiI)).to.deep.equal(Array.from(spiI))
        expect(wire.findNotify(m.payloads, notifyType)).to.not.equal(undefined)
        expect(p.b.counters().dropped.malformed).to.equal(1)
        await p.stop()
      })
    }
  })

  describe('when one peer opens too many half-open SAs', () => {
    it('should demand a COOKIE of its further IKE_SA_INIT requests, never drop them', async () => {
      const p = makePair({ b: { halfOpenLimitPerPeer: 2, cookieThreshold: 100 } })
      await p.start()
      // A's IKE_AUTH never arrives, so every IKE SA it starts stays half-open at B
      p.net.filter = (x) => (header(x.data).exchange === ExchangeType.IKE_AUTH ? 'drop' : 'deliver')
      const attempts = [1, 2, 3].map(() => p.a.connect(p.request()).catch((e) => e))
      await p.drive(Promise.all(attempts))
      const c = p.b.counters()
      expect(c.cookiesSent).to.be.greaterThan(0)
      expect(c.dropped['half-open-limit']).to.equal(0)
      // the third came back with its cookie and was admitted beyond the per-address limit
      const admitted = p.net.log.filter((x) => {
        if (x.from.address !== '10.0.0.2' || header(x.data).exchange !== ExchangeType.IKE_SA_INIT)
          return false
        return (
          wire.findPayload(wire.parseMessage(x.data).payloads, wire.PayloadType.SA) !== undefined
        )
      })
      expect(
        new Set(admitted.map((x) => Buffer.from(x.data.subarray(0, 8)).toString('hex'))).size
      ).to.equal(3)
      await p.stop()
    })
  })

  describe('.rekeyChildSa when the peer deletes the Child SA meanwhile (rekey against delete)', () => {
    it('should end with no Child SA on either side and nothing left in the ESP engines', async () => {
      const p = makePair()
      await p.start()
      const r = await p.drive(p.a.connect(p.request()))
      await p.settle()
      // A's rekey request is held until B's Delete of the same Child SA has reached A
      let held: Uint8Array | undefined
      p.net.filter = (x) => {
        const h = header(x.data)
        if (held === undefined && x.from.address === '10.0.0.1' && h.exchange === 36) {
          held = x.data
          return 'drop'
        }
        return 'deliver'
      }
      const rekey = p.a.rekeyChildSa(r.phase2[0].id).catch((e) => e)
      await p.settle()
      expect(held).to.not.equal(undefined)
      await p.drive(p.b.deleteChildSa(p.b.list()[0].phase2[0].id))
      p.net.filter = () => 'deliver'
      p.net.send(held!, { address: '10.0.0.1', port: 500 }, { address: '10.0.0.2', port: 500 })
      const err = await p.drive(rekey)
      expect(err.kind).to.equal('CHILD_SA_NOT_FOUND')
      await p.clock.advance(30_000)
      await p.settle()
      expect(p.a.list()[0].phase2).to.deep.equal([])
      expect(p.b.list()[0].phase2).to.deep.equal([])
      expect(p.aEngine.listSas()).to.deep.equal([])
      expect(p.bEngine.listSas()).to.deep.equal([])
      await p.stop()
    })
  })

  describe('.rekeyChildSa when the peer answers and then deletes the old Child SA before its answer arrives', () => {
    it('should keep the new Child SA on both sides', async () => {
      const p = makePair()
      await p.start()
      const r = await p.drive(p.a.connect(p.request()))
      await p.settle()
      let held: Uint8Array | undefined
      p.net.filter = (x) => {
        const h = header(x.data)
        if (held === undefined && x.from.address === '10.0.0.2' && h.exchange === 36) {
          held = x.data
          return 'drop'
        }
        return 'deliver'
      }
      const rekey = p.a.rekeyChildSa(r.phase2[0].id)
      await p.settle()
      expect(held).to.not.equal(undefined)
      // B made the new Child SA when it answered; now it deletes the old one
      const oldAtB = p.b.list()[0].phase2.find((c) => c.outboundSpi === r.phase2[0].inboundSpi)!
      expect(p.b.list()[0].phase2).to.have.length(2)
      await p.drive(p.b.deleteChildSa(oldAtB.id))
      p.net.filter = () => 'deliver'
      p.net.send(held!, { address: '10.0.0.2', port: 500 }, { address: '10.0.0.1', port: 500 })
      const next = await p.drive(rekey)
      await p.clock.advance(30_000)
      await p.settle()
      const a = p.a.list()[0].phase2
      const b = p.b.list()[0].phase2
      expect(a.map((c) => c.id)).to.deep.equal([next.id])
      expect(b).to.have.length(1)
      expect(a[0].inboundSpi).to.equal(b[0].outboundSpi)
      expect(p.aEngine.listSas()).to.have.length(2)
      expect(p.bEngine.listSas()).to.have.length(2)
      await p.stop()
    })
  })

  describe('.rekeyChildSa when both sides rekey at once and one request is lost', () => {
    it('should still end with exactly one Child SA, the same on both sides', async () => {
      for (const dropFrom of ['10.0.0.1', '10.0.0.2']) {
        const p = makePair()
        await p.start()
        const r = await p.drive(p.a.connect(p.request()))
        await p.settle()
        let dropped = false
        p.net.filter = (x) => {
          const h = header(x.data)
          if (
            !dropped &&
            x.from.address === dropFrom &&
            h.exchange === ExchangeType.CREATE_CHILD_SA &&
            (h.flags & HeaderFlag.RESPONSE) === 0
          ) {
            dropped = true
            return 'drop'
          }
          return 'deliver'
        }
        await p.drive(
          Promise.all([
            p.a.rekeyChildSa(r.phase2[0].id),
            p.b.rekeyChildSa(p.b.list()[0].phase2[0].id)
          ])
        )
        await p.clock.advance(30_000)
        await p.settle()
        const a = p.a.list()[0].phase2
        const b = p.b.list()[0].phase2
        expect(a, `dropped from ${dropFrom}`).to.have.length(1)
        expect(b).to.have.length(1)
        expect(a[0].inboundSpi).to.equal(b[0].outboundSpi)
        expect(p.aEngine.listSas()).to.have.length(2)
        expect(p.bEngine.listSas()).to.have.length(2)
        await p.stop()
      }
    })
  })

  describe('.rekeyIkeSa', () => {
    it('should move the Child SAs to the new IKE SA on both sides and keep it usable', async () => {
      const p = makePair()
      await p.start()
      const r = await p.drive(p.a.connect(p.request()))
      const next = await p.drive(p.a.rekeyIkeSa(r.phase1.id))
      await p.settle()
      expect(next.ikeSaId).to.not.deep.equal(r.phase1.ikeSaId)
      expect(p.a.list().map((x) => x.phase1.id)).to.deep.equal([next.id])
      expect(p.b.list().map((x) => x.phase1.id)).to.deep.equal([next.id])
      expect(p.b.list()[0].phase2).to.have.length(1)
      expect(p.aEvents.map((e) => e.type)).to.include('ike:rekeyed')
      // the new SA carries exchanges: rekey the child under it
      await p.drive(p.b.rekeyChildSa(p.b.list()[0].phase2[0].id))
      await p.settle()
      expect(p.a.list()[0].phase2).to.have.length(1)
      await p.stop()
    })
  })

  describe('.rekeyIkeSa when both sides rekey the same IKE SA at once', () => {
    it('should leave exactly one new IKE SA, the same on both sides, with the Child SA', async () => {
      const p = makePair()
      await p.start()
      const r = await p.drive(p.a.connect(p.request()))
      await p.settle()
      const [x, y] = await p.drive(
        Promise.all([p.a.rekeyIkeSa(r.phase1.id), p.b.rekeyIkeSa(r.phase1.id)])
      )
      expect(x.ikeSaId).to.deep.equal(y.ikeSaId)
      await p.settle()
      await p.clock.advance(5000)
      const a = p.a.list()
      const b = p.b.list()
      expect(a.map((s) => s.phase1.ikeSaId)).to.deep.equal([x.ikeSaId])
      expect(b.map((s) => s.phase1.ikeSaId)).to.deep.equal([x.ikeSaId])
      expect(a[0].phase2).to.have.length(1)
      expect(b[0].phase2).to.have.length(1)
      // and the surviving SA carries exchanges
      await p.drive(p.a.rekeyChildSa(a[0].phase2[0].id))
      await p.settle()
      expect(p.b.list()[0].phase2).to.have.length(1)
      await p.stop()
    })
  })

  describe('.rekeyIkeSa when both sides rekey at once and one request is lost', () => {
    it('should end with one IKE SA, the same on both sides, carrying the Child SA', async () => {
      for (const dropFrom of ['10.0.0.1', '10.0.0.2']) {
        const p = makePair()
        await p.start()
        const r = await p.drive(p.a.connect(p.request()))
        await p.settle()
        let dropped = false
        p.net.filter = (x) => {
          const h = header(x.data)
          if (
            !dropped &&
            x.from.address === dropFrom &&
            h.exchange === ExchangeType.CREATE_CHILD_SA &&
            (h.flags & HeaderFlag.RESPONSE) === 0
          ) {
            dropped = true
            return 'drop'
          }
          return 'deliver'
        }
        const [x, y] = await p.drive(
          Promise.all([p.a.rekeyIkeSa(r.phase1.id), p.b.rekeyIkeSa(r.phase1.id)])
        )
        await p.clock.advance(60_000)
        await p.settle()
        expect(x.ikeSaId, `dropped from ${dropFrom}`).to.deep.equal(y.ikeSaId)
        expect(p.a.list().map((s) => s.phase1.ikeSaId)).to.deep.equal([x.ikeSaId])
        expect(p.b.list().map((s) => s.phase1.ikeSaId)).to.deep.equal([x.ikeSaId])
        expect(p.a.list()[0].phase2).to.have.length(1)
        expect(p.b.list()[0].phase2).to.have.length(1)
        await p.drive(p.a.checkLiveness(x.id))
        await p.stop()
      }
    })
  })

  describe('.deleteChildSa and .deleteIkeSa', () => {
    it('should remove a Child SA on both sides when the responder deletes it', async () => {
      const p = makePair()
      await p.start()
      await p.drive(p.a.connect(p.request()))
      await p.settle()
      await p.drive(p.b.deleteChildSa(p.b.list()[0].phase2[0].id))
      await p.settle()
      expect(p.a.list()[0].phase2).to.have.length(0)
      expect(p.b.list()[0].phase2).to.have.length(0)
      expect(p.aEngine.listSas()).to.have.length(0)
      expect(p.aEvents.at(-1)).to.include({ type: 'sa:deleted', reason: 'remote' })
      await p.stop()
    })

    it('should remove the IKE SA with its Child SAs on both sides when the initiator deletes it', async () => {
      const p = makePair()
      await p.start()
      const r = await p.drive(p.a.connect(p.request()))
      await p.drive(p.a.deleteIkeSa(r.phase1.id))
      await p.settle()
      expect(p.a.list()).to.have.length(0)
      expect(p.b.list()).to.have.length(0)
      expect(p.bEngine.listSas()).to.have.length(0)
      expect(p.bEvents.at(-1)).to.include({ type: 'ike:deleted', reason: 'remote' })
      await p.stop()
    })
  })

  describe('.checkLiveness', () => {
    it('should resolve while the peer answers and delete the SA as dead-peer when it stops', async () => {
      const p = makePair()
      await p.start()
      const r = await p.drive(p.a.connect(p.request()))
      await p.drive(p.a.checkLiveness(r.phase1.id))
      p.net.filter = () => 'drop'
      const err = await p.drive(p.a.checkLiveness(r.phase1.id)).catch((e) => e)
      expect(err.kind).to.equal('TIMEOUT')
      expect(p.a.list()).to.have.length(0)
      expect(p.aEvents.at(-1)).to.include({ type: 'ike:deleted', reason: 'dead-peer' })
      await p.stop()
    })
  })

  describe('.renegotiate', () => {
    it('should set up new SAs with INITIAL_CONTACT, and the peer should drop the old IKE SA', async () => {
      const p = makePair()
      await p.start()
      const old = await p.drive(p.a.connect(p.request()))
      await p.settle()
      // a second Child SA under the same IKE SA, to be renegotiated with CREATE_CHILD_SA
      const [outcome] = await p.drive(
        p.a.renegotiate([{ phase1: old.phase1, phase2: [old.phase2[0], old.phase2[0]] }])
      )
      expect(outcome.status).to.equal('renegotiated')
      if (outcome.status !== 'renegotiated') return
      expect(outcome.current.phase2).to.have.length(2)
      expect(outcome.failedChildren).to.deep.equal([])
      await p.settle()
      const bList = p.b.list()
      expect(bList.map((x) => x.phase1.id)).to.deep.equal([outcome.current.phase1.id])
      expect(
        p.bEvents.some((e) => e.type === 'ike:deleted' && e.reason === 'initial-contact')
      ).to.equal(true)
      const authReq = p.net.log.filter((x) => header(x.data).exchange === ExchangeType.IKE_AUTH)
      expect(authReq.length).to.be.greaterThan(0)
      await p.stop()
    })

    it('should keep every renegotiated IKE SA when several share the same identities', async () => {
      const p = makePair()
      await p.start()
      const one = await p.drive(p.a.connect(p.request()))
      const two = await p.drive(p.a.connect(p.request()))
      await p.settle()
      expect(p.b.list()).to.have.length(2)
      const outcomes = await p.drive(p.a.renegotiate([one, two]))
      expect(outcomes.map((o) => o.status)).to.deep.equal(['renegotiated', 'renegotiated'])
      await p.settle()
      const current = outcomes.map((o) =>
        o.status === 'renegotiated' ? o.current.phase1.ikeSaId : undefined
      )
      expect(p.b.list().map((x) => x.phase1.ikeSaId)).to.have.deep.members(current)
      await p.stop()
    })

    it('should report a per-peer failure without rejecting', async () => {
      const p = makePair()
      await p.start()
      const old = await p.drive(p.a.connect(p.request()))
      const gone = { ...old.phase1, peer: { address: '10.0.0.99', port: 500 } }
      const outcomes = await p.drive(p.a.renegotiate([{ phase1: gone, phase2: old.phase2 }, old]))
      expect(outcomes.map((o) => o.status)).to.deep.equal(['failed', 'renegotiated'])
      expect(outcomes[0].status === 'failed' && outcomes[0].reason).to.equal('TIMEOUT')
      await p.stop()
    })
  })
})
