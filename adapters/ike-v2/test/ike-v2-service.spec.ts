import { expect } from 'chai'
import { buildIpPacket, buildUdp, type SoftwareEspEngine } from '@vipsec/esp-software'
import { SeededRandomSource } from '@vipsec/random'
import { IkeV2Service, ikeV2ServiceFactory } from '../src/index.js'
import { A_ID, B_ID, ESP_PROPOSAL, makePair, phase2 } from './helpers/pair.js'

/** Sends one UDP datagram from `from` to `to` through `sender`'s ESP engine into `receiver`'s. */
function crossTunnel(
  sender: SoftwareEspEngine,
  receiver: SoftwareEspEngine,
  from: string,
  to: string,
  text: string
): string {
  const inner = buildIpPacket({
    source: from,
    destination: to,
    protocol: 17,
    payload: buildUdp({
      source: from,
      destination: to,
      sourcePort: 4000,
      destinationPort: 5000,
      payload: new TextEncoder().encode(text)
    })
  })
  const out = sender.protect(inner)
  if (out.action !== 'protect') throw new Error(`protect: ${JSON.stringify(out)}`)
  const back = out.udp ? receiver.unprotectUdp(out.packet) : receiver.unprotect(out.packet)
  if (back.action !== 'accept') throw new Error(`unprotect: ${JSON.stringify(back)}`)
  const headers = (back.packet[0] >> 4 === 6 ? 40 : 20) + 8
  return new TextDecoder().decode(back.packet.subarray(headers))
}

describe('ikeV2ServiceFactory', () => {
  it('should make services bound to the sockets it is given', async () => {
    const p = makePair()
    const factory = ikeV2ServiceFactory({
      clock: p.clock,
      random: new SeededRandomSource({ seed: 'f' }),
      espEngine: p.aEngine
    })
    const udp500 = p.net.bind('10.0.0.3', 500)
    const udp4500 = p.net.bind('10.0.0.3', 4500)
    const service = factory({ udp500, udp4500 })
    expect(service).to.be.instanceOf(IkeV2Service)
    await service.start()
    p.net.bind('10.0.0.9', 500).send(new Uint8Array(40), { address: '10.0.0.3', port: 500 })
    await p.settle()
    expect(service.counters().received).to.equal(1)
    expect(service.counters().dropped.malformed).to.equal(1)
    await service.stop()
  })
})

