// Faults injected into a ClusterFixture's namespaces, each undone by `heal()` (and all of them
// by `healAll()`), used by the ownership-faults system test:
//
// - cutting traffic with policy-routing rules (`ip rule ... blackhole`, no iptables or tc
//   actions needed): a rule matches the packets a namespace sends by destination, protocol and
//   port, so one DP can lose the store's replies only, be cut off from the store only, or lose
//   its heartbeats to the other DPs only, while everything else it sends still flows;
// - pausing a node with SIGSTOP and resuming it with SIGCONT;
// - losing the store's data: Redis killed and started again with its append-only file deleted.
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { ADDR, sh, type ClusterFixture } from './cluster-fixture.js'

/** One blackhole rule in a namespace: what a node stops sending. */
export interface Cut {
  /** The namespace's short name (`dp-1`, `store`, ...). */
  from: string
  /** The destination address. */
  to: string
  /** `tcp` or `udp`. */
  protocol: 'tcp' | 'udp'
  /** Match the destination port (`dport`) or the source port (`sport`). */
  port: { dport: number } | { sport: number }
}

/** The heartbeat port every node uses (the cluster file's default). */
export const HEARTBEAT_PORT = 7500
/** The Redis port. */
export const REDIS_PORT = 6379

/** Injects and heals faults in one cluster; remembers what it did so that all of it is undone. */
export class Faults {
  private readonly cuts: Cut[] = []

  constructor(private readonly cluster: ClusterFixture) {}

  /** Drops every packet `cut.from` sends that matches the cut (silently: no error, no reset). */
  cut(cut: Cut): void {
    sh('ip', ['netns', 'exec', this.cluster.ns(cut.from), 'ip', 'rule', 'add', ...selector(cut)])
    this.cuts.push(cut)
  }

  /** Removes one cut again. */
  heal(cut: Cut): void {
    const i = this.cuts.indexOf(cut)
    if (i < 0) return
    this.cuts.splice(i, 1)
    try {
      sh('ip', ['netns', 'exec', this.cluster.ns(cut.from), 'ip', 'rule', 'del', ...selector(cut)])
    } catch {
      // the namespace is gone
    }
  }

  /** Removes every cut still in place and resumes every paused node. */
  healAll(): void {
    for (const c of [...this.cuts]) this.heal(c)
    for (const node of this.cluster.nodes.values()) node.kill('SIGCONT')
  }

  /** The store's replies to `dp` are lost: its requests still reach Redis and are applied. */
  loseStoreReplies(dp: string): Cut {
    const c: Cut = { from: 'store', to: ADDR[dp]!, protocol: 'tcp', port: { sport: REDIS_PORT } }
    this.cut(c)
    return c
  }

  /** `dp` is cut off from the store only, both ways (everything else it sends flows). */
  cutFromStore(dp: string): Cut[] {
    const out: Cut = { from: dp, to: ADDR.store!, protocol: 'tcp', port: { dport: REDIS_PORT } }
    const back: Cut = { from: 'store', to: ADDR[dp]!, protocol: 'tcp', port: { sport: REDIS_PORT } }
    this.cut(out)
    this.cut(back)
    return [out, back]
  }

  /** The heartbeats `from` sends to `to` are lost (one way). */
  cutHeartbeats(from: string, to: string): Cut {
    const c: Cut = { from, to: ADDR[to]!, protocol: 'udp', port: { dport: HEARTBEAT_PORT } }
    this.cut(c)
    return c
  }

  /** Everything `from` sends to `to` is lost (one way), e.g. a DP's IKE and ESP to the peer. */
  cutAll(from: string, to: string): Cut[] {
    const cuts = (['tcp', 'udp'] as const).map((protocol): Cut => ({
      from,
      to: ADDR[to]!,
      protocol,
      port: { dport: 0 }
    }))
    for (const c of cuts) {
      sh('ip', ['netns', 'exec', this.cluster.ns(from), 'ip', 'rule', 'add', ...selector(c)])
      this.cuts.push(c)
    }
    return cuts
  }

  /** Stops `node` with SIGSTOP (a paused process: a VM freeze, a long GC, a starved host). */
  pause(node: string): void {
    this.cluster.node(node).kill('SIGSTOP')
  }

  /** Resumes a paused `node` with SIGCONT. */
  resume(node: string): void {
    this.cluster.node(node).kill('SIGCONT')
  }

  /**
   * The store loses everything: Redis is killed with SIGKILL, its append-only file deleted, and
   * it starts again (still with `appendonly yes`) on an empty data set.
   */
  async loseStoreData(): Promise<void> {
    await this.cluster.killRedis()
    rmSync(join(this.cluster.dir, 'appendonlydir'), { recursive: true, force: true })
    rmSync(join(this.cluster.dir, 'appendonly.aof'), { force: true })
    rmSync(join(this.cluster.dir, 'dump.rdb'), { force: true })
    await this.cluster.startRedis()
  }
}

/** The `ip rule` selector and action of a cut (port 0: every port of the protocol). */
function selector(c: Cut): string[] {
  const port =
    'dport' in c.port
      ? c.port.dport === 0
        ? []
        : ['dport', String(c.port.dport)]
      : ['sport', String(c.port.sport)]
  return ['to', c.to, 'ipproto', c.protocol, ...port, 'priority', '100', 'blackhole']
}
