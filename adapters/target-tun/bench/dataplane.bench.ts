/**
 * npm run bench:dataplane — the data plane of a vipsec distribution processor with a kernel-
 * delivery target, against a strongSwan gateway (charon with kernel-libipsec) in the DP's
 * place, on one topology of network namespaces, with the same strongSwan peer and the same load
 * generators (iperf3, a UDP echo probe) behind it, in one run:
 *
 *   peer (charon + clients, 172.16.2.1) --ESP-in-UDP--> DP or gateway (10.88.0.50) --> target
 *
 * For vipsec, the DP is a `vipsec node` (software ESP) and the target a `vipsec node` with kernel
 * delivery: the DP sends the cleartext over the cluster link, the target's kernel serves it. For
 * strongSwan, charon in the DP's namespace decrypts into its TUN device and the kernel routes the
 * cleartext to the same target host (the service address on its loopback). Measured: iperf3 TCP
 * throughput, the highest UDP packet rate with under 1% loss at 64 and 1372 bytes (iperf3 -u,
 * doubling then bisecting), UDP echo round trips p50/p99, and the DP process's CPU microseconds per
 * packet at a fixed UDP rate. Needs root (namespaces), charon and iperf3.
 *
 * During the TCP run the bench reads the CPU of the DP (or gateway), the target's vipsec process
 * and the peer's charon, each process's busiest thread among them, and the whole machine's, and
 * says what bounded the throughput: a process with a thread at 90% of a core or more, or else
 * the machine when its cores were 90% busy or more (the peer, clients, target and DP share them).
 * If it is the shared peer, or the machine, for both systems, the TCP ratio does not measure the
 * DP: compare CPU per packet then.
 *
 * Options: --seconds S (per trial, default 2), --tcp-seconds S (default 5), --cpu-pps N (the
 * fixed rate for CPU per packet, default 3000), --cpu-rounds N (trials of CPU per packet per
 * size, default 3: the median is reported, and every round in the JSON line).
 *
 * `--profile` measures nothing of the above: it runs the DP and the target under `node
 * --cpu-prof`, sends UDP one way at a fixed rate (`--profile-pps`, default 5000, for
 * `--profile-seconds`, default 8) at 64 and 1372 bytes, and prints where each process's CPU time
 * went in that window, per stage and per function, in microseconds per packet
 * (docs/dataplane-profile.md).
 *
 * `--hold S` measures only vipsec's DP and target CPU per packet: UDP one way at `--cpu-pps` for
 * S seconds at 64 and 1372 bytes, with the pids printed first (to attach `strace -c` or `perf`);
 * a quick figure for comparing two versions of the data path run after run.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync, readdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { Charon, sh, startEcho, waitFor } from '../../ike-v2/test/helpers/netns.js'
import { writeKeyFile } from '../../../packages/cli/src/index.js'
import { NodeProcess } from '../../../test/system/helpers/node-process.js'
import { formatSummary, summarizeProfile } from './cpu-profile.js'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string' },
    'tcp-seconds': { type: 'string' },
    'cpu-pps': { type: 'string' },
    'cpu-rounds': { type: 'string' },
    profile: { type: 'boolean' },
    hold: { type: 'string' },
    'profile-pps': { type: 'string' },
    'profile-seconds': { type: 'string' }
  }
})
const SECONDS = Number(values.seconds ?? 2)
const TCP_SECONDS = Number(values['tcp-seconds'] ?? 5)
const CPU_PPS = Number(values['cpu-pps'] ?? 3000)
const CPU_ROUNDS = Math.max(1, Number(values['cpu-rounds'] ?? 3))
const PROFILE = values.profile === true
const PROFILE_PPS = Number(values['profile-pps'] ?? 5000)
const PROFILE_SECONDS = Number(values['profile-seconds'] ?? 8)
const HOLD_SECONDS = values.hold === undefined ? undefined : Number(values.hold)

const root = fileURLToPath(new URL('../../..', import.meta.url))
const tag = `vdb${process.pid % 1000}`
const ns = (name: string): string => `${tag}-${name}`
const PSK = 'dataplane bench key'
const DVIPA = '10.88.0.50'
const SERVICE = '10.77.0.10'
const CLIENT = '172.16.2.1'
const DP = '10.88.0.1'
const DP2 = '10.88.0.2'
const STORE = '10.88.0.20'
const REDIS_PASSWORD = 'dataplane bench redis password'
const TARGET = '10.88.0.11'
const PEER = '10.88.0.100'
const ids = { cluster: 'vpn.cluster.test', peer: 'peer.example.test' }
/** 300 UDP echoes, one every 10 ms, from the client: the round trips in ms, as JSON. */
const RTT_PROBE = `
const s = require('node:dgram').createSocket('udp4')
const sent = new Map(); const rtts = []
s.on('message', (m) => { const t = sent.get(m.toString().slice(5)); if (t !== undefined) rtts.push(Number(process.hrtime.bigint() - t) / 1e6) })
s.bind(0, '${CLIENT}', () => {
  let i = 0
  const timer = setInterval(() => {
    sent.set(String(i), process.hrtime.bigint()); s.send(String(i++), 7, '${SERVICE}')
    if (i === 300) { clearInterval(timer); setTimeout(() => { process.stdout.write(JSON.stringify(rtts)); process.exit(0) }, 500) }
  }, 10)
})`
const TICKS = 100 // USER_HZ: /proc/<pid>/stat times are in 1/100 s

