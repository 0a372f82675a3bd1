// The TCP proxy of store-proxy.mjs, run in a cluster's store namespace in front of Redis.
import type { ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import { waitFor } from '../../../../adapters/ike-v2/test/helpers/netns.js'

/** What the proxy reported: `{ ready: true }`, `{ lost: '10.88.0.2' }`. */
export type ProxyReport = { ready: true } | { lost: string }

/**
 * A TCP proxy in front of Redis (helpers/store-proxy.mjs) that can lose the reply to one claim
 * of one client: the claim is applied, its answer never arrives.
 */
export class StoreProxy {
  /** Everything it reported, in order. */
  readonly reports: ProxyReport[] = []

  /**
   * @param spawn - starts `node store-proxy.mjs ...` in the store's namespace (stdio piped)
   * @param listen - the address and port it listens on (the cluster file's store address)
   * @param redis - the Redis server's address and port
   */
  constructor(
    private readonly spawn: (cmd: string, args: string[]) => ChildProcess,
    private readonly listen: { host: string; port: number },
    private readonly redis: { host: string; port: number }
  ) {}

  private proc?: ChildProcess

  /** Starts it and waits until it listens. */
  async start(): Promise<void> {
    const script = fileURLToPath(new URL('./store-proxy.mjs', import.meta.url))
    this.proc = this.spawn(process.execPath, [
      script,
      this.listen.host,
      String(this.listen.port),
      this.redis.host,
      String(this.redis.port)
    ])
    createInterface({ input: this.proc.stdout! }).on('line', (line) =>
      this.reports.push(JSON.parse(line) as ProxyReport)
    )
    await waitFor(() => this.reports.some((r) => 'ready' in r), 10_000, 'the store proxy')
  }

  /**
   * Loses the reply to the next claim one of `clients` (addresses) sends, and all after it on
   * that connection: one reply, to whichever of them claims first.
   */
  loseClaimReply(...clients: string[]): void {
    this.proc!.stdin!.write(JSON.stringify({ cmd: 'lose-claim-reply', clients }) + '\n')
  }

  /** Takes back an armed {@link loseClaimReply}. */
  disarm(): void {
    this.proc?.stdin?.write(JSON.stringify({ cmd: 'disarm' }) + '\n')
  }

  /** Whether it lost a claim's reply to `client`. */
  lost(client: string): boolean {
    return this.reports.some((r) => 'lost' in r && r.lost === client)
  }

  /** The client address whose claim's reply it lost first, among the reports from `from` on. */
  lostTo(from = 0): string | undefined {
    for (const r of this.reports.slice(from)) if ('lost' in r) return r.lost
    return undefined
  }
}
