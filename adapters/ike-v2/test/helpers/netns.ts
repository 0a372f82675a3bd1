/**
 * Network namespaces, charon and the vipsec peer process for the strongSwan system tests (and
 * the benches and cluster tests that run charon): one place for the namespaces, charon's own
 * `/run` tmpfs, pid, VICI socket, strongswan.conf and log, `swanctl --load-all`, and the vipsec
 * side driven over JSON lines. See /work/shared/INTEROP.md for why charon is run this way.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

/** Runs a command and returns its stdout; throws (with its stderr) when it fails. */
export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

/**
 * Throws unless charon and the plugins the tests load are installed (AES-GCM, X25519 and the
 * rest come from strongSwan's openssl plugin, a Recommends that a minimal install lacks).
 */
export function requireStrongSwan(): void {
  for (const [file, pkg] of [
    ['/usr/lib/ipsec/charon', 'strongswan-charon'],
    ['/usr/lib/ipsec/plugins/libstrongswan-openssl.so', 'libstrongswan-standard-plugins'],
    ['/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so', 'libcharon-extra-plugins']
  ]) {
    if (!existsSync(file))
      throw new Error(`${file} is missing: apt-get install ${pkg} (scripts/install-system-deps.sh)`)
  }
}

/** Sends SIGKILL to a child process by its pid, if it still runs. */
export function killProcess(p: ChildProcess | undefined): void {
  if (p?.pid === undefined || p.exitCode !== null || p.signalCode !== null) return
  try {
    process.kill(p.pid, 'SIGKILL')
  } catch {
    // it exited meanwhile
  }
}

/** Two namespaces joined by a veth pair: `v` (vipsec) and `c` (charon). */
export class Topology {
  /** vipsec's namespace. */
  readonly v: string
  /** charon's namespace. */
  readonly c: string
  /** vipsec's outer address. */
  readonly vAddr: string
  /** charon's outer address. */
  readonly cAddr: string
  /** The name of charon's end of the veth pair (inside `c`). */
  readonly cDev = `vc${process.pid % 100000}`
  /** The name of vipsec's end of the veth pair (inside `v`). */
  readonly vDev = `vv${process.pid % 100000}`

  /**
   * @param tag - makes the namespace names unique (`vipsec-TAG-v`, `vipsec-TAG-c`)
   * @param subnet - the third octet of the outer /24 (10.231.SUBNET.0/24)
   */
  constructor(tag: string, subnet: number) {
    this.v = `vipsec-${tag}-v`
    this.c = `vipsec-${tag}-c`
    this.vAddr = `10.231.${subnet}.1`
    this.cAddr = `10.231.${subnet}.2`
  }

