import { expect } from 'chai'
import type { IkeCounters, IkeDropReason } from '@vipsec/interface'
import { wire } from '../src/index.js'
import type { SaTable } from '../src/sa-table.js'
import { forge, payload, spisOf, type LiveSa } from './helpers/forge.js'
import { makePair } from './helpers/pair.js'
import type { MemoryUdpEndpoint } from './helpers/network.js'

const { ExchangeType, PayloadType, NotifyType, HeaderFlag } = wire

type Pair = ReturnType<typeof makePair>
type Side = 'a' | 'b'

function sockets(p: Pair, side: Side): { udp500: MemoryUdpEndpoint; udp4500: MemoryUdpEndpoint } {
  return (p[side] as unknown as { components: never }).components
}

function table(p: Pair, side: Side): SaTable {
  return (p[side] as unknown as { table: SaTable }).table
}

/** The established SA of one side (the only one in these tests). */
function liveSa(p: Pair, side: Side) {
  const sa = table(p, side)
    .all()
    .find((s) => s.state === 'established')
  if (sa === undefined) throw new Error('no established SA')
  return sa
}

function address(side: Side): string {
  return side === 'a' ? '10.0.0.1' : '10.0.0.2'
}

/** Delivers a datagram to a side as if from the other side's address. */
function inject(p: Pair, to: Side, data: Uint8Array, natT: boolean): void {
  const from = { address: address(to === 'a' ? 'b' : 'a'), port: natT ? 4500 : 500 }
  const s = sockets(p, to)
  if (natT) s.udp4500.deliver({ data: wire.concat(wire.NON_ESP_MARKER, data), from })
  else s.udp500.deliver({ data, from })
}

function sentBy(p: Pair, side: Side, since: number): number {
  return p.net.log.slice(since).filter((x) => x.from.address === address(side)).length
}

function dropped(c: IkeCounters): number {
  return Object.values(c.dropped).reduce((x, y) => x + y, 0)
}

const junk = (n: number): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => (i * 37 + 11) & 0xff)

interface Forgery {
  what: string
  reason: IkeDropReason
  natT?: boolean
  /** Builds the forgery for an SA whose responder expects request `mid` next. */
  make: (sa: LiveSa, mid: number) => Uint8Array
}

