import { createRequire } from 'node:module'
import type Koffi from 'koffi'
import { Subject, type Observable } from 'rxjs'
import { InvalidParametersError, VipsecError } from '@vipsec/interface'
import { TcpCoalescer, VNET_HDR_LEN } from './tcp-coalesce.js'

/** Thrown when a TUN device cannot be opened (no `/dev/net/tun`, no `CAP_NET_ADMIN`, a bad name). */
export class TunOpenError extends VipsecError {
  /** The class name, `TunOpenError`, for matching errors by name. */
  static override readonly name = 'TunOpenError'
  /** Always `TunOpenError`. */
  override readonly name = 'TunOpenError'
  override readonly code = 'ERR_TUN_OPEN'
}

/** Options of {@link TunDevice.open}. */
export interface TunDeviceInit {
  /**
   * The interface name, at most 15 bytes; a `%d` in it lets the kernel pick a number. Default
   * `vipsec%d`.
   */
  name?: string
  /**
   * How long one wait for packets lasts, in ms, before the reader looks again: the most that
   * `close()` waits for. Default 100.
   */
  pollMs?: number
  /** At most this many packets are read in one turn of the event loop. Default 256. */
  batch?: number
  /**
   * Userspace GRO: the device is opened with `IFF_VNET_HDR`, packets written in one turn of the
   * event loop go to the kernel together at its end, and consecutive TCP segments of one
   * connection among them as one GSO packet ({@link TcpCoalescer}). Default true.
   */
  gro?: boolean
}

/** Counters of a {@link TunDevice}. */
export interface TunCounters {
  /** Packets read from the kernel. */
  received: number
  /** Packets written to the kernel. */
  sent: number
  /** Writes the kernel refused (the packet is dropped). */
  writeErrors: number
  /** Reads that failed other than with `EAGAIN`. */
  readErrors: number
  /** `write(2)` calls made (fewer than `sent` when segments were coalesced). */
  writes: number
  /** Packets written as part of a coalesced TCP run. */
  coalesced: number
  /** Packets read that the kernel left unfinished (GSO or a partial checksum), dropped. */
  unsupported: number
}

/** A {@link TunCounters} with every count at zero. */
export function zeroTunCounters(): TunCounters {
  return {
    received: 0,
    sent: 0,
    writeErrors: 0,
    readErrors: 0,
    writes: 0,
    coalesced: 0,
    unsupported: 0
  }
}

// Linux constants: <fcntl.h>, <linux/if_tun.h>, <poll.h>, <errno.h>.
const O_RDWR = 2
const O_NONBLOCK = 0o4000
const O_CLOEXEC = 0o2000000
const TUNSETIFF = 0x400454ca
const IFF_TUN = 0x0001
const IFF_NO_PI = 0x1000
const IFF_VNET_HDR = 0x4000
/** Packets queued for one flush at most (then it flushes at once). */
const MAX_QUEUED = 256
const POLLIN = 0x0001
const EAGAIN = 11
const EINTR = 4
const IFNAMSIZ = 16
/** `struct ifreq` is 40 bytes on 64-bit Linux: the name, then a union whose first member is the flags. */
const IFREQ_SIZE = 40
const MAX_PACKET = 65535

/** The few libc calls a TUN device needs, bound once through koffi. */
interface Libc {
  open(path: string, flags: number): number
  close(fd: number): number
  ioctl(fd: number, request: number, arg: Buffer): number
  read(fd: number, buf: Buffer, n: number): number
  write(fd: number, buf: Uint8Array, n: number): number
  /** `poll` on the libuv thread pool: the event loop never waits for packets. */
  pollAsync(fd: number, timeoutMs: number, done: (err: unknown, ready: number) => void): void
  errno(): number
}

let libc: Libc | undefined

/** Loads koffi and binds libc on first use, so that importing this module costs nothing. */
function bindLibc(): Libc {
  if (libc !== undefined) return libc
  const require = createRequire(import.meta.url)
  const koffi = require('koffi') as typeof Koffi
  const lib = koffi.load('libc.so.6')
  koffi.struct('vipsec_pollfd', { fd: 'int', events: 'short', revents: 'short' })
  const poll = lib.func('int poll(_Inout_ vipsec_pollfd *fds, unsigned long nfds, int timeout)')
  const open = lib.func('int open(const char *path, int flags)')
  const close = lib.func('int close(int fd)')
  const ioctl = lib.func('int ioctl(int fd, unsigned long request, void *arg)')
  const read = lib.func('long read(int fd, void *buf, unsigned long count)')
  const write = lib.func('long write(int fd, const void *buf, unsigned long count)')
  libc = {
    open: (path, flags) => open(path, flags) as number,
    close: (fd) => close(fd) as number,
    ioctl: (fd, request, arg) => ioctl(fd, request, arg) as number,
    read: (fd, buf, n) => Number(read(fd, buf, n)),
    write: (fd, buf, n) => Number(write(fd, buf, n)),
    pollAsync: (fd, timeoutMs, done) =>
      poll.async({ fd, events: POLLIN, revents: 0 }, 1, timeoutMs, done),
    errno: () => koffi.errno()
  }
  return libc
}

