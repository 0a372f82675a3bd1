/**
 * Test helper: a network of namespaces for real partitions. One namespace `TAG-sw` holds two
 * bridges, `br0` (everyone) and `br1` (the far side of a partition); every node has a namespace
 * `TAG-NAME` of its own, joined to the switch by a veth pair (`eth0` inside, `pNAME` in the
 * switch) on `10.OCTET.0.x/24`. Faults cut links in the switch only: a link set down isolates its
 * node alone; moving links to `br1` splits the network in two. A back door (a veth pair straight
 * between two nodes, with host routes) lets two nodes reach each other whatever the switch does.
 * Nothing is configured in the root namespace.
 *
 * @module
 */
import { execFile } from 'node:child_process'

/** Runs `ip ARGS`, rejecting with its stderr on failure (at most 5 s). */
async function ip(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('ip', args, { timeout: 5000 }, (err, _stdout, stderr) =>
      err === null ? resolve() : reject(new Error(`ip ${args.join(' ')}: ${stderr || err.message}`))
    )
  })
}

/** A network of namespaces built by {@link PartitionNet.up}. */
export class PartitionNet {
  private readonly backdoors: Array<[string, string]> = []
  private readonly silenced: Array<[string, string]> = []

  private constructor(
    /** The namespace prefix. */
    readonly tag: string,
    /** Node name to its address. */
    readonly addresses: ReadonlyMap<string, string>
  ) {}

  /** The switch namespace. */
  get switchNs(): string {
    return `${this.tag}-sw`
  }

  /**
   * The namespace of a node.
   *
   * @param node - its name
   */
  ns(node: string): string {
    return `${this.tag}-${node}`
  }

  /**
   * The address of a node.
   *
   * @param node - its name
   */
  address(node: string): string {
    const address = this.addresses.get(node)
    if (address === undefined) throw new Error(`no node ${node}`)
    return address
  }

  /**
   * Builds the namespaces; removes what it built when a step fails.
   *
   * @param tag - namespace prefix, unique to the caller (letters, digits, at most 8)
   * @param octet - second octet of the test subnet, 10.OCTET.0.0/24
   * @param nodes - node names (letters and digits); node i gets 10.OCTET.0.(i + 1)
   */
  static async up(tag: string, octet: number, nodes: string[]): Promise<PartitionNet> {
    if (!/^[A-Za-z0-9]{1,8}$/.test(tag)) throw new Error(`bad tag ${tag}`)
    const addresses = new Map(nodes.map((n, i) => [n, `10.${octet}.0.${i + 1}`]))
    const net = new PartitionNet(tag, addresses)
    await net.down()
    try {
      const sw = net.switchNs
      await ip(['netns', 'add', sw])
      for (const br of ['br0', 'br1']) {
        await ip(['-n', sw, 'link', 'add', br, 'type', 'bridge'])
        await ip(['-n', sw, 'link', 'set', br, 'up'])
      }
      for (const node of nodes) {
        const ns = net.ns(node)
        await ip(['netns', 'add', ns])
        await ip(['-n', sw, 'link', 'add', `p${node}`, 'type', 'veth', 'peer', 'name', `i${node}`])
        await ip(['-n', sw, 'link', 'set', `i${node}`, 'netns', ns])
        await ip(['-n', ns, 'link', 'set', `i${node}`, 'name', 'eth0'])
        await ip(['-n', sw, 'link', 'set', `p${node}`, 'master', 'br0'])
        await ip(['-n', sw, 'link', 'set', `p${node}`, 'up'])
        await ip(['-n', ns, 'addr', 'add', `${net.address(node)}/24`, 'dev', 'eth0'])
        await ip(['-n', ns, 'link', 'set', 'eth0', 'up'])
        await ip(['-n', ns, 'link', 'set', 'lo', 'up'])
      }
    } catch (err) {
      await net.down()
      throw err
    }
    return net
  }

  /**
   * Cuts a node off from everyone: its link in the switch goes down.
   *
   * @param node - its name
   */
  async isolate(node: string): Promise<void> {
    await ip(['-n', this.switchNs, 'link', 'set', `p${node}`, 'down'])
  }

  /**
   * Splits the network: `nodes` reach one another and nobody else.
   *
   * @param nodes - the far side
   */
  async split(nodes: string[]): Promise<void> {
    for (const node of nodes) {
      await ip(['-n', this.switchNs, 'link', 'set', `p${node}`, 'master', 'br1'])
    }
  }

  /**
   * Joins two nodes by a link of their own, which switch faults do not cut.
   *
   * @param a - one node
   * @param b - the other
   */
  async backdoor(a: string, b: string): Promise<void> {
    await ip(['-n', this.ns(a), 'link', 'add', `to${b}`, 'type', 'veth', 'peer', 'name', `to${a}`])
    this.backdoors.push([a, b])
    await ip(['-n', this.ns(a), 'link', 'set', `to${a}`, 'netns', this.ns(b)])
    for (const [x, y] of [
      [a, b],
      [b, a]
    ] as const) {
      await ip(['-n', this.ns(x), 'link', 'set', `to${y}`, 'up'])
      await ip(['-n', this.ns(x), 'route', 'add', `${this.address(y)}/32`, 'dev', `to${y}`])
    }
  }

  /**
   * Makes what `node` sends to each of `peers` vanish without an answer, as behind a cable cut
   * past the switch: its neighbour entry for them names a link address nobody has, so a
   * connection attempt is never refused, it just hangs (the link stays up, nothing is reported).
   *
   * @param node - the sender
   * @param peers - whom it cannot reach any more
   */
  async silence(node: string, peers: string[]): Promise<void> {
    for (const peer of peers) {
      this.silenced.push([node, peer])
      await ip([
        ...['-n', this.ns(node), 'neigh', 'replace', this.address(peer)],
        ...['lladdr', '02:00:00:00:00:01', 'dev', 'eth0', 'nud', 'permanent']
      ])
    }
  }

  /** Heals every fault: every link up and on `br0`, no back doors, nobody silenced. */
  async heal(): Promise<void> {
    for (const [node, peer] of this.silenced.splice(0)) {
      await ip(['-n', this.ns(node), 'neigh', 'del', this.address(peer), 'dev', 'eth0']).catch(
        () => undefined
      )
    }
    for (const [a, b] of this.backdoors.splice(0)) {
      await ip(['-n', this.ns(a), 'link', 'del', `to${b}`]).catch(() => undefined)
    }
    for (const node of this.addresses.keys()) {
      await ip(['-n', this.switchNs, 'link', 'set', `p${node}`, 'master', 'br0'])
      await ip(['-n', this.switchNs, 'link', 'set', `p${node}`, 'up'])
    }
  }

  /** Deletes every namespace of the network (ignoring those that are gone already). */
  async down(): Promise<void> {
    for (const node of [...this.addresses.keys(), 'sw']) {
      await ip(['netns', 'del', `${this.tag}-${node}`]).catch(() => undefined)
    }
  }
}