/** A process's CPU over a window: all its threads, and its busiest thread, in % of one core. */
interface ProcessCpu {
  percent: number
  busiestThreadPercent: number
}

interface Result {
  system: 'vipsec' | 'strongswan'
  tcpMbits: number
  /** CPU during the TCP run, of the DP (or gateway), the target's vipsec process and the peer. */
  tcpCpu: { dp: ProcessCpu; target: ProcessCpu | null; peer: ProcessCpu }
  /** The machine's cores during the TCP run: busy share of all of them, %. */
  tcpMachineBusyPercent: number
  /**
   * The process whose busiest thread was at >= 90% of a core in the TCP run, else `machine` if
   * the cores were >= 90% busy, else null.
   */
  tcpBottleneck: 'dp' | 'target' | 'peer' | 'machine' | null
  udpPps64: number
  udpPps1372: number
  rttP50Ms: number
  rttP99Ms: number
  /** DP process CPU per packet at the fixed rate, 64 and 1372 B. */
  dpCpuUs64: number
  dpCpuUs1372: number
  /** Every round of the CPU per packet trials (the figures above are their medians). */
  cpuRounds: { dp64: number[]; dp1372: number[]; target64: number[]; target1372: number[] }
  /** The target's vipsec process (none for the gateway: the target's kernel alone serves). */
  targetCpuUs64: number | null
  targetCpuUs1372: number | null
  /** The peer's charon per packet at the fixed rate, 1372 B (the shared peer). */
  peerCpuUs1372: number
  /** Under twice the highest 1372 B rate with < 1% loss, for OVERLOAD_SECONDS. */
  overload: {
    pps: number
    lostPercent: number
    dpRssStartMb: number
    dpRssMaxMb: number
    dpCpuPercent: number
    peerCpuPercent: number
    /** UDP datagrams the DP's kernel dropped, by reason (/proc/net/snmp in its namespace). */
    kernelDrops: { receiveBuffer: number; other: number }
  }
}

function peerConf(): string {
  return `connections {
  dvipa {
    version = 2
    local_addrs = ${PEER}
    remote_addrs = ${DVIPA}
    proposals = aes256gcm16-prfsha256-x25519
    encap = yes
    rekey_time = 0
    local {
      auth = psk
      id = ${ids.peer}
    }
    remote {
      auth = psk
      id = ${ids.cluster}
    }
    children {
      net {
        local_ts = ${CLIENT}/32
        remote_ts = 10.77.0.0/24
        esp_proposals = aes256gcm16
        mode = tunnel
        rekey_time = 0
        start_action = none
      }
    }
  }
}
secrets {
  ike-cluster {
    id-1 = ${ids.peer}
    id-2 = ${ids.cluster}
    secret = "${PSK}"
  }
}
`
}

function gatewayConf(): string {
  return `connections {
  gw {
    version = 2
    local_addrs = ${DVIPA}
    proposals = aes256gcm16-prfsha256-x25519
    encap = yes
    rekey_time = 0
    local {
      auth = psk
      id = ${ids.cluster}
    }
    remote {
      auth = psk
      id = ${ids.peer}
    }
    children {
      net {
        local_ts = 10.77.0.0/24
        remote_ts = ${CLIENT}/32
        esp_proposals = aes256gcm16
        mode = tunnel
        rekey_time = 0
      }
    }
  }
}
secrets {
  ike-cluster {
    id-1 = ${ids.peer}
    id-2 = ${ids.cluster}
    secret = "${PSK}"
  }
}
`
}

function inNs(name: string, cmd: string, args: string[]): ChildProcess {
  return spawn('ip', ['netns', 'exec', ns(name), cmd, ...args], {
    stdio: ['ignore', 'pipe', 'ignore']
  })
}

