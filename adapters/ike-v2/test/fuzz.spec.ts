import { expect } from 'chai'
import { config as rxConfig } from 'rxjs'
import { wire } from '../src/index.js'
import { makePair } from './helpers/pair.js'
import type { MemoryUdpEndpoint } from './helpers/network.js'

/** A small fast PRNG (xorshift32) so that the fuzz corpus is the same on every run. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1
  return () => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x
  }
}

function mutate(next: () => number, base: Uint8Array): Uint8Array {
  const b = base.slice()
  switch (next() % 8) {
    case 0: // flip a few bits
      for (let i = 1 + (next() % 4); i > 0; i--) b[next() % b.length] ^= 1 << (next() % 8)
      return b
    case 1: // set a byte to an edge value
      b[next() % b.length] = [0, 1, 0x7f, 0x80, 0xff][next() % 5]
      return b
    case 2: // truncate
      return b.subarray(0, next() % b.length)
    case 3: // extend with junk
      return wire.concat(
        b,
        Uint8Array.from({ length: 1 + (next() % 64) }, () => next() & 0xff)
      )
    case 4: {
      // corrupt a length field of the header or of a payload, keeping the header length consistent
      const o = 28 + (next() % Math.max(1, b.length - 28))
      if (o + 3 < b.length) {
        b[o + 2] = next() & 0xff
        b[o + 3] = next() & 0xff
      }
      return b
    }
    case 5: {
      // change the next-payload chain or the exchange type
      const o = [16, 18, 19, 28][next() % 4]
      if (o < b.length) b[o] = next() & 0xff
      return b
    }
    case 6: {
      // fix the header length after a random cut, so the payload parser is exercised
      const cut = b.subarray(0, 28 + (next() % Math.max(1, b.length - 27)))
      const c = cut.slice()
      if (c.length >= 28) {
        c[24] = (c.length >>> 24) & 0xff
        c[25] = (c.length >>> 16) & 0xff
        c[26] = (c.length >>> 8) & 0xff
        c[27] = c.length & 0xff
      }
      return c
    }
    default: // random bytes
      return Uint8Array.from({ length: next() % 600 }, () => next() & 0xff)
  }
}

describe('IkeV2Service', () => {
  describe('fuzzing', function () {
    this.timeout(180_000)
    it('should drop 100,000 random and mutated messages without an escaped exception, and keep working', async () => {
      const p = makePair({ b: { halfOpenLimitPerPeer: 4, cookieThreshold: 1000 } })
      await p.start()
      // a corpus of real messages of every exchange, both directions
      const r = await p.drive(p.a.connect(p.request()))
      await p.drive(p.a.rekeyChildSa(r.phase2[0].id))
      await p.drive(p.a.checkLiveness(r.phase1.id))
      await p.settle()
      const corpus = p.net.log.map((x) =>
        x.data[0] === 0 && x.data.length > 4 && x.to.port === 4500 ? x.data.subarray(4) : x.data
      )
      expect(corpus.length).to.be.greaterThan(6)
      const escaped: unknown[] = []
      const previous = rxConfig.onUnhandledError
      rxConfig.onUnhandledError = (err) => escaped.push(err)
      const bSock = (
        p.b as unknown as { components: { udp500: MemoryUdpEndpoint; udp4500: MemoryUdpEndpoint } }
      ).components
      const aSock = (
        p.a as unknown as { components: { udp500: MemoryUdpEndpoint; udp4500: MemoryUdpEndpoint } }
      ).components
      const next = prng(0x5eed)
      let parsed = 0
      let typedErrors = 0
      const N = 100_000
      try {
        for (let i = 0; i < N; i++) {
          const base = corpus[next() % corpus.length]
          const m = mutate(next, base)
          try {
            wire.parseMessage(m)
            parsed++
          } catch (err) {
            if ((err as Error).name !== 'IkeProtocolError') throw err
            typedErrors++
          }
          const from = { address: `10.9.${(i >> 8) & 0xff}.${i & 0xff}`, port: 500 }
          const target = i % 2 === 0 ? bSock : aSock
          if (i % 3 === 0)
            target.udp4500.deliver({ data: wire.concat(wire.NON_ESP_MARKER, m), from })
          else
            target.udp500.deliver({
              data: m,
              from: i % 5 === 0 ? { address: '10.0.0.1', port: 500 } : from
            })
        }
      } finally {
        rxConfig.onUnhandledError = previous
      }
      expect(escaped).to.deep.equal([])
      expect(parsed + typedErrors).to.equal(N)
      const bc = p.b.counters()
      expect(bc.received).to.be.greaterThan(N / 3)
      expect(bc.dropped.malformed).to.be.greaterThan(0)
      // still serving: the old IKE SA still carries exchanges, and although the fuzz filled the
      // per-address limit of A's address, A connects at once (it returns the COOKIE it is sent)
      await p.drive(p.a.checkLiveness(r.phase1.id))
      expect(bc.cookiesSent).to.be.greaterThan(0)
      const fresh = await p.drive(p.a.connect(p.request()))
      expect(fresh.phase2).to.have.length(1)
      await p.stop()
    })
  })
})
