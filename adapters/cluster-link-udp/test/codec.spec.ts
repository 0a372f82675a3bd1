import { expect } from 'chai'
import fc from 'fast-check'
import { VirtualClock } from '@vipsec/clock'
import type { ClusterEnvelope } from '@vipsec/interface'
import { VirtualNetwork } from '@vipsec/network-virtual'
import { decodeFrame, encodeFrame, UdpClusterLink } from '../src/index.js'

const key = new Uint8Array(32).fill(7)
const notice = { type: 'ownership:notice', dvipa: '10.0.0.100', owner: 'dp-2', epoch: 9 } as const

describe('cluster link codec', () => {
  describe('decodeFrame', () => {
    it('should never throw, whatever the bytes', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
          const result = decodeFrame(bytes)
          return typeof result === 'string' || typeof result.from === 'string'
        }),
        { numRuns: 5000 }
      )
    })

    it('should reject every truncation of a valid frame', () => {
      const frame = encodeFrame('dp-1', notice)
      for (let n = 0; n < frame.length; n++)
        expect(decodeFrame(frame.subarray(0, n))).to.equal('malformed')
    })

    describe('when frames are authenticated', () => {
      it('should accept a frame with a good tag and refuse any changed bit or wrong key', () => {
        const frame = encodeFrame('dp-1', notice, key)
        expect(decodeFrame(frame, key)).to.deep.equal({ from: 'dp-1', message: notice })
        for (let i = 0; i < frame.length; i++) {
          const copy = new Uint8Array(frame)
          copy[i]! ^= 1
          expect(decodeFrame(copy, key)).to.equal('unauthenticated')
        }
        expect(decodeFrame(frame, new Uint8Array(32))).to.equal('unauthenticated')
        expect(decodeFrame(encodeFrame('dp-1', notice), key)).to.equal('unauthenticated')
      })
    })
  })
})

describe('UdpClusterLink', () => {
  describe('when frames arrive that must not be accepted', () => {
    it('should drop and count malformed, unauthenticated and unknown-sender frames', async () => {
      const clock = new VirtualClock()
      const net = new VirtualNetwork({ clock })
      const [na, nb, nx] = [net.attach('dp-1'), net.attach('target-1'), net.attach('intruder')]
      for (const n of [na, nb, nx]) await n.start()
      await na.acquireAddress('10.9.0.1')
      await nb.acquireAddress('10.9.0.11')
      await nx.acquireAddress('10.9.0.66')
      const a = new UdpClusterLink(
        { network: na },
        { node: 'dp-1', local: { address: '10.9.0.1', port: 7400 }, key }
      )
      const b = new UdpClusterLink(
        { network: nb },
        {
          node: 'target-1',
          local: { address: '10.9.0.11', port: 7400 },
          key,
          peers: { 'dp-1': { address: '10.9.0.1', port: 7400 } }
        }
      )
      a.addPeer('target-1', { address: '10.9.0.11', port: 7400 })
      await a.start()
      await b.start()
      const got: ClusterEnvelope[] = []
      b.messages$.subscribe((e) => got.push(e))
      const intruder = await nx.openUdp({ address: '10.9.0.66', port: 7400 })
      const to = { address: '10.9.0.11', port: 7400 }
      intruder.send(new Uint8Array([1, 2, 3]), to)
      intruder.send(encodeFrame('dp-1', notice), to)
      intruder.send(encodeFrame('dp-1', notice, key), to)
      await a.send('target-1', notice)
      await clock.advance(5)
      expect(got).to.deep.equal([{ from: 'dp-1', message: notice }])
      expect(b.counters()).to.include({ received: 1, unauthenticated: 2, unknownSender: 1 })
      await a.stop()
      await b.stop()
    })
  })

  describe('constructor', () => {
    it('should refuse a key shorter than 16 bytes', () => {
      const net = new VirtualNetwork({ clock: new VirtualClock() })
      expect(
        () =>
          new UdpClusterLink(
            { network: net.attach('x') },
            { node: 'x', local: { address: '10.0.0.1', port: 1 }, key: new Uint8Array(8) }
          )
      )
        .to.throw()
        .with.property('argument', 'init.key')
    })
  })
})