function killProc(proc: ChildProcess | undefined): void {
  if (proc?.pid === undefined || proc.exitCode !== null || proc.signalCode !== null) return
  try {
    process.kill(proc.pid, 'SIGKILL')
  } catch {
    // gone
  }
}

/** Runs a command in a namespace to its end; its standard output. */
function runIn(name: string, cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve) => {
    const proc = inNs(name, cmd, args)
    let out = ''
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()))
    proc.once('exit', () => resolve(out))
  })
}

async function iperf3(args: string[]): Promise<Record<string, unknown>> {
  for (let attempt = 0; ; attempt++) {
    const out = await runIn('peer', 'iperf3', [
      ...['-c', SERVICE, '-p', '5201', '-B', CLIENT, '-J'],
      ...args
    ])
    const result = JSON.parse(out) as Record<string, unknown>
    if (result.error === undefined) return result
    if (attempt > 3) throw new Error(`iperf3: ${String(result.error)}`)
    await new Promise((r) => setTimeout(r, 1000))
  }
}

/** One UDP trial: packets sent and the loss the server saw. */
async function udp(length: number, pps: number, seconds = SECONDS) {
  const bits = Math.round(pps * length * 8)
  const { end } = (await iperf3([
    '-u',
    '-l',
    String(length),
    '-b',
    String(bits),
    '-t',
    String(seconds)
  ])) as {
    end: { sum: { packets: number; lost_percent: number } }
  }
  return end.sum
}

/** The highest rate (pps) with under 1% loss: doubling from 1000, then three bisections. */
async function maxRate(length: number): Promise<number> {
  let good = 0
  let bad = 0
  for (let pps = 1000; pps <= 256_000; pps *= 2) {
    const r = await udp(length, pps)
    if (r.lost_percent < 1) good = pps
    else {
      bad = pps
      break
    }
  }
  if (bad === 0) return good
  for (let i = 0; i < 3; i++) {
    const mid = Math.round((good + bad) / 2)
    if ((await udp(length, mid)).lost_percent < 1) good = mid
    else bad = mid
  }
  return good
}

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(fields[11]) + Number(fields[12]) // utime + stime
}

/** utime + stime of each thread of a process, by thread id. */
function threadTicks(pid: number): Map<string, number> {
  const ticks = new Map<string, number>()
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      ticks.set(tid, Number(fields[11]) + Number(fields[12]))
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return ticks
}

/** Starts reading a process's CPU; the returned function ends the window and gives its figures. */
function cpuWindow(pid: number): () => ProcessCpu {
  const t0 = Date.now()
  const before = threadTicks(pid)
  return () => {
    const wall = (Date.now() - t0) / 1000
    let total = 0
    let busiest = 0
    for (const [tid, ticks] of threadTicks(pid)) {
      const used = ticks - (before.get(tid) ?? 0)
      total += used
      busiest = Math.max(busiest, used)
    }
    const percent = (t: number): number => (100 * t) / TICKS / wall
    return { percent: percent(total), busiestThreadPercent: percent(busiest) }
  }
}

/** Busy and total jiffies of all cores (/proc/stat's first line). */
function machineTicks(): { busy: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1)
  const numbers = fields.map(Number)
  const total = numbers.slice(0, 8).reduce((a, b) => a + b, 0) // up to steal; guest is in user
  const idle = numbers[3]! + numbers[4]! // idle + iowait
  return { busy: total - idle, total }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m === null ? NaN : Number(m[1]) / 1024
}

/** The pid of the charon in a namespace. */
function charonPid(name: string): number {
  return Number(
    sh('ip', ['netns', 'pids', ns(name)])
      .split('\n')
      .find((p) => p !== '' && readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'charon')
  )
}

/** UDP receive errors of a namespace's kernel: buffer overflows and the rest. */
function udpErrors(name: string): { receiveBuffer: number; other: number } {
  const lines = sh('ip', ['netns', 'exec', ns(name), 'cat', '/proc/net/snmp'])
    .split('\n')
    .filter((l) => l.startsWith('Udp:'))
  const keys = lines[0]!.split(/\s+/)
  const values = lines[1]!.split(/\s+/).map(Number)
  const get = (k: string) => values[keys.indexOf(k)] ?? 0
  return { receiveBuffer: get('RcvbufErrors'), other: get('InErrors') - get('RcvbufErrors') }
}

const OVERLOAD_SECONDS = 5

/** CPU microseconds per packet of each pid over one fixed-rate trial. */
async function cpuPerPacket(length: number, pids: number[]): Promise<number[]> {
  const before = pids.map(cpuTicks)
  const run = await udp(length, CPU_PPS, 4)
  return pids.map(
    (pid, i) => (((cpuTicks(pid) - before[i]!) / TICKS) * 1e6) / Math.max(1, run.packets)
  )
}

