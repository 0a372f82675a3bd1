import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { expect } from 'chai'
import type { Datagram, UdpEndpoint } from '@vipsec/interface'
import { LinuxNetworkAdapter } from '../src/index.js'
import { Lan } from './helpers/lan.js'
import { AdapterChild, type RemoteNetworkAdapter } from './helpers/remote-adapter.js'

const text = (s: string): Uint8Array => new TextEncoder().encode(s)
const decode = (d: Datagram): string => new TextDecoder().decode(d.data)
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Polls `check` every 100 ms, at most `tries` times; returns its last value. */
async function poll<T>(
  check: () => T | Promise<T>,
  ok: (v: T) => boolean,
  tries = 100
): Promise<T> {
  let value = await check()
  for (let i = 0; i < tries && !ok(value); i++) {
    await sleep(100)
    value = await check()
  }
  return value
}

/** The fields tshark prints for each ARP packet or ICMPv6 message, in this order. */
const FIELDS = {
  ethSource: 'eth.src',
  arpOpcode: 'arp.opcode',
  arpSenderIp: 'arp.src.proto_ipv4',
  arpTargetIp: 'arp.dst.proto_ipv4',
  icmpv6Type: 'icmpv6.type',
  naTarget: 'icmpv6.nd.na.target_address',
  naOverride: 'icmpv6.nd.na.flag.o',
  naSolicited: 'icmpv6.nd.na.flag.s',
  ipv6Destination: 'ipv6.dst'
} as const

/** One captured packet: each field of {@link FIELDS} as tshark printed it ('' when absent). */
type Packet = Record<keyof typeof FIELDS, string>

/** tshark capturing ARP and ICMPv6 on the client's bridge, inside its namespace. */
class NeighbourCapture {
  readonly packets: Packet[] = []
  private proc: ChildProcess | undefined

  async start(ns: string, device: string): Promise<void> {
    const names = Object.keys(FIELDS) as (keyof typeof FIELDS)[]
    const args = ['netns', 'exec', ns, 'tshark', '-l', '-n', '-i', device, '-f', 'arp or icmp6']
    args.push('-T', 'fields', ...names.flatMap((n) => ['-e', FIELDS[n]]))
    const proc = spawn('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    this.proc = proc
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      const values = line.split('\t')
      this.packets.push(Object.fromEntries(names.map((n, i) => [n, values[i] ?? ''])) as Packet)
    })
    // tshark says "Capturing on 'br0'" on stderr once it captures
    await new Promise<void>((resolve, reject) => {
      let stderr = ''
      const timer = setTimeout(() => reject(new Error(`tshark did not start: ${stderr}`)), 30_000)
      proc.stderr!.on('data', (d) => {
        stderr += String(d)
        if (stderr.includes('Capturing on')) {
          clearTimeout(timer)
          resolve()
        }
      })
      proc.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`tshark exited ${code}: ${stderr}`))
      })
    })
  }

  async stop(): Promise<void> {
    const proc = this.proc
    if (proc?.pid === undefined || proc.exitCode !== null || proc.signalCode !== null) return
    const exited = new Promise((r) => proc.once('exit', r))
    process.kill(proc.pid, 'SIGTERM')
    await Promise.race([exited, sleep(3000)])
    if (proc.exitCode === null && proc.signalCode === null) process.kill(proc.pid, 'SIGKILL')
  }
}

/** What a node serving the DVIPA on port 4500 received. */
interface Served {
  got: Datagram[]
}

/** Opens `address`:4500 on `adapter`; everything received is kept and echoed back. */
async function serve(adapter: RemoteNetworkAdapter, address: string): Promise<Served> {
  const endpoint = await adapter.openUdp({ address, port: 4500 })
  const served: Served = { got: [] }
  endpoint.datagrams$.subscribe((d) => {
    served.got.push(d)
    endpoint.send(text(`echo:${decode(d)}`), d.from)
  })
  return served
}