/**
 * Encodes the `struct ifreq` of `TUNSETIFF` for a layer-3 TUN device without packet information
 * (`IFF_TUN | IFF_NO_PI`): each read and write is one bare IP packet.
 *
 * @param name - the interface name (at most 15 bytes)
 * @throws InvalidParametersError when the name is empty, too long or has a NUL, `/` or space
 */
export function encodeIfreq(name: string, vnetHdr = false): Buffer {
  const bytes = Buffer.from(name, 'utf8')
  if (bytes.length === 0 || bytes.length >= IFNAMSIZ || /[\0/\s]/.test(name))
    throw new InvalidParametersError(
      'name',
      `must be 1 to ${IFNAMSIZ - 1} bytes, no NUL, / or space`
    )
  const ifr = Buffer.alloc(IFREQ_SIZE)
  bytes.copy(ifr)
  ifr.writeUInt16LE(IFF_TUN | IFF_NO_PI | (vnetHdr ? IFF_VNET_HDR : 0), IFNAMSIZ)
  return ifr
}

/**
 * The interface name the kernel wrote back into a `struct ifreq`.
 *
 * @param ifr - the structure after `TUNSETIFF`
 */
export function decodeIfreqName(ifr: Buffer): string {
  const end = ifr.indexOf(0)
  return ifr.toString('utf8', 0, end < 0 || end > IFNAMSIZ ? IFNAMSIZ : end)
}

/**
 * A layer-3 TUN device opened on `/dev/net/tun` in the calling process's network namespace.
 * Reading never blocks the event loop: the file descriptor is non-blocking, a `poll(2)` on
 * the libuv thread pool waits for packets, and each wake-up drains what is queued (up to
 * `batch` packets) on the loop. Writes go to the kernel at the end of the current turn of the
 * event loop, coalesced where they may be (`gro`), or straight away without it (a TUN write
 * does not block).
 * The device exists while it is open; closing it removes it with its addresses and routes.
 */
export class TunDevice {
  /** The interface name the kernel gave it. */
  readonly name: string
  private readonly fd: number
  private readonly lib: Libc
  private readonly pollMs: number
  private readonly batch: number
  private readonly buffer = Buffer.allocUnsafe(VNET_HDR_LEN + MAX_PACKET)
  private readonly packets = new Subject<Uint8Array>()
  private closing = false
  private closed: Promise<void> | undefined
  private pollDone: (() => void) | undefined
  private readonly counts: TunCounters = zeroTunCounters()
  /** With `gro`: the coalescer and the packets waiting for the end of the turn. */
  private readonly coalescer: TcpCoalescer | undefined
  private readonly queue: Uint8Array[] = []
  private queued = 0
  private flushScheduled = false
  private readonly flushTask = (): void => {
    this.flushScheduled = false
    this.flush()
  }
  private readonly writeUnit = (unit: Uint8Array): void => {
    this.counts.writes++
    if (this.lib.write(this.fd, unit, unit.length) !== unit.length) this.counts.writeErrors++
  }

  private constructor(
    lib: Libc,
    fd: number,
    name: string,
    pollMs: number,
    batch: number,
    gro: boolean
  ) {
    this.lib = lib
    this.fd = fd
    this.name = name
    this.pollMs = pollMs
    this.batch = batch
    this.coalescer = gro ? new TcpCoalescer() : undefined
    this.wait()
  }