/** CPU_ROUNDS trials of {@link cpuPerPacket}: for each pid, every round's figure. */
async function cpuRounds(length: number, pids: number[]): Promise<number[][]> {
  const rounds: number[][] = pids.map(() => [])
  for (let r = 0; r < CPU_ROUNDS; r++) {
    const figures = await cpuPerPacket(length, pids)
    figures.forEach((f, i) => rounds[i]!.push(f))
  }
  return rounds
}

async function measure(
  system: Result['system'],
  dpPid: number,
  targetPid: number | undefined
): Promise<Result> {
  const peerPid = charonPid('peer')
  const tcpWindows = {
    dp: cpuWindow(dpPid),
    target: targetPid === undefined ? undefined : cpuWindow(targetPid),
    peer: cpuWindow(peerPid)
  }
  const machine0 = machineTicks()
  const tcp = (await iperf3(['-t', String(TCP_SECONDS)])) as {
    end: { sum_received: { bits_per_second: number } }
  }
  const machine1 = machineTicks()
  const tcpMachineBusyPercent =
    (100 * (machine1.busy - machine0.busy)) / Math.max(1, machine1.total - machine0.total)
  const tcpCpu = {
    dp: tcpWindows.dp(),
    target: tcpWindows.target?.() ?? null,
    peer: tcpWindows.peer()
  }
  const saturated = (['dp', 'target', 'peer'] as const)
    .filter((k) => (tcpCpu[k]?.busiestThreadPercent ?? 0) >= 90)
    .sort((a, b) => tcpCpu[b]!.busiestThreadPercent - tcpCpu[a]!.busiestThreadPercent)
  const udpPps64 = await maxRate(64)
  const udpPps1372 = await maxRate(1372)
  const echo = startEcho(ns('target-1'), SERVICE, 7)
  await new Promise((r) => echo.stdout!.once('data', r))
  const probe = await runIn('peer', process.execPath, ['-e', RTT_PROBE])
  killProc(echo)
  const rtts = (JSON.parse(probe) as number[]).sort((a, b) => a - b)
  const withTarget = targetPid === undefined ? [dpPid] : [dpPid, targetPid]
  const cpu64 = await cpuRounds(64, withTarget)
  const cpu1372 = await cpuRounds(1372, [...withTarget, peerPid])
  // twice the sustainable rate: memory must stay bounded, drops are counted by the kernel
  const pps = Math.max(2000, 2 * udpPps1372)
  const drops0 = udpErrors('dp-1')
  const rssStart = rssMb(dpPid)
  let rssMax = rssStart
  const sampler = setInterval(() => (rssMax = Math.max(rssMax, rssMb(dpPid))), 200)
  const dp0 = cpuTicks(dpPid)
  const peer0 = cpuTicks(peerPid)
  const t0 = Date.now()
  const flood = await udp(1372, pps, OVERLOAD_SECONDS)
  const wall = (Date.now() - t0) / 1000
  clearInterval(sampler)
  const drops1 = udpErrors('dp-1')
  return {
    system,
    tcpMbits: tcp.end.sum_received.bits_per_second / 1e6,
    tcpCpu,
    tcpMachineBusyPercent,
    tcpBottleneck: saturated[0] ?? (tcpMachineBusyPercent >= 90 ? 'machine' : null),
    udpPps64,
    udpPps1372,
    rttP50Ms: rtts[Math.floor(rtts.length * 0.5)] ?? NaN,
    rttP99Ms: rtts[Math.min(rtts.length - 1, Math.floor(rtts.length * 0.99))] ?? NaN,
    dpCpuUs64: median(cpu64[0]!),
    dpCpuUs1372: median(cpu1372[0]!),
    cpuRounds: {
      dp64: cpu64[0]!,
      dp1372: cpu1372[0]!,
      target64: targetPid === undefined ? [] : cpu64[1]!,
      target1372: targetPid === undefined ? [] : cpu1372[1]!
    },
    targetCpuUs64: targetPid === undefined ? null : median(cpu64[1]!),
    targetCpuUs1372: targetPid === undefined ? null : median(cpu1372[1]!),
    peerCpuUs1372: median(cpu1372[cpu1372.length - 1]!),
    overload: {
      pps,
      lostPercent: flood.lost_percent,
      dpRssStartMb: rssStart,
      dpRssMaxMb: rssMax,
      dpCpuPercent: (100 * (cpuTicks(dpPid) - dp0)) / TICKS / wall,
      peerCpuPercent: (100 * (cpuTicks(peerPid) - peer0)) / TICKS / wall,
      kernelDrops: {
        receiveBuffer: drops1.receiveBuffer - drops0.receiveBuffer,
        other: drops1.other - drops0.other
      }
    }
  }
}

