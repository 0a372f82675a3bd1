// A `vipsec node` process in a network namespace, with the JSON lines it logged: shared by the
// system tests that run a cluster of real processes.
import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../..', import.meta.url))

/** One `vipsec node --config <file>` process in namespace `ns`, and what it logged. */
export class NodeProcess {
  readonly lines: Record<string, unknown>[] = []
  readonly proc: ChildProcess

  /**
   * @param name - the node's name, for messages
   * @param ns - the network namespace it runs in
   * @param config - its node file
   */
  constructor(
    readonly name: string,
    readonly ns: string,
    readonly config: string
  ) {
    const bin = join(root, 'packages/cli/src/bin.ts')
    const args = ['netns', 'exec', ns, process.execPath, '--import', 'tsx']
    args.push('--conditions=vipsec-source', bin, 'node', '--config', config)
    this.proc = spawn('ip', args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
    createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      try {
        this.lines.push(JSON.parse(line) as Record<string, unknown>)
      } catch {
        this.lines.push({ type: 'text', line })
      }
    })
    createInterface({ input: this.proc.stderr! }).on('line', (line) =>
      this.lines.push({ type: 'stderr', line })
    )
  }

  /** How many lines of `type` (with the given fields) it logged. */
  count(type: string, where: Record<string, unknown> = {}): number {
    return this.lines.filter(
      (l) => l.type === type && Object.entries(where).every(([k, v]) => l[k] === v)
    ).length
  }

  /** Whether it logged a line of `type` (with the given fields). */
  has(type: string, where: Record<string, unknown> = {}): boolean {
    return this.count(type, where) > 0
  }

  /** Whether it is still running. */
  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null
  }

  /** Sends a signal (by pid) if it still runs. */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (!this.running || this.proc.pid === undefined) return
    try {
      process.kill(this.proc.pid, signal)
    } catch {
      // it exited meanwhile
    }
  }

  /** SIGTERM, then SIGKILL after 3 s. */
  async stop(): Promise<void> {
    if (!this.running) return
    const exited = new Promise((resolve) => this.proc.once('exit', resolve))
    this.kill('SIGTERM')
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 3000))])
    this.kill('SIGKILL')
  }
}
