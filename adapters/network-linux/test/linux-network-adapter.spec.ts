import { expect } from 'chai'
import { firstValueFrom, toArray } from 'rxjs'
import type { AbortOptions, Datagram, NetworkEvent, UdpEndpoint } from '@vipsec/interface'
import {
  LinuxNetworkAdapter,
  MAX_SEND_QUEUE,
  linuxNetworkAdapter,
  type AnnouncementEvent,
  type CommandResult,
  type CommandRunner,
  type DeviceHolder,
  type HeldDevice,
  type ArpSocket,
  type LinuxNetworkAdapterInit,
  type NetlinkRoute
} from '../src/index.js'

/** A command the fake runner was asked to run. */
interface Call {
  file: string
  args: string[]
}

/** Answers each command with a scripted result; records every call. */
class FakeRunner implements CommandRunner {
  readonly calls: Call[] = []
  /** Returns the answer for a call: a result, or an error to reject with. */
  answer: (call: Call) => Partial<CommandResult> | Error = () => ({})
  /** When set, arping runs hang until aborted. */
  hangArping = false
  /** The signals of the arping runs that hung. */
  readonly hung: AbortSignal[] = []

  run(file: string, args: string[], options?: AbortOptions): Promise<CommandResult> {
    const call = { file, args }
    this.calls.push(call)
    if (this.hangArping && file.endsWith('arping')) {
      if (options?.signal !== undefined) this.hung.push(options.signal)
      return new Promise((_resolve, reject) => {
        options?.signal?.addEventListener('abort', () => reject(new Error('killed')))
      })
    }
    const a = this.answer(call)
    if (a instanceof Error) return Promise.reject(a)
    return Promise.resolve({ exitCode: 0, stdout: '', stderr: '', ...a })
  }

  lines(): string[] {
    return this.calls.map((c) => [c.file, ...c.args].join(' '))
  }
}

async function rejection(p: Promise<unknown>): Promise<Error & Record<string, unknown>> {
  return p.then(
    () => {
      throw new Error('expected a rejection')
    },
    (e: Error & Record<string, unknown>) => e
  )
}

/** Lets queued promise callbacks (a background arping) run. */
async function tick(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r))
}

/** Holds devices in memory: each can be made to die as its holder process would. */
class FakeDevices implements DeviceHolder {
  readonly devices: (HeldDevice & { die: () => void; closed: boolean })[] = []
  async hold(name: string): Promise<HeldDevice> {
    let die!: () => void
    const gone = new Promise<void>((resolve) => (die = resolve))
    const device = {
      name,
      gone,
      die,
      closed: false,
      close: async () => {
        device.closed = true
        die()
      }
    }
    this.devices.push(device)
    return device
  }
}

/** A route socket in memory: devices by name, the requests it took, scripted answers. */
class FakeRoute implements NetlinkRoute {
  readonly requests: string[] = []
  readonly devices = new Map<string, number>([['eth9', 2]])
  /** The kernel's answer to the next address request (0, or -errno). */
  answer = 0
  closed = false
  ifindex(name: string): number {
    return this.devices.get(name) ?? -19
  }
  addAddress(index: number, address: Uint8Array, prefix: number, nodad: boolean): number {
    this.requests.push(`add ${[...address].join('.')}/${prefix} ${index}${nodad ? ' nodad' : ''}`)
    return this.answer
  }
  deleteAddress(index: number, address: Uint8Array, prefix: number): number {
    this.requests.push(`del ${[...address].join('.')}/${prefix} ${index}`)
    return this.answer
  }
  setUp(index: number): number {
    this.requests.push(`up ${index}`)
    return 0
  }
  close(): void {
    this.closed = true
  }
}

/** A packet socket in memory: the packets it sent, out of which device. */
class FakeArp implements ArpSocket {
  readonly sent: { index: number; packet: string }[] = []
  /** The kernel's answer to the next sends (a count, or -errno). */
  answer = 28
  closed = false
  /** The device's hardware address, last byte (a new one stands for a new card). */
  macEnd = 9
  /** How often the device was looked up: index, hardware address. */
  readonly lookups = { ifindex: 0, hardwareAddress: 0 }
  ifindex(name: string): number {
    this.lookups.ifindex++
    return name === 'eth9' ? 2 : -19
  }
  hardwareAddress(): Uint8Array {
    this.lookups.hardwareAddress++
    return new Uint8Array([2, 0, 0, 0, 0, this.macEnd])
  }
  broadcast(index: number, packet: Uint8Array): number {
    this.sent.push({ index, packet: Buffer.from(packet).toString('hex') })
    return this.answer
  }
  advertise(index: number, packet: Uint8Array): number {
    this.sent.push({ index, packet: `na ${Buffer.from(packet).toString('hex')}` })
    return this.answer
  }
  close(): void {
    this.closed = true
  }
}