/**
 * Runs a vipsec DP and kernel-delivery target with the strongSwan peer's tunnel up, calls `run`
 * with their pids, and stops everything.
 *
 * @param dir - a temporary directory for the files
 * @param run - the measurement
 * @param nodeArgs - extra node options per node (`--cpu-prof`)
 * @param standby - also run a backup DP (dp-2) with Redis as the coupling store, whose detector
 *   watches dp-1's heartbeats through the run: a takeover would be a false failover
 */
async function withVipsec<T>(
  dir: string,
  run: (dpPid: number, targetPid: number, standby: NodeProcess | undefined) => Promise<T>,
  nodeArgs: { dp?: string[]; target?: string[] } = {},
  standby = false
): Promise<T> {
  const nodes: NodeProcess[] = []
  let redis: ChildProcess | undefined
  if (standby) {
    redis = inNs('store', 'redis-server', [
      ...['--bind', STORE, '--port', '6379', '--requirepass', REDIS_PASSWORD],
      ...['--dir', dir, '--appendonly', 'yes', '--save', '']
    ])
    await waitFor(
      () => {
        try {
          return sh('ip', [
            ...['netns', 'exec', ns('store'), 'redis-cli', '-h', STORE],
            ...['-a', REDIS_PASSWORD, '--no-auth-warning', 'ping']
          ]).includes('PONG')
        } catch {
          return false
        }
      },
      20_000,
      'redis'
    )
  }
  // the cluster file, the secrets, a cluster key and a node file each (docs/node.md)
  writeFileSync(
    join(dir, 'cluster.yaml'),
    `${standby ? `store: { type: redis, address: ${STORE}:6379, prefix: "${tag}:" }` : 'store: { type: memory }'}
nodes: { dp-1: ${DP}, dp-2: ${DP2}, target-1: ${TARGET} }
dvipas:
  ${DVIPA}: { ranks: [${standby ? 'dp-1, dp-2' : 'dp-1'}], targets: [target-1] }
connections:
  peer:
    proposals: aes256gcm16-prfsha256-x25519
    rekey_time: 0
    local: { id: ${ids.cluster} }
    remote: { id: ${ids.peer} }
    children:
      net: { local_ts: 10.77.0.0/24, remote_ts: ${CLIENT}/32, esp_proposals: aes256gcm16, rekey_time: 0 }
`
  )
  writeFileSync(
    join(dir, 'secrets.yaml'),
    `ike:\n  peer: { id: ${ids.peer}, secret: "${PSK}" }\n${standby ? `store: { password: "${REDIS_PASSWORD}" }\n` : ''}`,
    {
      mode: 0o600
    }
  )
  await writeKeyFile(join(dir, 'cluster.key'), { force: true })
  const common =
    'cluster: cluster.yaml\nsecrets: secrets.yaml\ninterface: eth0\ncluster_key_files: [cluster.key]\n'
  writeFileSync(join(dir, 'dp.yaml'), `node: dp-1\n${common}`)
  writeFileSync(join(dir, 'dp-2.yaml'), `node: dp-2\n${common}`)
  writeFileSync(
    join(dir, 'target.yaml'),
    `node: target-1\n${common}kernel: { addresses: [${SERVICE}] }\n`
  )
  const charon = new Charon(ns('peer'))
  try {
    nodes.push(new NodeProcess('dp-1', join(dir, 'dp.yaml'), ns('dp-1'), nodeArgs.dp))
    nodes.push(
      new NodeProcess('target-1', join(dir, 'target.yaml'), ns('target-1'), nodeArgs.target)
    )
    await waitFor(
      () => nodes.every((n) => n.has('node:started')),
      60_000,
      'the vipsec nodes'
    ).catch((err: Error) => {
      // what the nodes said, so that a failed start can be read
      for (const n of nodes) console.error(n.name, JSON.stringify(n.lines.slice(-15)))
      throw err
    })
    let backup: NodeProcess | undefined
    if (standby) {
      await waitFor(() => nodes[0]!.has('ownership:claimed'), 30_000, 'dp-1 owning the DVIPA')
      backup = new NodeProcess('dp-2', join(dir, 'dp-2.yaml'), ns('dp-2'))
      nodes.push(backup)
      await waitFor(() => backup!.has('node:started'), 60_000, 'the standby DP')
    }
    await charon.start(peerConf())
    charon.swanctl(['--initiate', '--child', 'net'])
    return await run(nodes[0]!.proc.pid!, nodes[1]!.proc.pid!, backup)
  } finally {
    await charon.stop()
    // the standby first: it must not take the DVIPA over when dp-1 stops
    for (const n of [...nodes].reverse()) {
      // a profiled node writes its profile on a clean exit: give it time
      if (nodeArgs.dp !== undefined) {
        const exited = new Promise((resolve) => n.proc.once('exit', resolve))
        n.kill('SIGTERM')
        await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 20_000))])
      }
      await n.stop()
    }
    killProc(redis)
  }
}

