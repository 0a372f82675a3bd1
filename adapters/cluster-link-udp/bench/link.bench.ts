/**
 * npm run bench:link — the cost of protecting cluster-link frames. For each mode (insecure: no
 * tag; authenticated: AES-256-GCM tag over the frame; encrypted: the payload encrypted too) and
 * each inner packet size, measures:
 * - crypto: frames per second through seal + open + decode of a `packet:inbound` (one core),
 * - link: frames per second delivered between two UdpClusterLinks over UDP on 127.0.0.1, both
 *   in this process (sender and receiver share the core).
 * Medians of `--rounds` rounds, and each mode's ratio to insecure in the same run. Prints a
 * table and one JSON line.
 *
 * Options: --rounds N (default 5), --frames N per crypto round (default 20000), --sizes 64,1400.
 */
import { parseArgs } from 'node:util'
import { DgramNetwork } from '@vipsec/detector-heartbeat'
import type { ClusterMessage } from '@vipsec/interface'
import {
  decodeMessage,
  encodeMessage,
  FrameGuard,
  generateClusterKey,
  LINK_MAGIC,
  parseFrameHeader,
  UdpClusterLink
} from '../src/index.js'

const { values } = parseArgs({
  options: { rounds: { type: 'string' }, frames: { type: 'string' }, sizes: { type: 'string' } }
})
const rounds = Number(values.rounds ?? 5)
const frames = Number(values.frames ?? 20000)
const sizes = (values.sizes ?? '64,1400').split(',').map(Number)
const keys = [generateClusterKey(1)]
type Mode = 'insecure' | 'authenticated' | 'encrypted'
const modes: Mode[] = ['insecure', 'authenticated', 'encrypted']

function message(size: number): ClusterMessage {
  return {
    type: 'packet:inbound',
    dvipa: '10.88.0.50',
    epoch: 7,
    flow: {
      protocol: 17,
      sourceAddress: '172.16.2.1',
      sourcePort: 41000,
      destinationAddress: '10.77.0.10',
      destinationPort: 7
    },
    packet: new Uint8Array(size).fill(0x45)
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

function cryptoRate(mode: Mode, size: number): number {
  const guardKeys = mode === 'insecure' ? [] : keys
  const sender = new FrameGuard({
    magic: LINK_MAGIC,
    purpose: 'cluster link',
    keys: guardKeys,
    windowSize: 1024
  })
  const receiver = new FrameGuard({
    magic: LINK_MAGIC,
    purpose: 'cluster link',
    keys: guardKeys,
    windowSize: 1024
  })
  sender.startSending('dp-1', Date.now() * 1024)
  const m = message(size)
  const start = performance.now()
  for (let i = 0; i < frames; i++) {
    const frame = sender.seal(encodeMessage(m), mode === 'encrypted')
    const header = parseFrameHeader(frame, LINK_MAGIC)
    if (header === 'malformed') throw new Error('bench: frame did not parse')
    const out = receiver.open(frame, header, decodeMessage)
    if (typeof out === 'string') throw new Error(`bench: frame dropped as ${out}`)
  }
  return frames / ((performance.now() - start) / 1000)
}

async function linkRate(mode: Mode, size: number): Promise<{ rate: number; lost: number }> {
  const network = new DgramNetwork()
  await network.start()
  const security =
    mode === 'insecure' ? { insecure: true } : { keys, encrypt: mode === 'encrypted' }
  // two free ports, found by binding and releasing them
  const probe = await network.openUdp({ address: '127.0.0.1', port: 0 })
  const portB = probe.local.port
  await probe.close()
  const probeA = await network.openUdp({ address: '127.0.0.1', port: 0 })
  const portA = probeA.local.port
  await probeA.close()
  const a = new UdpClusterLink(
    { network },
    {
      node: 'dp-1',
      local: { address: '127.0.0.1', port: portA },
      peers: { t: { address: '127.0.0.1', port: portB } },
      ...security
    }
  )
  const b = new UdpClusterLink(
    { network },
    {
      node: 't',
      local: { address: '127.0.0.1', port: portB },
      peers: { 'dp-1': { address: '127.0.0.1', port: portA } },
      ...security
    }
  )
  await a.start()
  await b.start()
  let got = 0
  b.messages$.subscribe(() => got++)
  const m = message(size)
  const total = Math.min(frames, 20000)
  const start = performance.now()
  // at most 64 frames in flight, so that the socket's receive buffer is not what is measured
  let sent = 0
  let stalled = 0
  while (sent < total) {
    while (sent < total && sent - got < 64) {
      await a.send('t', m)
      sent++
    }
    const before = got
    await new Promise((resolve) => setImmediate(resolve))
    if (got === before && ++stalled > 1000) break // frames lost: stop waiting for them
    if (got !== before) stalled = 0
  }
  const deadline = performance.now() + 500
  while (got < sent && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
  const seconds = (performance.now() - start) / 1000
  await a.stop()
  await b.stop()
  await network.stop()
  return { rate: got / seconds, lost: sent - got }
}

const rows: {
  mode: Mode
  size: number
  cryptoPerSecond: number
  cryptoRatio: number
  linkPerSecond: number
  linkRatio: number
  lost: number
}[] = []
for (const size of sizes) {
  const results = new Map<Mode, { crypto: number[]; link: number[]; lost: number }>()
  for (const mode of modes) results.set(mode, { crypto: [], link: [], lost: 0 })
  cryptoRate('authenticated', size) // warm up
  for (let r = 0; r < rounds; r++) {
    for (const mode of modes) {
      const res = results.get(mode)!
      res.crypto.push(cryptoRate(mode, size))
      const l = await linkRate(mode, size)
      res.link.push(l.rate)
      res.lost += l.lost
    }
  }
  const base = results.get('insecure')!
  for (const mode of modes) {
    const res = results.get(mode)!
    rows.push({
      mode,
      size,
      cryptoPerSecond: Math.round(median(res.crypto)),
      cryptoRatio: Number((median(res.crypto) / median(base.crypto)).toFixed(2)),
      linkPerSecond: Math.round(median(res.link)),
      linkRatio: Number((median(res.link) / median(base.link)).toFixed(2)),
      lost: res.lost
    })
  }
}
console.log(
  `cluster-link frames (packet:inbound), medians of ${rounds} rounds; ratio = to insecure in this run`
)
console.log(
  'inner B | mode          | seal+open+decode /s | ratio | over UDP loopback /s | ratio | lost'
)
for (const r of rows) {
  console.log(
    `${String(r.size).padStart(7)} | ${r.mode.padEnd(13)} | ${String(r.cryptoPerSecond).padStart(19)} | ${r.cryptoRatio.toFixed(2).padStart(5)} | ${String(r.linkPerSecond).padStart(20)} | ${r.linkRatio.toFixed(2).padStart(5)} | ${r.lost}`
  )
}
console.log(JSON.stringify({ bench: 'link', rounds, frames, rows }))
