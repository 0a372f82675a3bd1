import { expect } from 'chai'
import type { EncryptionTransform, IntegrityAlgorithm } from '@vipsec/interface'
import { VirtualClock } from '@vipsec/clock'
import { wire } from '../src/index.js'
import {
  maxIkeLength,
  protect,
  Reassembly,
  resolveFragmentation,
  type FragmentDropReason,
  type VerifiedFragment
} from '../src/fragments.js'
import { makePki } from './helpers/certs.js'
import type { MemoryUdpEndpoint, Packet } from './helpers/network.js'
import { makePair, phase1, phase2 } from './helpers/pair.js'

const { ExchangeType, HeaderFlag, NotifyType, PayloadType, parseMessage, openSk } = wire

type Pair = ReturnType<typeof makePair>

/** The IKE message in a datagram (without the non-ESP marker). */
function ike(data: Uint8Array): Uint8Array {
  return data.length >= 4 && data[0] === 0 && data[1] === 0 && data[2] === 0 && data[3] === 0
    ? data.subarray(4)
    : data
}

function isFragment(p: Packet): boolean {
  return ike(p.data)[16] === PayloadType.SKF
}

function fragmentNumber(p: Packet): number {
  const m = parseMessage(ike(p.data))
  return (m.payloads.at(-1) as wire.SkfPayload).fragmentNumber
}

/** B's port-500 socket, to deliver datagrams to it directly. */
function bSocket(p: Pair): MemoryUdpEndpoint {
  return (p.b as unknown as { components: { udp500: MemoryUdpEndpoint } }).components.udp500
}

function sentBy(p: Pair, address: string, exchange: number): Packet[] {
  return p.net.log.filter((x) => x.from.address === address && ike(x.data)[18] === exchange)
}

/** Long identities: a PSK IKE_AUTH then takes three 256-byte fragments, its response two. */
const LONG_A = { type: 'fqdn' as const, value: `${'initiator.'.repeat(15)}a.example` }
const LONG_B = { type: 'fqdn' as const, value: `${'responder.'.repeat(10)}b.example` }

/** A pair whose fragments are at most 256-byte datagrams. */
function smallPair(a: object = {}, b: object = {}) {
  return makePair({
    aId: LONG_A,
    bId: LONG_B,
    a: { fragmentation: { fragmentSize: 256 }, ...a },
    b: { fragmentation: { fragmentSize: 256 }, ...b }
  })
}

const SUITES: { name: string; encryption: EncryptionTransform; integrity: IntegrityAlgorithm }[] = [
  {
    name: 'AES-GCM-16',
    encryption: { algorithm: 'aes-gcm-16', keyBits: 256 },
    integrity: 'none'
  },
  {
    name: 'AES-CBC with HMAC-SHA2-256-128',
    encryption: { algorithm: 'aes-cbc', keyBits: 128 },
    integrity: 'hmac-sha2-256-128'
  },
  {
    name: 'ChaCha20-Poly1305',
    encryption: { algorithm: 'chacha20-poly1305', keyBits: 256 },
    integrity: 'none'
  }
]

function keysFor(s: (typeof SUITES)[number]): wire.SkKeys {
  const gcm = s.encryption.algorithm !== 'aes-cbc'
  return {
    encryption: s.encryption,
    integrity: s.integrity,
    encryptionKey: Uint8Array.from({ length: gcm ? 36 : 16 }, (_, i) => i + 1),
    integrityKey: gcm ? new Uint8Array(0) : Uint8Array.from({ length: 32 }, (_, i) => 200 - i)
  }
}

const HEADER = {
  spiI: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8),
  spiR: Uint8Array.of(8, 7, 6, 5, 4, 3, 2, 1),
  version: 0x20,
  exchange: ExchangeType.IKE_AUTH,
  flags: HeaderFlag.INITIATOR,
  messageId: 1
}

