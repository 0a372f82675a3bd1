import { isIP } from 'node:net'
import { constants as osConstants } from 'node:os'
import { Subject, type Observable } from 'rxjs'
import {
  InvalidConfigError,
  InvalidParametersError,
  NetworkCommandError,
  NotStartedError,
  throwIfAborted,
  type AbortOptions,
  type Endpoint,
  type NetworkAdapter,
  type NetworkEvent,
  type UdpEndpoint
} from '@vipsec/interface'
import { parseIp } from '@vipsec/wire'
import { ExecFileCommandRunner, type CommandResult, type CommandRunner } from './command-runner.js'
import { TapDeviceHolder, type DeviceHolder, type HeldDevice } from './device-holder.js'
import { DgramUdpEndpoint, type UdpCounters } from './udp-socket.js'
import { BatchedUdpEndpoint } from './batched-udp-socket.js'
import { realMmsgSyscalls, type MmsgSyscalls } from './mmsg.js'
import { NetlinkErrno, openNetlinkRoute, type NetlinkRoute } from './netlink.js'
import { gratuitousArp, neighbourAdvertisement, openArpSocket, type ArpSocket } from './arp.js'
import { LazySocket } from './lazy-socket.js'
import { Errno } from './libc.js'

/** What a {@link LinuxNetworkAdapter} needs. */
export interface LinuxNetworkAdapterComponents {
  /** Runs `ip` and `arping`. Default: {@link ExecFileCommandRunner}. */
  commands?: CommandRunner
  /** Holds the devices of `holdAddresses: 'process'`. Default: {@link TapDeviceHolder}. */
  devices?: DeviceHolder
  /** The system calls of batched UDP sockets. Default: libc through koffi. */
  mmsg?: MmsgSyscalls
  /**
   * Adds and removes addresses and brings devices up with rtnetlink requests from this process
   * instead of running `ip` for each (the same requests, without a program started on a
   * takeover's path). Default: a route socket through koffi when `commands` is the default
   * runner (a runner of the caller's own means it wants the commands), none where koffi cannot
   * load; `null`: always `ip`.
   */
  netlink?: NetlinkRoute | null
  /**
   * Sends gratuitous ARP from a packet socket of this process instead of running `arping` for
   * each packet (the same packets; the first goes out at once). Default: a socket through koffi
   * when `commands` is the default runner, none where koffi or the socket cannot be had (no
   * `CAP_NET_RAW`); `null`: always `arping`.
   */
  arp?: ArpSocket | null
  /**
   * Waits `ms` between the packets of a gratuitous ARP (resolves early when `signal` aborts).
   * Default: a timer of this process.
   */
  wait?: (ms: number, signal: AbortSignal) => Promise<void>
}

/** How the adapter announces an IPv4 address it acquired (gratuitous ARP with iputils `arping`). */
export interface GratuitousArpInit {
  /** Whether to announce at all. Default true. */
  enabled?: boolean
  /** The `arping` program of iputils (Debian `iputils-arping`). Default `arping`. */
  path?: string
  /**
   * How many ARP packets to send, one per `intervalSeconds`, each by an `arping -c 1` of its
   * own started from this process's timer (so that none is sent after this process died).
   * Default 3.
   */
  count?: number
  /** Whole seconds between packets. Default 1. */
  intervalSeconds?: number
  /**
   * `request`: unsolicited ARP requests (`arping -U`); `reply`: unsolicited ARP replies
   * (`arping -A`). Default `request`, which every Linux neighbour accepts.
   */
  mode?: 'request' | 'reply'
}

