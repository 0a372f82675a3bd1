/**
 * Test helper: runs a real `redis-server` on a free loopback port with its own temporary data
 * directory and append-only file, and stops it by its pid. System tests of any package can reuse
 * it.
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, connect, type Socket } from 'node:net'
import { connect as connectTls } from 'node:tls'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** Options of {@link RedisServer.start}. */
export interface RedisServerOptions {
  /** The port; default: a free loopback port found by binding port 0. */
  port?: number
  /** The data directory; default: a new temporary directory, removed by {@link RedisServer.remove}. */
  dir?: string
  /**
   * Extra `redis-server` arguments, each config line as `['--name', 'value', ...]`, e.g.
   * `['--user', 'alice', 'on', '>secret', '~*', '&*', '+@all']`.
   */
  args?: string[]
  /** A configuration file, given to `redis-server` first (e.g. for `--sentinel`). Default: none. */
  configFile?: string
  /**
   * Serve TLS only, with this certificate and key (PEM file paths), on the port; clients are not
   * asked for certificates. Default: plain TCP.
   */
  tls?: { certFile: string; keyFile: string }
}

/** Finds a free TCP port on 127.0.0.1 by binding port 0 and closing again. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

const sleep = async (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Sends one inline command and resolves with the first line of the reply ('' on error). */
async function ask(port: number, command: string, tls: boolean): Promise<string> {
  return new Promise((resolve) => {
    const socket: Socket = tls
      ? connectTls({ host: '127.0.0.1', port, rejectUnauthorized: false })
      : connect({ host: '127.0.0.1', port })
    let data = ''
    const done = (line: string): void => {
      socket.destroy()
      resolve(line)
    }
    socket.setTimeout(1000, () => done(''))
    socket.on('error', () => done(''))
    socket.on(tls ? 'secureConnect' : 'connect', () => socket.write(command))
    socket.on('data', (chunk) => {
      data += chunk.toString('utf8')
      const nl = data.indexOf('\r\n')
      if (nl >= 0) done(data.slice(0, nl))
    })
  })
}

/** A `redis-server` process started by a test. */
export class RedisServer {
  /** The loopback port it listens on. */
  readonly port: number
  /** Its data directory (append-only file and all). */
  readonly dir: string
  private readonly args: string[]
  private readonly tls: RedisServerOptions['tls']
  private readonly configFile: string | undefined
  private readonly ownsDir: boolean
  private child: ChildProcess | undefined
  private exited: Promise<void> = Promise.resolve()
  private output = ''

  private constructor(port: number, dir: string, ownsDir: boolean, options: RedisServerOptions) {
    this.port = port
    this.dir = dir
    this.ownsDir = ownsDir
    this.args = options.args ?? []
    this.tls = options.tls
    this.configFile = options.configFile
  }

  /**
   * Starts a server and waits until it answers PING.
   *
   * @param options - port, directory, extra arguments
   */
  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'vipsec-redis-')))
    const port = options.port ?? (await freePort())
    const server = new RedisServer(port, dir, options.dir === undefined, options)
    await server.launch()
    return server
  }

  /** The pid of the running process, if any. */
  get pid(): number | undefined {
    const child = this.child
    return child !== undefined && child.exitCode === null && child.signalCode === null
      ? child.pid
      : undefined
  }

  /** What the server printed so far (for failure messages). */
  get log(): string {
    return this.output
  }

  /** Starts the process (again, on the same port and directory) and waits for PING. */
  async launch(): Promise<void> {
    if (this.pid !== undefined) throw new Error('redis-server is already running')
    const child = spawn(
      'redis-server',
      [
        ...(this.configFile === undefined ? [] : [this.configFile]),
        ...(this.tls === undefined
          ? ['--port', String(this.port)]
          : [
              '--port',
              '0',
              '--tls-port',
              String(this.port),
              '--tls-cert-file',
              this.tls.certFile,
              '--tls-key-file',
              this.tls.keyFile,
              '--tls-ca-cert-file',
              this.tls.certFile,
              '--tls-auth-clients',
              'no'
            ]),
        '--bind',
        '127.0.0.1',
        '--dir',
        this.dir,
        '--appendonly',
        'yes',
        '--save',
        '',
        '--daemonize',
        'no',
        ...this.args
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] }
    )
    this.child = child
    child.stdout?.on('data', (d: Buffer) => (this.output += d.toString('utf8')))
    child.stderr?.on('data', (d: Buffer) => (this.output += d.toString('utf8')))
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()))
    for (let i = 0; i < 200; i++) {
      if (child.exitCode !== null) break
      // a server whose default user needs a password answers NOAUTH: it is up all the same
      const reply = await ask(this.port, 'PING\r\n', this.tls !== undefined)
      if (reply === '+PONG' || reply.startsWith('-NOAUTH')) return
      await sleep(50)
    }
    await this.stop()
    throw new Error(`redis-server did not answer PING on port ${this.port}:\n${this.output}`)
  }

  /** Kills the process at once (SIGKILL), as a crash would, and waits for it to exit. */
  async kill(): Promise<void> {
    const pid = this.pid
    if (pid === undefined) return
    process.kill(pid, 'SIGKILL')
    await this.exited
  }

  /** Stops the process: SIGTERM, then SIGKILL if it is still there after 5 s. */
  async stop(): Promise<void> {
    const pid = this.pid
    if (pid === undefined) return
    process.kill(pid, 'SIGTERM')
    const timeout = sleep(5000).then(() => 'timeout' as const)
    if ((await Promise.race([this.exited.then(() => 'exited' as const), timeout])) === 'timeout') {
      if (this.pid !== undefined) process.kill(pid, 'SIGKILL')
      await this.exited
    }
  }

  /** Stops the process and removes the data directory if this helper made it. */
  async remove(): Promise<void> {
    await this.stop()
    if (this.ownsDir) await rm(this.dir, { recursive: true, force: true })
  }
}
