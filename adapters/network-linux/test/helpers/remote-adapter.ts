/**
 * A LinuxNetworkAdapter in another network namespace, seen from the test process as a
 * NetworkAdapter: {@link AdapterChild} runs adapter-child.ts under `ip netns exec` and
 * {@link RemoteNetworkAdapter} forwards each call to it over a pipe (JSON lines, payloads in
 * base64). The test process itself configures nothing in the root namespace.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { Subject, type Observable } from 'rxjs'
import type {
  AbortOptions,
  Datagram,
  Endpoint,
  NetworkAdapter,
  NetworkEvent,
  UdpEndpoint
} from '@vipsec/interface'
import type {
  AnnouncementEvent,
  LinuxNetworkAdapterInit,
  LinuxNetworkStats
} from '../../src/index.js'

interface Reply {
  ready?: boolean
  id?: number
  result?: unknown
  error?: { name: string; message: string; argument?: string; field?: string; command?: string }
  event?: NetworkEvent
  eventsComplete?: boolean
  announcement?: AnnouncementEvent
  datagram?: { handle: number; data: string; from: Endpoint }
  closed?: number
}

/** The child process that runs adapters in one namespace. */
export class AdapterChild {
  private proc: ChildProcess | undefined
  private nextId = 1
  private readonly waiting = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >()
  private stderr = ''
  /** The adapter that receives unsolicited lines now. */
  current: RemoteNetworkAdapter | undefined

  /** @param ns - the network namespace to run in */
  constructor(readonly ns: string) {}

  /** Starts the child and waits until it is ready (bounded). */
  async start(): Promise<void> {
    const script = new URL('./adapter-child.ts', import.meta.url).pathname
    const proc = spawn(
      'ip',
      [
        'netns',
        'exec',
        this.ns,
        process.execPath,
        '--import',
        'tsx',
        '--conditions=vipsec-source',
        script
      ],
      { stdio: ['pipe', 'pipe', 'pipe'], cwd: process.cwd() }
    )
    this.proc = proc
    proc.stderr!.on('data', (d) => (this.stderr += String(d)))
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`child in ${this.ns} not ready`)), 30_000)
      proc.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`child in ${this.ns} exited ${code}: ${this.stderr}`))
      })
      createInterface({ input: proc.stdout! }).on('line', (line) => {
        const m = JSON.parse(line) as Reply
        if (m.ready === true) {
          clearTimeout(timer)
          resolve()
        }
        this.dispatch(m)
      })
    })
  }

  private dispatch(m: Reply): void {
    if (m.id !== undefined) {
      const w = this.waiting.get(m.id)
      this.waiting.delete(m.id)
      if (m.error !== undefined) {
        const { name, message, ...fields } = m.error
        w?.reject(Object.assign(new Error(message), { name }, fields))
      } else {
        w?.resolve(m.result)
      }
      return
    }
    this.current?.receive(m)
  }

  /**
   * Sends a command and waits for its answer.
   *
   * @param cmd - the command
   * @param args - its arguments
   */
  call<T = unknown>(cmd: string, args?: unknown): Promise<T> {
    const id = this.nextId++
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject })
      this.proc!.stdin!.write(JSON.stringify({ id, cmd, args }) + '\n')
    })
  }

  /**
   * Makes a fresh adapter in the child (stopping the previous one).
   *
   * @param init - its options
   */
  async createAdapter(init: LinuxNetworkAdapterInit): Promise<RemoteNetworkAdapter> {
    await this.call('create', { init })
    this.current = new RemoteNetworkAdapter(this)
    return this.current
  }

  /** Kills the child with SIGKILL (as `kill -9` would) and waits until it is gone (bounded). */
  async kill(): Promise<void> {
    const proc = this.proc
    if (proc?.pid === undefined || proc.exitCode !== null || proc.signalCode !== null) return
    const exited = new Promise((r) => proc.once('exit', r))
    process.kill(proc.pid, 'SIGKILL')
    await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))])
  }

  /** Asks the child to exit, then kills it by pid if it has not (bounded). */
  async stop(): Promise<void> {
    const proc = this.proc
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return
    const exited = new Promise((r) => proc.once('exit', r))
    proc.stdin!.write(JSON.stringify({ id: 0, cmd: 'exit' }) + '\n')
    await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))])
    if (proc.exitCode === null && proc.signalCode === null && proc.pid !== undefined) {
      try {
        process.kill(proc.pid, 'SIGKILL')
      } catch {
        // gone already
      }
    }
  }
}