/** Options of a {@link LinuxNetworkAdapter}. */
export interface LinuxNetworkAdapterInit {
  /** The device the DVIPA is added to, e.g. `eth0`. Required. */
  interface: string
  /**
   * The prefix length the address is added with. Default 32 for IPv4 and 128 for IPv6 (a host
   * address that adds no subnet route: the interface's own address brings the route).
   */
  prefixLength?: number
  /** The `ip` program of iproute2. Default `ip`. */
  ipPath?: string
  /**
   * Gratuitous ARP after an IPv4 address is added, and its IPv6 sibling, unsolicited neighbour
   * advertisements, after an IPv6 address is added without DAD (from a socket of this process
   * only: `arping` knows no IPv6). Defaults: see {@link GratuitousArpInit}.
   */
  gratuitousArp?: GratuitousArpInit
  /**
   * IPv6 only. `false`: the address is added with `nodad`, usable at once, and announced with
   * unsolicited neighbour advertisements (see {@link gratuitousArp}). `true`: the kernel runs duplicate address detection and `acquireAddress` waits for it
   * (at most `dadTimeoutMs`); when DAD completes, a kernel whose interface has the sysctl
   * `net.ipv6.conf.IF.ndisc_notify = 1` sends an unsolicited neighbour advertisement (the IPv6
   * gratuitous ARP, without a raw socket here), and a DAD that fails (another node answers for
   * the address) removes it again and throws. Default false.
   */
  ipv6Dad?: boolean
  /** How long `acquireAddress` waits for IPv6 duplicate address detection. Default 5000 ms. */
  dadTimeoutMs?: number
  /**
   * Where an acquired address is put:
   * - `interface`: on `interface` itself (`ip addr add A dev IF`); it stays there if this
   *   process dies, and the host keeps answering ARP for it until someone removes it;
   * - `process`: on a TAP device of its own that exists only while this process lives (a
   *   non-persistent TAP held open by a helper that the kernel kills with this process, see
   *   {@link TapDeviceHolder}); when this process dies, even by `kill -9`, the device and the
   *   address go with it and the host stops answering for it. Traffic still arrives on
   *   `interface` (Linux answers ARP and accepts packets for any local address), and the
   *   gratuitous ARP still goes out on `interface`. {@link LinuxNetworkAdapter.prepareAddress}
   *   makes the device ahead of time, so that acquiring only adds the address.
   *
   * Default `interface`.
   */
  holdAddresses?: 'interface' | 'process'
  /** The name prefix of the devices of `holdAddresses: 'process'`. Default `vs` and the pid. */
  devicePrefix?: string
  /**
   * Datagrams a UDP socket moves per system call (`recvmmsg`/`sendmmsg` through koffi, see
   * {@link BatchedUdpEndpoint}); 1 keeps plain `node:dgram` sockets, as does a host where koffi
   * cannot load. Default 32.
   */
  udpBatch?: number
  /**
   * The kernel receive buffer of each batched UDP socket, in bytes: a burst that arrives while
   * the event loop is busy (garbage collection, a long turn) waits there instead of being
   * dropped. `SO_RCVBUFFORCE` (`CAP_NET_ADMIN`), else `SO_RCVBUF` up to `net.core.rmem_max`; 0
   * keeps the system's default. Default 4 MiB.
   */
  udpReceiveBuffer?: number
}

/** Counters of a {@link LinuxNetworkAdapter}, since it was made. */
export interface LinuxNetworkStats {
  /** `ip` commands that failed (acquire and release errors). */
  commandFailures: number
  /** Gratuitous ARP announcements (every packet of one) that completed. */
  announcements: number
  /** Gratuitous ARP announcements that failed (not fatal: the address is held all the same). */
  announcementFailures: number
  /** Datagrams handed to the kernel. */
  datagramsSent: number
  /** Datagrams that could not be sent (counted, never thrown). */
  sendErrors: number
  /** Datagrams dropped because their socket's send queue was full (overload). */
  sendQueueFull: number
  /** Datagrams received. */
  datagramsReceived: number
  /** Datagrams dropped on receipt because they were longer than the receive buffer. */
  receiveTruncated: number
  /** Segmented sends (`UDP_SEGMENT`) the kernel refused; their datagrams went one by one. */
  segmentationRefused: number
  /** Errors a socket reported outside a send. */
  socketErrors: number
  /** UDP sockets open now. */
  openSockets: number
}

/** How an announcement of an acquired address ended. */
export type AnnouncementEvent =
  | {
      /** The gratuitous ARP run completed. */
      type: 'announce:sent'
      /** The address announced. */
      address: string
    }
  | {
      /** The gratuitous ARP run failed; the address is held all the same. */
      type: 'announce:failed'
      /** The address that was to be announced. */
      address: string
      /** What went wrong. */
      error: string
    }

const WILDCARDS = new Set(['0.0.0.0', '::'])
/** How often `ip addr show` is asked whether DAD has completed. */
const DAD_POLL_MS = 50
/** What `ip addr add` prints for an address already on the device (new and old iproute2). */
const ALREADY_THERE = /already assigned|File exists/i
/** What `ip addr del` prints for an address not on the device (new and old iproute2). */
const NOT_THERE = /address not found|Cannot assign requested address/i