/** Waits, a bounded number of times, for `got` to reach `n` datagrams. */
async function until(got: Datagram[], n: number): Promise<void> {
  for (let i = 0; i < 100 && got.length < n; i++) await new Promise((r) => setTimeout(r, 20))
}

describe(LinuxNetworkAdapter.name, () => {
  let runner: FakeRunner
  let adapter: LinuxNetworkAdapter
  let events: NetworkEvent[]
  let announcements: AnnouncementEvent[]
  /** The waits between gratuitous ARP packets (they end at once), and whether each was aborted. */
  let waits: { ms: number; signal: AbortSignal }[]
  /** When set, waits end only when aborted. */
  let holdWaits: boolean

  function make(init: Partial<LinuxNetworkAdapterInit> = {}): LinuxNetworkAdapter {
    const wait = (ms: number, signal: AbortSignal): Promise<void> => {
      waits.push({ ms, signal })
      if (!holdWaits) return Promise.resolve()
      return new Promise((resolve) => signal.addEventListener('abort', () => resolve()))
    }
    return linuxNetworkAdapter({ commands: runner, wait }, { interface: 'eth9', ...init })
  }

  beforeEach(async () => {
    runner = new FakeRunner()
    waits = []
    holdWaits = false
    adapter = make()
    await adapter.start()
    events = []
    announcements = []
    adapter.events$.subscribe((e) => events.push(e))
    adapter.announcements$.subscribe((e) => announcements.push(e))
  })

  afterEach(async () => {
    await adapter.stop()
  })

  describe('constructor', () => {
    describe('when an option is out of range', () => {
      it('should throw InvalidConfigError naming the field', () => {
        const cases: [Partial<LinuxNetworkAdapterInit>, string][] = [
          [{ interface: '' }, 'interface'],
          [{ interface: 'a-very-long-device-name' }, 'interface'],
          [{ prefixLength: 129 }, 'prefixLength'],
          [{ gratuitousArp: { count: 0 } }, 'gratuitousArp.count'],
          [{ gratuitousArp: { intervalSeconds: 0.5 } }, 'gratuitousArp.intervalSeconds'],
          [{ gratuitousArp: { mode: 'both' as 'request' } }, 'gratuitousArp.mode'],
          [{ dadTimeoutMs: 0 }, 'dadTimeoutMs']
        ]
        for (const [init, field] of cases) {
          let err: (Error & { field?: string }) | undefined
          try {
            make(init)
          } catch (e) {
            err = e as Error & { field?: string }
          }
          expect(err?.name, field).to.equal('InvalidConfigError')
          expect(err?.field).to.equal(field)
        }
      })
    })
  })

  describe('.start and .stop', () => {
    describe('when called twice', () => {
      it('should be idempotent and complete events$ and announcements$ on stop', async () => {
        await adapter.start()
        let completed = 0
        adapter.events$.subscribe({ complete: () => completed++ })
        adapter.announcements$.subscribe({ complete: () => completed++ })
        await adapter.stop()
        await adapter.stop()
        expect(completed).to.equal(2)
        expect(adapter.isStarted()).to.equal(false)
        await adapter.start()
        expect(adapter.isStarted()).to.equal(true)
      })
    })

    describe('when sockets are open', () => {
      it('should close every socket and complete its datagrams$', async () => {
        const a = await adapter.openUdp({ address: '127.0.0.1', port: 0 })
        const b = await adapter.openUdp({ address: '127.0.0.1', port: 0 })
        let completed = 0
        a.datagrams$.subscribe({ complete: () => completed++ })
        b.datagrams$.subscribe({ complete: () => completed++ })
        expect(adapter.stats().openSockets).to.equal(2)
        await adapter.stop()
        expect(completed).to.equal(2)
        expect(adapter.stats().openSockets).to.equal(0)
      })
    })

    describe('when a gratuitous ARP is still running', () => {
      it('should abort it without counting a failure', async () => {
        runner.hangArping = true
        await adapter.acquireAddress('10.77.0.100')
        await adapter.stop()
        expect(adapter.stats().announcementFailures).to.equal(0)
        expect(announcements).to.deep.equal([])
      })
    })

    describe('when not started', () => {
      it('should reject calls with NotStartedError', async () => {
        await adapter.stop()
        const err = await rejection(adapter.acquireAddress('10.77.0.100'))
        expect(err.name).to.equal('NotStartedError')
        expect(runner.calls).to.have.length(0)
      })
    })
  })

  describe('.acquireAddress', () => {
    describe('when the address is IPv4', () => {
      it('should add it as a /32, announce it with three arping -U -c 1 a second apart and emit address:acquired', async () => {
        await adapter.acquireAddress('10.77.0.100')
        await tick()
        expect(runner.lines()).to.deep.equal([
          'ip addr add 10.77.0.100/32 dev eth9',
          'arping -U -c 1 -I eth9 10.77.0.100',
          'arping -U -c 1 -I eth9 10.77.0.100',
          'arping -U -c 1 -I eth9 10.77.0.100'
        ])
        expect(waits).to.have.length(2)
        for (const w of waits) expect(w.ms).to.be.within(900, 1000)
        expect(events).to.deep.equal([{ type: 'address:acquired', address: '10.77.0.100' }])
        expect(announcements).to.deep.equal([{ type: 'announce:sent', address: '10.77.0.100' }])
        expect(adapter.stats().announcements).to.equal(1)
        expect(adapter.addresses()).to.deep.equal(['10.77.0.100'])
      })
    })

    describe('when options are given', () => {
      it('should use the prefix length, the programs and the ARP mode, count and interval', async () => {
        await adapter.stop()
        adapter = make({
          prefixLength: 24,
          ipPath: '/sbin/ip',
          gratuitousArp: { path: '/usr/bin/arping', mode: 'reply', count: 5, intervalSeconds: 2 }
        })
        await adapter.start()
        await adapter.acquireAddress('10.77.0.100')
        await tick()
        expect(runner.lines()).to.deep.equal([
          '/sbin/ip addr add 10.77.0.100/24 dev eth9',
          ...Array<string>(5).fill('/usr/bin/arping -A -c 1 -I eth9 10.77.0.100')
        ])
        expect(waits.map((w) => Math.round(w.ms / 1000))).to.deep.equal([2, 2, 2, 2])
      })
    })

    describe('when gratuitous ARP is disabled', () => {
      it('should only add the address', async () => {
        await adapter.stop()
        adapter = make({ gratuitousArp: { enabled: false } })
        await adapter.start()
        await adapter.acquireAddress('10.77.0.100')
        await tick()
        expect(runner.lines()).to.deep.equal(['ip addr add 10.77.0.100/32 dev eth9'])
      })
    })

    describe('when the address is IPv6', () => {
      it('should add it as a /128 with nodad and send no ARP', async () => {
        await adapter.acquireAddress('fd77::100')
        await tick()
        expect(runner.lines()).to.deep.equal(['ip addr add fd77::100/128 dev eth9 nodad'])
        expect(events).to.deep.equal([{ type: 'address:acquired', address: 'fd77::100' }])
      })
    })

    describe('when the address is IPv6 and ipv6Dad is on', () => {
      const show = 'ip -j -6 addr show dev eth9 to fd77::100/128'
      const info = (flags: Record<string, boolean>): string =>
        JSON.stringify([{ ifname: 'eth9', addr_info: [{ local: 'fd77::100', ...flags }, {}] }])

      beforeEach(async () => {
        await adapter.stop()
        adapter = make({ ipv6Dad: true, dadTimeoutMs: 500 })
        await adapter.start()
        adapter.events$.subscribe((e) => events.push(e))
      })

      it('should add it without nodad and wait until it is no longer tentative', async () => {
        let shows = 0
        runner.answer = (c) =>
          c.args.includes('show') ? { stdout: info(++shows < 3 ? { tentative: true } : {}) } : {}
        await adapter.acquireAddress('fd77::100')
        expect(runner.lines()).to.deep.equal([
          'ip addr add fd77::100/128 dev eth9',
          show,
          show,
          show
        ])
        expect(events).to.deep.equal([{ type: 'address:acquired', address: 'fd77::100' }])
      })

      it('should remove the address and throw NetworkCommandError when DAD fails', async () => {
        runner.answer = (c) =>
          c.args.includes('show') ? { stdout: info({ tentative: true, dadfailed: true }) } : {}
        const err = await rejection(adapter.acquireAddress('fd77::100'))
        expect(err.name).to.equal('NetworkCommandError')
        expect(err.message).to.contain('duplicate address detection failed')
        expect(runner.lines().at(-1)).to.equal('ip addr del fd77::100/128 dev eth9')
        expect(adapter.stats().commandFailures).to.equal(1)
        expect(events).to.deep.equal([])
      })

      it('should throw NetworkCommandError when DAD does not end in time', async () => {
        runner.answer = (c) =>
          c.args.includes('show') ? { stdout: info({ tentative: true }) } : {}
        const err = await rejection(adapter.acquireAddress('fd77::100'))
        expect(err.name).to.equal('NetworkCommandError')
        expect(err.message).to.contain('not over after 500 ms')
        expect(runner.calls.length).to.be.at.most(12)
      })

      it('should throw NetworkCommandError when the address vanished', async () => {
        runner.answer = (c) => (c.args.includes('show') ? { stdout: '[]' } : {})
        const err = await rejection(adapter.acquireAddress('fd77::100'))
        expect(err.message).to.contain('no longer on eth9')
      })
    })

    describe('when the address is already on the interface', () => {
      it('should succeed (new and old iproute2 wording)', async () => {
        for (const stderr of [
          'Error: ipv4: Address already assigned.',
          'RTNETLINK answers: File exists'
        ]) {
          runner.answer = (c) => (c.file === 'ip' ? { exitCode: 2, stderr } : {})
          await adapter.acquireAddress('10.77.0.100')
        }
        expect(events).to.have.length(2)
        expect(adapter.stats().commandFailures).to.equal(0)
      })
    })

    describe('when ip addr add fails', () => {
      it('should throw NetworkCommandError naming the command, count it and emit nothing', async () => {
        runner.answer = () => ({
          exitCode: 2,
          stderr: 'RTNETLINK answers: Operation not permitted\n'
        })
        const err = await rejection(adapter.acquireAddress('10.77.0.100'))
        expect(err.name).to.equal('NetworkCommandError')
        expect(err.command).to.equal('ip addr add 10.77.0.100/32 dev eth9')
        expect(err.message).to.contain('Operation not permitted')
        expect(adapter.stats().commandFailures).to.equal(1)
        expect(events).to.deep.equal([])
        expect(runner.calls).to.have.length(1)
      })
    })

    describe('when the interface does not exist', () => {
      it('should throw InvalidConfigError naming interface', async () => {
        runner.answer = () => ({ exitCode: 1, stderr: 'Cannot find device "eth9"\n' })
        const err = await rejection(adapter.acquireAddress('10.77.0.100'))
        expect(err.name).to.equal('InvalidConfigError')
        expect(err.field).to.equal('interface')
        expect(adapter.stats().commandFailures).to.equal(1)
      })
    })

    describe('when the ip program is missing', () => {
      it('should throw InvalidConfigError naming ipPath', async () => {
        runner.answer = () => Object.assign(new Error('spawn ip ENOENT'), { code: 'ENOENT' })
        const err = await rejection(adapter.acquireAddress('10.77.0.100'))
        expect(err.name).to.equal('InvalidConfigError')
        expect(err.field).to.equal('ipPath')
        expect(adapter.stats().commandFailures).to.equal(1)
      })
    })

    describe('when the gratuitous ARP fails', () => {
      it('should still hold the address, count the failure and report it', async () => {
        runner.answer = (c) =>
          c.file === 'arping'
            ? { exitCode: 2, stderr: 'arping: socket: Operation not permitted\n' }
            : {}
        await adapter.acquireAddress('10.77.0.100')
        await tick()
        expect(events).to.deep.equal([{ type: 'address:acquired', address: '10.77.0.100' }])
        expect(adapter.stats().announcementFailures).to.equal(1)
        expect(announcements).to.have.length(1)
        expect(announcements[0]).to.include({ type: 'announce:failed', address: '10.77.0.100' })
        expect((announcements[0] as { error: string }).error).to.contain('Operation not permitted')
      })
    })

    describe('when arping is missing', () => {
      it('should count the failure, not throw', async () => {
        runner.answer = (c) =>
          c.file === 'arping'
            ? Object.assign(new Error('spawn arping ENOENT'), { code: 'ENOENT' })
            : {}
        await adapter.acquireAddress('10.77.0.100')
        await tick()
        expect(adapter.stats().announcementFailures).to.equal(1)
      })
    })

    describe('when the address is not a unicast IP address', () => {
      it('should throw InvalidParametersError naming address and run nothing', async () => {
        for (const address of ['10.77.0', 'eth0', '0.0.0.0', '::']) {
          const err = await rejection(adapter.acquireAddress(address))
          expect(err.name, address).to.equal('InvalidParametersError')
          expect(err.argument).to.equal('address')
        }
        expect(runner.calls).to.have.length(0)
      })
    })

    describe('when the signal is already aborted', () => {
      it('should reject with AbortError and run nothing', async () => {
        const controller = new AbortController()
        controller.abort()
        const err = await rejection(
          adapter.acquireAddress('10.77.0.100', { signal: controller.signal })
        )
        expect(err.name).to.equal('AbortError')
        expect(runner.calls).to.have.length(0)
      })
    })
  })

  describe('.releaseAddress', () => {
    describe('when the address is held', () => {
      it('should run ip addr del and emit address:released', async () => {
        await adapter.acquireAddress('10.77.0.100')
        await adapter.releaseAddress('10.77.0.100')
        expect(runner.lines()).to.include('ip addr del 10.77.0.100/32 dev eth9')
        expect(events.at(-1)).to.deep.equal({ type: 'address:released', address: '10.77.0.100' })
        expect(adapter.addresses()).to.deep.equal([])
      })
    })

    describe('when its gratuitous ARP is still running', () => {
      it('should stop it, so that it cannot point the neighbours back here', async () => {
        runner.hangArping = true
        await adapter.acquireAddress('10.77.0.100')
        expect(runner.hung.map((s) => s.aborted)).to.deep.equal([false])
        await adapter.releaseAddress('10.77.0.100')
        await tick()
        expect(runner.hung.map((s) => s.aborted)).to.deep.equal([true])
        expect(adapter.stats()).to.include({ announcements: 0, announcementFailures: 0 })
        expect(announcements).to.deep.equal([])
      })
    })

    describe('when its gratuitous ARP is between two packets', () => {
      it('should send no more of them', async () => {
        holdWaits = true
        await adapter.acquireAddress('10.77.0.100')
        await tick()
        expect(runner.lines().filter((l) => l.startsWith('arping'))).to.have.length(1)
        expect(waits.map((w) => w.signal.aborted)).to.deep.equal([false])
        await adapter.releaseAddress('10.77.0.100')
        await tick()
        expect(waits.map((w) => w.signal.aborted)).to.deep.equal([true])
        expect(runner.lines().filter((l) => l.startsWith('arping'))).to.have.length(1)
        expect(announcements).to.deep.equal([])
      })
    })

    describe('when the address is not on the interface', () => {
      it('should succeed without an event', async () => {
        runner.answer = () => ({ exitCode: 2, stderr: 'Error: ipv4: Address not found.' })
        await adapter.releaseAddress('10.77.0.100')
        expect(events).to.deep.equal([])
        expect(adapter.stats().commandFailures).to.equal(0)
      })
    })

    describe('when ip addr del fails', () => {
      it('should throw NetworkCommandError and count it', async () => {
        runner.answer = () => ({
          exitCode: 2,
          stderr: 'RTNETLINK answers: Operation not permitted'
        })
        const err = await rejection(adapter.releaseAddress('fd77::100'))
        expect(err.name).to.equal('NetworkCommandError')
        expect(err.command).to.equal('ip addr del fd77::100/128 dev eth9')
        expect(adapter.stats().commandFailures).to.equal(1)
      })
    })

    describe('when the signal is already aborted', () => {
      it('should reject with AbortError', async () => {
        const err = await rejection(
          adapter.releaseAddress('10.77.0.100', { signal: AbortSignal.abort() })
        )
        expect(err.name).to.equal('AbortError')
      })
    })
  })

  describe('.openUdp', () => {
    const text = (s: string): Uint8Array => new TextEncoder().encode(s)

    describe('when two sockets talk on loopback', () => {
      it('should carry a datagram with the sender as source and count it', async () => {
        const from = await adapter.openUdp({ address: '127.0.0.1', port: 0 })
        const to = await adapter.openUdp({ address: '127.0.0.1', port: 0 })
        expect(from.local.port).to.be.greaterThan(0)
        const got: Datagram[] = []
        to.datagrams$.subscribe((d) => got.push(d))
        from.send(text('hello'), to.local)
        await until(got, 1)
        expect(got).to.have.length(1)
        expect(new TextDecoder().decode(got[0]!.data)).to.equal('hello')
        expect(got[0]!.from).to.deep.equal(from.local)
        expect(adapter.stats()).to.include({ datagramsSent: 1, datagramsReceived: 1 })
      })
    })

    describe('when the address is IPv6', () => {
      it('should open a udp6 socket', async () => {
        const from = await adapter.openUdp({ address: '::1', port: 0 })
        const to = await adapter.openUdp({ address: '::1', port: 0 })
        const got: Datagram[] = []
        to.datagrams$.subscribe((d) => got.push(d))
        from.send(text('six'), to.local)
        await until(got, 1)
        expect(got[0]?.from).to.deep.equal(from.local)
      })
    })

    describe('when the port is in use', () => {
      it('should throw InvalidParametersError naming local.port', async () => {
        const first = await adapter.openUdp({ address: '127.0.0.1', port: 0 })
        const err = await rejection(adapter.openUdp(first.local))
        expect(err.name).to.equal('InvalidParametersError')
        expect(err.argument).to.equal('local.port')
      })
    })

    describe('when the address is not one of the host', () => {
      it('should throw InvalidParametersError naming local.address', async () => {
        const err = await rejection(adapter.openUdp({ address: '192.0.2.77', port: 0 }))
        expect(err.name).to.equal('InvalidParametersError')
        expect(err.argument).to.equal('local.address')
      })
    })

    describe('when the endpoint is malformed', () => {
      it('should throw InvalidParametersError naming the field', async () => {
        const bad: [string, number, string][] = [
          ['127.0.0.1', 70000, 'local.port'],
          ['127.0.0.1', 1.5, 'local.port'],
          ['localhost', 0, 'local.address']
        ]
        for (const [address, port, argument] of bad) {
          const err = await rejection(adapter.openUdp({ address, port }))
          expect(err.argument, `${address}:${port}`).to.equal(argument)
        }
      })
    })

    describe('when a send cannot succeed', () => {
      it('should count the error, not throw', async () => {
        const socket = await adapter.openUdp({ address: '127.0.0.1', port: 0 })
        socket.send(text('x'), { address: '127.0.0.1', port: 0 })
        socket.send(text('x'), { address: '::1', port: 9 })
        for (let i = 0; i < 100 && adapter.stats().sendErrors < 2; i++) {
          await new Promise((r) => setTimeout(r, 10))
        }
        expect(adapter.stats().sendErrors).to.equal(2)
      })
    })

    describe('when the send queue is full (overload)', () => {
      it('should drop the datagram and count it, so that memory stays bounded', async () => {
        const socket = await adapter.openUdp({ address: '127.0.0.1', port: 0 })
        const receiver = await adapter.openUdp({ address: '127.0.0.1', port: 0 })
        const got: string[] = []
        receiver.datagrams$.subscribe((d) => got.push(new TextDecoder().decode(d.data)))
        // the kernel would take these at once: pretend MAX_SEND_QUEUE datagrams are waiting
        const dgram = (socket as unknown as { socket: { getSendQueueCount(): number } }).socket
        const real = dgram.getSendQueueCount.bind(dgram)
        dgram.getSendQueueCount = () => MAX_SEND_QUEUE
        socket.send(text('dropped'), receiver.local)
        dgram.getSendQueueCount = real
        socket.send(text('sent'), receiver.local)
        for (let i = 0; i < 100 && got.length < 1; i++) await new Promise((r) => setTimeout(r, 10))
        expect(got).to.deep.equal(['sent'])
        expect(adapter.stats().sendQueueFull).to.equal(1)
      })
    })

    describe('when closed', () => {
      it('should complete datagrams$ and send nothing after', async () => {
        const from: UdpEndpoint = await adapter.openUdp({ address: '127.0.0.1', port: 0 })
        const to = await adapter.openUdp({ address: '127.0.0.1', port: 0 })
        const got: Datagram[] = []
        to.datagrams$.subscribe((d) => got.push(d))
        const all = firstValueFrom(from.datagrams$.pipe(toArray()))
        await from.close()
        await from.close()
        expect(await all).to.deep.equal([])
        from.send(text('late'), to.local)
        await new Promise((r) => setTimeout(r, 50))
        expect(got).to.have.length(0)
        expect(adapter.stats()).to.include({ openSockets: 1, datagramsSent: 0 })
      })
    })

    describe('when the signal is already aborted', () => {
      it('should reject with AbortError', async () => {
        const err = await rejection(
          adapter.openUdp({ address: '127.0.0.1', port: 0 }, { signal: AbortSignal.abort() })
        )
        expect(err.name).to.equal('AbortError')
      })
    })
  })

  describe('when addresses are held by the process (holdAddresses: process)', () => {
    let devices: FakeDevices

    beforeEach(async () => {
      await adapter.stop()
      devices = new FakeDevices()
      adapter = linuxNetworkAdapter(
        { commands: runner, devices, wait: async () => undefined },
        { interface: 'eth9', holdAddresses: 'process', devicePrefix: 'vt' }
      )
      await adapter.start()
      adapter.events$.subscribe((e) => events.push(e))
    })

    it('should put the address on a device of its own, announced on the interface', async () => {
      await adapter.acquireAddress('10.0.0.100')
      await tick()
      expect(devices.devices.map((d) => d.name)).to.deep.equal(['vt0'])
      expect(runner.lines()).to.deep.equal([
        'ip link set dev vt0 up',
        'ip addr add 10.0.0.100/32 dev vt0',
        ...Array<string>(3).fill('arping -U -c 1 -I eth9 10.0.0.100')
      ])
      expect(adapter.addresses()).to.deep.equal(['10.0.0.100'])
    })

    it('should let the device go on release, and clear the interface of an older address', async () => {
      await adapter.acquireAddress('10.0.0.100')
      runner.calls.length = 0
      await adapter.releaseAddress('10.0.0.100')
      expect(devices.devices[0]!.closed).to.equal(true)
      expect(runner.lines()).to.deep.equal(['ip addr del 10.0.0.100/32 dev eth9'])
      expect(events.map((e) => e.type)).to.deep.equal(['address:acquired', 'address:released'])
    })

    it('should report the address released when its holder dies', async () => {
      await adapter.acquireAddress('10.0.0.100')
      devices.devices[0]!.die()
      await tick()
      expect(adapter.addresses()).to.deep.equal([])
      expect(events.map((e) => e.type)).to.deep.equal(['address:acquired', 'address:released'])
    })

    it('should make the device ahead on prepareAddress, so that acquiring only adds the address', async () => {
      await adapter.prepareAddress('10.0.0.100')
      await adapter.prepareAddress('10.0.0.100')
      expect(devices.devices.map((d) => d.name)).to.deep.equal(['vt0'])
      expect(runner.lines()).to.deep.equal(['ip link set dev vt0 up'])
      expect(adapter.addresses(), 'nothing answered for yet').to.deep.equal([])
      runner.calls.length = 0
      await adapter.acquireAddress('10.0.0.100')
      expect(devices.devices.map((d) => d.name)).to.deep.equal(['vt0'])
      expect(runner.lines()[0]).to.equal('ip addr add 10.0.0.100/32 dev vt0')
      expect(runner.lines().filter((l) => l.includes('link'))).to.deep.equal([])
    })

    it('should let a device made ahead go on stop, and keep one that holds an address', async () => {
      await adapter.prepareAddress('10.0.0.100')
      await adapter.acquireAddress('10.0.0.101')
      await adapter.stop()
      expect(devices.devices.map((d) => [d.name, d.closed])).to.deep.equal([
        ['vt0', true],
        ['vt1', false]
      ])
    })

    it('should let go of a device whose making a stop overtook', async () => {
      const preparing = adapter.prepareAddress('10.0.0.100')
      await adapter.stop()
      const err = await rejection(preparing)
      expect(err.name).to.equal('NotStartedError')
      expect(devices.devices.map((d) => d.closed)).to.deep.equal([true])
    })

    it('should make one device when a prepare and an acquire run at once', async () => {
      await Promise.all([
        adapter.prepareAddress('10.0.0.100'),
        adapter.acquireAddress('10.0.0.100')
      ])
      expect(devices.devices.map((d) => d.name)).to.deep.equal(['vt0'])
      expect(runner.lines().filter((l) => l.includes('link'))).to.have.length(1)
    })

    it('should make the device again on acquire when the prepared one died', async () => {
      await adapter.prepareAddress('10.0.0.100')
      devices.devices[0]!.die()
      await tick()
      await adapter.acquireAddress('10.0.0.100')
      expect(devices.devices.map((d) => d.name)).to.deep.equal(['vt0', 'vt1'])
      expect(adapter.addresses()).to.deep.equal(['10.0.0.100'])
    })

    it('should let the device go when the address cannot be added to it', async () => {
      runner.answer = (c) =>
        c.args[1] === 'add'
          ? { exitCode: 2, stderr: 'RTNETLINK answers: Operation not permitted' }
          : {}
      const err = await rejection(adapter.acquireAddress('10.0.0.100'))
      expect(err.name).to.equal('NetworkCommandError')
      expect(devices.devices[0]!.closed).to.equal(true)
    })
  })

  describe('with a route socket (rtnetlink instead of ip)', () => {
    let route: FakeRoute
    let devices: FakeDevices

    function routed(init: Partial<LinuxNetworkAdapterInit> = {}): LinuxNetworkAdapter {
      devices = new FakeDevices()
      return linuxNetworkAdapter(
        { commands: runner, devices, netlink: route, wait: async () => undefined },
        { interface: 'eth9', devicePrefix: 'vt', ...init }
      )
    }

    beforeEach(async () => {
      await adapter.stop()
      route = new FakeRoute()
      adapter = routed()
      await adapter.start()
      adapter.events$.subscribe((e) => events.push(e))
    })

    it('should add and remove the address by request, and run no ip', async () => {
      await adapter.acquireAddress('10.0.0.100')
      await adapter.releaseAddress('10.0.0.100')
      expect(route.requests).to.deep.equal(['add 10.0.0.100/32 2', 'del 10.0.0.100/32 2'])
      expect(runner.lines().filter((l) => l.startsWith('ip '))).to.deep.equal([])
      expect(events.map((e) => e.type)).to.deep.equal(['address:acquired', 'address:released'])
    })

    it('should add IPv6 with nodad, as ip addr add ... nodad', async () => {
      await adapter.acquireAddress('fd00::64')
      expect(route.requests).to.deep.equal([
        `add ${[0xfd, ...Array<number>(14).fill(0), 0x64].join('.')}/128 2 nodad`
      ])
    })

    it('should take an address already there (EEXIST) as acquired, and one not there (EADDRNOTAVAIL) as released', async () => {
      route.answer = -17
      await adapter.acquireAddress('10.0.0.100')
      expect(adapter.addresses()).to.deep.equal(['10.0.0.100'])
      route.answer = -99
      await adapter.releaseAddress('10.0.0.100')
      await adapter.releaseAddress('10.0.0.101')
      expect(events.map((e) => e.type)).to.deep.equal(['address:acquired', 'address:released'])
      expect(adapter.stats().commandFailures).to.equal(0)
    })

    it('should throw NetworkCommandError naming the request and the errno, count it and hold nothing', async () => {
      route.answer = -1
      const err = await rejection(adapter.acquireAddress('10.0.0.100'))
      expect(err.name).to.equal('NetworkCommandError')
      expect(err.command).to.equal('netlink RTM_NEWADDR 10.0.0.100/32 dev eth9')
      expect(err.message).to.include('EPERM')
      expect(adapter.stats().commandFailures).to.equal(1)
      expect(adapter.addresses()).to.deep.equal([])
      expect(events).to.deep.equal([])
    })

    it('should throw InvalidConfigError naming interface when the device does not exist', async () => {
      route.devices.clear()
      const err = await rejection(adapter.acquireAddress('10.0.0.100'))
      expect(err.name).to.equal('InvalidConfigError')
      expect(err.message).to.include('interface')
    })

    it('should bring a held device up by request, and put the address on it', async () => {
      await adapter.stop()
      adapter = routed({ holdAddresses: 'process' })
      await adapter.start()
      route.devices.set('vt0', 7)
      await adapter.acquireAddress('10.0.0.100')
      expect(route.requests).to.deep.equal(['up 7', 'add 10.0.0.100/32 7'])
    })

    it('should reject an aborted call before any request', async () => {
      const err = await rejection(
        adapter.acquireAddress('10.0.0.100', { signal: AbortSignal.abort() })
      )
      expect(err.name).to.equal('AbortError')
      expect(route.requests).to.deep.equal([])
    })
  })

  describe('with a packet socket (gratuitous ARP without arping)', () => {
    let arp: FakeArp

    beforeEach(async () => {
      await adapter.stop()
      arp = new FakeArp()
      adapter = linuxNetworkAdapter(
        {
          commands: runner,
          arp,
          wait: async (ms, signal) => {
            waits.push({ ms, signal })
          }
        },
        { interface: 'eth9' }
      )
      await adapter.start()
      adapter.announcements$.subscribe((e) => announcements.push(e))
    })

    it('should send the announcements itself, a second apart, out of the interface, and run no arping', async () => {
      await adapter.acquireAddress('10.0.0.100')
      await tick()
      // request, sender 02:00:00:00:00:09 at 10.0.0.100, target broadcast at 10.0.0.100
      const request = '0001080006040001' + '020000000009' + '0a000064' + 'ffffffffffff' + '0a000064'
      expect(arp.sent).to.deep.equal(Array(3).fill({ index: 2, packet: request }))
      // a second from each packet's start (less the few ms its send took)
      expect(waits).to.have.length(2)
      for (const w of waits) expect(w.ms).to.be.within(900, 1000)
      expect(runner.lines().filter((l) => l.startsWith('arping'))).to.deep.equal([])
      expect(announcements).to.deep.equal([{ type: 'announce:sent', address: '10.0.0.100' }])
      expect(adapter.stats().announcements).to.equal(1)
      await adapter.stop()
      expect(arp.closed, "the caller's socket is the caller's to close").to.equal(false)
    })

    it('should look the device up once per series, and again for the next one', async () => {
      await adapter.acquireAddress('10.0.0.100')
      await tick()
      expect(arp.sent).to.have.length(3)
      expect(arp.lookups).to.deep.equal({ ifindex: 1, hardwareAddress: 1 })
      arp.macEnd = 0x0a
      await adapter.acquireAddress('fd00::64')
      await tick()
      expect(arp.sent).to.have.length(6)
      expect(arp.lookups).to.deep.equal({ ifindex: 2, hardwareAddress: 2 })
      // the next series has the device as it is now
      for (const { packet } of arp.sent.slice(3))
        expect(packet.endsWith('02000000000a')).to.equal(true)
    })

    it('should announce IPv6 with unsolicited neighbour advertisements (override, target link-layer address)', async () => {
      await adapter.acquireAddress('fd00::64')
      await tick()
      const na = 'na 8800000020000000' + 'fd' + '00'.repeat(14) + '64' + '0201' + '020000000009'
      expect(arp.sent).to.deep.equal(Array(3).fill({ index: 2, packet: na }))
      expect(announcements).to.deep.equal([{ type: 'announce:sent', address: 'fd00::64' }])
    })

    it('should leave IPv6 with ipv6Dad to the kernel, which advertises after DAD', async () => {
      await adapter.stop()
      runner.answer = (c) =>
        c.args.includes('show') ? { stdout: '[{"addr_info":[{"local":"fd00::64"}]}]' } : {}
      adapter = linuxNetworkAdapter(
        { commands: runner, arp, wait: async () => undefined },
        { interface: 'eth9', ipv6Dad: true }
      )
      await adapter.start()
      await adapter.acquireAddress('fd00::64')
      await tick()
      expect(arp.sent).to.deep.equal([])
    })

    it('should count and report a packet the kernel refused, and hold the address all the same', async () => {
      arp.answer = -1
      await adapter.acquireAddress('10.0.0.100')
      await tick()
      expect(arp.sent).to.have.length(1)
      expect(adapter.addresses()).to.deep.equal(['10.0.0.100'])
      expect(adapter.stats().announcementFailures).to.equal(1)
      expect(announcements).to.have.length(1)
      expect(announcements[0]).to.include({ type: 'announce:failed', address: '10.0.0.100' })
      expect((announcements[0] as { error: string }).error).to.include('EPERM')
    })

    it('should send no more packets once the address is released', async () => {
      const held = linuxNetworkAdapter(
        {
          commands: runner,
          arp,
          wait: (_ms, signal) =>
            new Promise((resolve) => signal.addEventListener('abort', () => resolve()))
        },
        { interface: 'eth9' }
      )
      await held.start()
      await held.acquireAddress('10.0.0.100')
      await tick()
      await held.releaseAddress('10.0.0.100')
      await tick()
      expect(arp.sent).to.have.length(1)
      await held.stop()
    })
  })
})