describe('IkeV2Service', () => {
  describe('when datagrams do not parse', () => {
    it('should drop them as malformed, still answer a bad major version, and leave stack traces on', async () => {
      const p = makePair()
      await p.start()
      const limit = Error.stackTraceLimit
      const attacker = p.net.bind('10.0.0.9', 500)
      const answers: Uint8Array[] = []
      attacker.datagrams$.subscribe((d) => answers.push(d.data))
      // a truncated header, then an IKE_SA_INIT request of major version 3 (RFC 7296 section 1.5)
      attacker.send(new Uint8Array(20), { address: '10.0.0.2', port: 500 })
      const v3 = new Uint8Array(28)
      v3.set([1, 2, 3, 4, 5, 6, 7, 8], 0)
      v3[17] = 0x30
      v3[18] = 34
      v3[19] = 0x08
      v3[27] = 28
      attacker.send(v3, { address: '10.0.0.2', port: 500 })
      await p.settle()
      expect(p.b.counters().dropped.malformed).to.equal(2)
      expect(answers).to.have.length(1)
      // the answer's notify: INVALID_MAJOR_VERSION (5), for the request's SPIi
      expect(Array.from(answers[0].subarray(0, 8))).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8])
      expect(answers[0][16]).to.equal(41)
      expect((answers[0][34] << 8) | answers[0][35]).to.equal(5)
      expect(Error.stackTraceLimit).to.equal(limit)
      expect(new Error('after').stack).to.match(/ike-v2-service\.spec/)
      await p.stop()
    })
  })

  describe('constructor', () => {
    describe('when a peer config offers AES-CBC for ESP without an integrity algorithm', () => {
      it('should throw InvalidConfigError naming the field', () => {
        const cbc = {
          ...ESP_PROPOSAL,
          encryption: [{ algorithm: 'aes-cbc' as const, keyBits: 256 as const }]
        }
        const err = (() => {
          try {
            makePair({ bPhase2: phase2({ proposals: [cbc] }) })
          } catch (e) {
            return e as { name: string; field: string }
          }
          return undefined
        })()
        expect(err?.name).to.equal('InvalidConfigError')
        // AES-CBC without an integrity algorithm
        expect(err?.field).to.equal('peers[0].children[0].policy.proposals[0].integrity')
      })
    })
  })

  describe('.connect', () => {
    describe('when the request is invalid', () => {
      it('should reject with InvalidParametersError naming the field', async () => {
        const p = makePair()
        await p.start()
        const err = await p.a
          .connect(p.request({ peer: { address: 'not an address', port: 500 } }))
          .catch((e) => e)
        expect(err.name).to.equal('InvalidParametersError')
        expect(err.argument).to.equal('request.peer.address')
        await p.stop()
      })
    })

    describe('when the peers and the selectors are IPv6', () => {
      it('should establish and carry traffic both ways', async () => {
        const p = makePair({
          addresses: { a: 'fd00:1::1', b: 'fd00:1::2' },
          nets: {
            a: {
              startAddress: 'fd00:a::',
              endAddress: 'fd00:a::ffff',
              protocol: 0,
              startPort: 0,
              endPort: 65535
            },
            b: {
              startAddress: 'fd00:b::',
              endAddress: 'fd00:b::ffff',
              protocol: 0,
              startPort: 0,
              endPort: 65535
            }
          }
        })
        await p.start()
        const r = await p.drive(p.a.connect(p.request()))
        expect(r.phase1.peer.address).to.equal('fd00:1::2')
        expect(r.phase2[0].selectors.remote[0].startAddress).to.equal('fd00:b::')
        expect(crossTunnel(p.aEngine, p.bEngine, 'fd00:a::5', 'fd00:b::7', 'ping6')).to.equal(
          'ping6'
        )
        expect(crossTunnel(p.bEngine, p.aEngine, 'fd00:b::7', 'fd00:a::5', 'pong6')).to.equal(
          'pong6'
        )
        await p.stop()
      })
    })

    describe('when both sides agree (PSK, Curve25519, AES-GCM-256)', () => {
      it('should establish the IKE SA and the first Child SA on both sides, and traffic should cross both ways', async () => {
        const p = makePair()
        await p.start()
        const result = await p.drive(p.a.connect(p.request()))
        expect(result.phase1.localIdentity).to.deep.equal(A_ID)
        expect(result.phase1.remoteIdentity).to.deep.equal(B_ID)
        expect(result.phase2).to.have.length(1)
        await p.settle()
        const bList = p.b.list()
        expect(bList).to.have.length(1)
        expect(bList[0].phase1.ikeSaId).to.deep.equal(result.phase1.ikeSaId)
        const ours = result.phase2[0]
        const theirs = bList[0].phase2[0]
        expect(theirs.inboundSpi).to.equal(ours.outboundSpi)
        expect(theirs.outboundSpi).to.equal(ours.inboundSpi)
        expect(p.aEvents.map((e) => e.type)).to.deep.equal(['ike:established', 'sa:established'])
        expect(p.bEvents.map((e) => e.type)).to.deep.equal(['ike:established', 'sa:established'])
        expect(crossTunnel(p.aEngine, p.bEngine, '172.16.1.5', '172.16.2.7', 'ping')).to.equal(
          'ping'
        )
        expect(crossTunnel(p.bEngine, p.aEngine, '172.16.2.7', '172.16.1.5', 'pong')).to.equal(
          'pong'
        )
        await p.stop()
      })
    })
  })
})
