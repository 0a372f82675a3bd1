/**
 * Runs the libc users in a process where koffi cannot load (`require('koffi')` throws, as on a
 * host without its native module) and prints what each fell back to, as one JSON line. Started
 * as `node --import tsx --conditions=vipsec-source without-koffi-child.ts`.
 */
import Module from 'node:module'

const modules = Module as unknown as {
  _load: (this: unknown, request: string, ...rest: unknown[]) => unknown
}
const load = modules._load
modules._load = function (request, ...rest) {
  if (request === 'koffi') throw new Error('koffi cannot load here')
  return load.call(this, request, ...rest)
}

const { libc } = await import('../../src/libc.js')
const { DgramUdpEndpoint, LinuxNetworkAdapter, openArpSocket, openNetlinkRoute, realMmsgSyscalls } =
  await import('../../src/index.js')

const adapter = new LinuxNetworkAdapter({}, { interface: 'lo' })
await adapter.start()
const socket = await adapter.openUdp({ address: '127.0.0.1', port: 0 })
process.stdout.write(
  JSON.stringify({
    libc: libc() === undefined ? 'none' : 'bound',
    mmsg: realMmsgSyscalls() === undefined ? 'none' : 'bound',
    netlink: openNetlinkRoute() === undefined ? 'none' : 'open',
    arp: openArpSocket() === undefined ? 'none' : 'open',
    udp: socket instanceof DgramUdpEndpoint ? 'dgram' : 'batched'
  }) + '\n'
)
await adapter.stop()
