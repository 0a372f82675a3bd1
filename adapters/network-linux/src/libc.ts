import { createRequire } from 'node:module'
import type Koffi from 'koffi'

/** A libc function bound through koffi. */
type Native = (...args: unknown[]) => unknown

/**
 * The libc functions the route, packet and batched UDP sockets call, bound through koffi:
 * one load of libc, one declaration of each function.
 */
export interface Libc {
  /** koffi itself, for `errno()` and memory outside the JavaScript heap. */
  koffi: typeof Koffi
  socket: Native
  bind: Native
  getsockname: Native
  setsockopt: Native
  send: Native
  sendto: Native
  recv: Native
  recvmmsg: Native
  sendmmsg: Native
  ioctl: Native
  nametoindex: Native
  close: Native
}

/** `errno` values (Linux, x86-64 and arm64 alike) the socket code looks at. */
export const Errno = {
  /** Interrupted system call: retry. */
  EINTR: 4,
  /** Input/output error (for example a GSO send the device refused). */
  EIO: 5,
  /** Bad file descriptor (the socket was closed). */
  EBADF: 9,
  /** Would block: the socket has nothing to read or no room to send. */
  EAGAIN: 11,
  /** Permission denied. */
  EACCES: 13,
  /** File exists (an address already on the device). */
  EEXIST: 17,
  /** No such device. */
  ENODEV: 19,
  /** Invalid argument. */
  EINVAL: 22,
  /** Protocol option not available (no UDP GSO). */
  ENOPROTOOPT: 92,
  /** Operation not supported. */
  EOPNOTSUPP: 95,
  /** Address family not supported (no IPv6 here). */
  EAFNOSUPPORT: 97,
  /** Address already in use. */
  EADDRINUSE: 98,
  /** Address not available on this host. */
  EADDRNOTAVAIL: 99,
  /** No buffer space: the send queue is full. */
  ENOBUFS: 105
} as const

let bound: Libc | null | undefined

/** libc through koffi, bound on first use; undefined where koffi or libc cannot be loaded. */
export function libc(): Libc | undefined {
  if (bound !== undefined) return bound ?? undefined
  try {
    const require = createRequire(import.meta.url)
    const koffi = require('koffi') as typeof Koffi
    const lib = koffi.load('libc.so.6')
    bound = {
      koffi,
      socket: lib.func('int socket(int domain, int type, int protocol)'),
      bind: lib.func('int bind(int fd, const void *addr, uint32_t len)'),
      getsockname: lib.func('int getsockname(int fd, void *addr, void *len)'),
      setsockopt: lib.func('int setsockopt(int fd, int level, int name, void *v, uint32_t l)'),
      send: lib.func('intptr_t send(int fd, const void *buf, uintptr_t len, int flags)'),
      sendto: lib.func(
        'intptr_t sendto(int fd, const void *buf, uintptr_t len, int flags, const void *to, uint32_t tolen)'
      ),
      recv: lib.func('intptr_t recv(int fd, void *buf, uintptr_t len, int flags)'),
      recvmmsg: lib.func('int recvmmsg(int fd, void *vec, unsigned int vlen, int flags, void *t)'),
      sendmmsg: lib.func('int sendmmsg(int fd, void *vec, unsigned int vlen, int flags)'),
      ioctl: lib.func('int ioctl(int fd, unsigned long request, void *arg)'),
      nametoindex: lib.func('unsigned int if_nametoindex(const char *name)'),
      close: lib.func('int close(int fd)')
    }
    return bound
  } catch {
    bound = null
    return undefined
  }
}

/** The index of device `name`, or `-errno` (`ENODEV` when there is none). */
export function ifindex(c: Libc, name: string): number {
  const index = c.nametoindex(name) as number
  return index === 0 ? -(c.koffi.errno() || Errno.ENODEV) : index
}

/** An `int` option value for `setsockopt` (4 bytes, host order). */
export function intOption(value: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeInt32LE(value)
  return b
}