/** A UDP endpoint of a remote adapter. */
class RemoteUdpEndpoint implements UdpEndpoint {
  private readonly subject = new Subject<Datagram>()

  constructor(
    private readonly child: AdapterChild,
    readonly handle: number,
    readonly local: Endpoint
  ) {}

  get datagrams$(): Observable<Datagram> {
    return this.subject.asObservable()
  }

  send(data: Uint8Array, to: Endpoint): void {
    void this.child.call('send', {
      handle: this.handle,
      data: Buffer.from(data).toString('base64'),
      to
    })
  }

  async close(): Promise<void> {
    await this.child.call('close', { handle: this.handle })
  }

  /** @internal */
  push(d: Datagram): void {
    this.subject.next(d)
  }

  /** @internal */
  complete(): void {
    this.subject.complete()
  }
}

/** A NetworkAdapter whose every call runs in the child's LinuxNetworkAdapter. */
export class RemoteNetworkAdapter implements NetworkAdapter {
  private events = new Subject<NetworkEvent>()
  private readonly announcementSubject = new Subject<AnnouncementEvent>()
  private readonly endpoints = new Map<number, RemoteUdpEndpoint>()
  private started = false

  constructor(private readonly child: AdapterChild) {}

  get events$(): Observable<NetworkEvent> {
    return this.events.asObservable()
  }

  /** The child adapter's announcements (not completed on stop here). */
  get announcements$(): Observable<AnnouncementEvent> {
    return this.announcementSubject.asObservable()
  }

  async start(): Promise<void> {
    if (this.events.isStopped) this.events = new Subject()
    await this.child.call('start')
    this.started = true
  }

  async stop(): Promise<void> {
    await this.child.call('stop')
    this.started = false
  }

  isStarted(): boolean {
    return this.started
  }

  async acquireAddress(address: string, options?: AbortOptions): Promise<void> {
    await this.child.call('acquire', { address, aborted: options?.signal?.aborted === true })
  }

  async releaseAddress(address: string, options?: AbortOptions): Promise<void> {
    await this.child.call('release', { address, aborted: options?.signal?.aborted === true })
  }

  async openUdp(local: Endpoint, options?: AbortOptions): Promise<UdpEndpoint> {
    const r = await this.child.call<{ handle: number; local: Endpoint }>('open', {
      local,
      aborted: options?.signal?.aborted === true
    })
    const endpoint = new RemoteUdpEndpoint(this.child, r.handle, r.local)
    this.endpoints.set(r.handle, endpoint)
    return endpoint
  }

  /** The child adapter's counters. */
  stats(): Promise<LinuxNetworkStats> {
    return this.child.call<LinuxNetworkStats>('stats')
  }

  /** @internal Handles an unsolicited line of the child. */
  receive(m: Reply): void {
    if (m.event !== undefined) this.events.next(m.event)
    if (m.eventsComplete === true) this.events.complete()
    if (m.announcement !== undefined) this.announcementSubject.next(m.announcement)
    if (m.datagram !== undefined) {
      this.endpoints.get(m.datagram.handle)?.push({
        data: new Uint8Array(Buffer.from(m.datagram.data, 'base64')),
        from: m.datagram.from
      })
    }
    if (m.closed !== undefined) this.endpoints.get(m.closed)?.complete()
  }
}
