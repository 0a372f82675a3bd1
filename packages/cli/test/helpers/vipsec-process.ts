// One `vipsec node` process in a network namespace, with the JSON lines it logged and its
// metrics: the one such helper of every system test that runs a real cluster (the CLI's own, and
// test/system's through the `@vipsec/cli/test/vipsec-process` export).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../../../..', import.meta.url))

/** One `vipsec node` process and what it logged. */
export class VipsecProcess {
  /** Every line it logged, parsed (`{ type: 'text', line }` for a line that is not JSON, `{ type: 'stderr', line }` for stderr). */
  readonly lines: Record<string, unknown>[] = []
  /** The process (`ip netns exec` runs node in its place, so the pid is node's). */
  readonly proc: ChildProcess
  /** Resolves with the exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>

  /**
   * @param name - the node id
   * @param config - its node file
   * @param ns - its network namespace
   * @param nodeArgs - extra options for node itself (e.g. `--cpu-prof`)
   */
  constructor(
    readonly name: string,
    readonly config: string,
    readonly ns: string,
    nodeArgs: readonly string[] = []
  ) {
    this.proc = spawn(
      'ip',
      [
        'netns',
        'exec',
        ns,
        process.execPath,
        ...nodeArgs,
        '--import',
        'tsx',
        '--conditions=vipsec-source',
        join(root, 'packages/cli/src/bin.ts'),
        'node',
        '--config',
        config
      ],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] }
    )
    this.exited = new Promise((resolve) => this.proc.once('exit', (code) => resolve(code)))
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

  /** Whether it still runs. */
  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null
  }

  /**
   * Reads the node's `/metrics` (its node file must have `admin`): the value of every sample
   * of `name` whose labels include `labels`, summed.
   */
  metric(name: string, labels: Record<string, string> = {}): number {
    const port = this.lines.find((l) => l.type === 'node:started')?.adminPort
    if (typeof port !== 'number') throw new Error(`${this.name} serves no metrics`)
    const text = execFileSync(
      'ip',
      ['netns', 'exec', this.ns, 'curl', '-s', '-m', '5', `http://127.0.0.1:${port}/metrics`],
      { encoding: 'utf8' }
    )
    let sum = 0
    for (const line of text.split('\n')) {
      const m = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line)
      if (m === null || m[1] !== name) continue
      const have = Object.fromEntries(
        [...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]])
      )
      if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3])
    }
    return sum
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

  /** SIGTERM, then SIGKILL if it has not exited after 5 s. */
  async stop(): Promise<void> {
    if (!this.running) return
    this.kill('SIGTERM')
    await Promise.race([this.exited, new Promise((resolve) => setTimeout(resolve, 5000))])
    this.kill('SIGKILL')
  }
}
