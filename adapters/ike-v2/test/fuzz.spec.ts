import { expect } from 'chai'
import { config as rxConfig } from 'rxjs'
import { wire } from '../src/index.js'
import { makePair } from './helpers/pair.js'
import { mutate, prng } from './helpers/mutate.js'
import type { MemoryUdpEndpoint } from './helpers/network.js'

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