/** The name of `-errno` (`EPERM`), or its number. */
function errnoName(outcome: number): string {
  const name = Object.entries(osConstants.errno).find(([, n]) => n === -outcome)?.[0]
  return name ?? `errno ${-outcome}`
}

/**
 * The Linux network adapter: acquiring the DVIPA adds it to an interface as `ip addr add` does
 * (the same rtnetlink request, sent from this process; see
 * {@link LinuxNetworkAdapterComponents.netlink}) and announces it with a gratuitous ARP (iputils
 * `arping -U`), releasing it removes it as `ip addr del` does, and UDP endpoints are sockets bound to an address and port that move several
 * datagrams per system call ({@link BatchedUdpEndpoint}; `node:dgram` alone with `udpBatch: 1`).
 *
 * `stop()` closes every socket it opened and completes `events$`; like a crash, it leaves the
 * addresses on the interface (release them first for a clean hand-over).
 */
export class LinuxNetworkAdapter implements NetworkAdapter {
  private readonly commands: CommandRunner
  private readonly wait: (ms: number, signal: AbortSignal) => Promise<void>
  private readonly device: string
  private readonly prefixLength: number | undefined
  private readonly ipPath: string
  private readonly arp: Required<GratuitousArpInit>
  private readonly ipv6Dad: boolean
  private readonly dadTimeoutMs: number
  private readonly holding: 'interface' | 'process'
  private readonly devicePrefix: string
  private readonly devices: DeviceHolder
  private readonly heldDevices = new Map<string, HeldDevice>()
  private readonly makingDevices = new Map<string, Promise<HeldDevice>>()
  private nextDevice = 0
  /** The route socket of {@link LinuxNetworkAdapterComponents.netlink}; none: `ip`. */
  private readonly netlink: LazySocket<NetlinkRoute>
  /** The packet socket of {@link LinuxNetworkAdapterComponents.arp}; none: `arping`. */
  private readonly arpSocket: LazySocket<ArpSocket>
  private events = new Subject<NetworkEvent>()
  private announcementSubject = new Subject<AnnouncementEvent>()
  private started = false
  private readonly held = new Set<string>()
  private readonly sockets = new Set<UdpEndpoint>()
  private readonly udpBatch: number
  private readonly udpReceiveBuffer: number
  private readonly mmsg: MmsgSyscalls | undefined
  private readonly pendingAnnouncements = new Map<
    AbortController,
    { address: string; done: Promise<void> }
  >()
  private readonly counters: Omit<LinuxNetworkStats, 'openSockets'> = {
    commandFailures: 0,
    announcements: 0,
    announcementFailures: 0,
    datagramsSent: 0,
    sendErrors: 0,
    sendQueueFull: 0,
    datagramsReceived: 0,
    receiveTruncated: 0,
    segmentationRefused: 0,
    socketErrors: 0
  }
  private readonly udpCounters: UdpCounters = {
    sent: () => void this.counters.datagramsSent++,
    sendFailed: () => void this.counters.sendErrors++,
    sendQueueFull: () => void this.counters.sendQueueFull++,
    received: () => void this.counters.datagramsReceived++,
    receiveTruncated: () => void this.counters.receiveTruncated++,
    segmentationRefused: () => void this.counters.segmentationRefused++,
    socketFailed: () => void this.counters.socketErrors++,
    closed: (endpoint) => void this.sockets.delete(endpoint)
  }

