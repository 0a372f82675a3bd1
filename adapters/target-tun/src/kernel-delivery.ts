import { execFile } from 'node:child_process'
import { Subject, type Observable, type Subscription } from 'rxjs'
import { InvalidParametersError, VipsecError, type PacketDelivery } from '@vipsec/interface'
import { TunDevice, zeroTunCounters, type TunCounters, type TunDeviceInit } from './tun-device.js'

/** Thrown when the host cannot be set up for kernel delivery (an `ip` command failed). */
export class KernelSetupError extends VipsecError {
  /** The class name, `KernelSetupError`, for matching errors by name. */
  static override readonly name = 'KernelSetupError'
  /** Always `KernelSetupError`. */
  override readonly name = 'KernelSetupError'
  override readonly code = 'ERR_KERNEL_SETUP'
}

/** Counters of a {@link KernelDelivery}: its device's, and what came while it was stopped. */
export interface KernelDeliveryCounters extends TunCounters {
  /** Packets to deliver while stopped (dropped). */
  dropped: number
}

/** Runs `ip` (replace it in unit tests to check the command lines without root). */
export type IpRunner = (args: string[]) => Promise<void>

/** The device a {@link KernelDelivery} reads and writes: a {@link TunDevice} or a test double. */
export interface PacketDevice {
  /** The interface name. */
  readonly name: string
  /** Packets from the kernel. */
  readonly packets$: Observable<Uint8Array>
  /** Hands a packet to the kernel; whether it took it. */
  write(packet: Uint8Array): boolean
  /** Closes the device. */
  close(): Promise<void>
  /** Its counters. */
  counters(): TunCounters
}

/** What a {@link KernelDelivery} needs; every part has a default. */
export interface KernelDeliveryComponents {
  /** Runs `ip`. Default: `execFile('ip', args)`. */
  ip?: IpRunner
  /** Opens the device. Default: {@link TunDevice.open}. */
  openDevice?: (init: TunDeviceInit) => PacketDevice
}

/** Options of a {@link KernelDelivery}. */
export interface KernelDeliveryInit {
  /**
   * The service addresses behind the DVIPA that this host serves (the inner destination
   * addresses of the peers' packets, IPv4 or IPv6, without a prefix length). Each is put on
   * the TUN device as a host address; applications listen on it (or on all addresses).
   */
  addresses: string[]
  /** The TUN device's name. Default `vipsec0`. */
  device?: string
  /**
   * The device's MTU in bytes: the kernel's TCP picks its MSS from it and path MTU discovery
   * starts there. Default 1400 (what strongSwan's libipsec peers use).
   */
  mtu?: number
  /**
   * Where replies go: the routing table that sends what is sourced from a service address back
   * through the TUN device (and so through vipsec). Default 7700.
   */
  table?: number
  /** The priority of the `ip rule from <address> lookup <table>` rules. Default 7700. */
  rulePriority?: number
  /**
   * The destinations that replies from the service addresses may have (the peers' inner
   * addresses): routed through the device in `table` for packets sourced from a service
   * address, and in the main table, with the first service address as the source and the
   * priority `metric`, for sockets bound to every address (a UDP server answering from
   * `0.0.0.0`). Default: everything (`0.0.0.0/0`, and `::/0` if an address is IPv6); on a host
   * with a default route of its own, list the peers' prefixes instead.
   */
  routes?: string[]
  /**
   * The metric of the main-table routes: high, so that the host's own routes win. Default 7700.
   */
  metric?: number
  /** Reader settings of the device. */
  tun?: Omit<TunDeviceInit, 'name'>
}

const defaultIp: IpRunner = (args) =>
  new Promise((resolve, reject) => {
    execFile('ip', args, { encoding: 'utf8' }, (err, _stdout, stderr) => {
      if (err == null) return resolve()
      reject(new KernelSetupError(`ip ${args.join(' ')}: ${stderr.trim() || err.message}`))
    })
  })

/**
 * Kernel delivery for a target: a TUN device in the target's network namespace holds the
 * service addresses, the packets of the target's connections are written to it (the host's
 * kernel delivers them to whatever application listens), and what the kernel sends from a
 * service address is routed back into the device by a source rule, read, and handed to the
 * target stack, which sends it to the DVIPA's owner. Any unmodified TCP or UDP application
 * serves through IPsec this way.
 *
 * On `start()` it runs, for device D, table T and priority P:
 * `ip link set dev D mtu M up`, `ip addr add A/32 dev D` for each address,
 * `ip route replace R dev D table T` and `ip route replace R dev D src A metric M` for each
 * route, and `ip rule add from A lookup T priority P` for each address.
 * `stop()` deletes the rules and closes the device (which takes its addresses and routes).
 */
export class KernelDelivery implements PacketDelivery {
  private readonly ip: IpRunner
  private readonly openDevice: (init: TunDeviceInit) => PacketDevice
  private readonly addresses: string[]
  private readonly deviceName: string
  private readonly mtu: number
  private readonly table: number
  private readonly priority: number
  private readonly routes: string[]
  private readonly metric: number
  private readonly tun: Omit<TunDeviceInit, 'name'>
  private device: PacketDevice | undefined
  private subscription: Subscription | undefined
  private packets = new Subject<Uint8Array>()
  private rules: string[][] = []
  private dropped = 0

