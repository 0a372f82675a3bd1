import { expect } from 'chai'
import { libc, type Libc } from '../src/libc.js'
import { mmsgSyscalls, realMmsgSyscalls } from '../src/mmsg.js'

/** An argument as the fake records it: an option's value, a buffer's length, the rest as is. */
const shown = (a: unknown): string =>
  Buffer.isBuffer(a)
    ? String(a.readInt32LE())
    : a instanceof Uint8Array
      ? `<${a.length}>`
      : String(a)

/** A libc binding in memory: the calls it took, scripted answers, the errno they left. */
function fakeLibc(answers: Partial<Record<keyof Libc, number>>, errno: number) {
  const calls: string[] = []
  const fn =
    (name: keyof Libc) =>
    (...args: unknown[]): number => {
      calls.push(`${name} ${args.map(shown).join(' ')}`)
      return answers[name] ?? 0
    }
  const names = ['socket', 'bind', 'getsockname', 'setsockopt', 'recvmmsg', 'sendmmsg', 'close']
  const c = Object.fromEntries(names.map((n) => [n, fn(n as keyof Libc)])) as unknown as Libc
  c.koffi = { errno: () => errno } as unknown as Libc['koffi']
  return { c, calls }
}

// <sys/socket.h> values as the calls take them
const SOCK = 2 | 0o4000 | 0o2000000 // SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC

describe('mmsgSyscalls', () => {
  describe('bindSocket', () => {
    it('should make an IPv6-only socket with the forced receive buffer and bind it, through the shared libc binding', () => {
      const { c, calls } = fakeLibc({ socket: 7 }, 0)
      const sockaddr = new Uint8Array(28)
      expect(mmsgSyscalls(c).bindSocket(6, sockaddr, 4096)).to.equal(7)
      expect(calls).to.deep.equal([
        `socket 10 ${SOCK} 0`,
        'setsockopt 7 41 26 1 4', // IPPROTO_IPV6, IPV6_V6ONLY
        'setsockopt 7 1 33 4096 4', // SOL_SOCKET, SO_RCVBUFFORCE
        'bind 7 <28> 28'
      ])
    })

    it('should fall back to SO_RCVBUF where SO_RCVBUFFORCE is refused, and leave the buffer alone for 0', () => {
      const { c, calls } = fakeLibc({ socket: 7, setsockopt: -1 }, 1)
      mmsgSyscalls(c).bindSocket(4, new Uint8Array(16), 4096)
      expect(calls.filter((l) => l.startsWith('setsockopt'))).to.deep.equal([
        'setsockopt 7 1 33 4096 4',
        'setsockopt 7 1 8 4096 4' // SO_RCVBUF
      ])
      calls.length = 0
      mmsgSyscalls(c).bindSocket(4, new Uint8Array(16), 0)
      expect(calls.filter((l) => l.startsWith('setsockopt'))).to.deep.equal([])
    })

    it('should close the socket and give -errno when the bind fails', () => {
      const { c, calls } = fakeLibc({ socket: 7, bind: -1 }, 98)
      expect(mmsgSyscalls(c).bindSocket(4, new Uint8Array(16), 0)).to.equal(-98)
      expect(calls.at(-1)).to.equal('close 7')
    })

    it('should give -errno when no socket can be made', () => {
      const { c, calls } = fakeLibc({ socket: -1 }, 97)
      expect(mmsgSyscalls(c).bindSocket(6, new Uint8Array(28), 0)).to.equal(-97)
      expect(calls).to.deep.equal([`socket 10 ${SOCK} 0`])
    })
  })

  describe('recvmmsg and sendmmsg', () => {
    it('should not block, and give the count or -errno', () => {
      const { c, calls } = fakeLibc({ recvmmsg: 3, sendmmsg: -1 }, 11)
      const sys = mmsgSyscalls(c)
      expect(sys.recvmmsg(7, 4096n, 32)).to.equal(3)
      expect(sys.sendmmsg(7, 8192n, 32)).to.equal(-11)
      // MSG_DONTWAIT, and no timeout
      expect(calls).to.deep.equal(['recvmmsg 7 4096 32 64 null', 'sendmmsg 7 8192 32 64'])
    })
  })

  describe('realMmsgSyscalls', () => {
    it('should be bound once, and make a socket that binds on loopback', () => {
      const c = libc()
      if (c === undefined) throw new Error('koffi cannot load libc here')
      const sys = realMmsgSyscalls()
      expect(sys).to.not.equal(undefined)
      expect(realMmsgSyscalls()).to.equal(sys)
      const fd = sys!.bindSocket(
        4,
        new Uint8Array([2, 0, 0, 0, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
        0
      )
      expect(fd).to.be.at.least(0)
      expect(sys!.localPort(fd)).to.be.above(0)
      sys!.close(fd)
    })
  })
})
