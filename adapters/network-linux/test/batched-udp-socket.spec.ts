import { expect } from 'chai'
import type { Datagram, Endpoint } from '@vipsec/interface'
import {
  BatchedUdpEndpoint,
  Errno,
  MSG_TRUNC,
  realMmsgSyscalls,
  type MmsgSyscalls,
  type UdpCounters
} from '../src/index.js'

/** The real system calls, with each call counted and any of them replaceable per test. */
function syscalls(): MmsgSyscalls & {
  calls: { recvmmsg: number; sendmmsg: number }
  /** The message count of each sendmmsg call. */
  vlens: number[]
  real: MmsgSyscalls
  recv?: MmsgSyscalls['recvmmsg']
  sendWith?: MmsgSyscalls['sendmmsg']
} {
  const real = realMmsgSyscalls()
  if (real === undefined) throw new Error('koffi cannot load libc here')
  const sys = {
    ...real,
    real,
    calls: { recvmmsg: 0, sendmmsg: 0 },
    vlens: [] as number[],
    recv: undefined as MmsgSyscalls['recvmmsg'] | undefined,
    sendWith: undefined as MmsgSyscalls['sendmmsg'] | undefined,
    recvmmsg(fd: number, vec: bigint, vlen: number): number {
      sys.calls.recvmmsg++
      return (sys.recv ?? real.recvmmsg)(fd, vec, vlen)
    },
    sendmmsg(fd: number, vec: bigint, vlen: number): number {
      sys.calls.sendmmsg++
      sys.vlens.push(vlen)
      return (sys.sendWith ?? real.sendmmsg)(fd, vec, vlen)
    }
  }
  return sys
}

function counting() {
  const counts = {
    sent: 0,
    sendFailed: 0,
    sendQueueFull: 0,
    received: 0,
    receiveTruncated: 0,
    segmentationRefused: 0,
    socketFailed: 0,
    closed: 0
  }
  const counters: UdpCounters = {
    sent: () => void counts.sent++,
    sendFailed: () => void counts.sendFailed++,
    sendQueueFull: () => void counts.sendQueueFull++,
    received: () => void counts.received++,
    receiveTruncated: () => void counts.receiveTruncated++,
    segmentationRefused: () => void counts.segmentationRefused++,
    socketFailed: () => void counts.socketFailed++,
    closed: () => void counts.closed++
  }
  return { counts, counters }
}

/** Collects what an endpoint receives until `count` arrived (or 2 s passed). */
function collect(endpoint: BatchedUdpEndpoint, count: number): Promise<Datagram[]> {
  const got: Datagram[] = []
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      sub.unsubscribe()
      resolve(got)
    }, 2000)
    const sub = endpoint.datagrams$.subscribe((d) => {
      got.push(d)
      if (got.length === count) {
        clearTimeout(timer)
        sub.unsubscribe()
        resolve(got)
      }
    })
  })
}

const payload = (i: number, length = 100): Uint8Array => {
  const b = new Uint8Array(length)
  b.fill(i & 0xff)
  new DataView(b.buffer).setUint32(0, i)
  return b
}
const index = (d: Datagram): number => new DataView(d.data.buffer, d.data.byteOffset).getUint32(0)

