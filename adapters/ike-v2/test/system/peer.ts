/**
 * The vipsec side of the strongSwan interop test, run inside a network namespace by the test
 * (`ip netns exec <ns> node --import tsx --conditions=vipsec-source peer.ts <config-json>`).
 * It speaks JSON lines: requests on stdin ({ id, cmd, args }), answers and events on stdout.
 */
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { getHeapSpaceStatistics } from 'node:v8'
import { SystemClock } from '@vipsec/clock'
import { CryptoRandomSource } from '@vipsec/random'
import { SoftwareEspEngine, buildIpPacket, buildUdp, parseIpPacket } from '@vipsec/esp-software'
import { IkeV2Service, type IkeV2ServiceInit } from '../../src/index.js'
import { LinuxNetworkAdapter } from '@vipsec/network-linux'
import type { UdpEndpoint } from '@vipsec/interface'
import { DgramUdpEndpoint } from '../helpers/dgram-endpoint.js'
import type { SaTable } from '../../src/sa-table.js'

interface Config {
  address: string
  /**
   * Where the sockets come from: `product` opens them through network-linux's adapter with its
   * defaults, as `vipsec node` does (batched recvmmsg/sendmmsg, a 4 MiB receive buffer);
   * `dgram` (the default) binds plain node:dgram sockets of the test helper.
   */
  udp?: 'product' | 'dgram'
  init: IkeV2ServiceInit & { psks?: { remote: never; secret: string }[] }
}

function reviveBytes(v: unknown): unknown {
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>
    if (typeof o.$bytes === 'string') return new Uint8Array(Buffer.from(o.$bytes, 'base64'))
    for (const k of Object.keys(o)) o[k] = reviveBytes(o[k])
  }
  return v
}

const config = reviveBytes(JSON.parse(process.argv[2])) as Config
const clock = new SystemClock()
const random = new CryptoRandomSource()
const engine = new SoftwareEspEngine({ clock })
const network =
  config.udp === 'product' ? new LinuxNetworkAdapter({}, { interface: 'lo' }) : undefined
await network?.start()
const bind = (port: number): Promise<UdpEndpoint> =>
  network !== undefined
    ? network.openUdp({ address: config.address, port })
    : DgramUdpEndpoint.bind({ address: config.address, port })
const udp500 = await bind(500)
const udp4500 = await bind(4500)
const service = new IkeV2Service({ clock, random, espEngine: engine, udp500, udp4500 }, config.init)
const received: {
  from: string
  to: string
  sourcePort: number
  destinationPort: number
  text: string
}[] = []
const out = (o: unknown): void => {
  process.stdout.write(JSON.stringify(o) + '\n')
}
service.events$.subscribe((e) => out({ event: e }))
service.espDatagrams$.subscribe((d) => {
  const r = engine.unprotectUdp(d.data)
  if (r.action !== 'accept') {
    out({ drop: r.action === 'drop' ? r.reason : r.action })
    return
  }
  const info = parseIpPacket(r.packet)
  if (info === undefined || info.protocol !== 17) return
  const udp = r.packet.subarray(info.payloadOffset, info.totalLength)
  const text = new TextDecoder().decode(udp.subarray(8))
  const addr = (o: number): string =>
    Array.from(r.packet.subarray(o, o + info.addressLength)).join('.')
  received.push({
    from: addr(info.sourceOffset),
    to: addr(info.destinationOffset),
    sourcePort: (udp[0] << 8) | udp[1],
    destinationPort: (udp[2] << 8) | udp[3],
    text
  })
})
await engine.start()
await service.start()