  /** Creates both namespaces and the veth pair, with `lo` up in each. */
  up(): void {
    sh('ip', ['netns', 'add', this.v])
    sh('ip', ['netns', 'add', this.c])
    const vEth = this.vDev
    const cEth = this.cDev
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

  /** Deletes both namespaces (and with them the veth pair); never throws. */
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

/** Options of a {@link Charon}. */
export interface CharonOptions {
  /** More lines inside `charon { }` of its strongswan.conf (e.g. `fragment_size = 1280`). */
  extra?: string
  /** The filelog's `default` level (2: control; 4 also logs derived keys). Default 2. */
  logLevel?: number
  /** Whether the file log is flushed after each line (`flush_line`), for tests that wait on it. */
  flushLine?: boolean
  /**
   * How long charon keeps the inbound SA of a rekeyed Child SA, s (`delete_rekeyed_delay`).
   * Default 0 here (the tests see one SA per side at once); charon's own default is 5.
   */
  deleteRekeyedDelay?: number
}

/**
 * charon with kernel-libipsec in a namespace, driven through swanctl: its own folder (a fresh
 * temp dir with strongswan.conf, swanctl.conf, the credential folders, the VICI socket and the
 * log), its own `/run` (a tmpfs in a private mount namespace, so that its pid file and the
 * default socket never meet another charon's), stopped by its own pid.
 */
export class Charon {
  /** Its folder: strongswan.conf, swanctl.conf, x509/, x509ca/, private/, the log. */
  readonly run: string
  private proc?: ChildProcess
  private pid?: number

  /**
   * @param ns - the namespace charon runs in
   * @param options - strongswan.conf additions
   */
  constructor(
    private readonly ns: string,
    private readonly options: CharonOptions = {}
  ) {
    this.run = mkdtempSync(join(tmpdir(), 'vipsec-charon-'))
    // swanctl --load-all loads the credentials in the folders next to the swanctl.conf given
    for (const dir of ['x509', 'x509ca', 'private'])
      mkdirSync(join(this.run, dir), { recursive: true })
  }

  /** The VICI socket, for `swanctl --uri`. */
  get uri(): string {
    return `unix://${this.run}/charon.vici`
  }

  /** Whether its process still runs. */
  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null
  }

  /**
   * Writes a credential file into one of its folders (`x509`: its own certificate, `x509ca`:
   * CA certificates, roots and intermediates, `private`: its key) and returns the path.
   * They are loaded by the next {@link load} (or {@link start}).
   */
  credential(folder: 'x509' | 'x509ca' | 'private', name: string, pem: string): string {
    const file = join(this.run, folder, name)
    writeFileSync(file, pem, { mode: 0o600 })
    return file
  }

  /** Starts charon, waits for its VICI socket and loads `swanctlConf`. */
  async start(swanctlConf: string): Promise<void> {
    writeFileSync(
      join(this.run, 'strongswan.conf'),
      `charon {
  port = 500
  port_nat_t = 4500
  load = random nonce openssl pem pkcs1 pkcs8 x509 pubkey hmac kdf kernel-libipsec kernel-netlink socket-default vici updown
  install_virtual_ip = no
  retransmit_tries = 3
  delete_rekeyed_delay = ${this.options.deleteRekeyedDelay ?? 0}
${this.options.extra ?? ''}
  plugins {
    vici {
      socket = ${this.uri}
    }
  }
  filelog {
    main {
      path = ${this.run}/charon.log
      default = ${this.options.logLevel ?? 2}
      flush_line = ${this.options.flushLine === true ? 'yes' : 'no'}
    }
  }
}
`
    )
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
        break
      } catch {
        if (i === 99) throw new Error(`charon did not come up: ${this.log().slice(-2000)}`)
        await new Promise((r) => setTimeout(r, 100))
      }
    }
    this.load(swanctlConf)
  }

  /**
   * Writes `swanctlConf` and runs `swanctl --load-all` with it: connections no longer in it are
   * unloaded (their SAs stay until terminated), credentials in the folders are (re)loaded.
   */
  load(swanctlConf: string): void {
    writeFileSync(join(this.run, 'swanctl.conf'), swanctlConf)
    this.swanctl(['--load-all', '--file', join(this.run, 'swanctl.conf')])
  }

  /** Runs swanctl against this charon's VICI socket and returns its output. */
  swanctl(args: string[]): string {
    return sh('swanctl', [...args, '--uri', this.uri])
  }

  /**
   * Terminates every IKE SA charon holds, half-open ones included, without waiting for the
   * peer's answer to each delete; returns once `--list-sas` is empty (or after 5 s).
   */
  async terminateAll(): Promise<void> {
    const end = Date.now() + 5000
    for (;;) {
      const ids = [...this.swanctl(['--list-sas', '--raw']).matchAll(/\{uniqueid=(\d+) /g)].map(
        (m) => m[1]!
      )
      if (ids.length === 0 || Date.now() > end) return
      for (const id of ids) {
        try {
          this.swanctl(['--terminate', '--ike-id', id, '--force', '--timeout', '2'])
        } catch {
          // gone meanwhile
        }
      }
      await new Promise((r) => setTimeout(r, 100))
    }
  }

  /** The length of its log so far: pass it to {@link log} to read only what came after. */
  logLength(): number {
    return this.log().length
  }

  /** charon's Child SAs as { in, out } SPIs (hex) from `--list-sas --raw`. */
  children(): { in: string; out: string }[] {
    const raw = this.swanctl(['--list-sas', '--raw'])
    const out: { in: string; out: string }[] = []
    for (const m of raw.matchAll(/spi-in=([0-9a-f]+) spi-out=([0-9a-f]+)/g))
      out.push({ in: m[1], out: m[2] })
    return out
  }

  /** The IKE SAs charon holds, as `swanctl --list-sas --raw` lines. */
  ikeSas(): string[] {
    return this.swanctl(['--list-sas', '--raw'])
      .split('\n')
      .filter((l) => l.startsWith('list-sa event'))
  }

  /** Its log so far ('' before it wrote one), from character `from` on. */
  log(from = 0): string {
    try {
      return readFileSync(join(this.run, 'charon.log'), 'utf8').slice(from)
    } catch {
      return ''
    }
  }

  /**
   * Stops it by its pid (SIGTERM, then SIGKILL after 3 s) and removes its folder (kept when
   * KEEP_CHARON_LOG is set, to read the log).
   */
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

/**
 * The vipsec peer process in a namespace (test/system/peer.ts): an IkeV2Service with a
 * SoftwareEspEngine on real UDP sockets, driven by JSON-line commands ({@link call}).
 */
export class VipsecPeer {
  private proc?: ChildProcess
  private nextId = 1
  private readonly waiting = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >()
  /** The service's events, in order. */
  readonly events: { type: string; [k: string]: unknown }[] = []
  /** Every line it printed. */
  readonly lines: string[] = []
  private ready?: Promise<void>

  /**
   * @param ns - its namespace
   * @param config - `{ address, init }`: the outer address it binds (ports 500 and 4500) and
   *   its IkeV2ServiceInit
   */
  constructor(
    private readonly ns: string,
    private readonly config: unknown
  ) {}

  /** Starts the process and waits until its service runs. */
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

  /** Runs one command of peer.ts (`connect`, `list`, `sendUdp`...) and returns its result. */
  call<T = unknown>(cmd: string, args?: unknown): Promise<T> {
    const id = this.nextId++
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject })
      this.proc!.stdin!.write(encodeArg({ id, cmd, args }) + '\n')
    })
  }

  /** Asks it to stop, then kills it by pid if it has not exited within 4 s. */
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