/** Inner payloads of about 1.3 kB: a certificate-sized CERT and an AUTH. */
const PAYLOADS: wire.Payload[] = [
  { type: PayloadType.IDi, idType: 2, data: new TextEncoder().encode('a.example') },
  {
    type: PayloadType.CERT,
    encoding: 4,
    data: Uint8Array.from({ length: 1200 }, (_, i) => (i * 7) & 0xff)
  },
  { type: PayloadType.AUTH, method: 14, data: Uint8Array.from({ length: 64 }, (_, i) => i) }
]

function counter(): () => Uint8Array {
  let n = 0
  return () => {
    n++
    return Uint8Array.of(0, 0, 0, 0, 0, 0, n >> 8, n & 0xff)
  }
}

function cbcIv(): () => Uint8Array {
  let n = 0
  return () => Uint8Array.from({ length: 16 }, (_, i) => (++n * 31 + i) & 0xff)
}

/** Opens a fragment message as the receiver does, and returns it ready for the reassembly. */
function verified(packet: Uint8Array, keys: wire.SkKeys): VerifiedFragment {
  const m = parseMessage(packet)
  const f = m.payloads.at(-1) as wire.SkfPayload
  const opened = openSk(m, keys)
  if (!opened.ok || opened.sk.body === undefined) throw new Error('fragment did not verify')
  return {
    messageId: m.header.messageId,
    exchange: m.header.exchange,
    number: f.fragmentNumber,
    total: f.totalFragments,
    innerType: opened.sk.innerType,
    content: opened.sk.body,
    raw: packet
  }
}

function reassembly(limits = {}) {
  const clock = new VirtualClock()
  const drops: Partial<Record<FragmentDropReason, number>> = {}
  const r = new Reassembly({
    clock,
    limits: resolveFragmentation(limits),
    dropFragment: (reason, count = 1) => {
      drops[reason] = (drops[reason] ?? 0) + count
    }
  })
  return { r, drops, clock }
}