/** What the standby DP saw while dp-1 carried the full load. */
interface Standby {
  /** Its detector suspected or declared dp-1 failed. */
  suspects: number
  failures: number
  /** It claimed the DVIPA or started a takeover: a false failover. */
  falseFailovers: number
}

async function benchVipsec(dir: string): Promise<Result & { standby: Standby }> {
  return withVipsec(
    dir,
    async (dpPid, targetPid, backup) => {
      const before = {
        suspects: backup!.count('node:suspect'),
        failures: backup!.count('node:failed'),
        takeovers: backup!.count('takeover:started') + backup!.count('ownership:claimed')
      }
      const result = await measure('vipsec', dpPid, targetPid)
      return {
        ...result,
        standby: {
          suspects: backup!.count('node:suspect') - before.suspects,
          failures: backup!.count('node:failed') - before.failures,
          falseFailovers:
            backup!.count('takeover:started') +
            backup!.count('ownership:claimed') -
            before.takeovers
        }
      }
    },
    {},
    true
  )
}

/** The single `.cpuprofile` a process wrote into `dir`. */
function profileIn(dir: string): string {
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'))
  if (file === undefined) throw new Error(`no CPU profile in ${dir}`)
  return join(dir, file)
}

/** The profile run: where the DP's and the target's microseconds go, per size. */
async function profileVipsec(dir: string): Promise<void> {
  const out: Record<string, unknown>[] = []
  for (const length of [64, 1372]) {
    const dpDir = join(dir, `prof-${length}-dp`)
    const targetDir = join(dir, `prof-${length}-target`)
    const args = (d: string) => ['--cpu-prof', `--cpu-prof-dir=${d}`, '--cpu-prof-interval=200']
    let window = { from: 0, to: 0, packets: 0, dpTicks: 0, targetTicks: 0 }
    await withVipsec(
      dir,
      async (dpPid, targetPid) => {
        await udp(length, 1000, 1) // warm up (JIT) before the window
        const dp0 = cpuTicks(dpPid)
        const target0 = cpuTicks(targetPid)
        const from = Number(process.hrtime.bigint() / 1000n)
        const r = await udp(length, PROFILE_PPS, PROFILE_SECONDS)
        window = {
          from,
          to: Number(process.hrtime.bigint() / 1000n),
          packets: r.packets,
          dpTicks: cpuTicks(dpPid) - dp0,
          targetTicks: cpuTicks(targetPid) - target0
        }
        console.error(`${length} B: ${r.packets} packets, ${r.lost_percent.toFixed(2)}% lost`)
      },
      { dp: args(dpDir), target: args(targetDir) }
    )
    for (const [who, d, ticks] of [
      ['DP', dpDir, window.dpTicks],
      ['target', targetDir, window.targetTicks]
    ] as const) {
      const summary = summarizeProfile(profileIn(d), window.from, window.to)
      const osUs = ((ticks / TICKS) * 1e6) / Math.max(1, window.packets)
      console.log(
        formatSummary(
          `${who}, ${length} B at ${PROFILE_PPS} pps (process CPU from /proc: ${osUs.toFixed(1)} us/packet)`,
          summary,
          window.packets
        )
      )
      console.log('')
      out.push({
        process: who,
        length,
        pps: PROFILE_PPS,
        packets: window.packets,
        processCpuUsPerPacket: osUs,
        sampledBusyUsPerPacket: (summary.totalUs - summary.idleUs) / Math.max(1, window.packets),
        stages: Object.fromEntries(
          [...summary.stages].map(([k, v]) => [k, v / Math.max(1, window.packets)])
        )
      })
    }
  }
  console.log(JSON.stringify({ bench: 'dataplane-profile', profiles: out }))
}

