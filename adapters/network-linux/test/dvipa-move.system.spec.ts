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

/** One ARP packet as tshark printed it. */
interface ArpLine {
  opcode: number
  senderMac: string
  senderIp: string
  targetIp: string
}

/** tshark capturing ARP on the client's bridge, inside its namespace. */
class ArpCapture {
  readonly packets: ArpLine[] = []
  private proc: ChildProcess | undefined

  async start(ns: string, device: string): Promise<void> {
    const fields = ['arp.opcode', 'arp.src.hw_mac', 'arp.src.proto_ipv4', 'arp.dst.proto_ipv4']
    const proc = spawn(
      'ip',
      ['netns', 'exec', ns, 'tshark', '-l', '-n', '-i', device, '-f', 'arp', '-T', 'fields'].concat(
        fields.flatMap((f) => ['-e', f])
      ),
      { stdio: ['ignore', 'pipe', 'pipe'] }
    )
    this.proc = proc
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      const [opcode, senderMac, senderIp, targetIp] = line.split('\t')
      this.packets.push({
        opcode: Number(opcode),
        senderMac: senderMac ?? '',
        senderIp: senderIp ?? '',
        targetIp: targetIp ?? ''
      })
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

describe(`${LinuxNetworkAdapter.name} moving a DVIPA between namespaces`, () => {
  const lan = new Lan('mov')
  const dvipa = '10.77.0.100'
  const children: AdapterChild[] = []
  const capture = new ArpCapture()
  let a: RemoteNetworkAdapter
  let b: RemoteNetworkAdapter
  let client: RemoteNetworkAdapter

  before(async () => {
    lan.up()
    for (const ns of [lan.a, lan.b, lan.c]) children.push(new AdapterChild(ns))
    await Promise.all(children.map(async (c) => c.start()))
    // two ARP packets a second apart for the move: Linux ignores an update of a neighbour entry
    // changed less than locktime (1 s) before, so the second one lands whatever came first
    const init = { interface: lan.device, gratuitousArp: { count: 2 } }
    a = await children[0]!.createAdapter(init)
    b = await children[1]!.createAdapter(init)
    client = await children[2]!.createAdapter({ interface: 'br0' })
    for (const adapter of [a, b, client]) await adapter.start()
    await capture.start(lan.c, 'br0')
  })

  after(async () => {
    await capture.stop()
    await Promise.all(children.map(async (c) => c.stop()))
    lan.down()
  })

  describe('.acquireAddress', () => {
    describe('when the DVIPA moves from a to b', () => {
      it('should announce b with a gratuitous ARP and carry the client traffic to b', async () => {
        const macA = lan.mac(lan.a)
        const macB = lan.mac(lan.b)
        const from: UdpEndpoint = await client.openUdp({ address: lan.base.c, port: 0 })
        const replies: Datagram[] = []
        from.datagrams$.subscribe((d) => replies.push(d))

        // a owns the DVIPA and serves ESP-in-UDP on it
        await a.acquireAddress(dvipa)
        const onA = await a.openUdp({ address: dvipa, port: 4500 })
        const gotA: Datagram[] = []
        onA.datagrams$.subscribe((d) => gotA.push(d))
        from.send(text('to-a'), { address: dvipa, port: 4500 })
        await poll(
          () => gotA.length,
          (n) => n > 0
        )
        expect(gotA.map(decode)).to.deep.equal(['to-a'])
        expect(lan.neighbour(lan.c, dvipa)).to.equal(macA)

        // the takeover: a lets go, b takes the address and announces it
        await a.releaseAddress(dvipa)
        await b.acquireAddress(dvipa)
        const onB = await b.openUdp({ address: dvipa, port: 4500 })
        const gotB: Datagram[] = []
        onB.datagrams$.subscribe((d) => {
          gotB.push(d)
          onB.send(text(`echo:${decode(d)}`), d.from)
        })

        // the client learns the new MAC from the announcement, without sending anything
        const learned = await poll(
          () => lan.neighbour(lan.c, dvipa),
          (mac) => mac === macB
        )
        expect(learned).to.equal(macB)
        const garp = await poll(
          () => capture.packets.filter((p) => p.senderIp === dvipa && p.targetIp === dvipa),
          (ps) => ps.some((p) => p.senderMac === macB)
        )
        expect(garp.filter((p) => p.senderMac === macB)[0]).to.deep.include({
          opcode: 1,
          senderMac: macB
        })
        const stats = await poll(
          async () => b.stats(),
          (s) => s.announcements > 0
        )
        expect(stats).to.include({ announcements: 1, announcementFailures: 0, commandFailures: 0 })

        // the traffic now goes to b, and b answers from the DVIPA
        from.send(text('to-b'), { address: dvipa, port: 4500 })
        await poll(
          () => replies.length,
          (n) => n > 0
        )
        expect(gotB.map(decode)).to.deep.equal(['to-b'])
        expect(gotA.map(decode)).to.deep.equal(['to-a'])
        expect(replies.map(decode)).to.deep.equal(['echo:to-b'])
        expect(replies[0]!.from).to.deep.equal({ address: dvipa, port: 4500 })
      })
    })
  })
})
