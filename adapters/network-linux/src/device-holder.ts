import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { NetworkCommandError, throwIfAborted, type AbortOptions } from '@vipsec/interface'

/** A network device that exists only while it is held. */
export interface HeldDevice {
  /** The device's name. */
  readonly name: string
  /** Resolves when the device is gone (closed, or its holder died). */
  readonly gone: Promise<void>
  /** Lets the device go (it disappears with whatever is on it); resolves when it is gone. */
  close(): Promise<void>
}

/** Makes devices that live only while held. */
export interface DeviceHolder {
  /**
   * Creates a device named `name` and holds it.
   *
   * @param name - the device name (1 to 15 characters)
   * @param options - an abort signal
   * @throws NetworkCommandError when the device cannot be made
   */
  hold(name: string, options?: AbortOptions): Promise<HeldDevice>
}

/** Options of a {@link TapDeviceHolder}. */
export interface TapDeviceHolderInit {
  /** util-linux `setpriv`. Default `setpriv`. */
  setprivPath?: string
  /** `perl` (Debian's essential `perl-base` has what is needed). Default `perl`. */
  perlPath?: string
  /** How long to wait for the device, ms. Default 5000. */
  timeoutMs?: number
}

/**
 * Opens `/dev/net/tun`, makes a non-persistent TAP device (IFF_TAP | IFF_NO_PI with TUNSETIFF),
 * says `ready`, and keeps the descriptor open by reading from it until it is killed. The kernel
 * removes a non-persistent TAP device, with every address on it, when its last descriptor closes.
 */
const HOLDER_SCRIPT = [
  'use strict;',
  'my $name = $ARGV[0];',
  'sysopen(my $fh, "/dev/net/tun", 2) or die "open /dev/net/tun: $!\\n";',
  'my $ifr = pack("Z16 s x22", $name, 0x0002 | 0x1000);',
  'ioctl($fh, 0x400454ca, $ifr) or die "TUNSETIFF $name: $!\\n";',
  '$| = 1; print "ready\\n";',
  'my $buf; while (1) { defined(sysread($fh, $buf, 65536)) or last; }'
].join(' ')

/**
 * Holds each device in a small process of its own: `setpriv --pdeathsig KILL perl` keeps a
 * non-persistent TAP device open. The kernel kills that process when this one dies, however it
 * dies (`kill -9` included), and removes the device with it: nothing of this process's
 * cooperation is needed for the address on it to leave the host.
 */
export class TapDeviceHolder implements DeviceHolder {
  private readonly setpriv: string
  private readonly perl: string
  private readonly timeoutMs: number

  /** @param init - program paths and timeout */
  constructor(init: TapDeviceHolderInit = {}) {
    this.setpriv = init.setprivPath ?? 'setpriv'
    this.perl = init.perlPath ?? 'perl'
    this.timeoutMs = init.timeoutMs ?? 5000
  }

  /** {@inheritDoc DeviceHolder.hold} */
  async hold(name: string, options?: AbortOptions): Promise<HeldDevice> {
    throwIfAborted(options?.signal)
    const command = `${this.setpriv} --pdeathsig KILL -- ${this.perl} -e <holder> ${name}`
    const proc = spawn(
      this.setpriv,
      ['--pdeathsig', 'KILL', '--', this.perl, '-e', HOLDER_SCRIPT, name],
      { stdio: ['ignore', 'pipe', 'pipe'] }
    )
    let stderr = ''
    proc.stderr.on('data', (d) => (stderr += String(d)))
    const gone = new Promise<void>((resolve) => {
      proc.once('exit', () => resolve())
      proc.once('error', () => resolve())
    })
    await new Promise<void>((resolve, reject) => {
      let settled = false
      const fail = (why: string): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
        reject(new NetworkCommandError(command, why))
      }
      const timer = setTimeout(() => fail(`no device after ${this.timeoutMs} ms`), this.timeoutMs)
      proc.once('error', (err) => fail(err.message))
      proc.once('exit', (code, sig) =>
        fail(stderr.trim() || `exited ${code ?? sig} before the device was made`)
      )
      createInterface({ input: proc.stdout }).once('line', (line) => {
        if (line !== 'ready') return fail(`unexpected output: ${line}`)
        if (settled) return
        settled = true
        clearTimeout(timer)
        resolve()
      })
      options?.signal?.addEventListener('abort', () => fail('aborted'))
    })
    return {
      name,
      gone,
      close: async () => {
        if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
        await gone
      }
    }
  }
}
