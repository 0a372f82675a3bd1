/**
 * Three namespaces in a row, vipsec behind a NAT: `v` (10.232.S.1/24) — `n` (10.232.S.2 and
 * 10.233.S.2) — `c` (10.233.S.1/24, charon). `n` forwards, masquerades what vipsec sends with
 * its source ports remapped into 20000-29999 (so IKE leaves from neither 500 nor 4500, as behind
 * a NAT that rewrites ports), and forwards its own ports 500 and 4500 to vipsec (so that charon
 * can initiate to vipsec through the NAT too). `c` has no route to 10.232.S.0/24: all it sees
 * is `n`'s outer address.
 */
import { execFileSync } from 'node:child_process'
import { sh } from '../helpers/netns.js'

/** vipsec behind a masquerading, port-remapping NAT namespace, charon outside. */
export class NatTopology {
  /** vipsec's namespace. */
  readonly v: string
  /** The NAT's namespace. */
  readonly n: string
  /** charon's namespace. */
  readonly c: string
  /** vipsec's (private) address. */
  readonly vAddr: string
  /** The NAT's outer address: vipsec's address as charon sees it. */
  readonly nOuter: string
  /** charon's address. */
  readonly cAddr: string
  private readonly dev = (side: string): string => `n${side}${process.pid % 100000}`

  /**
   * @param tag - makes the namespace names unique
   * @param subnet - the third octet of both /24s
   */
  constructor(tag: string, subnet: number) {
    this.v = `vipsec-${tag}-v`
    this.n = `vipsec-${tag}-n`
    this.c = `vipsec-${tag}-c`
    this.vAddr = `10.232.${subnet}.1`
    this.nOuter = `10.233.${subnet}.2`
    this.cAddr = `10.233.${subnet}.1`
  }

  /** Builds the three namespaces, the two links, the routes and the NAT rules. */
  up(): void {
    for (const ns of [this.v, this.n, this.c]) {
      sh('ip', ['netns', 'add', ns])
      sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
    }
    const inner = this.vAddr.replace(/\.1$/, '.2')
    const pairs: [string, string, string, string, string, string][] = [
      [this.v, this.dev('v'), `${this.vAddr}/24`, this.n, this.dev('a'), `${inner}/24`],
      [this.c, this.dev('c'), `${this.cAddr}/24`, this.n, this.dev('b'), `${this.nOuter}/24`]
    ]
    for (const [ns1, d1, a1, ns2, d2, a2] of pairs) {
      sh('ip', ['link', 'add', d1, 'type', 'veth', 'peer', 'name', d2])
      sh('ip', ['link', 'set', d1, 'netns', ns1])
      sh('ip', ['link', 'set', d2, 'netns', ns2])
      sh('ip', ['-n', ns1, 'addr', 'add', a1, 'dev', d1])
      sh('ip', ['-n', ns2, 'addr', 'add', a2, 'dev', d2])
      sh('ip', ['-n', ns1, 'link', 'set', d1, 'up'])
      sh('ip', ['-n', ns2, 'link', 'set', d2, 'up'])
    }
    sh('ip', ['-n', this.v, 'route', 'add', 'default', 'via', inner])
    sh('ip', ['netns', 'exec', this.n, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1'])
    const rules = `table ip vipsec_nat {
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "${this.dev('b')}" udp dport { 500, 4500 } dnat to ${this.vAddr}
  }
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "${this.dev('b')}" ip saddr ${this.vAddr} meta l4proto udp counter masquerade to :20000-29999
  }
}
`
    // nft reads the ruleset from stdin: the rules never touch the file system
    execFileSync('ip', ['netns', 'exec', this.n, 'nft', '-f', '-'], {
      input: rules,
      stdio: ['pipe', 'ignore', 'pipe']
    })
  }

  /** How many packets the masquerade rule rewrote so far (read from nft's counter). */
  masqueraded(): number {
    const out = sh('ip', [
      'netns',
      'exec',
      this.n,
      'nft',
      'list',
      'chain',
      'ip',
      'vipsec_nat',
      'post'
    ])
    return Number(/counter packets (\d+)/.exec(out)?.[1] ?? 0)
  }

  /** Deletes the three namespaces; never throws. */
  down(): void {
    for (const ns of [this.v, this.n, this.c]) {
      try {
        sh('ip', ['netns', 'del', ns])
      } catch {
        // already gone
      }
    }
  }
}
