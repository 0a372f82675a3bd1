/**
 * A test LAN of three network namespaces: `a` and `b` (the distribution processors) and `c`
 * (a client) holding a bridge that joins them, with private addresses only inside the
 * namespaces (10.77.0.0/24). Nothing is configured in the root namespace: each veth pair is
 * made inside `c` with its peer end created directly in `a` or `b`.
 */
import { execFileSync } from 'node:child_process'

/**
 * Runs a command and returns what it printed; throws on a non-zero exit.
 *
 * @param cmd - the program
 * @param args - its arguments
 */
export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

/** The three namespaces, their device and base addresses. */
export class Lan {
  /** The namespace of node a. */
  readonly a: string
  /** The namespace of node b. */
  readonly b: string
  /** The client's namespace, which holds the bridge `br0`. */
  readonly c: string
  /** The device in `a` and `b` that the adapters put addresses on. */
  readonly device = 'eth0'
  /** IPv4 base addresses (the /24 that gives the subnet route). */
  readonly base = { a: '10.77.0.1', b: '10.77.0.2', c: '10.77.0.3' }
  /** IPv6 base addresses (the /64 that gives the subnet route), added with `nodad`. */
  readonly base6 = { a: 'fd77::1', b: 'fd77::2', c: 'fd77::3' }

  /** @param tag - distinguishes the namespaces of one test file from another's */
  constructor(tag: string) {
    const prefix = `vnl-${process.pid}-${tag}`
    this.a = `${prefix}-a`
    this.b = `${prefix}-b`
    this.c = `${prefix}-c`
  }

  /** Creates the namespaces, the bridge and the veth pairs, and brings everything up. */
  up(): void {
    for (const ns of [this.a, this.b, this.c]) {
      sh('ip', ['netns', 'add', ns])
      sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
    }
    sh('ip', ['-n', this.c, 'link', 'add', 'br0', 'type', 'bridge'])
    sh('ip', ['-n', this.c, 'link', 'set', 'br0', 'up'])
    sh('ip', ['-n', this.c, 'addr', 'add', `${this.base.c}/24`, 'dev', 'br0'])
    sh('ip', ['-n', this.c, 'addr', 'add', `${this.base6.c}/64`, 'dev', 'br0', 'nodad'])
    for (const [ns, port, address, address6] of [
      [this.a, 'port-a', this.base.a, this.base6.a],
      [this.b, 'port-b', this.base.b, this.base6.b]
    ] as const) {
      sh('ip', [
        '-n',
        this.c,
        'link',
        'add',
        port,
        'type',
        'veth',
        'peer',
        'name',
        this.device,
        'netns',
        ns
      ])
      sh('ip', ['-n', this.c, 'link', 'set', port, 'master', 'br0', 'up'])
      sh('ip', ['-n', ns, 'addr', 'add', `${address}/24`, 'dev', this.device])
      sh('ip', ['-n', ns, 'addr', 'add', `${address6}/64`, 'dev', this.device, 'nodad'])
      sh('ip', ['-n', ns, 'link', 'set', this.device, 'up'])
    }
  }

  /**
   * The MAC address of a namespace's device.
   *
   * @param ns - the namespace
   * @param device - the device (default {@link device})
   */
  mac(ns: string, device = this.device): string {
    const [link] = JSON.parse(sh('ip', ['-n', ns, '-j', 'link', 'show', device])) as {
      address: string
    }[]
    return link!.address
  }

  /**
   * The link-layer address a namespace's neighbour table holds for `address`, if any.
   *
   * @param ns - the namespace
   * @param address - the neighbour's IP address
   */
  neighbour(ns: string, address: string): string | undefined {
    const entries = JSON.parse(sh('ip', ['-n', ns, '-j', 'neigh', 'show', address])) as {
      lladdr?: string
    }[]
    return entries[0]?.lladdr
  }

  /**
   * Removes `address` from a namespace's device if it is there, and forgets the neighbours.
   *
   * @param ns - the namespace
   * @param address - an address added as /32 or /128
   */
  forget(ns: string, address: string): void {
    const length = address.includes(':') ? 128 : 32
    try {
      sh('ip', ['-n', ns, 'addr', 'del', `${address}/${length}`, 'dev', this.device])
    } catch {
      // not there
    }
    sh('ip', ['-n', ns, 'neigh', 'flush', 'all'])
  }

  /**
   * Sets a sysctl inside a namespace.
   *
   * @param ns - the namespace
   * @param setting - `name=value`
   */
  sysctl(ns: string, setting: string): void {
    sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', setting])
  }

  /** Deletes the namespaces (and with them every device and address in them). */
  down(): void {
    for (const ns of [this.a, this.b, this.c]) {
      try {
        sh('ip', ['netns', 'del', ns])
      } catch {
        // already gone
      }
    }
  }
}
