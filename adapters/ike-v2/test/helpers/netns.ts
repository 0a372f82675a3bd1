/** Network namespaces, charon and the vipsec peer process for the strongSwan system tests. */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

/** Two namespaces joined by a veth pair: `v` (vipsec) and `c` (charon). */
export class Topology {
  readonly v: string
  readonly c: string
  readonly vAddr: string
  readonly cAddr: string
  constructor(tag: string, subnet: number) {
    this.v = `vipsec-${tag}-v`
    this.c = `vipsec-${tag}-c`
    this.vAddr = `10.231.${subnet}.1`
    this.cAddr = `10.231.${subnet}.2`
  }

  up(): void {
    sh('ip', ['netns', 'add', this.v])
    sh('ip', ['netns', 'add', this.c])
    const vEth = `vv${process.pid % 100000}`
    const cEth = `vc${process.pid % 100000}`
    sh('ip', ['link', 'add', vEth, 'type', 'veth', 'peer', 'name', cEth])
    sh('ip', ['link', 'set', vEth, 'netns', this.v])
    sh('ip', ['link', 'set', cEth, 'netns', this.c])
    sh('ip', ['-n', this.v, 'addr', 'add', `${this.vAddr}/24`, 'dev', vEth])
    sh('ip', ['-n', this.c, 'addr', 'add', `${this.cAddr}/24`, 'dev', cEth])
    for (const [ns, dev] of [
      [this.v, vEth],
      [this.c, cEth]
    ]) {
      sh('ip', ['-n', ns, 'link', 'set', dev, 'up'])
      sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
    }
  }

  down(): void {
    for (const ns of [this.v, this.c]) {
      try {
        sh('ip', ['netns', 'del', ns])
      } catch {
        // already gone
      }
    }
  }
}

/** charon with kernel-libipsec in a namespace, driven through swanctl. */
export class Charon {
  readonly run: string
  private proc?: ChildProcess
  private pid?: number
  constructor(private readonly ns: string) {
    this.run = mkdtempSync(join(tmpdir(), 'vipsec-charon-'))
  }

  get uri(): string {
    return `unix://${this.run}/charon.vici`
  }

  async start(swanctlConf: string): Promise<void> {
    writeFileSync(
      join(this.run, 'strongswan.conf'),
      `charon {
  port = 500
  port_nat_t = 4500
  load = random nonce openssl pem pkcs1 pkcs8 x509 pubkey hmac kdf kernel-libipsec kernel-netlink socket-default vici updown
  install_virtual_ip = no
  retransmit_tries = 3
  delete_rekeyed_delay = 0
  plugins {
    vici {
      socket = ${this.uri}
    }
  }
  filelog {
    main {
      path = ${this.run}/charon.log
      default = 2
    }
  }
}
`
    )
    writeFileSync(join(this.run, 'swanctl.conf'), swanctlConf)
    this.proc = spawn(
      'ip',
      [
        'netns',
        'exec',
        this.ns,
        'unshare',
        '-m',
        'sh',
        '-c',
        `mount -t tmpfs none /run && STRONGSWAN_CONF=${this.run}/strongswan.conf exec /usr/lib/ipsec/charon`
      ],
      { stdio: 'ignore' }
    )
    this.pid = this.proc.pid
    for (let i = 0; i < 100; i++) {
      try {
        this.swanctl(['--stats'])
        this.swanctl(['--load-all', '--file', join(this.run, 'swanctl.conf')])
        return
      } catch {
        await new Promise((r) => setTimeout(r, 100))
      }
    }
    throw new Error(`charon did not come up: ${this.log().slice(-2000)}`)
  }

  swanctl(args: string[]): string {
    return sh('swanctl', [...args, '--uri', this.uri])
  }

  /** The IKE SAs charon holds, as `swanctl --list-sas --raw` lines. */
  ikeSas(): string[] {
    return this.swanctl(['--list-sas', '--raw'])
      .split('\n')
      .filter((l) => l.startsWith('list-sa event'))
  }

  log(): string {
    try {
      return readFileSync(join(this.run, 'charon.log'), 'utf8')
    } catch {
      return ''
    }
  }