const commands: Record<string, (args: never) => Promise<unknown> | unknown> = {
  connect: (args: never) => service.connect(args),
  renegotiate: (args: never) => service.renegotiate(args),
  rekeyChildSa: (id: never) => service.rekeyChildSa(id),
  rekeyIkeSa: (id: never) => service.rekeyIkeSa(id),
  deleteChildSa: (id: never) => service.deleteChildSa(id),
  deleteIkeSa: (id: never) => service.deleteIkeSa(id),
  checkLiveness: (id: never) => service.checkLiveness(id),
  list: () => service.list(),
  // warm mode: the state of an IKE SA with its Child SAs' ESP sequence numbers (the secret in
  // base64, the numbers as decimal strings), `margin` added to the outbound ones as an owner's
  // reservation in the coupling store would be
  exportWarm: (args: { id: string; margin?: number }) => {
    const state = service.exportState(args.id)
    const sas = engine.listSas()
    const sequences: Record<string, { outbound: string; inbound: string }> = {}
    for (const c of state.records.phase2) {
      const find = (direction: string, spi: string) =>
        sas.find((x) => x.direction === direction && x.spi === parseInt(spi, 16))?.sequence ?? 0n
      sequences[c.id] = {
        outbound: String(find('outbound', c.outboundSpi) + BigInt(args.margin ?? 0)),
        inbound: String(find('inbound', c.inboundSpi))
      }
    }
    return {
      state: { ...state, secret: Buffer.from(state.secret).toString('base64') },
      sequences
    }
  },
  adoptWarm: (args: {
    state: { records: never; secret: string; midSync: boolean }
    sequences: Record<string, { outbound: string; inbound: string }>
  }) => {
    const sequences: Record<string, { outbound: bigint; inbound: bigint }> = {}
    for (const [id, v] of Object.entries(args.sequences)) {
      sequences[id] = { outbound: BigInt(v.outbound), inbound: BigInt(v.inbound) }
    }
    return service.adopt([
      {
        state: { ...args.state, secret: new Uint8Array(Buffer.from(args.state.secret, 'base64')) },
        sequences
      }
    ])
  },
  // dies at once, as a node that loses power: no deletes, nothing closed
  die: () => {
    setImmediate(() => process.kill(process.pid, 'SIGKILL'))
    return true
  },
  counters: () => ({ ike: service.counters(), esp: engine.counters(), net: network?.stats() }),
  // what the kernel dropped at the sockets' receive queues (the last column of /proc/net/udp)
  socketDrops: () => {
    const drops: Record<string, number> = {}
    for (const line of readFileSync('/proc/self/net/udp', 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      const port = f[1] === undefined ? NaN : parseInt(f[1].split(':')[1] ?? '', 16)
      if (port === 500 || port === 4500) drops[port] = Number(f.at(-1))
    }
    return drops
  },
  connections: () => service.connectionAttempts(),
  // what an attacker on the path reads off the wire: SPIs and both halves' next message IDs
  windows: () =>
    (service as unknown as { table: SaTable }).table
      .all()
      .filter((sa) => sa.state === 'established')
      .map((sa) => ({
        id: sa.id,
        initiator: sa.initiator,
        spiI: Buffer.from(sa.spiI).toString('hex'),
        spiR: Buffer.from(sa.spiR).toString('hex'),
        nextRequestId: sa.tasks.nextRequestId,
        expectedRequestId: sa.tasks.expectedRequestId
      })),
  // memory after a full collection (the test process runs node with --expose-gc)
  memory: () => {
    ;(globalThis as { gc?: () => void }).gc?.()
    const m = process.memoryUsage()
    // RSS split as the kernel counts it, and the part V8's young generation has committed
    const status = readFileSync('/proc/self/status', 'utf8')
    const kb = (name: string): number =>
      Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024
    const newSpace =
      getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.physical_space_size ?? 0
    return {
      rss: m.rss,
      heapUsed: m.heapUsed,
      external: m.external + m.arrayBuffers,
      anon: kb('RssAnon'),
      file: kb('RssFile'),
      newSpace
    }
  },
  received: () => received.splice(0),
  sendUdp: (args: {
    from: string
    to: string
    sourcePort: number
    destinationPort: number
    text: string
  }) => {
    const inner = buildIpPacket({
      source: args.from,
      destination: args.to,
      protocol: 17,
      payload: buildUdp({
        source: args.from,
        destination: args.to,
        sourcePort: args.sourcePort,
        destinationPort: args.destinationPort,
        payload: new TextEncoder().encode(args.text)
      })
    })
    const r = engine.protect(inner)
    if (r.action !== 'protect') throw new Error(`protect: ${JSON.stringify(r)}`)
    if (r.udp) udp4500.send(r.packet, r.to)
    else throw new Error('expected ESP-in-UDP')
    return { spi: r.spi, to: r.to }
  },
  stop: async () => {
    await service.stop()
    await engine.stop()
    await udp500.close()
    await udp4500.close()
    await network?.stop()
    setImmediate(() => process.exit(0))
    return true
  }
}

const rl = createInterface({ input: process.stdin })
rl.on('line', (line) => {
  let req: { id: number; cmd: string; args: never }
  try {
    req = JSON.parse(line)
  } catch {
    return
  }
  const fn = commands[req.cmd]
  Promise.resolve()
    .then(() => (fn === undefined ? Promise.reject(new Error(`unknown ${req.cmd}`)) : fn(req.args)))
    .then(
      (result) => out({ id: req.id, result }),
      (err: Error & { kind?: string }) =>
        out({ id: req.id, error: { name: err.name, kind: err.kind, message: err.message } })
    )
})
rl.on('close', () => {
  process.exit(0)
})
out({ ready: true })