/** Requests to the responder B of an SA A initiated: the initiator flag is set. */
const I = HeaderFlag.INITIATOR
const FORGERIES: Forgery[] = [
  {
    what: 'a 32-byte INFORMATIONAL with no payloads on port 4500 (attack 1)',
    reason: 'unprotected',
    natT: true,
    make: (sa, mid) => forge(sa, { exchange: ExchangeType.INFORMATIONAL, flags: I, messageId: mid })
  },
  {
    what: 'a plaintext Delete of the IKE SA',
    reason: 'unprotected',
    make: (sa, mid) =>
      forge(sa, {
        exchange: ExchangeType.INFORMATIONAL,
        flags: I,
        messageId: mid,
        nextPayload: PayloadType.DELETE,
        body: payload(0, Uint8Array.of(1, 0, 0, 0))
      })
  },
  {
    what: 'a CREATE_CHILD_SA without an SK payload',
    reason: 'unprotected',
    make: (sa, mid) =>
      forge(sa, {
        exchange: ExchangeType.CREATE_CHILD_SA,
        flags: I,
        messageId: mid,
        nextPayload: PayloadType.NONCE,
        body: payload(0, junk(32))
      })
  },
  {
    what: 'an IKE_AUTH without an SK payload on an established SA',
    reason: 'unprotected',
    make: (sa, mid) => forge(sa, { exchange: ExchangeType.IKE_AUTH, flags: I, messageId: mid })
  },
  {
    what: 'an unknown exchange type',
    reason: 'unprotected',
    make: (sa, mid) => forge(sa, { exchange: 99, flags: I, messageId: mid })
  },
  {
    what: 'an SK payload too short for an IV and an ICV',
    reason: 'unprotected',
    make: (sa, mid) =>
      forge(sa, {
        exchange: ExchangeType.INFORMATIONAL,
        flags: I,
        messageId: mid,
        nextPayload: PayloadType.SK,
        body: payload(0, junk(10))
      })
  },
  {
    what: 'an SK payload with a wrong ICV',
    reason: 'icv-failure',
    make: (sa, mid) =>
      forge(sa, {
        exchange: ExchangeType.INFORMATIONAL,
        flags: I,
        messageId: mid,
        nextPayload: PayloadType.SK,
        body: payload(0, junk(8 + 32 + 16))
      })
  },
  {
    what: 'the message ID after the expected one',
    reason: 'invalid-message-id',
    make: (sa, mid) =>
      forge(sa, {
        exchange: ExchangeType.INFORMATIONAL,
        flags: I,
        messageId: mid + 1,
        nextPayload: PayloadType.SK,
        body: payload(0, junk(8 + 32 + 16))
      })
  },
  {
    what: 'the previous message ID with other bytes than the request it answered',
    reason: 'invalid-message-id',
    make: (sa, mid) =>
      forge(sa, {
        exchange: ExchangeType.IKE_AUTH,
        flags: I,
        messageId: mid - 1,
        nextPayload: PayloadType.SK,
        body: payload(0, junk(8 + 32 + 16))
      })
  },
  {
    what: 'a request with the initiator flag of the wrong role',
    reason: 'unknown-sa',
    make: (sa, mid) => forge(sa, { exchange: ExchangeType.INFORMATIONAL, flags: 0, messageId: mid })
  },
  {
    what: 'a response although no request is outstanding',
    reason: 'invalid-message-id',
    make: (sa, mid) =>
      forge(sa, {
        exchange: ExchangeType.INFORMATIONAL,
        flags: I | HeaderFlag.RESPONSE,
        messageId: mid
      })
  },
  {
    what: 'an unknown critical payload before the SK payload',
    reason: 'malformed',
    make: (sa, mid) =>
      forge(sa, {
        exchange: ExchangeType.INFORMATIONAL,
        flags: I,
        messageId: mid,
        nextPayload: 200,
        body: payload(0, junk(4), true)
      })
  }
]