  /**
   * @param components - the command runner
   * @param init - the interface and options
   * @throws InvalidConfigError when an option is out of range
   */
  constructor(components: LinuxNetworkAdapterComponents, init: LinuxNetworkAdapterInit) {
    this.commands = components.commands ?? new ExecFileCommandRunner()
    this.wait = components.wait ?? abortableDelay
    this.devices = components.devices ?? new TapDeviceHolder()
    this.holding = init.holdAddresses ?? 'interface'
    if (this.holding !== 'interface' && this.holding !== 'process') {
      throw new InvalidConfigError('holdAddresses', "must be 'interface' or 'process'")
    }
    this.devicePrefix = init.devicePrefix ?? `vs${process.pid}x`
    if (!/^[^\s/]{1,12}$/.test(this.devicePrefix)) {
      throw new InvalidConfigError('devicePrefix', 'must be a name of 1 to 12 characters')
    }
    if (typeof init.interface !== 'string' || !/^[^\s/]{1,15}$/.test(init.interface)) {
      throw new InvalidConfigError('interface', 'must be a device name of 1 to 15 characters')
    }
    this.device = init.interface
    if (
      init.prefixLength !== undefined &&
      !(Number.isInteger(init.prefixLength) && init.prefixLength >= 0 && init.prefixLength <= 128)
    ) {
      throw new InvalidConfigError('prefixLength', 'must be an integer from 0 to 128')
    }
    this.prefixLength = init.prefixLength
    this.ipPath = init.ipPath ?? 'ip'
    const arp = init.gratuitousArp ?? {}
    this.arp = {
      enabled: arp.enabled ?? true,
      path: arp.path ?? 'arping',
      count: arp.count ?? 3,
      intervalSeconds: arp.intervalSeconds ?? 1,
      mode: arp.mode ?? 'request'
    }
    if (!(Number.isInteger(this.arp.count) && this.arp.count >= 1 && this.arp.count <= 100)) {
      throw new InvalidConfigError('gratuitousArp.count', 'must be an integer from 1 to 100')
    }
    const interval = this.arp.intervalSeconds
    if (!(Number.isInteger(interval) && interval >= 1 && interval <= 60)) {
      throw new InvalidConfigError(
        'gratuitousArp.intervalSeconds',
        'must be an integer from 1 to 60'
      )
    }
    if (this.arp.mode !== 'request' && this.arp.mode !== 'reply') {
      throw new InvalidConfigError('gratuitousArp.mode', "must be 'request' or 'reply'")
    }
    this.udpBatch = init.udpBatch ?? 32
    if (!(Number.isInteger(this.udpBatch) && this.udpBatch >= 1 && this.udpBatch <= 1024)) {
      throw new InvalidConfigError('udpBatch', 'must be an integer from 1 to 1024')
    }
    this.udpReceiveBuffer = init.udpReceiveBuffer ?? 4 * 1024 * 1024
    if (!(Number.isInteger(this.udpReceiveBuffer) && this.udpReceiveBuffer >= 0)) {
      throw new InvalidConfigError('udpReceiveBuffer', 'must be a non-negative integer')
    }
    this.mmsg = this.udpBatch > 1 ? (components.mmsg ?? realMmsgSyscalls()) : undefined
    // the default runner means no commands wanted: sockets of its own where they can be had
    const ownSockets = components.commands === undefined
    this.netlink = new LazySocket(components.netlink, ownSockets, openNetlinkRoute)
    this.arpSocket = new LazySocket(components.arp, ownSockets, openArpSocket)
    this.ipv6Dad = init.ipv6Dad ?? false
    this.dadTimeoutMs = init.dadTimeoutMs ?? 5000
    if (!(Number.isFinite(this.dadTimeoutMs) && this.dadTimeoutMs > 0)) {
      throw new InvalidConfigError('dadTimeoutMs', 'must be a positive number')
    }
  }

  /** Address events; completes on `stop()`. */
  get events$(): Observable<NetworkEvent> {
    return this.events.asObservable()
  }

  /** How each gratuitous ARP run ended; completes on `stop()`. */
  get announcements$(): Observable<AnnouncementEvent> {
    return this.announcementSubject.asObservable()
  }

  /** The counters (a copy). */
  stats(): LinuxNetworkStats {
    return { ...this.counters, openSockets: this.sockets.size }
  }

  /** The addresses this adapter added and has not removed. */
  addresses(): string[] {
    return [...this.held]
  }

  /** Starts the adapter. Idempotent. */
  async start(): Promise<void> {
    if (this.started) return
    if (this.events.isStopped) this.events = new Subject()
    if (this.announcementSubject.isStopped) this.announcementSubject = new Subject()
    this.started = true
  }

  /**
   * Closes every socket it opened, stops announcements in progress, lets go of the devices it
   * made ahead that hold no address ({@link prepareAddress}) and completes `events$` and
   * `announcements$`. Addresses stay where they are. Idempotent.
   */
  async stop(): Promise<void> {
    if (!this.started) return
    this.started = false
    for (const controller of this.pendingAnnouncements.keys()) controller.abort()
    await Promise.all([...this.pendingAnnouncements.values()].map(async (p) => p.done))
    await Promise.all([...this.sockets].map(async (socket) => socket.close()))
    // devices made ahead that hold no address go (their holders would keep this process
    // alive); a device holding an address stays, as the address does
    await Promise.all([...this.makingDevices.values()].map(async (p) => p.catch(() => undefined)))
    for (const [address, device] of [...this.heldDevices]) {
      if (this.held.has(address)) continue
      this.heldDevices.delete(address)
      await device.close()
    }
    this.netlink.close()
    this.arpSocket.close()
    this.events.complete()
    this.announcementSubject.complete()
  }