  /**
   * Opens (creates) a TUN device.
   *
   * @param init - name and reader settings
   * @throws TunOpenError when the kernel refuses
   * @throws InvalidParametersError for a bad name or setting
   */
  static open(init: TunDeviceInit = {}): TunDevice {
    const pollMs = init.pollMs ?? 100
    const batch = init.batch ?? 256
    if (!Number.isInteger(pollMs) || pollMs < 1 || pollMs > 10_000)
      throw new InvalidParametersError('pollMs', 'must be an integer from 1 to 10000')
    if (!Number.isInteger(batch) || batch < 1)
      throw new InvalidParametersError('batch', 'must be a positive integer')
    const gro = init.gro ?? true
    const ifr = encodeIfreq(init.name ?? 'vipsec%d', gro)
    let lib: Libc
    try {
      lib = bindLibc()
    } catch (err) {
      throw new TunOpenError('cannot load koffi to reach libc', { cause: err })
    }
    const fd = lib.open('/dev/net/tun', O_RDWR | O_NONBLOCK | O_CLOEXEC)
    if (fd < 0) throw new TunOpenError(`open /dev/net/tun failed (errno ${lib.errno()})`)
    if (lib.ioctl(fd, TUNSETIFF, ifr) < 0) {
      const errno = lib.errno()
      lib.close(fd)
      throw new TunOpenError(`TUNSETIFF failed (errno ${errno}; CAP_NET_ADMIN is needed)`)
    }
    return new TunDevice(lib, fd, decodeIfreqName(ifr), pollMs, batch, gro)
  }

  /** Packets from the kernel, one whole IP packet each (a copy); completes on `close()`. */
  get packets$(): Observable<Uint8Array> {
    return this.packets.asObservable()
  }

  /** The device's counters (a copy). */
  counters(): TunCounters {
    const c = this.coalescer?.counters()
    return c === undefined ? { ...this.counts } : { ...this.counts, coalesced: c.coalesced }
  }

  /**
   * Hands one IP packet to the kernel, as if it had arrived on this interface.
   *
   * With `gro` the packet is kept (not copied) until the end of the current turn of the event
   * loop: the caller must not change it meanwhile.
   *
   * @param packet - a whole IPv4 or IPv6 packet
   * @returns whether the kernel took it (with `gro`: whether it was queued; a refusal at the
   *   flush is counted in `writeErrors`)
   */
  write(packet: Uint8Array): boolean {
    if (this.closing || packet.length === 0 || packet.length > MAX_PACKET) return false
    if (this.coalescer !== undefined) {
      this.queue[this.queued++] = packet
      this.counts.sent++
      if (this.queued >= MAX_QUEUED) this.flush()
      else if (!this.flushScheduled) {
        this.flushScheduled = true
        queueMicrotask(this.flushTask)
      }
      return true
    }
    this.counts.writes++
    if (this.lib.write(this.fd, packet, packet.length) !== packet.length) {
      this.counts.writeErrors++
      return false
    }
    this.counts.sent++
    return true
  }

  /** Stops reading, closes the descriptor (the kernel removes the device). Idempotent. */
  close(): Promise<void> {
    if (this.closed !== undefined) return this.closed
    this.flush()
    this.closing = true
    // The descriptor is closed only after the pending poll returned, so that the thread pool
    // never polls a number the process may already have reused.
    this.closed = new Promise<void>((resolve) => {
      this.pollDone = () => {
        this.lib.close(this.fd)
        this.packets.complete()
        resolve()
      }
    })
    return this.closed
  }

  /** Writes what is queued, coalesced. */
  private flush(): void {
    const n = this.queued
    if (n === 0 || this.closing) return
    this.queued = 0
    this.coalescer!.flush(this.queue, n, this.writeUnit)
    this.queue.fill(undefined as unknown as Uint8Array, 0, n)
  }

  private wait(): void {
    this.lib.pollAsync(this.fd, this.pollMs, (err, ready) => {
      if (this.closing) return this.pollDone?.()
      // a failing poll or read (the device removed under it) waits a poll interval before the
      // next try, so that it never spins
      const failed = err != null || (ready > 0 && !this.drain())
      if (err != null) this.counts.readErrors++
      if (failed) setTimeout(() => this.wait(), this.pollMs)
      else this.wait()
    })
  }

  /** Reads what is queued; false when a read failed with anything but "nothing left". */
  private drain(): boolean {
    for (let i = 0; i < this.batch && !this.closing; i++) {
      const n = this.lib.read(this.fd, this.buffer, this.buffer.length)
      if (n < 0) {
        const errno = this.lib.errno()
        if (errno === EAGAIN || errno === EINTR) return true
        this.counts.readErrors++
        return false
      }
      if (n === 0) return true
      let start = 0
      if (this.coalescer !== undefined) {
        // the virtio_net_hdr: without offloads asked for (TUNSETOFFLOAD), the kernel hands
        // over whole packets with finished checksums (at most DATA_VALID set); a GSO packet or
        // a partial checksum could not be sent on as is
        if (n <= VNET_HDR_LEN || (this.buffer[0]! & 1) !== 0 || this.buffer[1] !== 0) {
          this.counts.unsupported++
          continue
        }
        start = VNET_HDR_LEN
      }
      this.counts.received++
      this.packets.next(new Uint8Array(this.buffer.subarray(start, n)))
    }
    return true
  }
}
