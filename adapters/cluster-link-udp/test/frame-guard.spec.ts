import { expect } from 'chai'
import {
  FrameGuard,
  generateClusterKey,
  nextIncarnation,
  parseFrameHeader,
  type ClusterKey
} from '../src/index.js'

const MAGIC = [0x56, 0x58] as const
const keyA = generateClusterKey(1)
const keyB = generateClusterKey(2)
const text = new TextEncoder()
const identity = (p: Uint8Array): Uint8Array => p

function guard(keys: ClusterKey[] = [keyA], windowSize = 64): FrameGuard {
  return new FrameGuard({ magic: MAGIC, purpose: 'test', keys, windowSize })
}

/** Opens `frame` at `receiver`: the payload as text, or the drop reason. */
function open(receiver: FrameGuard, frame: Uint8Array): string {
  const header = parseFrameHeader(frame, MAGIC)
  if (header === 'malformed') return header
  const result = receiver.open(frame, header, identity)
  return typeof result === 'string' ? result : `ok:${new TextDecoder().decode(result)}`
}

describe('FrameGuard', () => {
  let sender: FrameGuard
  let receiver: FrameGuard

  beforeEach(() => {
    sender = guard()
    sender.startSending('dp-1', 1000)
    receiver = guard()
  })

  describe('when a frame is forged', () => {
    it('should refuse any changed bit of an authenticated frame, and then still take the real one', () => {
      const frame = sender.seal(text.encode('ownership 999'))
      for (let i = 0; i < frame.length; i++) {
        const copy = new Uint8Array(frame)
        copy[i]! ^= 0x40
        expect(open(receiver, copy), `bit flipped in byte ${i}`).to.be.oneOf([
          'malformed',
          'unauthenticated',
          'unknown-key',
          'unknown-sender'
        ])
      }
      expect(open(receiver, frame)).to.equal('ok:ownership 999')
    })

    it('should refuse a frame made with another secret under the same key id', () => {
      const forger = guard([{ id: keyA.id, secret: new Uint8Array(32).fill(9) }])
      forger.startSending('dp-1', 2 ** 52)
      expect(open(receiver, forger.seal(text.encode('x')))).to.equal('unauthenticated')
    })

    it('should not let a forged frame with a huge incarnation silence the real sender', () => {
      const forger = guard([{ id: keyA.id, secret: new Uint8Array(32).fill(9) }])
      forger.startSending('dp-1', Number.MAX_SAFE_INTEGER)
      expect(open(receiver, sender.seal(text.encode('a')))).to.equal('ok:a')
      expect(open(receiver, forger.seal(text.encode('evil')))).to.equal('unauthenticated')
      expect(open(receiver, sender.seal(text.encode('b')))).to.equal('ok:b')
    })

    it('should keep the real sender’s key through a flood of forgeries naming other incarnations', () => {
      // each forgery makes the receiver derive a key for its incarnation; only an authenticated
      // frame may replace the kept one, and the keys not kept are freed, not the kept one
      const forger = guard([{ id: keyA.id, secret: new Uint8Array(32).fill(9) }])
      const encrypted = (g: FrameGuard, s: string): Uint8Array =>
        g.sealWith(s.length, (out, at, v: string) => out.set(text.encode(v), at), s, true)
      for (let i = 0; i < 300; i++) {
        forger.startSending('dp-1', 1001 + i)
        expect(open(receiver, forger.seal(text.encode('evil')))).to.equal('unauthenticated')
        expect(open(receiver, encrypted(forger, 'evil'))).to.equal('unauthenticated')
        expect(
          open(
            receiver,
            i % 3 === 0 ? encrypted(sender, `m${i}`) : sender.seal(text.encode(`m${i}`))
          )
        ).to.equal(`ok:m${i}`)
      }
      // and the sender's next incarnation replaces it
      sender.startSending('dp-1', 5000)
      expect(open(receiver, encrypted(sender, 'new'))).to.equal('ok:new')
      expect(open(receiver, encrypted(sender, 'again'))).to.equal('ok:again')
    })

    it('should refuse an unauthenticated (insecure) frame at a node with keys', () => {
      const insecure = guard([])
      insecure.startSending('dp-1', 5)
      expect(open(receiver, insecure.seal(text.encode('x')))).to.equal('unknown-key')
    })
  })

  describe('when a frame is replayed', () => {
    it('should take each frame once', () => {
      const frames = [0, 1, 2].map((i) => sender.seal(text.encode(`m${i}`)))
      expect(frames.map((f) => open(receiver, f))).to.deep.equal(['ok:m0', 'ok:m1', 'ok:m2'])
      expect(frames.map((f) => open(receiver, f))).to.deep.equal([
        'replayed',
        'replayed',
        'replayed'
      ])
    })
  })

  describe('when frames are reordered', () => {
    it('should take late frames inside the window and refuse those below it as too-old', () => {
      const frames = Array.from({ length: 100 }, (_, i) => sender.seal(text.encode(`m${i}`)))
      expect(open(receiver, frames[99]!)).to.equal('ok:m99')
      expect(open(receiver, frames[36]!)).to.equal('ok:m36') // 99 - 36 < 64
      expect(open(receiver, frames[35]!)).to.equal('too-old')
      expect(open(receiver, frames[36]!)).to.equal('replayed')
    })
  })

  describe('when the sender restarts', () => {
    it('should take its new incarnation and refuse frames of the old one', () => {
      const old = [0, 1, 2].map((i) => sender.seal(text.encode(`old${i}`)))
      expect(open(receiver, old[0]!)).to.equal('ok:old0')
      const restarted = guard()
      restarted.startSending('dp-1', nextIncarnation(Date.now(), 1000, 0))
      expect(open(receiver, restarted.seal(text.encode('new0')))).to.equal('ok:new0')
      // the old run's frames, never seen or seen, are refused now
      expect(open(receiver, old[1]!)).to.equal('stale-incarnation')
      expect(open(receiver, old[0]!)).to.equal('stale-incarnation')
      expect(open(receiver, restarted.seal(text.encode('new1')))).to.equal('ok:new1')
    })
  })

  describe('when keys rotate', () => {
    it('should accept frames under either of two keys, and refuse an unknown key id', () => {
      const both = guard([keyB, keyA])
      both.startSending('dp-2', 7)
      expect(open(receiver, both.seal(text.encode('under B')))).to.equal('unknown-key')
      receiver.setKeys([keyA, keyB])
      expect(open(receiver, both.seal(text.encode('under B')))).to.equal('ok:under B')
      expect(open(receiver, sender.seal(text.encode('under A')))).to.equal('ok:under A')
      receiver.setKeys([keyB])
      expect(open(receiver, sender.seal(text.encode('late A')))).to.equal('unknown-key')
      expect(parseFrameHeader(both.seal(new Uint8Array()), MAGIC)).to.include({ keyId: 2 })
    })
  })

  describe('when the payload is encrypted', () => {
    it('should not carry it in clear, and open it at the receiver', () => {
      const secret = 'the cleartext of an IPsec packet'
      const frame = sender.seal(text.encode(secret), true)
      expect(Buffer.from(frame).includes(Buffer.from(secret))).to.equal(false)
      expect(Buffer.from(sender.seal(text.encode(secret))).includes(Buffer.from(secret))).to.equal(
        true
      )
      expect(open(receiver, frame)).to.equal(`ok:${secret}`)
    })
  })

  describe('.seal', () => {
    it('should use a new counter for every frame, so that no nonce repeats under a key', () => {
      const counters = Array.from({ length: 50 }, () => {
        const h = parseFrameHeader(sender.seal(new Uint8Array(4)), MAGIC)
        return h === 'malformed' ? -1 : h.counter
      })
      expect(new Set(counters).size).to.equal(50)
      expect(counters[0]).to.equal(0)
    })
  })

  describe('in insecure mode', () => {
    it('should pass frames without a tag, still once each, and refuse authenticated ones', () => {
      const a = guard([])
      const b = guard([])
      a.startSending('dp-1', 1)
      const frame = a.seal(text.encode('plain'))
      expect(open(b, frame)).to.equal('ok:plain')
      expect(open(b, frame)).to.equal('replayed')
      expect(open(b, sender.seal(text.encode('tagged')))).to.equal('unknown-key')
    })

    it('should not let an untagged frame with a huge incarnation silence the sender', () => {
      const a = guard([])
      const b = guard([])
      const forger = guard([])
      a.startSending('dp-1', 1)
      forger.startSending('dp-1', Number.MAX_SAFE_INTEGER)
      expect(open(b, a.seal(text.encode('one')))).to.equal('ok:one')
      expect(open(b, forger.seal(text.encode('forged')))).to.equal('ok:forged')
      expect(open(b, a.seal(text.encode('two')))).to.equal('ok:two')
    })
  })

  describe('nextIncarnation', () => {
    it('should grow with the clock and always pass the previous one', () => {
      expect(nextIncarnation(2000, -1, 5)).to.equal(2000 * 1024 + 5)
      expect(nextIncarnation(1000, 2000 * 1024 + 5, 5)).to.equal(2000 * 1024 + 6)
      expect(nextIncarnation(3000, 2000 * 1024, 0)).to.be.greaterThan(2000 * 1024)
    })
  })
})