describe(`${LinuxNetworkAdapter.name} moving a DVIPA between namespaces`, () => {
  const lan = new Lan('mov')
  const children: AdapterChild[] = []
  const capture = new NeighbourCapture()
  let a: RemoteNetworkAdapter
  let b: RemoteNetworkAdapter
  let client: RemoteNetworkAdapter
  let macA: string
  let macB: string

  before(async () => {
    lan.up()
    for (const ns of [lan.a, lan.b, lan.c]) children.push(new AdapterChild(ns))
    await Promise.all(children.map(async (c) => c.start()))
    // two ARP packets a second apart: Linux ignores an update of a neighbour entry changed less
    // than locktime (1 s) before, so the second one lands whatever came first
    const init = { interface: lan.device, gratuitousArp: { count: 2 } }
    a = await children[0]!.createAdapter(init)
    // b takes IPv6 over with duplicate address detection, after which its kernel advertises
    lan.sysctl(lan.b, `net.ipv6.conf.${lan.device}.ndisc_notify=1`)
    b = await children[1]!.createAdapter({ ...init, ipv6Dad: true })
    client = await children[2]!.createAdapter({ interface: 'br0' })
    for (const adapter of [a, b, client]) await adapter.start()
    macA = lan.mac(lan.a)
    macB = lan.mac(lan.b)
    await capture.start(lan.c, 'br0')
  })

  after(async () => {
    await capture.stop()
    await Promise.all(children.map(async (c) => c.stop()))
    lan.down()
  })

  /**
   * a serves the DVIPA and the client reaches it; then a releases it and b acquires it (or the
   * other way round, with `reverse`). Returns what each side received (`onA` the first holder's,
   * `onB` the second's), after `announced` has checked the second's announcement and the client
   * has sent a second datagram.
   */
  async function move(
    dvipa: string,
    clientAddress: string,
    announced: () => Promise<void>,
    reverse = false
  ): Promise<{ onA: Served; onB: Served; replies: Datagram[] }> {
    const [first, second] = reverse ? [b, a] : [a, b]
    const [macFirst, macSecond] = reverse ? [macB, macA] : [macA, macB]
    const from: UdpEndpoint = await client.openUdp({ address: clientAddress, port: 0 })
    const replies: Datagram[] = []
    from.datagrams$.subscribe((d) => replies.push(d))

    await first.acquireAddress(dvipa)
    const onA = await serve(first, dvipa)
    from.send(text('to-a'), { address: dvipa, port: 4500 })
    await poll(
      () => replies.length,
      (n) => n > 0
    )
    expect(lan.neighbour(lan.c, dvipa)).to.equal(macFirst)

    // the takeover: the first lets go, the second takes the address and announces it
    await first.releaseAddress(dvipa)
    await second.acquireAddress(dvipa)
    const onB = await serve(second, dvipa)
    await announced()

    // the client learned the new MAC from the announcement alone (it sent nothing meanwhile)
    const learned = await poll(
      () => lan.neighbour(lan.c, dvipa),
      (mac) => mac === macSecond
    )
    expect(learned).to.equal(macSecond)

    from.send(text('to-b'), { address: dvipa, port: 4500 })
    await poll(
      () => replies.length,
      (n) => n > 1
    )
    return { onA, onB, replies }
  }

  describe('.acquireAddress', () => {
    describe('when an IPv4 DVIPA moves from a to b', () => {
      it('should announce b with a gratuitous ARP and carry the client traffic to b', async () => {
        const dvipa = '10.77.0.100'
        const { onA, onB, replies } = await move(dvipa, lan.base.c, async () => {
          const garps = await poll(
            () => capture.packets.filter((p) => p.arpSenderIp === dvipa && p.arpTargetIp === dvipa),
            (ps) => ps.some((p) => p.ethSource === macB)
          )
          expect(garps.find((p) => p.ethSource === macB)).to.include({ arpOpcode: '1' })
          const stats = await poll(
            async () => b.stats(),
            (s) => s.announcements > 0
          )
          expect(stats).to.include({ announcements: 1, announcementFailures: 0 })
        })
        expect(onA.got.map(decode)).to.deep.equal(['to-a'])
        expect(onB.got.map(decode)).to.deep.equal(['to-b'])
        expect(replies.map(decode)).to.deep.equal(['echo:to-a', 'echo:to-b'])
        expect(replies[1]!.from).to.deep.equal({ address: dvipa, port: 4500 })
      })
    })

    describe('when an IPv6 DVIPA moves from b to a without DAD', () => {
      it('should announce a with a neighbour advertisement of its own and carry the client traffic to a', async () => {
        const dvipa = 'fd77::101'
        const before = (await a.stats()).announcements
        const { onA, onB, replies } = await move(
          dvipa,
          lan.base6.c,
          async () => {
            // unsolicited, to all nodes: not the answer to a neighbour solicitation
            const unsolicited = await poll(
              () =>
                capture.packets.filter(
                  (p) =>
                    p.icmpv6Type === '136' &&
                    p.naTarget === dvipa &&
                    p.ethSource === macA &&
                    p.naSolicited === '0'
                ),
              (ps) => ps.length > 0
            )
            expect(unsolicited[0]).to.include({ naOverride: '1', ipv6Destination: 'ff02::1' })
            const stats = await poll(
              async () => a.stats(),
              (s) => s.announcements > before
            )
            expect(stats.announcements - before, 'announcements that a completed').to.equal(1)
            expect(stats.announcementFailures).to.equal(0)
          },
          true
        )
        expect(onA.got.map(decode)).to.deep.equal(['to-a'])
        expect(onB.got.map(decode)).to.deep.equal(['to-b'])
        expect(replies.map(decode)).to.deep.equal(['echo:to-a', 'echo:to-b'])
        expect(replies[1]!.from).to.deep.equal({ address: dvipa, port: 4500 })
      })
    })

    describe('when an IPv6 DVIPA moves from a to b with ipv6Dad', () => {
      it('should have the kernel advertise b and carry the client traffic to b', async () => {
        const dvipa = 'fd77::100'
        const { onA, onB, replies } = await move(dvipa, lan.base6.c, async () => {
          const advertisements = await poll(
            () => capture.packets.filter((p) => p.icmpv6Type === '136' && p.naTarget === dvipa),
            (ps) => ps.some((p) => p.ethSource === macB)
          )
          expect(advertisements.find((p) => p.ethSource === macB)).to.include({ naOverride: '1' })
        })
        expect(onA.got.map(decode)).to.deep.equal(['to-a'])
        expect(onB.got.map(decode)).to.deep.equal(['to-b'])
        expect(replies.map(decode)).to.deep.equal(['echo:to-a', 'echo:to-b'])
        expect(replies[1]!.from).to.deep.equal({ address: dvipa, port: 4500 })
      })
    })
  })
})