  /** Whether the adapter is started. */
  isStarted(): boolean {
    return this.started
  }

  /**
   * Adds `address` to the interface (as `ip addr add A/len dev IF`; an address already there
   * is fine), then announces it with a gratuitous ARP in the background (IPv4) and emits
   * `address:acquired`. IPv6 is added with `nodad`, or with `ipv6Dad` waits for the kernel's
   * duplicate address detection (see {@link LinuxNetworkAdapterInit.ipv6Dad}).
   *
   * @param address - an IPv4 or IPv6 address
   * @param options - an abort signal
   * @throws InvalidParametersError when `address` is not a unicast IP address
   * @throws InvalidConfigError when `ip` or the interface does not exist
   * @throws NetworkCommandError when `ip addr add` fails otherwise (permissions, for example),
   * or IPv6 duplicate address detection fails or does not end in time
   */
  async acquireAddress(address: string, options?: AbortOptions): Promise<void> {
    this.enter(options)
    const family = checkAddress(address)
    const device = this.holding === 'process' ? await this.deviceFor(address, options) : undefined
    const dev = device?.name ?? this.device
    try {
      await this.changeAddress('add', address, family, dev, options)
    } catch (err) {
      await this.dropDevice(address)
      throw err
    }
    if (family === 6 && this.ipv6Dad) await this.awaitDad(address, dev, options)
    this.held.add(address)
    if (this.arp.enabled && (family === 4 || !this.ipv6Dad)) this.announce(address, family)
    this.events.next({ type: 'address:acquired', address })
  }

  /**
   * Stops a gratuitous ARP for `address` still running, removes `address` from the interface
   * (`ip addr del A/len dev IF`) and emits `address:released`; an address that is not there is
   * fine (no event unless this adapter held it).
   *
   * @param address - the address
   * @param options - an abort signal
   * @throws InvalidParametersError when `address` is not a unicast IP address
   * @throws InvalidConfigError when `ip` or the interface does not exist
   * @throws NetworkCommandError when `ip addr del` fails otherwise
   */
  async releaseAddress(address: string, options?: AbortOptions): Promise<void> {
    this.enter(options)
    const family = checkAddress(address)
    // an announcement still running would point the neighbours back here
    for (const [controller, pending] of this.pendingAnnouncements) {
      if (pending.address === address) controller.abort()
    }
    // its own device goes with it; then the interface, in case an older run left it there
    await this.dropDevice(address)
    let removed =
      (await this.changeAddress('del', address, family, this.device, options)) === 'done'
    if (this.held.delete(address)) removed = true
    if (removed) this.events.next({ type: 'address:released', address })
  }

  /**
   * Opens a UDP socket bound to `local` (udp4 or udp6 by the address's family). Port 0 picks a
   * free port. The address must be one of the host's (or a wildcard).
   *
   * @param local - address and port to bind
   * @param options - an abort signal
   * @throws InvalidParametersError naming `local.address` or `local.port`
   */
  async openUdp(local: Endpoint, options?: AbortOptions): Promise<UdpEndpoint> {
    this.enter(options)
    if (isIP(local.address) === 0) {
      throw new InvalidParametersError('local.address', `${local.address} is not an IP address`)
    }
    if (!Number.isInteger(local.port) || local.port < 0 || local.port > 65535) {
      throw new InvalidParametersError('local.port', 'must be an integer from 0 to 65535')
    }
    const socket =
      this.mmsg === undefined
        ? await DgramUdpEndpoint.bind(local, this.udpCounters)
        : await BatchedUdpEndpoint.bind(local, this.udpCounters, {
            sys: this.mmsg,
            batch: this.udpBatch,
            receiveBuffer: this.udpReceiveBuffer
          })
    if (!this.started) {
      await socket.close() // stopped while binding
      throw new NotStartedError('network adapter was stopped')
    }
    this.sockets.add(socket)
    return socket
  }