describe('IKE fragmentation (RFC 7383)', () => {
  describe('protect', () => {
    for (const suite of SUITES) {
      describe(`with ${suite.name}`, () => {
        const keys = keysFor(suite)
        const iv = suite.encryption.algorithm === 'aes-cbc' ? cbcIv() : counter()

        it('should split a large message into SKF fragments that each fit and verify', () => {
          const packets = protect(HEADER, PAYLOADS, keys, iv, 548)
          expect(packets.length).to.be.greaterThan(2)
          const { bytes, first } = wire.encodePayloads(PAYLOADS)
          const pieces: Uint8Array[] = []
          packets.forEach((packet, i) => {
            expect(packet.length).to.be.at.most(548)
            const m = parseMessage(packet)
            expect(m.header.nextPayload).to.equal(PayloadType.SKF)
            expect(m.header.messageId).to.equal(1)
            const f = m.payloads[0] as wire.SkfPayload
            expect(f.fragmentNumber).to.equal(i + 1)
            expect(f.totalFragments).to.equal(packets.length)
            // only the first fragment names the first inner payload (RFC 7383 section 2.5)
            expect(f.innerType).to.equal(i === 0 ? first : 0)
            const opened = openSk(m, keys)
            expect(opened.ok).to.equal(true)
            if (opened.ok) pieces.push(opened.sk.body!)
          })
          expect(Buffer.from(wire.concat(...pieces))).to.deep.equal(Buffer.from(bytes))
        })

        it('should round-trip through the reassembly in any order', () => {
          const packets = protect(HEADER, PAYLOADS, keys, iv, 548)
          const { r } = reassembly()
          const order = packets.map((_, i) => i).reverse()
          let whole
          for (const i of order) whole = r.add(verified(packets[i], keys))
          expect(whole).to.not.equal(undefined)
          expect(wire.parsePayloads(whole!.innerType, whole!.body)).to.have.length(3)
          const cert = wire.parsePayloads(whole!.innerType, whole!.body)[1] as wire.CertPayload
          expect(Buffer.from(cert.data)).to.deep.equal(
            Buffer.from((PAYLOADS[1] as wire.CertPayload).data)
          )
        })

        it('should send a message that fits as one SK message', () => {
          const packets = protect(HEADER, PAYLOADS.slice(0, 1), keys, iv, 548)
          expect(packets).to.have.length(1)
          expect(parseMessage(packets[0]).header.nextPayload).to.equal(PayloadType.SK)
        })
      })
    }

    it('should never fragment without a maximum length', () => {
      expect(protect(HEADER, PAYLOADS, keysFor(SUITES[0]), counter(), undefined)).to.have.length(1)
    })
  })

  describe('maxIkeLength', () => {
    it('should default to 576 on IPv4 and 1280 on IPv6, less IP, UDP and the non-ESP marker', () => {
      expect(maxIkeLength(0, false, false)).to.equal(576 - 28)
      expect(maxIkeLength(0, true, true)).to.equal(1280 - 48 - 4)
      expect(maxIkeLength(1400, false, true)).to.equal(1400 - 32)
    })
  })

  describe('SKF parsing', () => {
    it('should refuse fragment number 0, total 0 and a number above the total', () => {
      const keys = keysFor(SUITES[0])
      const good = protect(HEADER, PAYLOADS, keys, counter(), 548)[0]
      for (const [num, total] of [
        [0, 3],
        [1, 0],
        [4, 3]
      ]) {
        const bad = good.slice()
        bad[32] = num >> 8
        bad[33] = num & 0xff
        bad[34] = total >> 8
        bad[35] = total & 0xff
        expect(() => parseMessage(bad))
          .to.throw()
          .with.property('kind', 'INVALID_SYNTAX')
      }
    })

    it('should fail the ICV of a fragment whose number or total was changed', () => {
      const keys = keysFor(SUITES[1])
      const good = protect(HEADER, PAYLOADS, keys, cbcIv(), 548)[0]
      const bad = good.slice()
      bad[35] += 1
      const opened = openSk(parseMessage(bad), keys)
      expect(opened).to.deep.equal({ ok: false, reason: 'icv-failure' })
    })
  })

  describe('Reassembly', () => {
    const keys = keysFor(SUITES[0])
    const packets = protect(HEADER, PAYLOADS, keys, counter(), 548)
    const frags = packets.map((p) => verified(p, keys))

    it('should count a duplicate and complete once', () => {
      const { r, drops } = reassembly()
      r.add(frags[0])
      expect(r.add(frags[0])).to.equal(undefined)
      expect(drops.duplicate).to.equal(1)
      let whole
      for (const f of frags.slice(1)) whole = r.add(f)
      expect(whole).to.not.equal(undefined)
      expect(r.held).to.equal(0)
    })

    it('should drop fragments with a smaller total and restart for a larger one', () => {
      const { r, drops } = reassembly()
      r.add(frags[0])
      expect(r.add({ ...frags[1], total: frags[1].total - 1 })).to.equal(undefined)
      expect(drops.stale).to.equal(1)
      expect(r.held).to.equal(1)
      r.add({ ...frags[1], total: frags[1].total + 1 })
      expect(drops.stale).to.equal(2) // the fragment held is given up
      expect(r.held).to.equal(1)
    })

    it('should hold one message at a time: a fragment of another message ID replaces it', () => {
      const { r, drops } = reassembly()
      r.add(frags[0])
      r.add({ ...frags[1], messageId: 2 })
      expect(r.held).to.equal(1)
      expect(drops.stale).to.equal(1)
    })

    it('should refuse a message announcing more than maxFragments', () => {
      const { r, drops } = reassembly({ maxFragments: frags.length - 1 })
      expect(r.add(frags[0])).to.equal(undefined)
      expect(r.held).to.equal(0)
      expect(drops['too-many']).to.equal(1)
    })

    it('should give up a message above maxMessageBytes', () => {
      const { r, drops } = reassembly({ maxMessageBytes: 600 })
      for (const f of frags) r.add(f)
      expect(r.held).to.be.lessThan(2)
      expect(drops['too-large']).to.be.greaterThan(0)
    })

    it('should refuse a fragment of another exchange type', () => {
      const { r, drops } = reassembly()
      r.add(frags[0])
      expect(r.add({ ...frags[1], exchange: ExchangeType.INFORMATIONAL })).to.equal(undefined)
      expect(drops.inconsistent).to.equal(1)
    })

    it('should forget an incomplete message after the reassembly timeout', async () => {
      const { r, drops, clock } = reassembly({ reassemblyTimeoutMs: 1000 })
      r.add(frags[0])
      r.add(frags[1])
      await clock.advance(999)
      expect(r.held).to.equal(2)
      await clock.advance(1)
      expect(r.held).to.equal(0)
      expect(drops.timeout).to.equal(2)
    })
  })

  describe('IkeV2Service', () => {
    it('should announce IKEV2_FRAGMENTATION_SUPPORTED both ways and fragment IKE_AUTH', async () => {
      const p = smallPair()
      await p.start()
      // PFS with MODP-2048 puts a 256-byte KE payload in every Child SA rekey
      const pfs = { ...p.request().child, policy: phase2({ pfsGroup: 'modp2048' }) }
      await p.drive(p.a.connect(p.request({ child: pfs })))
      for (const from of ['10.0.0.1', '10.0.0.2']) {
        const init = parseMessage(ike(sentBy(p, from, ExchangeType.IKE_SA_INIT)[0].data))
        expect(
          wire.findNotify(init.payloads, NotifyType.IKEV2_FRAGMENTATION_SUPPORTED)
        ).to.not.equal(undefined)
      }
      const request = sentBy(p, '10.0.0.1', ExchangeType.IKE_AUTH)
      const response = sentBy(p, '10.0.0.2', ExchangeType.IKE_AUTH)
      expect(request.length).to.be.greaterThan(1)
      expect(request.every(isFragment)).to.equal(true)
      expect(response.every(isFragment)).to.equal(true)
      for (const x of [...request, ...response]) expect(x.data.length).to.be.at.most(256 - 28)
      expect(p.b.counters().fragments.reassembled).to.equal(1)
      expect(p.a.counters().fragments.reassembled).to.equal(1)
      expect(p.a.counters().fragments.sent).to.equal(request.length)
      expect(p.a.list()).to.have.length(1)
      expect(p.b.list()).to.have.length(1)
      // later protected messages are fragmented too when large; small ones are not
      const r = p.a.list()[0]
      await p.drive(p.a.rekeyChildSa(r.phase2[0].id))
      expect(sentBy(p, '10.0.0.1', ExchangeType.CREATE_CHILD_SA).every(isFragment)).to.equal(true)
      await p.drive(p.a.checkLiveness(r.phase1.id))
      expect(sentBy(p, '10.0.0.1', ExchangeType.INFORMATIONAL).some(isFragment)).to.equal(false)
      await p.stop()
    })

    for (const off of ['a', 'b'] as const) {
      it(`should neither announce nor fragment when ${off === 'a' ? 'the initiator' : 'the responder'} has fragmentation off`, async () => {
        const disabled = { fragmentation: { enabled: false, fragmentSize: 256 } }
        const p = off === 'a' ? smallPair(disabled) : smallPair({}, disabled)
        await p.start()
        await p.drive(p.a.connect(p.request()))
        const init = sentBy(p, off === 'a' ? '10.0.0.1' : '10.0.0.2', ExchangeType.IKE_SA_INIT)
        expect(
          wire.findNotify(
            parseMessage(ike(init[0].data)).payloads,
            NotifyType.IKEV2_FRAGMENTATION_SUPPORTED
          )
        ).to.equal(undefined)
        expect(p.net.log.some(isFragment)).to.equal(false)
        expect(p.a.list()).to.have.length(1)
        await p.stop()
      })
    }

    it('should follow a peer config’s fragmentation = no for what it sends to that peer', async () => {
      const p = smallPair()
      const b = p.b as unknown as { init: { peers: { fragmentation?: boolean }[] } }
      b.init.peers[0].fragmentation = false
      await p.start()
      await p.drive(p.a.connect(p.request()))
      expect(sentBy(p, '10.0.0.1', ExchangeType.IKE_AUTH).every(isFragment)).to.equal(true)
      expect(sentBy(p, '10.0.0.2', ExchangeType.IKE_AUTH).some(isFragment)).to.equal(false)
      expect(p.a.list()).to.have.length(1)
      await p.stop()
    })

    it('should reassemble fragments that arrive out of order and duplicated', async () => {
      const p = smallPair()
      const held: Packet[] = []
      let duplicated = false
      p.net.filter = (x) => {
        if (!isFragment(x) || x.from.address !== '10.0.0.1' || ike(x.data)[18] !== 35)
          return 'deliver'
        held.push(x)
        const n = parseMessage(ike(x.data)).payloads.at(-1) as wire.SkfPayload
        if (held.length < n.totalFragments) return 'drop'
        // the whole request is in: deliver it backwards, the last fragment twice
        p.net.filter = () => 'deliver'
        for (const h of held.slice().reverse()) {
          const s = bSocket(p)
          s.deliver({ data: h.data, from: h.from })
          if (!duplicated) {
            duplicated = true
            s.deliver({ data: h.data, from: h.from })
          }
        }
        return 'drop'
      }
      await p.start()
      await p.drive(p.a.connect(p.request()))
      expect(held.length).to.be.greaterThan(1)
      expect(p.b.counters().fragments.dropped.duplicate).to.equal(1)
      expect(p.b.list()).to.have.length(1)
      await p.stop()
    })

    it('should resend every fragment of a request and answer it from the cached fragmented response', async () => {
      const p = smallPair()
      let dropped = 0
      // the first response loses its second fragment
      p.net.filter = (x) => {
        if (
          dropped === 0 &&
          x.from.address === '10.0.0.2' &&
          isFragment(x) &&
          fragmentNumber(x) === 2
        ) {
          dropped++
          return 'drop'
        }
        return 'deliver'
      }
      await p.start()
      await p.drive(p.a.connect(p.request()))
      const request = sentBy(p, '10.0.0.1', ExchangeType.IKE_AUTH)
      const total = (parseMessage(ike(request[0].data)).payloads.at(-1) as wire.SkfPayload)
        .totalFragments
      expect(request.length).to.equal(2 * total)
      const a = p.a.counters()
      const b = p.b.counters()
      expect(a.retransmitted).to.equal(1)
      expect(b.responsesReplayed).to.equal(1)
      // the other fragments of the retransmission ask for nothing (RFC 7383 section 2.6.1)
      expect(b.fragments.dropped.retransmission).to.equal(total - 1)
      expect(a.fragments.dropped.duplicate).to.be.greaterThan(0)
      expect(p.a.list()).to.have.length(1)
      await p.stop()
    })

    it('should drop a tampered fragment without storing it or answering, then complete', async () => {
      const p = smallPair()
      let tampered: Uint8Array | undefined
      p.net.filter = (x) => {
        if (tampered === undefined && x.from.address === '10.0.0.1' && isFragment(x)) {
          if (fragmentNumber(x) !== 2) return 'deliver'
          tampered = x.data.slice()
          tampered[tampered.length - 20] ^= 1
          const s = bSocket(p)
          s.deliver({ data: tampered, from: x.from })
          return 'drop'
        }
        return 'deliver'
      }
      await p.start()
      const before = p.net.log.length
      const run = p.a.connect(p.request())
      await p.settle()
      // B holds fragment 1 only and sent nothing back for the request
      const b = p.b.counters()
      expect(b.fragments.dropped['icv-failure']).to.equal(1)
      expect(b.dropped['icv-failure']).to.equal(1)
      expect(b.fragments.reassembled).to.equal(0)
      expect(
        p.net.log
          .slice(before)
          .filter((x) => x.from.address === '10.0.0.2' && ike(x.data)[18] === 35)
      ).to.have.length(0)
      // the retransmission carries the genuine fragment 2
      await p.drive(run)
      expect(p.b.list()).to.have.length(1)
      await p.stop()
    })

    it('should change nothing for forged fragments aimed at an established SA', async () => {
      const p = smallPair()
      await p.start()
      const r = await p.drive(p.a.connect(p.request()))
      const spiI = Uint8Array.from(Buffer.from(r.phase1.ikeSaId.initiatorSpi, 'hex'))
      const spiR = Uint8Array.from(Buffer.from(r.phase1.ikeSaId.responderSpi, 'hex'))
      const before = p.b.counters()
      const sent = p.net.log.length
      // an attacker's fragment: right SPIs and message ID, keys it does not have
      const forged = protect(
        { ...HEADER, spiI, spiR, exchange: ExchangeType.INFORMATIONAL, messageId: 2 },
        PAYLOADS,
        keysFor(SUITES[0]),
        counter(),
        228
      )
      const s = bSocket(p)
      for (const f of forged) s.deliver({ data: f, from: { address: '10.0.0.1', port: 500 } })
      await p.settle()
      const after = p.b.counters()
      expect(
        after.fragments.dropped['icv-failure'] - before.fragments.dropped['icv-failure']
      ).to.equal(forged.length)
      expect(after.fragments.reassembled).to.equal(before.fragments.reassembled)
      expect(p.net.log.length).to.equal(sent)
      // the SA still answers its real peer at the expected message ID
      await p.drive(p.a.checkLiveness(r.phase1.id))
      expect(p.b.list()).to.have.length(1)
      await p.stop()
    })

    it('should drop fragments from a peer it did not announce fragmentation to', async () => {
      const p = smallPair({}, { fragmentation: { enabled: false } })
      await p.start()
      const pfs = { ...p.request().child, policy: phase2({ pfsGroup: 'modp2048' }) }
      const r = await p.drive(p.a.connect(p.request({ child: pfs })))
      const sa = (
        p.a as unknown as { table: { all(): { fragmentation: object }[] } }
      ).table.all()[0]
      // A is made to fragment anyway: B must not take it
      sa.fragmentation = { announced: true, peer: true, send: true }
      await p.drive(p.a.rekeyChildSa(r.phase2[0].id)).catch(() => undefined)
      expect(p.b.counters().fragments.dropped['not-negotiated']).to.be.greaterThan(0)
      await p.stop()
    })

    it('should carry an RSA certificate chain (IKE_AUTH of several kB) in fragments', async function () {
      this.timeout(60_000)
      const pki = makePki('rsa')
      try {
        const a = pki.issue('a', '/C=CH/O=vipsec test/CN=a.example', 'DNS:a.example')
        const b = pki.issue('b', '/C=CH/O=vipsec test/CN=b.example', 'DNS:b.example')
        const pol = phase1({ authMethod: 'digital-signature' })
        const p = makePair({
          startTime: Date.now(),
          bPhase1: pol,
          a: {
            certificates: [{ identity: { type: 'fqdn', value: 'a.example' }, ...a }],
            trustAnchors: [{ certificate: pki.ca }]
          },
          b: {
            certificates: [{ identity: { type: 'fqdn', value: 'b.example' }, ...b }],
            trustAnchors: [{ certificate: pki.ca }]
          }
        })
        await p.start()
        await p.drive(p.a.connect(p.request({ phase1: pol })))
        const request = sentBy(p, '10.0.0.1', ExchangeType.IKE_AUTH)
        expect(request.length).to.be.greaterThan(1)
        for (const x of request) expect(x.data.length).to.be.at.most(576 - 28)
        expect(p.b.list()).to.have.length(1)
        await p.stop()
      } finally {
        pki.dispose()
      }
    })
  })
})
