/**
 * Continuous traffic through a tunnel, counted by sequence number in each direction: vipsec
 * sends numbered UDP datagrams to an echo server behind charon, the echo server reports every
 * number it received and answers it, vipsec collects the answers. A packet lost on the way out
 * is missing at the echo server; one lost on the way back is missing at vipsec.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import type { VipsecPeer } from '../helpers/netns.js'

/** A UDP echo server that also prints each datagram it received (one line each). */
export class CountingEcho {
  /** The sequence numbers it received, by stream name. */
  readonly received = new Map<string, Set<number>>()
  private readonly proc: ChildProcess
  private readonly bound: Promise<void>

  /**
   * @param ns - the namespace it runs in (charon's)
   * @param address - the inner address it binds
   * @param port - its UDP port
   */
  constructor(ns: string, address: string, port: number) {
    const code = `const d=require('node:dgram').createSocket('udp4');d.on('message',(m,r)=>{process.stdout.write(m.toString()+'\\n');d.send(Buffer.concat([Buffer.from('echo:'),m]),r.port,r.address)});d.bind(${port},'${address}',()=>console.log('ready'))`
    this.proc = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', code], {
      stdio: ['ignore', 'pipe', 'ignore']
    })
    let resolveBound: () => void = () => undefined
    this.bound = new Promise<void>((resolve, reject) => {
      resolveBound = resolve
      this.proc.once('exit', (code) => reject(new Error(`echo server exited ${code}`)))
    })
    this.bound.catch(() => undefined)
    createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      if (line === 'ready') resolveBound()
      const m = /^(\S+) (\d+)$/.exec(line)
      if (m === null) return
      let set = this.received.get(m[1])
      if (set === undefined) this.received.set(m[1], (set = new Set()))
      set.add(Number(m[2]))
    })
  }

  /** Resolves once it is bound. */
  ready(): Promise<void> {
    return this.bound
  }

  /** Kills it by pid. */
  stop(): void {
    if (this.proc.pid !== undefined && this.proc.exitCode === null) {
      try {
        process.kill(this.proc.pid, 'SIGKILL')
      } catch {
        // gone
      }
    }
  }
}

/** What one stream counted. */
export interface StreamCount {
  /** Datagrams vipsec handed to its ESP engine. */
  sent: number
  /** Of those, how many reached the echo server behind charon. */
  reached: number
  /** Echoes that came back to vipsec. */
  returned: number
  /** Datagrams vipsec could not even protect (no outbound SA at that moment). */
  unprotected: number
  /** Sequence numbers lost on the way out (vipsec to charon). */
  lostOut: number[]
  /** Sequence numbers whose echo was lost on the way back (charon to vipsec). */
  lostBack: number[]
  /** ESP packets vipsec's engine dropped meanwhile, by reason (any flow). */
  drops: Record<string, number>
}

/** Options of {@link Stream}. */
export interface StreamOptions {
  /** The stream's name (unique per test). */
  name: string
  /** Inner source address. */
  from: string
  /** Inner destination (the echo server). */
  to: string
  /** The echo server's port. */
  port: number
  /** Time between datagrams, ms. Default 10 (100 per second). */
  intervalMs?: number
}

/** Numbered datagrams from vipsec through the tunnel, paced, until {@link stop}. */
export class Stream {
  private seq = 0
  private unprotected = 0
  private running = true
  private readonly returned = new Set<number>()
  private readonly loop: Promise<void>
  private readonly linesAtStart: number

  /**
   * @param peer - the vipsec side
   * @param echo - the counting echo server behind charon
   * @param options - addresses and pace
   */
  constructor(
    private readonly peer: VipsecPeer,
    private readonly echo: CountingEcho,
    private readonly options: StreamOptions
  ) {
    this.linesAtStart = peer.lines.length
    this.loop = this.run()
  }

  private async run(): Promise<void> {
    const interval = this.options.intervalMs ?? 10
    let next = Date.now()
    while (this.running) {
      const seq = this.seq++
      try {
        await this.peer.call('sendUdp', {
          from: this.options.from,
          to: this.options.to,
          sourcePort: 4100,
          destinationPort: this.options.port,
          text: `${this.options.name} ${seq}`
        })
      } catch {
        this.unprotected++
      }
      if (seq % 10 === 9) await this.collect()
      next += interval
      const wait = next - Date.now()
      if (wait > 0) await new Promise((r) => setTimeout(r, wait))
    }
  }

  private async collect(): Promise<void> {
    const prefix = `echo:${this.options.name} `
    for (const r of await this.peer.call<{ text: string }[]>('received')) {
      if (r.text.startsWith(prefix)) this.returned.add(Number(r.text.slice(prefix.length)))
    }
  }

  /** How many datagrams were sent so far. */
  get sent(): number {
    return this.seq
  }

  /** Stops sending, waits `drainMs` for the last echoes, and counts. */
  async stop(drainMs = 1000): Promise<StreamCount> {
    this.running = false
    await this.loop
    await new Promise((r) => setTimeout(r, drainMs))
    await this.collect()
    const reached = this.echo.received.get(this.options.name) ?? new Set<number>()
    const lostOut: number[] = []
    const lostBack: number[] = []
    for (let i = 0; i < this.seq; i++) {
      if (!reached.has(i)) lostOut.push(i)
      else if (!this.returned.has(i)) lostBack.push(i)
    }
    const drops: Record<string, number> = {}
    for (const line of this.peer.lines.slice(this.linesAtStart)) {
      const m = /^\{"drop":"([^"]+)"\}$/.exec(line)
      if (m !== null) drops[m[1]!] = (drops[m[1]!] ?? 0) + 1
    }
    return {
      drops,
      sent: this.seq,
      reached: reached.size,
      returned: this.returned.size,
      unprotected: this.unprotected,
      lostOut,
      lostBack
    }
  }
}