  /**
   * With `holdAddresses: 'process'`, makes and brings up the device that will hold `address`
   * (holding nothing until {@link acquireAddress}), which is then a single address change:
   * a takeover does not wait for a device to be made. With `interface`, nothing to do. A
   * device the holder loses meanwhile is made again on acquire.
   *
   * @param address - an IPv4 or IPv6 address
   * @param options - an abort signal
   * @throws InvalidParametersError when `address` is not a unicast IP address
   * @throws NetworkCommandError when the device cannot be made or brought up
   */
  async prepareAddress(address: string, options?: AbortOptions): Promise<void> {
    this.enter(options)
    checkAddress(address)
    this.netlink.get() // the route socket opened ahead, off the path of a takeover
    if (this.holding === 'process') await this.deviceFor(address, options)
  }

  /**
   * The device that holds `address` in `process` mode: made, held and brought up here (one per
   * address, so that each goes on its own). Two calls at once share one device.
   */
  private async deviceFor(address: string, options?: AbortOptions): Promise<HeldDevice> {
    const had = this.heldDevices.get(address)
    if (had !== undefined) return had
    let making = this.makingDevices.get(address)
    if (making === undefined) {
      making = this.makeDevice(address, options).finally(() => this.makingDevices.delete(address))
      this.makingDevices.set(address, making)
    }
    return making
  }

  private async makeDevice(address: string, options?: AbortOptions): Promise<HeldDevice> {
    const name = `${this.devicePrefix}${this.nextDevice++}`
    const device = await this.devices.hold(name, options)
    try {
      if (!this.started) throw new NotStartedError('network adapter was stopped')
      await this.linkUp(name, options)
    } catch (err) {
      await device.close()
      throw err
    }
    this.heldDevices.set(address, device)
    void device.gone.then(() => {
      // the holder died under us: the address is gone with its device
      if (this.heldDevices.get(address) !== device) return
      this.heldDevices.delete(address)
      this.counters.commandFailures++
      if (this.held.delete(address) && this.started)
        this.events.next({ type: 'address:released', address })
    })
    return device
  }

  /** Lets the device of `address` go, if it has one. */
  private async dropDevice(address: string): Promise<void> {
    const device = this.heldDevices.get(address)
    if (device === undefined) return
    this.heldDevices.delete(address)
    await device.close()
  }

  /** Waits until the kernel's duplicate address detection of `address` is over. */
  private async awaitDad(address: string, dev: string, options?: AbortOptions): Promise<void> {
    const show = ['-j', '-6', 'addr', 'show', 'dev', dev, 'to', `${address}/128`]
    const polls = Math.ceil(this.dadTimeoutMs / DAD_POLL_MS)
    for (let i = 0; ; i++) {
      const result = await this.ip(show, options)
      if (result.exitCode !== 0) throw this.commandError(show, result)
      const state = dadState(result.stdout)
      if (state === 'done') return
      if (state !== 'tentative') {
        this.counters.commandFailures++
        if (state === 'failed') {
          await this.ip(['addr', 'del', this.cidr(address, 6), 'dev', dev], options)
          await this.dropDevice(address)
        }
        const why =
          state === 'failed'
            ? `duplicate address detection failed: another node answers for ${address}`
            : `${address} is no longer on ${dev}`
        throw new NetworkCommandError(commandLine(this.ipPath, show), why)
      }
      if (i >= polls) {
        this.counters.commandFailures++
        throw new NetworkCommandError(
          commandLine(this.ipPath, show),
          `duplicate address detection of ${address} not over after ${this.dadTimeoutMs} ms`
        )
      }
      throwIfAborted(options?.signal)
      await new Promise((resolve) => setTimeout(resolve, DAD_POLL_MS))
    }
  }