/**
 * A UDP echo server in a namespace (bound to an inner address): answers each datagram with
 * `echo:` and the datagram, to its source. Prints `ready` once bound.
 */
export function startEcho(ns: string, address: string, port: number): ChildProcess {
  const code = `const d=require('node:dgram').createSocket('udp4');d.on('message',(m,r)=>d.send(Buffer.concat([Buffer.from('echo:'),m]),r.port,r.address));d.bind(${port},'${address}',()=>console.log('ready'))`
  return spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', code], {
    stdio: ['ignore', 'pipe', 'ignore']
  })
}

/** Starts {@link startEcho} and resolves once it is bound. */
export async function echoServer(ns: string, address: string, port: number): Promise<ChildProcess> {
  const p = startEcho(ns, address, port)
  await new Promise<void>((resolve, reject) => {
    p.stdout!.once('data', () => resolve())
    p.once('exit', (code) => reject(new Error(`echo server exited ${code}`)))
  })
  return p
}

/** Polls `fn` every 100 ms until it returns a value (not undefined or false), for `ms`. */
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

/** Polls an async condition every 100 ms for `ms` (default 20 s); throws with `detail()`. */
export async function until(
  fn: () => Promise<boolean> | boolean,
  what: string,
  detail: () => string = () => '',
  ms = 20_000
): Promise<void> {
  const end = Date.now() + ms
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}; ${detail()}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** Options of {@link udpRoundTrip}. */
export interface RoundTripOptions {
  /** Inner source address (in vipsec's network). Default 172.16.1.1. */
  from?: string
  /** Inner destination (charon's echo server). Default 172.16.2.1. */
  to?: string
  /** The echo server's port. Default 5000. */
  port?: number
  /** How many times to send it (a datagram may be lost under a flood). Default 1. */
  tries?: number
  /** How long to wait for the echo of each try, ms. Default 10 s / tries. */
  waitMs?: number
  /** What to say when no echo came (e.g. charon's log tail). */
  detail?: () => string | Promise<string>
}

/**
 * Sends a datagram from vipsec through the tunnel to charon's echo server and waits for its
 * echo back through the tunnel; throws if none comes.
 */
export async function udpRoundTrip(
  peer: VipsecPeer,
  text: string,
  options: RoundTripOptions = {}
): Promise<void> {
  const tries = options.tries ?? 1
  const waitMs = options.waitMs ?? 10_000 / tries
  const to = options.to ?? '172.16.2.1'
  await peer.call('received')
  for (let attempt = 0; attempt < tries; attempt++) {
    await peer.call('sendUdp', {
      from: options.from ?? '172.16.1.1',
      to,
      sourcePort: 4000,
      destinationPort: options.port ?? 5000,
      text
    })
    const end = Date.now() + waitMs
    while (Date.now() < end) {
      const r = await peer.call<{ from: string; text: string }[]>('received')
      const hit = r.find((x) => x.text === `echo:${text}`)
      if (hit !== undefined) {
        if (hit.from !== to) throw new Error(`echo of ${text} from ${hit.from}, not ${to}`)
        return
      }
      await new Promise((r2) => setTimeout(r2, 50))
    }
  }
  throw new Error(`no echo for ${text}; ${(await options.detail?.()) ?? ''}`)
}