  async stop(): Promise<void> {
    if (this.pid !== undefined && this.proc?.exitCode === null) {
      const exited = new Promise((r) => this.proc!.once('exit', r))
      try {
        process.kill(this.pid, 'SIGTERM')
      } catch {
        // gone
      }
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))])
      if (this.proc?.exitCode === null) {
        try {
          process.kill(this.pid, 'SIGKILL')
        } catch {
          // gone
        }
      }
    }
    if (process.env.KEEP_CHARON_LOG === undefined)
      rmSync(this.run, { recursive: true, force: true })
  }
}

/** Serialises config with byte arrays for the peer process. */
export function encodeArg(v: unknown): string {
  return JSON.stringify(v, (_k, x) =>
    x instanceof Uint8Array ? { $bytes: Buffer.from(x).toString('base64') } : x
  )
}

/** The vipsec peer process in a namespace. */
export class VipsecPeer {
  private proc?: ChildProcess
  private nextId = 1
  private readonly waiting = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >()
  readonly events: { type: string; [k: string]: unknown }[] = []
  readonly lines: string[] = []
  private ready?: Promise<void>

  constructor(
    private readonly ns: string,
    private readonly config: unknown
  ) {}

  async start(): Promise<void> {
    const script = new URL('../system/peer.ts', import.meta.url).pathname
    this.proc = spawn(
      'ip',
      [
        'netns',
        'exec',
        this.ns,
        process.execPath,
        '--expose-gc',
        '--import',
        'tsx',
        '--conditions=vipsec-source',
        script,
        encodeArg(this.config)
      ],
      { stdio: ['pipe', 'pipe', 'pipe'], cwd: process.cwd() }
    )
    let stderr = ''
    this.proc.stderr!.on('data', (d) => (stderr += String(d)))
    this.ready = new Promise((resolve, reject) => {
      this.proc!.once('exit', (code) => reject(new Error(`peer exited ${code}: ${stderr}`)))
      createInterface({ input: this.proc!.stdout! }).on('line', (line) => {
        this.lines.push(line)
        let m: {
          ready?: boolean
          id?: number
          result?: unknown
          error?: { message: string; kind?: string }
          event?: { type: string }
        }
        try {
          m = JSON.parse(line)
        } catch {
          return
        }
        if (m.ready === true) resolve()
        if (m.event !== undefined) this.events.push(m.event)
        if (m.id !== undefined) {
          const w = this.waiting.get(m.id)
          this.waiting.delete(m.id)
          if (m.error !== undefined)
            w?.reject(Object.assign(new Error(m.error.message), { kind: m.error.kind }))
          else w?.resolve(m.result)
        }
      })
    })
    await this.ready
  }

  call<T = unknown>(cmd: string, args?: unknown): Promise<T> {
    const id = this.nextId++
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject })
      this.proc!.stdin!.write(encodeArg({ id, cmd, args }) + '\n')
    })
  }

  async stop(): Promise<void> {
    if (this.proc === undefined || this.proc.exitCode !== null) return
    const exited = new Promise((r) => this.proc!.once('exit', r))
    await Promise.race([
      this.call('stop').catch(() => undefined),
      new Promise((r) => setTimeout(r, 2000))
    ])
    await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))])
    if (this.proc.exitCode === null && this.proc.pid !== undefined) {
      try {
        process.kill(this.proc.pid, 'SIGKILL')
      } catch {
        // gone
      }
    }
  }
}

/** A UDP echo server in a namespace (bound to an inner address). */
export function startEcho(ns: string, address: string, port: number): ChildProcess {
  const code = `const d=require('node:dgram').createSocket('udp4');d.on('message',(m,r)=>d.send(Buffer.concat([Buffer.from('echo:'),m]),r.port,r.address));d.bind(${port},'${address}',()=>console.log('ready'))`
  return spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', code], {
    stdio: ['ignore', 'pipe', 'ignore']
  })
}

export async function waitFor<T>(
  fn: () => T | undefined | false,
  ms: number,
  what: string
): Promise<T> {
  const end = Date.now() + ms
  for (;;) {
    const v = fn()
    if (v !== undefined && v !== false) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}
