/**
 * Runs a LinuxNetworkAdapter inside a network namespace for the system tests, driven over
 * stdin/stdout in JSON lines (see remote-adapter.ts). Started as
 * `ip netns exec NS node --import tsx --conditions=vipsec-source adapter-child.ts`.
 *
 * In: `{ id, cmd, args }`. Out: `{ id, result }` or `{ id, error }`, and unsolicited
 * `{ event }`, `{ eventsComplete }`, `{ announcement }`, `{ datagram }`, `{ closed }` lines.
 */
import { createInterface } from 'node:readline'
import type { AbortOptions, Endpoint, UdpEndpoint } from '@vipsec/interface'
import { LinuxNetworkAdapter, type LinuxNetworkAdapterInit } from '../../src/index.js'

interface Request {
  id: number
  cmd: string
  args?: {
    init?: LinuxNetworkAdapterInit
    address?: string
    local?: Endpoint
    aborted?: boolean
    handle?: number
    data?: string
    to?: Endpoint
  }
}

let adapter: LinuxNetworkAdapter | undefined
const endpoints = new Map<number, UdpEndpoint>()
let nextHandle = 1

function out(message: unknown): void {
  process.stdout.write(JSON.stringify(message) + '\n')
}

function signal(args: Request['args']): AbortOptions {
  return args?.aborted === true ? { signal: AbortSignal.abort() } : {}
}

function current(): LinuxNetworkAdapter {
  if (adapter === undefined) throw new Error('no adapter: send create first')
  return adapter
}

async function handle(request: Request): Promise<unknown> {
  const args = request.args ?? {}
  switch (request.cmd) {
    case 'create': {
      await adapter?.stop()
      endpoints.clear()
      adapter = new LinuxNetworkAdapter({}, args.init!)
      return null
    }
    case 'start': {
      const a = current()
      const was = a.isStarted()
      await a.start()
      if (!was) {
        a.events$.subscribe({
          next: (event) => out({ event }),
          complete: () => out({ eventsComplete: true })
        })
        a.announcements$.subscribe((announcement) => out({ announcement }))
      }
      return null
    }
    case 'stop':
      await current().stop()
      return null
    case 'acquire':
      await current().acquireAddress(args.address!, signal(args))
      return null
    case 'release':
      await current().releaseAddress(args.address!, signal(args))
      return null
    case 'open': {
      const endpoint = await current().openUdp(args.local!, signal(args))
      const h = nextHandle++
      endpoints.set(h, endpoint)
      endpoint.datagrams$.subscribe({
        next: (d) =>
          out({
            datagram: { handle: h, data: Buffer.from(d.data).toString('base64'), from: d.from }
          }),
        complete: () => out({ closed: h })
      })
      return { handle: h, local: endpoint.local }
    }
    case 'send':
      // kept after close on purpose: a send on a closed endpoint must do nothing
      endpoints.get(args.handle!)?.send(Buffer.from(args.data!, 'base64'), args.to!)
      return null
    case 'close':
      await endpoints.get(args.handle!)?.close()
      return null
    case 'stats':
      return current().stats()
    case 'ping':
      return 'pong'
    case 'exit':
      await adapter?.stop()
      setImmediate(() => process.exit(0))
      return null
    default:
      throw new Error(`unknown command ${request.cmd}`)
  }
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const request = JSON.parse(line) as Request
  handle(request).then(
    (result) => out({ id: request.id, result }),
    (err: Error & { argument?: string; field?: string; command?: string }) =>
      out({
        id: request.id,
        error: {
          name: err.name,
          message: err.message,
          argument: err.argument,
          field: err.field,
          command: err.command
        }
      })
  )
})
process.stdin.on('end', () => process.exit(0))
out({ ready: true })