  /**
   * Announces `address` with `count` gratuitous ARP packets, one per `intervalSeconds`, each an
   * `arping -c 1` of its own started from this process's timer. One long `arping -c N` would
   * outlive this process when it is killed (`kill -9` does not take its children with it) and
   * go on announcing the address for a dead node, pointing the neighbours back at it after a
   * backup took the address over: the peer's traffic then goes to the dead node's MAC until the
   * heir's next packet. Started one at a time from here, nothing is announced once this
   * process is gone (a run in flight has sent its one packet already), nor after `stop()` or
   * the release of the address.
   */
  private announce(address: string, family: 4 | 6): void {
    const raw = this.arpSocket.get()
    // IPv6: an unsolicited neighbour advertisement, only from a socket of its own (arping
    // knows no IPv6); with ipv6Dad the kernel advertises after DAD
    if (family === 6 && raw?.advertise === undefined) return
    const mode = this.arp.mode === 'request' ? '-U' : '-A'
    const args = [mode, '-c', '1', '-I', this.device, address]
    const line = commandLine(this.arp.path, args)
    const controller = new AbortController()
    const { signal } = controller
    const intervalMs = this.arp.intervalSeconds * 1000
    /** One packet: undefined when it went, else what failed ('' when aborted). */
    const once =
      raw === undefined
        ? async (): Promise<string | undefined> => {
            let result: CommandResult
            try {
              result = await this.commands.run(this.arp.path, args, { signal })
            } catch (err) {
              return signal.aborted ? '' : `${line}: ${(err as Error).message}`
            }
            if (signal.aborted) return ''
            if (result.exitCode === 0) return undefined
            return `${line}: ${result.stderr.trim() || `exit status ${result.exitCode}`}`
          }
        : this.rawAnnouncement(raw, address, family)
    const series = async (): Promise<void> => {
      for (let i = 0; i < this.arp.count; i++) {
        const startedAt = Date.now()
        const failed = await once()
        if (failed === '') return
        if (failed !== undefined) {
          this.announceFailed(address, failed)
          return
        }
        if (i + 1 < this.arp.count) {
          // arping lingers about a second after its packet: count from the packet's start
          await this.wait(Math.max(0, intervalMs - (Date.now() - startedAt)), signal)
          if (signal.aborted) return
        }
      }
      this.counters.announcements++
      this.announcementSubject.next({ type: 'announce:sent', address })
    }
    const run = series().finally(() => this.pendingAnnouncements.delete(controller))
    this.pendingAnnouncements.set(controller, { address, done: run })
  }

  /**
   * The packets of one announcement of `address` out of the interface by the packet socket, as
   * `arping` would send them: each call sends one, undefined when it went, else what failed.
   * The device's index and hardware address are looked up, and the packet made, at the first
   * packet: once per series.
   */
  private rawAnnouncement(
    raw: ArpSocket,
    address: string,
    family: 4 | 6
  ): () => Promise<string | undefined> {
    const what = `${family === 4 ? 'gratuitous ARP' : 'neighbour advertisement'} for ${address} on ${this.device}`
    let send: (() => number) | undefined
    return async () => {
      if (send === undefined) {
        const index = raw.ifindex(this.device)
        if (index < 0) return `${what}: no index: ${errnoName(index)}`
        const mac = raw.hardwareAddress(this.device)
        if (typeof mac === 'number') return `${what}: no hardware address: ${errnoName(mac)}`
        const bytes = parseIp(address)
        if (family === 4) {
          const packet = gratuitousArp(this.arp.mode, mac, bytes)
          send = () => raw.broadcast(index, packet)
        } else {
          const packet = neighbourAdvertisement(mac, bytes)
          send = () => raw.advertise?.(index, packet) ?? -Errno.EOPNOTSUPP
        }
      }
      const sent = send()
      return sent < 0 ? `${what}: ${errnoName(sent)}` : undefined
    }
  }

  private announceFailed(address: string, error: string): void {
    this.counters.announcementFailures++
    this.announcementSubject.next({ type: 'announce:failed', address, error })
  }

  /**
   * `ip addr add|del A/len dev DEV`, as an rtnetlink request where there is a route socket,
   * else by running `ip`: `unchanged` when the address was already there (add) or not there
   * (del), which is fine.
   */
  private async changeAddress(
    op: 'add' | 'del',
    address: string,
    family: 4 | 6,
    dev: string,
    options?: AbortOptions
  ): Promise<'done' | 'unchanged'> {
    const cidr = this.cidr(address, family)
    const route = this.netlink.get()
    if (route === undefined) {
      const args = ['addr', op, cidr, 'dev', dev]
      if (op === 'add' && family === 6 && !this.ipv6Dad) args.push('nodad')
      const result = await this.ip(args, options)
      if (result.exitCode === 0) return 'done'
      if ((op === 'add' ? ALREADY_THERE : NOT_THERE).test(result.stderr)) return 'unchanged'
      throw this.commandError(args, result)
    }
    throwIfAborted(options?.signal)
    const request = `netlink ${op === 'add' ? 'RTM_NEWADDR' : 'RTM_DELADDR'} ${cidr} dev ${dev}`
    const index = this.indexOf(route, dev, request)
    const bytes = parseIp(address)
    const length = Number(cidr.slice(cidr.indexOf('/') + 1))
    const outcome =
      op === 'add'
        ? route.addAddress(index, bytes, length, family === 6 && !this.ipv6Dad)
        : route.deleteAddress(index, bytes, length)
    if (outcome === 0) return 'done'
    if (op === 'add' && outcome === -NetlinkErrno.EEXIST) return 'unchanged'
    if (op === 'del' && outcome === -NetlinkErrno.EADDRNOTAVAIL) return 'unchanged'
    throw this.netlinkError(request, outcome)
  }