/** The hold run: vipsec's DP and target CPU per packet at a fixed rate, nothing else. */
async function holdVipsec(dir: string, seconds: number): Promise<void> {
  await withVipsec(dir, async (dpPid, targetPid) => {
    console.error(`DP pid ${dpPid}, target pid ${targetPid}`)
    await udp(64, 1000, 1) // warm up (JIT)
    const rows: Record<string, number>[] = []
    for (const length of [64, 1372]) {
      const dp0 = cpuTicks(dpPid)
      const target0 = cpuTicks(targetPid)
      const r = await udp(length, CPU_PPS, seconds)
      const per = (ticks: number) => ((ticks / TICKS) * 1e6) / Math.max(1, r.packets)
      const row = {
        length,
        pps: CPU_PPS,
        packets: r.packets,
        lostPercent: r.lost_percent,
        dpCpuUs: per(cpuTicks(dpPid) - dp0),
        targetCpuUs: per(cpuTicks(targetPid) - target0)
      }
      console.log(
        `${length} B at ${CPU_PPS} pps: DP ${row.dpCpuUs.toFixed(1)} us/packet, target ${row.targetCpuUs.toFixed(1)} us/packet, ${row.lostPercent.toFixed(2)}% lost`
      )
      rows.push(row)
    }
    console.log(JSON.stringify({ bench: 'dataplane-hold', rows, load: loadavg()[0] }))
  })
}

async function benchStrongswan(): Promise<Result> {
  // the gateway owns the DVIPA and routes the cleartext to the target host, which has the
  // service address on its loopback and routes the client back through the gateway
  sh('ip', ['-n', ns('dp-1'), 'addr', 'add', `${DVIPA}/24`, 'dev', 'eth0'])
  // charon routes a selector only from a local address inside its own selector
  sh('ip', ['-n', ns('dp-1'), 'addr', 'add', '10.77.0.1/32', 'dev', 'lo'])
  sh('ip', ['netns', 'exec', ns('dp-1'), 'sysctl', '-qw', 'net.ipv4.ip_forward=1'])
  sh('ip', ['-n', ns('dp-1'), 'route', 'replace', `${SERVICE}/32`, 'via', TARGET])
  sh('ip', ['-n', ns('target-1'), 'addr', 'add', `${SERVICE}/32`, 'dev', 'lo'])
  sh('ip', ['-n', ns('target-1'), 'route', 'replace', `${CLIENT}/32`, 'via', DP, 'src', SERVICE])
  const gateway = new Charon(ns('dp-1'))
  const peer = new Charon(ns('peer'))
  try {
    await gateway.start(gatewayConf())
    await peer.start(peerConf())
    try {
      peer.swanctl(['--initiate', '--child', 'net'])
    } catch (err) {
      console.error(
        gateway
          .log()
          .split('\n')
          .filter((l) => /CFG|IKE]|KNL/.test(l))
          .slice(-40)
          .join('\n')
      )
      throw err
    }
    return await measure('strongswan', charonPid('dp-1'), undefined)
  } finally {
    await peer.stop()
    await gateway.stop()
  }
}

/** The machine's load at the start and the end: the bench is only comparable within one run. */
const loadAtStart = loadavg()[0]!
const dir = mkdtempSync(join(tmpdir(), 'vipsec-bench-dataplane-'))
let iperfs: ChildProcess | undefined
let vipsec: (Result & { standby: Standby }) | undefined
let strongswan: Result | undefined
try {
  sh('bash', [join(root, 'scripts/cluster-netns.sh'), 'up', tag])
  iperfs = inNs('target-1', 'iperf3', ['-s', '-p', '5201'])
  if (PROFILE) {
    await profileVipsec(dir)
  } else if (HOLD_SECONDS !== undefined) {
    await holdVipsec(dir, HOLD_SECONDS)
  } else {
    vipsec = await benchVipsec(dir)
    console.error(`vipsec measured: ${JSON.stringify(vipsec)}; now the strongSwan gateway`)
    // whatever vipsec left: the DVIPA on a DP, the peer's ARP entry for it
    for (const name of ['dp-1', 'dp-2']) {
      for (const length of [24, 32]) {
        try {
          sh('ip', ['-n', ns(name), 'addr', 'del', `${DVIPA}/${length}`, 'dev', 'eth0'])
        } catch {
          // not there
        }
      }
    }
    sh('ip', ['-n', ns('peer'), 'neigh', 'flush', 'all'])
    strongswan = await benchStrongswan()
  }
} finally {
  killProc(iperfs)
  sh('bash', [join(root, 'scripts/cluster-netns.sh'), 'down', tag])
  rmSync(dir, { recursive: true, force: true })
}

if (PROFILE || HOLD_SECONDS !== undefined) process.exit(0)
const v = vipsec!
const s = strongswan!
const row = (name: string, a: number, b: number, digits = 1, higherIsBetter = true) =>
  `${name.padEnd(34)} | ${a.toFixed(digits).padStart(10)} | ${b.toFixed(digits).padStart(10)} | ${(a / b).toFixed(2).padStart(5)}x${higherIsBetter ? '' : ' (lower is better)'}`
