/**
 * SPD cost as the number of tunnels grows: 100, 1,000 and 10,000 Child SAs, each with one
 * outbound and one inbound filter (a /24 behind this gateway to a /32 behind the peer, as a
 * site-to-client tunnel has), in the indexed `Spd` and in the linear SPD it replaced
 * (`test/linear-spd.ts`), measured in alternating order in the same run. Per size: microseconds
 * per install while filling the SPD, per install and removal of one more filter once it is full,
 * per packet matched to a random tunnel, and per packet that matches no filter (the whole list
 * for a linear scan). Medians of ESP_SPD_ROUNDS rounds (default 5). Prints a table and one JSON
 * line. Run: npm run bench:spd -w @vipsec/esp-software (ESP_SPD_ONLY=indexed or linear measures
 * only that one)
 */
import type { DynamicFilter } from '@vipsec/interface'
import { buildIpPacket, parseIpPacket, type IpPacketInfo } from '@vipsec/wire'
import { Spd } from '../src/spd.js'
import { LinearSpd } from '../test/linear-spd.js'
import { median } from './stats.js'

const COUNTS = [100, 1000, 10000]
const ROUNDS = Number(process.env.ESP_SPD_ROUNDS ?? 5)
/** Packets matched per round and size. */
const PACKETS = 20000

type Database = Pick<Spd, 'install' | 'remove' | 'match'>
const ALL: Record<string, () => Database> = {
  linear: () => new LinearSpd(),
  indexed: () => new Spd()
}
/** ESP_SPD_ONLY=indexed (or linear) measures only that one. */
const IMPLEMENTATIONS = Object.fromEntries(
  Object.entries(ALL).filter(([name]) => (process.env.ESP_SPD_ONLY ?? name) === name)
)

const third = (n: number): string => `${(n >> 8) & 0xff}.${n & 0xff}`

function filters(n: number): DynamicFilter[] {
  const local = `10.${third(n)}.0/24`
  const remote = `172.16.${third(n)}/32`
  const ports: [number, number] = [0, 65535]
  const selector = (source: string, destination: string): DynamicFilter['selector'] => ({
    source,
    destination,
    protocol: 0,
    sourcePorts: ports,
    destinationPorts: [ports[0], ports[1]]
  })
  return [
    {
      id: `out-${n}`,
      direction: 'outbound',
      selector: selector(local, remote),
      action: 'protect',
      priority: 100,
      spi: 0x1000 + n
    },
    {
      id: `in-${n}`,
      direction: 'inbound',
      selector: selector(remote, local),
      action: 'protect',
      priority: 100,
      spi: 0x20000 + n
    }
  ]
}

function packet(source: string, destination: string): { bytes: Uint8Array; info: IpPacketInfo } {
  const bytes = buildIpPacket({ source, destination, protocol: 17, payload: new Uint8Array(8) })
  return { bytes, info: parseIpPacket(bytes) as IpPacketInfo }
}

interface Sample {
  /** Microseconds per install while filling the SPD to `count` Child SAs. */
  fillUs: number
  /** Microseconds per install and removal of one more filter at `count` Child SAs. */
  churnUs: number
  /** Microseconds per packet matched to a random tunnel. */
  matchUs: number
  /** Microseconds per packet that matches no filter. */
  missUs: number
}

function measure(make: () => Database, count: number): Sample {
  const spd = make()
  const all = Array.from({ length: count }, (_, n) => filters(n)).flat()
  let t = performance.now()
  for (const f of all) spd.install(f)
  const fillUs = ((performance.now() - t) * 1000) / all.length
  const extra = filters(count)[0]
  const churns = Math.max(200, Math.min(5000, 2e6 / count))
  t = performance.now()
  for (let i = 0; i < churns; i++) {
    spd.install(extra)
    spd.remove(extra.id)
  }
  const churnUs = ((performance.now() - t) * 1000) / churns
  const hits = Array.from({ length: 256 }, (_, i) => {
    const n = (i * 7919) % count
    return packet(`10.${third(n)}.9`, `172.16.${third(n)}`)
  })
  const misses = 2000 / Math.max(1, count / 100)
  const packets = Math.max(500, PACKETS / Math.max(1, count / 1000))
  let matched = 0
  t = performance.now()
  for (let i = 0; i < packets; i++) {
    const p = hits[i & 255]
    if (spd.match('outbound', p.bytes, p.info) != null) matched++
  }
  const matchUs = ((performance.now() - t) * 1000) / packets
  if (matched !== packets) throw new Error('a packet missed its tunnel')
  const miss = packet('10.255.255.9', '192.0.2.1')
  const missCount = Math.max(200, misses)
  t = performance.now()
  for (let i = 0; i < missCount; i++) {
    if (spd.match('outbound', miss.bytes, miss.info) !== null) throw new Error('matched')
  }
  const missUs = ((performance.now() - t) * 1000) / missCount
  return { fillUs, churnUs, matchUs, missUs }
}

interface Row extends Sample {
  spd: string
  childSas: number
  filters: number
}

const rows: Row[] = []
for (const count of COUNTS) {
  const samples: Record<string, Sample[]> = Object.fromEntries(
    Object.keys(IMPLEMENTATIONS).map((name) => [name, []])
  )
  // a warm-up of each, then rounds in alternating order
  for (const make of Object.values(IMPLEMENTATIONS)) measure(make, Math.min(count, 1000))
  for (let round = 0; round < ROUNDS; round++) {
    const names = Object.keys(IMPLEMENTATIONS)
    if (round % 2 === 1) names.reverse()
    for (const name of names) samples[name].push(measure(IMPLEMENTATIONS[name], count))
  }
  for (const [name, list] of Object.entries(samples)) {
    rows.push({
      spd: name,
      childSas: count,
      filters: 2 * count,
      fillUs: median(list.map((s) => s.fillUs)),
      churnUs: median(list.map((s) => s.churnUs)),
      matchUs: median(list.map((s) => s.matchUs)),
      missUs: median(list.map((s) => s.missUs))
    })
  }
}

const us = (n: number): string => n.toFixed(n < 10 ? 3 : 1).padStart(9)
console.log(`\nSPD cost by number of Child SAs (median of ${ROUNDS} rounds, microseconds)`)
console.log('spd      child-SAs  filters   fill/op  churn/op  match/pkt  miss/pkt')
for (const r of rows) {
  console.log(
    `${r.spd.padEnd(7)}  ${String(r.childSas).padStart(9)}  ${String(r.filters).padStart(7)}  ${us(r.fillUs)} ${us(r.churnUs)}  ${us(r.matchUs)} ${us(r.missUs)}`
  )
}
console.log(
  'fill: per install while filling; churn: install + remove of one more filter when full;\n' +
    'match: a packet to a random tunnel (outbound); miss: a packet no filter matches;\n' +
    'linear: the SPD before its index (test/linear-spd.ts); indexed: src/spd.ts'
)
console.log(JSON.stringify({ bench: 'spd', node: process.version, rounds: ROUNDS, rows }))