  /**
   * @param components - `ip` runner and device opener (defaults: the real ones)
   * @param init - service addresses, device, MTU and routing
   * @throws InvalidParametersError for an empty address list or a bad setting
   */
  constructor(components: KernelDeliveryComponents, init: KernelDeliveryInit) {
    if (!Array.isArray(init.addresses) || init.addresses.length === 0)
      throw new InvalidParametersError('addresses', 'at least one service address')
    for (const [i, a] of init.addresses.entries()) {
      if (typeof a !== 'string' || a.includes('/') || !(a.includes('.') || a.includes(':')))
        throw new InvalidParametersError(`addresses[${i}]`, 'an IPv4 or IPv6 address')
    }
    const mtu = init.mtu ?? 1400
    if (!Number.isInteger(mtu) || mtu < 576 || mtu > 65535)
      throw new InvalidParametersError('mtu', 'must be an integer from 576 to 65535')
    this.ip = components.ip ?? defaultIp
    this.openDevice = components.openDevice ?? ((i) => TunDevice.open(i))
    this.addresses = [...init.addresses]
    this.deviceName = init.device ?? 'vipsec0'
    this.mtu = mtu
    this.table = init.table ?? 7700
    this.priority = init.rulePriority ?? 7700
    const v6 = this.addresses.some((a) => a.includes(':'))
    const v4 = this.addresses.some((a) => !a.includes(':'))
    this.routes = init.routes ?? [...(v4 ? ['0.0.0.0/0'] : []), ...(v6 ? ['::/0'] : [])]
    this.metric = init.metric ?? 7700
    this.tun = init.tun ?? {}
  }

  /** Replies from the host (whole IP packets); completes on `stop()`. */
  get packets$(): Observable<Uint8Array> {
    return this.packets.asObservable()
  }

  /** The device's name once started. */
  get deviceNameInUse(): string | undefined {
    return this.device?.name
  }

  /** Packets read, written and refused, with the packets dropped while stopped. */
  counters(): KernelDeliveryCounters {
    return { ...(this.device?.counters() ?? zeroTunCounters()), dropped: this.dropped }
  }

  /**
   * Opens the device and sets up addresses, routes and rules. On a failure, undoes what it
   * did and rejects. Idempotent.
   *
   * @throws KernelSetupError when an `ip` command fails
   * @throws TunOpenError when the device cannot be opened
   */
  async start(): Promise<void> {
    if (this.device !== undefined) return
    if (this.packets.isStopped) this.packets = new Subject()
    const device = this.openDevice({ ...this.tun, name: this.deviceName })
    this.device = device
    this.subscription = device.packets$.subscribe((p) => this.packets.next(p))
    try {
      const d = device.name
      await this.ip(['link', 'set', 'dev', d, 'mtu', String(this.mtu), 'up'])
      for (const a of this.addresses) {
        const v6 = a.includes(':')
        await this.ip(['addr', 'add', `${a}/${v6 ? 128 : 32}`, 'dev', d, ...(v6 ? ['nodad'] : [])])
      }
      for (const r of this.routes) {
        const v6 = r.includes(':')
        const family = v6 ? ['-6'] : ['-4']
        await this.ip([...family, 'route', 'replace', r, 'dev', d, 'table', String(this.table)])
        const source = this.addresses.find((a) => a.includes(':') === v6)
        if (source === undefined) continue
        await this.ip([
          ...family,
          'route',
          'replace',
          r,
          'dev',
          d,
          'src',
          source,
          'metric',
          String(this.metric)
        ])
      }
      for (const a of this.addresses) {
        const rule = [
          ...(a.includes(':') ? ['-6'] : ['-4']),
          'rule',
          'add',
          'from',
          a,
          'lookup',
          String(this.table),
          'priority',
          String(this.priority)
        ]
        await this.ip(rule)
        this.rules.push(rule)
      }
    } catch (err) {
      await this.stop()
      throw err
    }
  }

  /** Deletes the rules, closes the device; completes `packets$`. Idempotent. */
  async stop(): Promise<void> {
    const device = this.device
    if (device === undefined) return
    this.device = undefined
    for (const rule of this.rules.splice(0)) {
      const del = [...rule]
      del[del.indexOf('add')] = 'del'
      await this.ip(del).catch(() => undefined)
    }
    this.subscription?.unsubscribe()
    this.subscription = undefined
    await device.close()
    this.packets.complete()
  }

  /** Whether started. */
  isStarted(): boolean {
    return this.device !== undefined
  }

  /**
   * Hands one packet of a connection to the kernel.
   *
   * @param packet - a whole IP packet for a service address
   */
  deliver(packet: Uint8Array): void {
    if (this.device === undefined) return void this.dropped++
    this.device.write(packet)
  }
}

/**
 * Creates a {@link KernelDelivery}.
 *
 * @param init - service addresses, device, MTU and routing
 * @param components - `ip` runner and device opener (defaults: the real ones)
 */
export function kernelDelivery(
  init: KernelDeliveryInit,
  components: KernelDeliveryComponents = {}
): KernelDelivery {
  return new KernelDelivery(components, init)
}