console.log(
  `${'metric'.padEnd(34)} | ${'vipsec'.padStart(10)} | ${'strongSwan'.padStart(10)} | ratio`
)
console.log(row('TCP Mbit/s (iperf3)', v.tcpMbits, s.tcpMbits))
const cpuText = (c: ProcessCpu | null): string =>
  c === null ? '-' : `${c.percent.toFixed(0)}/${c.busiestThreadPercent.toFixed(0)}`
for (const [name, key] of [
  ['DP', 'dp'],
  ['target node', 'target'],
  ['peer charon', 'peer']
] as const) {
  console.log(
    `${`TCP CPU %, ${name} (all/thread)`.padEnd(34)} | ${cpuText(v.tcpCpu[key]).padStart(10)} | ${cpuText(s.tcpCpu[key]).padStart(10)} |`
  )
}
console.log(
  `${'TCP CPU %, machine (all cores)'.padEnd(34)} | ${v.tcpMachineBusyPercent.toFixed(0).padStart(10)} | ${s.tcpMachineBusyPercent.toFixed(0).padStart(10)} |`
)
const shared = (b: Result['tcpBottleneck']): boolean => b === 'peer' || b === 'machine'
console.log(
  `${'TCP bound by'.padEnd(34)} | ${String(v.tcpBottleneck ?? 'nothing').padStart(10)} | ${String(s.tcpBottleneck ?? 'nothing').padStart(10)} |${shared(v.tcpBottleneck) && shared(s.tcpBottleneck) ? ' shared by both systems: compare CPU per packet' : ''}`
)
console.log(row('UDP pps <1% loss, 64 B', v.udpPps64, s.udpPps64, 0))
console.log(row('UDP pps <1% loss, 1372 B', v.udpPps1372, s.udpPps1372, 0))
console.log(row('RTT p50 ms', v.rttP50Ms, s.rttP50Ms, 3, false))
console.log(row('RTT p99 ms', v.rttP99Ms, s.rttP99Ms, 3, false))
console.log(`CPU per packet: median of ${CPU_ROUNDS} rounds of 4 s each`)
console.log(row(`DP CPU us/packet @${CPU_PPS} pps, 64 B`, v.dpCpuUs64, s.dpCpuUs64, 1, false))
console.log(row(`DP CPU us/packet @${CPU_PPS} pps, 1372 B`, v.dpCpuUs1372, s.dpCpuUs1372, 1, false))
console.log(
  `${'target CPU us/packet, 64 / 1372 B'.padEnd(34)} | ${`${v.targetCpuUs64!.toFixed(1)} / ${v.targetCpuUs1372!.toFixed(1)}`.padStart(10)} | ${'(kernel)'.padStart(10)} |`
)
console.log(row('peer charon CPU us/packet, 1372 B', v.peerCpuUs1372, s.peerCpuUs1372, 1, false))
console.log(
  row(`DP RSS max MB, 2x overload`, v.overload.dpRssMaxMb, s.overload.dpRssMaxMb, 1, false)
)
console.log(
  `${'2x overload: pps, loss, DP/peer CPU'.padEnd(34)} | ${`${v.overload.pps} ${v.overload.lostPercent.toFixed(0)}% ${v.overload.dpCpuPercent.toFixed(0)}/${v.overload.peerCpuPercent.toFixed(0)}%`.padStart(10)} | ${`${s.overload.pps} ${s.overload.lostPercent.toFixed(0)}% ${s.overload.dpCpuPercent.toFixed(0)}/${s.overload.peerCpuPercent.toFixed(0)}%`.padStart(10)} |`
)
console.log(
  `machine load average (1 min): ${loadAtStart.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end`
)
console.log(
  `standby DP during the run: ${v.standby.suspects} suspicions, ${v.standby.failures} failures, ${v.standby.falseFailovers} false failovers`
)
console.log(
  JSON.stringify({
    bench: 'dataplane',
    vipsec: v,
    strongswan: s,
    tcpRatio: v.tcpMbits / s.tcpMbits,
    tcpBottleneck: { vipsec: v.tcpBottleneck, strongswan: s.tcpBottleneck },
    rateRatio64: v.udpPps64 / s.udpPps64,
    rateRatio1372: v.udpPps1372 / s.udpPps1372,
    dpCpuRatio64: v.dpCpuUs64 / s.dpCpuUs64,
    dpCpuRatio1372: v.dpCpuUs1372 / s.dpCpuUs1372,
    overloadRssRatio: v.overload.dpRssMaxMb / s.overload.dpRssMaxMb,
    falseFailovers: v.standby.falseFailovers,
    loadAverage: { start: loadAtStart, end: loadavg()[0]! }
  })
)