describe('IkeV2Service', () => {
  describe('when a request to a live IKE SA cannot be authenticated (RFC 7296 2.21, 3.10.1)', () => {
    let p: Pair
    let phase2Id: string
    let spis: LiveSa

    beforeEach(async () => {
      p = makePair()
      await p.start()
      const r = await p.drive(p.a.connect(p.request()))
      phase2Id = r.phase2[0].id
      spis = spisOf(r.phase1)
      await p.settle()
    })

    afterEach(async () => {
      await p.stop()
    })

    for (const f of FORGERIES) {
      it(`should drop ${f.what} as ${f.reason}, answer nothing and keep the window`, async () => {
        const sa = liveSa(p, 'b')
        const mid = sa.tasks.expectedRequestId
        const before = p.b.counters()
        const since = p.net.log.length
        inject(p, 'b', f.make(spis, mid), f.natT === true)
        await p.settle()
        const after = p.b.counters()
        expect(sentBy(p, 'b', since), 'datagrams B sent').to.equal(0)
        expect(after.dropped[f.reason] - before.dropped[f.reason]).to.equal(1)
        expect(dropped(after) - dropped(before)).to.equal(1)
        expect(after.responsesReplayed).to.equal(before.responsesReplayed)
        expect(sa.tasks.expectedRequestId).to.equal(mid)
        expect(sa.state).to.equal('established')
        expect(sa.natT).to.equal(false)
        // the real peer's next request uses that very ID and is answered normally
        const next = await p.drive(p.a.rekeyChildSa(phase2Id))
        expect(next.id).to.not.equal(phase2Id)
        // CREATE_CHILD_SA and the Delete of the old Child SA
        expect(sa.tasks.expectedRequestId).to.equal(mid + 2)
        expect(p.a.list()).to.have.length(1)
        expect(p.b.list()).to.have.length(1)
      })
    }

    it('should replay the cached response only for an identical retransmission', async () => {
      const sa = liveSa(p, 'b')
      const ikeAuth = p.net.log.find(
        (x) => x.from.address === '10.0.0.1' && x.data[18] === ExchangeType.IKE_AUTH
      )!
      const since = p.net.log.length
      inject(p, 'b', ikeAuth.data, false)
      await p.settle()
      expect(p.b.counters().responsesReplayed).to.equal(1)
      expect(sentBy(p, 'b', since)).to.equal(1)
      expect(sa.tasks.expectedRequestId).to.equal(2)
    })
  })

  describe('when a stateful fuzzer that knows the SPIs and both message IDs attacks', () => {
    it('should answer none of 5,000 forgeries, keep both windows, and keep the tunnel', async () => {
      const p = makePair()
      await p.start()
      const r = await p.drive(p.a.connect(p.request()))
      await p.settle()
      const spis = spisOf(r.phase1)
      const a = liveSa(p, 'a')
      const b = liveSa(p, 'b')
      const before = { a: p.a.counters(), b: p.b.counters() }
      const windows = (): number[] => [
        a.tasks.nextRequestId,
        a.tasks.expectedRequestId,
        b.tasks.nextRequestId,
        b.tasks.expectedRequestId
      ]
      const start = windows()
      let x = 0x2545f491
      const next = (): number => {
        x ^= x << 13
        x ^= x >>> 17
        x ^= x << 5
        return x >>> 0
      }
      const since = p.net.log.length
      const N = 5000
      for (let i = 0; i < N; i++) {
        const to: Side = next() % 2 === 0 ? 'a' : 'b'
        const sa = to === 'a' ? a : b
        // a request to B carries the I flag (A initiated the SA); B's requests to A do not
        const asRequest = next() % 3 !== 0
        const flags =
          (to === 'b' ? I : 0) |
          (asRequest ? 0 : HeaderFlag.RESPONSE) |
          (next() % 9 === 0 ? 0x08 : 0)
        const base = asRequest ? sa.tasks.expectedRequestId : sa.tasks.nextRequestId
        const mid = [base, base, base - 1, base + 1, next()][next() % 5] >>> 0
        const exchange = [34, 35, 36, 37, next() & 0xff][next() % 5]
        const kind = next() % 5
        const body =
          kind === 0
            ? undefined
            : kind === 1
              ? payload(0, junk(next() % 80))
              : kind === 2
                ? payload(0, Uint8Array.of(1, 0, 0, 0))
                : payload(0, junk(8), true)
        const nextPayload = [0, PayloadType.SK, PayloadType.DELETE, 200 + (next() % 50)][
          body === undefined ? 0 : kind - 1 < 3 ? kind : 3
        ]
        inject(
          p,
          to,
          forge(spis, { exchange, flags, messageId: mid, nextPayload, body }),
          i % 2 === 0
        )
        if (i % 250 === 0) await p.settle()
      }
      await p.settle()
      const answers = p.net.log.slice(since)
      expect(answers, 'datagrams sent in reply').to.deep.equal([])
      expect(windows()).to.deep.equal(start)
      const total = (c: IkeCounters): number => dropped(c)
      expect(
        total(p.a.counters()) - total(before.a) + total(p.b.counters()) - total(before.b)
      ).to.equal(N)
      const next2 = await p.drive(p.a.rekeyChildSa(r.phase2[0].id))
      await p.drive(p.b.checkLiveness(p.b.list()[0].phase1.id))
      expect(p.a.list()[0].phase2.map((c) => c.id)).to.deep.equal([next2.id])
      expect(p.b.list()[0].phase2).to.have.length(1)
      await p.stop()
    })
  })

  describe('when a response to our outstanding request cannot be authenticated', () => {
    it('should drop it and still complete the exchange with the real response', async () => {
      const p = makePair()
      await p.start()
      const r = await p.drive(p.a.connect(p.request()))
      await p.settle()
      const spis = spisOf(r.phase1)
      const mid = liveSa(p, 'a').tasks.nextRequestId
      // B's answers are held back until the forgeries have arrived
      p.net.filter = (x) => (x.from.address === '10.0.0.2' ? 'drop' : 'deliver')
      const done = p.a.checkLiveness(r.phase1.id)
      await p.settle()
      const R = HeaderFlag.RESPONSE
      inject(
        p,
        'a',
        forge(spis, { exchange: ExchangeType.INFORMATIONAL, flags: R, messageId: mid }),
        true
      )
      inject(
        p,
        'a',
        forge(spis, { exchange: ExchangeType.CREATE_CHILD_SA, flags: R, messageId: mid }),
        false
      )
      await p.settle()
      const c = p.a.counters()
      expect(c.dropped.unprotected).to.equal(1)
      expect(c.dropped.unexpected).to.equal(1)
      p.net.filter = () => 'deliver'
      await p.drive(done)
      expect(p.a.list()).to.have.length(1)
      await p.stop()
    })
  })

  describe('when a forged error answers our IKE_SA_INIT before the real response (RFC 7296 2.21.1)', () => {
    it('should hold the unprotected error and take the real response that follows', async () => {
      const p = makePair()
      await p.start()
      let real: Uint8Array | undefined
      p.net.filter = (x) => {
        if (real === undefined && x.from.address === '10.0.0.2' && x.data[18] === 34) {
          real = x.data
          return 'drop'
        }
        return 'deliver'
      }
      const connecting = p.a.connect(p.request())
      await p.settle()
      expect(real).to.not.equal(undefined)
      const spiI = real!.subarray(0, 8)
      const forged = wire.encodeMessage(
        {
          spiI,
          spiR: new Uint8Array(8),
          version: 0x20,
          exchange: ExchangeType.IKE_SA_INIT,
          flags: HeaderFlag.RESPONSE,
          messageId: 0
        },
        [wire.notify(NotifyType.NO_PROPOSAL_CHOSEN)]
      )
      inject(p, 'a', forged, false)
      await p.settle()
      await p.clock.advance(100)
      inject(p, 'a', real!, false)
      const r = await p.drive(connecting)
      expect(r.phase2).to.have.length(1)
      await p.stop()
    })
  })

  describe('when an INFORMATIONAL protected by a half-open SA precedes IKE_AUTH', () => {
    it('should drop it without an answer and let IKE_AUTH complete', async () => {
      const p = makePair()
      await p.start()
      let held = true
      p.net.filter = (x) => (held && x.data[18] === ExchangeType.IKE_AUTH ? 'drop' : 'deliver')
      const connecting = p.a.connect(p.request())
      await p.settle()
      const aSa = table(p, 'a').all()[0]
      expect(aSa.state).to.equal('auth')
      // whoever ran IKE_SA_INIT holds the keys: a Delete with them, as message 1, before IKE_AUTH
      const del = aSa.encrypt(ExchangeType.INFORMATIONAL, 1, false, [
        { type: PayloadType.DELETE, protocol: 1, spis: [] } as wire.DeletePayload
      ])
      const since = p.net.log.length
      inject(p, 'b', del, false)
      await p.settle()
      expect(sentBy(p, 'b', since)).to.equal(0)
      expect(p.b.counters().dropped.unexpected).to.equal(1)
      const bSa = table(p, 'b').all()[0]
      expect(bSa.state).to.equal('auth')
      expect(bSa.tasks.expectedRequestId).to.equal(1)
      held = false
      const r = await p.drive(connecting)
      expect(r.phase2).to.have.length(1)
      await p.stop()
    })
  })

  describe('when both halves of the window carry the same message ID after a takeover', () => {
    it('should answer the peer and get its own answer, each in its own half (attack 3)', async () => {
      const p = makePair()
      await p.start()
      const r = await p.drive(p.a.connect(p.request()))
      await p.settle()
      // the peer (B, responder) has made two requests: its next is ID 2, as is A's
      const bId = p.b.list()[0].phase1.id
      await p.drive(p.b.checkLiveness(bId))
      await p.drive(p.b.checkLiveness(bId))
      const aSa = liveSa(p, 'a')
      expect(aSa.tasks.nextRequestId).to.equal(2)
      expect(aSa.tasks.expectedRequestId).to.equal(2)
      // an unauthenticated DPD with ID 2 first: it must not take the slot of B's real one
      inject(
        p,
        'a',
        forge(spisOf(r.phase1), { exchange: ExchangeType.INFORMATIONAL, flags: 0, messageId: 2 }),
        true
      )
      await p.settle()
      const since = p.net.log.length
      await p.drive(Promise.all([p.a.checkLiveness(r.phase1.id), p.b.checkLiveness(bId)]))
      const fromA = p.net.log.slice(since).filter((x) => x.from.address === '10.0.0.1')
      const flags = fromA.map((x) => ({ id: wire.parseHeader(x.data).messageId, f: x.data[19] }))
      // exactly one request and one response of A, both ID 2, no retransmission, no replay
      expect(flags.map((x) => x.id)).to.deep.equal([2, 2])
      expect(flags.map((x) => x.f & HeaderFlag.RESPONSE).sort()).to.deep.equal([
        0,
        HeaderFlag.RESPONSE
      ])
      const c = p.a.counters()
      expect(c.responsesReplayed).to.equal(0)
      expect(c.retransmitted).to.equal(0)
      expect(c.dropped.unprotected).to.equal(1)
      expect(aSa.tasks.nextRequestId).to.equal(3)
      expect(aSa.tasks.expectedRequestId).to.equal(3)
      await p.stop()
    })
  })

  describe('when spoofed IKE_SA_INIT requests carry the real peer’s address (attack 2)', () => {
    it('should demand a COOKIE of the peer instead of locking it out', async () => {
      const p = makePair({ b: { halfOpenLimitPerPeer: 10, cookieThreshold: 50 } })
      await p.start()
      // a real IKE_SA_INIT of A's, to copy
      p.net.filter = (x) => (x.data[18] === ExchangeType.IKE_AUTH ? 'drop' : 'deliver')
      await p.drive(p.a.connect(p.request()).catch(() => undefined))
      const template = p.net.log.find(
        (x) => x.from.address === '10.0.0.1' && x.data[18] === ExchangeType.IKE_SA_INIT
      )!.data
      p.net.filter = () => 'deliver'
      for (let i = 0; i < 12; i++) {
        const m = template.slice()
        m[0] = 0xa0
        m[1] = i
        inject(p, 'b', m, false)
      }
      await p.settle()
      const start = p.clock.monotonic()
      const r = await p.drive(p.a.connect(p.request()))
      expect(r.phase2).to.have.length(1)
      // COOKIE costs one round trip, never a retransmission timeout
      expect(p.clock.monotonic() - start).to.be.lessThan(1000)
      expect(p.b.counters().dropped['half-open-limit']).to.equal(0)
      expect(p.b.counters().cookiesSent).to.be.greaterThan(0)
      await p.stop()
    })
  })

  describe('when a flood of spoofed IKE_SA_INIT requests arrives', () => {
    it('should keep at most cookieThreshold half-open SAs, compute no more key exchanges, and let the peer in', async () => {
      const p = makePair({ b: { cookieThreshold: 20, halfOpenLimit: 100 } })
      await p.start()
      p.net.filter = (x) => (x.data[18] === ExchangeType.IKE_AUTH ? 'drop' : 'deliver')
      await p.drive(p.a.connect(p.request()).catch(() => undefined))
      const template = p.net.log.find(
        (x) => x.from.address === '10.0.0.1' && x.data[18] === ExchangeType.IKE_SA_INIT
      )!.data
      p.net.filter = () => 'deliver'
      p.net.logging = false
      const s = sockets(p, 'b')
      for (let i = 0; i < 2000; i++) {
        const m = template.slice()
        m[0] = 0xb0
        m[1] = i >> 8
        m[2] = i & 0xff
        s.udp500.deliver({ data: m, from: { address: `10.66.${i >> 8}.${i & 0xff}`, port: 500 } })
      }
      await p.settle()
      const half = table(p, 'b')
        .all()
        .filter((x) => x.state === 'auth').length
      expect(half).to.be.at.most(21)
      expect(p.b.counters().cookiesSent).to.be.at.least(2000 - 21)
      const r = await p.drive(p.a.connect(p.request()))
      expect(r.phase2).to.have.length(1)
      await p.stop()
    })

    it('should answer a retransmission of a request that made a half-open SA with its response, not a COOKIE', async () => {
      // one half-open SA is already "under load": the next new request gets a COOKIE
      const p = makePair({ b: { cookieThreshold: 1 } })
      await p.start()
      p.net.filter = (x) => (x.data[18] === ExchangeType.IKE_AUTH ? 'drop' : 'deliver')
      void p.a.connect(p.request()).catch(() => undefined)
      await p.settle()
      const request = p.net.log.find(
        (x) => x.from.address === '10.0.0.1' && x.data[18] === ExchangeType.IKE_SA_INIT
      )!.data
      const response = p.net.log.find(
        (x) => x.from.address === '10.0.0.2' && x.data[18] === ExchangeType.IKE_SA_INIT
      )!.data
      const since = p.net.log.length
      inject(p, 'b', request, false)
      const fresh = request.slice()
      fresh[0] ^= 0x80 // another SPIi: a new request
      inject(p, 'b', fresh, false)
      await p.settle()
      const answers = p.net.log.slice(since).filter((x) => x.from.address === '10.0.0.2')
      expect(answers.map((x) => Buffer.from(x.data).equals(response))).to.deep.equal([true, false])
      const cookie = wire.parseMessage(answers[1]!.data)
      expect(wire.findNotify(cookie.payloads, NotifyType.COOKIE)?.data).to.have.length(33)
      expect(cookie.payloads).to.have.length(1)
      expect(p.b.counters().responsesReplayed).to.equal(1)
      expect(p.b.counters().cookiesSent).to.equal(1)
      await p.stop()
    })

    it('should drop requests beyond halfOpenLimit even with a valid cookie', async () => {
      const p = makePair({
        b: { cookieThreshold: 1000, halfOpenLimit: 5, halfOpenLimitPerPeer: 1000 }
      })
      await p.start()
      p.net.filter = (x) => (x.data[18] === ExchangeType.IKE_AUTH ? 'drop' : 'deliver')
      const attempts = Array.from({ length: 8 }, () => p.a.connect(p.request()).catch((e) => e))
      await p.drive(Promise.all(attempts))
      expect(p.b.counters().dropped['half-open-limit']).to.be.greaterThan(0)
      await p.stop()
    })
  })

  describe('when many unparsable IKE_SA_INIT requests arrive at once', () => {
    it('should send at most unprotectedNotifiesPerSecond error notifies and count the rest', async () => {
      const p = makePair({ b: { unprotectedNotifiesPerSecond: 10 } })
      await p.start()
      const s = sockets(p, 'b')
      const since = p.net.log.length
      for (let i = 0; i < 50; i++) {
        // SA payload only: no KE, no Nonce -> INVALID_SYNTAX
        const m = forge(
          { spiI: Uint8Array.of(0xc0, i, 1, 2, 3, 4, 5, 6), spiR: new Uint8Array(8) },
          {
            exchange: ExchangeType.IKE_SA_INIT,
            flags: I,
            messageId: 0,
            nextPayload: PayloadType.NONCE,
            body: payload(0, junk(32))
          }
        )
        s.udp500.deliver({ data: m, from: { address: '10.0.0.1', port: 500 } })
      }
      await p.settle()
      const notifies = p.net.log
        .slice(since)
        .filter(
          (x) =>
            wire.findNotify(wire.parseMessage(x.data).payloads, NotifyType.INVALID_SYNTAX) !==
            undefined
        )
      expect(notifies).to.have.length(10)
      expect(p.b.counters().notifiesSuppressed).to.equal(40)
      expect(p.b.counters().dropped.malformed).to.equal(50)
      await p.stop()
    })
  })
})