  /** `ip link set dev NAME up`, as an rtnetlink request where there is a route socket. */
  private async linkUp(name: string, options?: AbortOptions): Promise<void> {
    const route = this.netlink.get()
    if (route === undefined) {
      const up = ['link', 'set', 'dev', name, 'up']
      const result = await this.ip(up, options)
      if (result.exitCode !== 0) throw this.commandError(up, result)
      return
    }
    throwIfAborted(options?.signal)
    const request = `netlink RTM_NEWLINK dev ${name} up`
    const outcome = route.setUp(this.indexOf(route, name, request))
    if (outcome !== 0) throw this.netlinkError(request, outcome)
  }

  /** The index of device `dev`; a missing device is the configuration's error, as with `ip`. */
  private indexOf(route: NetlinkRoute, dev: string, request: string): number {
    const index = route.ifindex(dev)
    if (index >= 0) return index
    throw this.netlinkError(request, index)
  }

  private netlinkError(request: string, outcome: number): Error {
    this.counters.commandFailures++
    if (outcome === -NetlinkErrno.ENODEV) {
      return new InvalidConfigError('interface', `device ${this.device} does not exist`)
    }
    return new NetworkCommandError(request, `the kernel answered ${errnoName(outcome)}`)
  }

  private async ip(args: string[], options?: AbortOptions): Promise<CommandResult> {
    try {
      return await this.commands.run(this.ipPath, args, options)
    } catch (err) {
      throwIfAborted(options?.signal)
      this.counters.commandFailures++
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new InvalidConfigError('ipPath', `${this.ipPath} not found`)
      }
      throw new NetworkCommandError(commandLine(this.ipPath, args), (err as Error).message, {
        cause: err
      })
    }
  }

  private commandError(args: string[], result: CommandResult): Error {
    this.counters.commandFailures++
    const text = result.stderr.trim() || `exit status ${result.exitCode}`
    if (/Cannot find device/i.test(text)) {
      return new InvalidConfigError('interface', `device ${this.device} does not exist`)
    }
    return new NetworkCommandError(commandLine(this.ipPath, args), text)
  }

  private cidr(address: string, family: 4 | 6): string {
    const length = this.prefixLength ?? (family === 4 ? 32 : 128)
    if (family === 4 && length > 32) {
      throw new InvalidConfigError('prefixLength', `${length} is too long for IPv4 ${address}`)
    }
    return `${address}/${length}`
  }

  private enter(options?: AbortOptions): void {
    throwIfAborted(options?.signal)
    if (!this.started) throw new NotStartedError('network adapter is not started')
  }
}

function checkAddress(address: string): 4 | 6 {
  const family = isIP(address)
  if (family === 0) throw new InvalidParametersError('address', `${address} is not an IP address`)
  if (WILDCARDS.has(address))
    throw new InvalidParametersError('address', 'cannot acquire a wildcard address')
  return family as 4 | 6
}

/** Reads the DAD state of the one address `ip -j addr show ... to A/128` printed. */
function dadState(json: string): 'tentative' | 'done' | 'failed' | 'missing' {
  let links: { addr_info?: { local?: string; tentative?: boolean; dadfailed?: boolean }[] }[]
  try {
    links = JSON.parse(json === '' ? '[]' : json) as typeof links
  } catch {
    return 'missing'
  }
  const info = links.flatMap((l) => l.addr_info ?? []).find((a) => a.local !== undefined)
  if (info === undefined) return 'missing'
  if (info.dadfailed === true) return 'failed'
  return info.tentative === true ? 'tentative' : 'done'
}

function commandLine(file: string, args: string[]): string {
  return [file, ...args].join(' ')
}

/**
 * Creates a {@link LinuxNetworkAdapter}.
 *
 * @param components - the command runner (default: `execFile`)
 * @param init - the interface and options
 */
export function linuxNetworkAdapter(
  components: LinuxNetworkAdapterComponents,
  init: LinuxNetworkAdapterInit
): LinuxNetworkAdapter {
  return new LinuxNetworkAdapter(components, init)
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function abortableDelay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const done = (): void => {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}
