/**
 * The systemd notification protocol (`Type=notify`, sd_notify(3)): `READY=1` once the node owns
 * or backs up every DVIPA with a confirmed epoch, `STATUS=` lines, `RELOADING=1` around a
 * reload, `STOPPING=1` at shutdown, and `WATCHDOG=1` every half `WATCHDOG_USEC` while the event
 * loop runs. Node.js has no Unix datagram sockets, and the one npm binding (sd-notify) is a
 * native addon, so the datagrams go through a helper: a long-lived `python3` that writes each
 * line it reads to `$NOTIFY_SOCKET` (it stays in the service's cgroup, so systemd attributes
 * every message), or `systemd-notify` run once per message where python3 is missing. Either
 * way the unit needs `NotifyAccess=all`.
 *
 * @module
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import type { VipsecNode } from '@vipsec/container'
import { TOKENS, type DvipaStatus } from '@vipsec/interface'
import { isReady } from './metrics.js'

/** How the datagrams are sent. */
export type NotifyVia = 'python3' | 'systemd-notify'

const HELPER = `
import json, socket, sys
path = sys.argv[1]
if path.startswith('@'):
    path = '\\0' + path[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for line in sys.stdin:
    try:
        s.sendto(json.loads(line).encode(), path)
    except OSError as e:
        sys.stderr.write('sd_notify: %s\\n' % e)
`

/** Sends sd_notify messages to a notification socket. */
export class SystemdNotifier {
  /** The socket (`$NOTIFY_SOCKET`: a path, or `@name` for the abstract namespace). */
  readonly socket: string
  /** How the datagrams are sent. */
  readonly via: NotifyVia
  /** Messages handed to the helper. */
  sent = 0
  private helper: ChildProcess | undefined

  /**
   * @param socket - the socket
   * @param via - `python3` (default when it runs here) or `systemd-notify`
   */
  constructor(socket: string, via?: NotifyVia) {
    this.socket = socket
    this.via =
      via ??
      (spawnSync('python3', ['-c', ''], { stdio: 'ignore' }).status === 0
        ? 'python3'
        : 'systemd-notify')
  }

  /**
   * Sends one message, e.g. `{ READY: 1, STATUS: 'owner of 10.0.0.1' }`. Never throws: a lost
   * notification is logged by the helper on stderr.
   *
   * @param fields - the variables of the message
   */
  send(fields: Record<string, string | number>): void {
    const lines = Object.entries(fields).map(([k, v]) => `${k}=${String(v).replace(/\n/g, ' ')}`)
    this.sent++
    if (this.via === 'systemd-notify') {
      const child = spawn('systemd-notify', lines, {
        stdio: 'ignore',
        env: { ...process.env, NOTIFY_SOCKET: this.socket }
      })
      child.on('error', () => undefined)
      child.unref()
      return
    }
    if (this.helper === undefined) {
      this.helper = spawn('python3', ['-c', HELPER, this.socket], {
        stdio: ['pipe', 'ignore', 'inherit']
      })
      this.helper.on('error', () => undefined)
      this.helper.unref()
      ;(this.helper.stdin as unknown as { unref?: () => void }).unref?.()
    }
    this.helper.stdin?.write(`${JSON.stringify(lines.join('\n'))}\n`)
  }

  /** Ends the helper once it has sent what it was given. */
  close(): Promise<void> {
    const helper = this.helper
    this.helper = undefined
    if (helper === undefined || helper.exitCode !== null) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        helper.kill()
        resolve()
      }, 2000)
      helper.once('exit', () => {
        clearTimeout(timer)
        resolve()
      })
      helper.stdin?.end()
    })
  }
}

/**
 * A notifier for `$NOTIFY_SOCKET`, or undefined when the process does not run under
 * `Type=notify`.
 *
 * @param env - the environment (default `process.env`)
 */
export function systemdNotifier(env: NodeJS.ProcessEnv = process.env): SystemdNotifier | undefined {
  const socket = env.NOTIFY_SOCKET
  return socket === undefined || socket === '' ? undefined : new SystemdNotifier(socket)
}

/** One `STATUS=` line: what the node does for each DVIPA. */
export function statusLine(node: VipsecNode): string {
  if (!node.has(TOKENS.DistributionProcessor)) return `target ${node.nodeId}`
  let status: DvipaStatus[] = []
  node
    .get(TOKENS.DistributionProcessor)
    .status$.subscribe((s) => (status = s))
    .unsubscribe()
  return status.map((s) => `${s.role} of ${s.dvipa} (epoch ${s.epoch})`).join(', ')
}

/**
 * Tells systemd about a node's life: `READY=1` with a `STATUS=` once {@link isReady} holds (a
 * DP owns or backs up every DVIPA with a confirmed epoch), a new `STATUS=` whenever it
 * changes, and `WATCHDOG=1` every half `watchdogUsec`. Returns the function to call at
 * shutdown: it sends `STOPPING=1` and ends the timers.
 *
 * @param node - the node
 * @param notifier - where to send
 * @param options - the watchdog interval (`$WATCHDOG_USEC`) and how often readiness is checked
 */
export function notifyLifecycle(
  node: VipsecNode,
  notifier: SystemdNotifier,
  options: { watchdogUsec?: number; checkMs?: number } = {}
): () => Promise<void> {
  let ready = false
  let last = ''
  const check = (): void => {
    const status = statusLine(node)
    if (!ready && isReady(node)) {
      ready = true
      last = status
      notifier.send({ READY: 1, STATUS: status, MAINPID: process.pid })
    } else if (ready && status !== last) {
      last = status
      notifier.send({ STATUS: status })
    }
  }
  const timer = setInterval(check, options.checkMs ?? 100)
  timer.unref()
  check()
  const usec = options.watchdogUsec ?? 0
  const watchdog =
    usec > 0
      ? setInterval(() => notifier.send({ WATCHDOG: 1 }), Math.max(1, usec / 2000))
      : undefined
  watchdog?.unref()
  return async () => {
    clearInterval(timer)
    if (watchdog !== undefined) clearInterval(watchdog)
    notifier.send({ STOPPING: 1, STATUS: 'stopping: handing over what it owns' })
  }
}