describe('BatchedUdpEndpoint', () => {
  const open: BatchedUdpEndpoint[] = []
  afterEach(async () => {
    await Promise.all(open.splice(0).map(async (e) => e.close()))
  })
  async function bind(
    sys: MmsgSyscalls,
    counters: UdpCounters,
    local: Endpoint = { address: '127.0.0.1', port: 0 },
    segmentation = false
  ): Promise<BatchedUdpEndpoint> {
    const e = await BatchedUdpEndpoint.bind(local, counters, {
      sys,
      batch: 8,
      receiveBuffer: 1 << 20,
      segmentation
    })
    open.push(e)
    return e
  }

  it('should send a burst in order with one sendmmsg per batch and receive it with recvmmsg', async () => {
    const sys = syscalls()
    const a = counting()
    const b = counting()
    const from = await bind(sys, a.counters)
    const to = await bind(sys, b.counters)
    const arriving = collect(to, 100)
    for (let i = 0; i < 100; i++) from.send(payload(i, 10 + i), to.local)
    const got = await arriving
    expect(got.map(index)).to.deep.equal([...Array(100).keys()])
    expect(got.map((d) => d.data.length)).to.deep.equal([...Array(100).keys()].map((i) => 10 + i))
    expect(got[0]!.from).to.deep.equal(from.local)
    expect(a.counts.sent).to.equal(100)
    expect(b.counts.received).to.equal(100)
    // 12 full batches of 8 and the last 4 at the end of the turn
    expect(sys.calls.sendmmsg).to.equal(13)
    // libuv reports the first of a burst, recvmmsg takes the rest in batches
    expect(sys.calls.recvmmsg).to.be.below(100)
  })

  it('should read at most its budget per turn of the event loop, and the rest on later turns', async () => {
    const sys = syscalls()
    const from = await bind(sys, counting().counters)
    const to = await bind(sys, counting().counters)
    const arriving = collect(to, 300)
    let received = 0
    const counter = to.datagrams$.subscribe(() => received++)
    // all 300 wait in the kernel before the receiver's first turn
    for (let i = 0; i < 300; i++) from.send(payload(i), to.local)
    await new Promise((resolve) => setImmediate(resolve))
    const firstTurn = received
    const got = await arriving
    counter.unsubscribe()
    // 64 by recvmmsg, and what libuv reads itself around them (at most 32)
    expect(firstTurn).to.be.within(1, 64 + 32)
    expect(got.map(index)).to.deep.equal([...Array(300).keys()])
  })

  it('should give its budget back when a drain empties the queue, without a setImmediate', async () => {
    const sys = syscalls()
    const from = await bind(sys, counting().counters)
    const to = await bind(sys, counting().counters)
    const realSetImmediate = globalThis.setImmediate
    let immediates = 0
    const counted = ((...args: Parameters<typeof setImmediate>) => {
      immediates++
      return realSetImmediate(...args)
    }) as typeof setImmediate
    globalThis.setImmediate = Object.assign(counted, realSetImmediate)
    try {
      // 20 bursts of 5, more than one budget in all, each read to the end; each burst is sent
      // from the callback of the one before, so libuv reads them all in one turn of the loop
      for (let round = 0; round < 20; round++) {
        const before = sys.calls.recvmmsg
        const arriving = collect(to, 5)
        for (let i = 0; i < 5; i++) from.send(payload(round * 5 + i), to.local)
        const got = await arriving
        expect(got.map(index)).to.deep.equal([0, 1, 2, 3, 4].map((i) => round * 5 + i))
        // the burst's tail still comes through recvmmsg: the budget did not run out
        expect(sys.calls.recvmmsg).to.be.above(before)
      }
    } finally {
      globalThis.setImmediate = realSetImmediate
    }
    expect(immediates).to.equal(0)
  })

  it('should keep received datagrams intact after later batches reuse the slots', async () => {
    const sys = syscalls()
    const b = counting()
    const from = await bind(sys, counting().counters)
    const to = await bind(sys, b.counters)
    const arriving = collect(to, 40)
    for (let i = 0; i < 40; i++) from.send(payload(i, 300), to.local)
    const got = await arriving
    for (const [i, d] of got.entries()) {
      expect(index(d)).to.equal(i)
      expect(d.data[299]).to.equal(i & 0xff)
    }
  })

  it('should send what a partial sendmmsg left, and after EAGAIN hand the rest to node:dgram in order', async () => {
    const sys = syscalls()
    const a = counting()
    const from = await bind(sys, a.counters)
    const to = await bind(sys, counting().counters)
    const answers: ((fd: number, vec: bigint, vlen: number) => number)[] = [
      (fd, vec) => sys.real.sendmmsg(fd, vec, 2), // 2 of 5
      () => -Errno.EAGAIN // the kernel's buffer is full
    ]
    sys.sendWith = (fd, vec, vlen) => (answers.shift() ?? sys.real.sendmmsg)(fd, vec, vlen)
    const arriving = collect(to, 7)
    for (let i = 0; i < 5; i++) from.send(payload(i), to.local)
    await new Promise((resolve) => setImmediate(resolve))
    // sent while node:dgram may still hold the rest: behind it
    from.send(payload(5), to.local)
    from.send(payload(6), to.local)
    const got = await arriving
    expect(got.map(index)).to.deep.equal([0, 1, 2, 3, 4, 5, 6])
    expect(a.counts.sent).to.equal(7)
    expect(a.counts.sendFailed).to.equal(0)
  })

  it('should count a datagram the kernel refuses and send the rest of the batch', async () => {
    const sys = syscalls()
    const a = counting()
    const from = await bind(sys, a.counters)
    const to = await bind(sys, counting().counters)
    let first = true
    sys.sendWith = (fd, vec, vlen) => {
      if (!first) return sys.real.sendmmsg(fd, vec, vlen)
      first = false
      return -1 // EPERM: a firewall refused the first one
    }
    const arriving = collect(to, 2)
    for (let i = 0; i < 3; i++) from.send(payload(i), to.local)
    const got = await arriving
    expect(got.map(index)).to.deep.equal([1, 2])
    expect(a.counts.sendFailed).to.equal(1)
    expect(a.counts.sent).to.equal(2)
  })

  it('should count a destination of the other family as a failed send, not throw', async () => {
    const a = counting()
    const from = await bind(syscalls(), a.counters)
    from.send(payload(0), { address: '::1', port: 9 })
    from.send(payload(0), { address: 'not an address', port: 9 })
    from.send(payload(0), { address: '127.0.0.1', port: 0 })
    expect(a.counts.sendFailed).to.equal(3)
  })

  it('should drop a truncated datagram and count it, delivering the others', async () => {
    const sys = syscalls()
    const b = counting()
    const from = await bind(sys, counting().counters)
    const to = await bind(sys, b.counters)
    sys.recv = (fd, vec, vlen) => {
      const n = sys.real.recvmmsg(fd, vec, vlen)
      // mark the first of the batch as cut short, as the kernel would (msg_flags)
      if (n > 0) {
        const view = new DataView((to as unknown as { rx: { bytes: Uint8Array } }).rx.bytes.buffer)
        view.setInt32(48, MSG_TRUNC, true)
      }
      return n
    }
    const arriving = collect(to, 4)
    for (let i = 0; i < 5; i++) from.send(payload(i), to.local)
    const got = await arriving
    expect(got.map(index)).to.deep.equal([0, 2, 3, 4])
    expect(b.counts.receiveTruncated).to.equal(1)
    expect(b.counts.received).to.equal(4)
  })

  it('should stop at EAGAIN and count any other receive error', async () => {
    const sys = syscalls()
    const b = counting()
    const from = await bind(sys, counting().counters)
    const to = await bind(sys, b.counters)
    sys.recv = () => -Errno.EAGAIN
    const one = collect(to, 1)
    from.send(payload(0), to.local)
    expect((await one).map(index)).to.deep.equal([0])
    expect(b.counts.socketFailed).to.equal(0)
    sys.recv = () => -Errno.ENOBUFS
    const two = collect(to, 1)
    from.send(payload(1), to.local)
    expect((await two).map(index)).to.deep.equal([1])
    expect(b.counts.socketFailed).to.equal(1)
  })

  it('should send what is queued when closed, then nothing', async () => {
    const sys = syscalls()
    const a = counting()
    const from = await BatchedUdpEndpoint.bind({ address: '127.0.0.1', port: 0 }, a.counters, {
      sys
    })
    const to = await bind(sys, counting().counters)
    const arriving = collect(to, 2)
    from.send(payload(0), to.local)
    from.send(payload(1), to.local)
    await from.close()
    from.send(payload(2), to.local)
    expect((await arriving).map(index)).to.deep.equal([0, 1])
    expect(a.counts.sent).to.equal(2)
    expect(a.counts.closed).to.equal(1)
  })

  it('should work over IPv6 and report the sender', async () => {
    const sys = syscalls()
    const from = await bind(sys, counting().counters, { address: '::1', port: 0 })
    const to = await bind(sys, counting().counters, { address: '::1', port: 0 })
    const arriving = collect(to, 20)
    for (let i = 0; i < 20; i++) from.send(payload(i), to.local)
    const got = await arriving
    expect(got.map(index)).to.deep.equal([...Array(20).keys()])
    expect(got[5]!.from).to.deep.equal({ address: '::1', port: from.local.port })
  })

  it('should refuse a port in use, naming local.port', async () => {
    const sys = syscalls()
    const first = await bind(sys, counting().counters)
    const err = await BatchedUdpEndpoint.bind(first.local, counting().counters, { sys }).then(
      () => undefined,
      (e: Error) => e
    )
    expect(err?.name).to.equal('InvalidParametersError')
    expect(err?.message).to.contain('local.port')
  })

  describe('with segmentation offload (UDP_SEGMENT)', () => {
    it('should send a run of same-length datagrams as one message, received one by one', async () => {
      const sys = syscalls()
      const a = counting()
      const b = counting()
      const from = await bind(sys, a.counters, undefined, true)
      const to = await bind(sys, b.counters)
      const arriving = collect(to, 40)
      for (let i = 0; i < 40; i++) from.send(payload(i, 1200), to.local)
      const got = await arriving
      expect(got.map(index)).to.deep.equal([...Array(40).keys()])
      expect(got.every((d) => d.data.length === 1200 && d.data[1199] === index(d) % 256)).to.equal(
        true
      )
      // five full batches of 8, each one message
      expect(sys.vlens).to.deep.equal([1, 1, 1, 1, 1])
      expect(a.counts.sent).to.equal(40)
      expect(a.counts.segmentationRefused).to.equal(0)
    })

    it('should end a run at a longer datagram or another destination, keeping the order', async () => {
      const sys = syscalls()
      const from = await bind(sys, counting().counters, undefined, true)
      const to = await bind(sys, counting().counters)
      const other = await bind(sys, counting().counters)
      const arriving = collect(to, 6)
      const elsewhere = collect(other, 1)
      const lengths = [100, 100, 60, 100, 100, 200]
      for (const [i, length] of lengths.entries()) from.send(payload(i, length), to.local)
      from.send(payload(6, 100), other.local)
      const got = await arriving
      expect(got.map(index)).to.deep.equal([0, 1, 2, 3, 4, 5])
      expect(got.map((d) => d.data.length)).to.deep.equal(lengths)
      expect((await elsewhere).map(index)).to.deep.equal([6])
      // [100 100 60] [100 100] [200] [100 to the other]: 4 messages in one call
      expect(sys.vlens).to.deep.equal([4])
    })

    it('should send a refused run one by one and count it', async () => {
      const sys = syscalls()
      const a = counting()
      const from = await bind(sys, a.counters, undefined, true)
      const to = await bind(sys, counting().counters)
      let refuse = true
      sys.sendWith = (fd, vec, vlen) => {
        if (!refuse) return sys.real.sendmmsg(fd, vec, vlen)
        refuse = false
        return -Errno.EINVAL // a segment longer than the path MTU
      }
      const arriving = collect(to, 4)
      for (let i = 0; i < 4; i++) from.send(payload(i, 500), to.local)
      expect((await arriving).map(index)).to.deep.equal([0, 1, 2, 3])
      expect(a.counts.segmentationRefused).to.equal(1)
      expect(a.counts.sent).to.equal(4)
      expect(sys.vlens).to.deep.equal([1, 4])
    })

    it('should not segment that length again once refused with EINVAL, and segment shorter ones', async () => {
      const sys = syscalls()
      const a = counting()
      const from = await bind(sys, a.counters, undefined, true)
      const to = await bind(sys, counting().counters)
      let refusals = 0
      let length = 0
      sys.sendWith = (fd, vec, vlen) => {
        // a path that takes 400-byte segments but not 500: one message for three datagrams is
        // a segmented one, refused at 500 bytes and more
        if (vlen === 1 && length >= 500) {
          refusals++
          return -Errno.EINVAL
        }
        return sys.real.sendmmsg(fd, vec, vlen)
      }
      for (length of [500, 500, 600, 400]) {
        const arriving = collect(to, 3)
        for (let i = 0; i < 3; i++) from.send(payload(i, length), to.local)
        expect((await arriving).map((d) => d.data.length)).to.deep.equal([length, length, length])
      }
      // 500: refused once, then one by one; 600 (longer) one by one; 400 segmented again
      expect(refusals).to.equal(1)
      expect(a.counts.segmentationRefused).to.equal(1)
      expect(sys.vlens).to.deep.equal([1, 3, 3, 3, 1])
    })

    it('should turn itself off where the device cannot segment (EIO)', async () => {
      const sys = syscalls()
      const a = counting()
      const from = await bind(sys, a.counters, undefined, true)
      const to = await bind(sys, counting().counters)
      let refuse = true
      sys.sendWith = (fd, vec, vlen) => {
        if (!refuse) return sys.real.sendmmsg(fd, vec, vlen)
        refuse = false
        return -Errno.EIO
      }
      const first = collect(to, 3)
      for (let i = 0; i < 3; i++) from.send(payload(i, 500), to.local)
      expect((await first).map(index)).to.deep.equal([0, 1, 2])
      const second = collect(to, 3)
      for (let i = 3; i < 6; i++) from.send(payload(i, 500), to.local)
      expect((await second).map(index)).to.deep.equal([3, 4, 5])
      // the refused run, then those 3 one by one, then the next 3 without segmentation
      expect(sys.vlens).to.deep.equal([1, 3, 3])
      expect(a.counts.segmentationRefused).to.equal(1)
    })
  })
})
