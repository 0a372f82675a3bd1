import fc from 'fast-check'
import { expect } from 'chai'
import { Subject } from 'rxjs'
import { Registry } from 'prom-client'
import type { IkeEvent, IkeService, Logger } from '@vipsec/interface'
import fs, { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { eventFields, logDestination, NodeMetrics, observeIke, pinoLogger } from '../src/index.js'

/** A logger that keeps what it was given, by component. */
function recordingLogger() {
  const lines: {
    component: string
    level: string
    fields: Record<string, unknown>
    message?: string
  }[] = []
  const logger = {
    forComponent: (component: string): Logger => {
      const at =
        (level: string) =>
        (fields: Record<string, unknown>, message?: string): void => {
          lines.push({ component, level, fields, ...(message === undefined ? {} : { message }) })
        }
      return { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') }
    }
  }
  return { logger, lines }
}

describe('observeIke', () => {
  it('should log a failed exchange as an error with its notify and peer, and count it', async () => {
    const events = new Subject<IkeEvent>()
    const service = {
      events$: events.asObservable(),
      connect: () => Promise.reject(new Error('refused')),
      renegotiate: () => Promise.resolve([])
    } as unknown as IkeService
    const { logger, lines } = recordingLogger()
    const registry = new Registry()
    const metrics = new NodeMetrics(registry, { id: 'dp-1', role: 'primary' })
    observeIke(service, { logger, metrics })
    events.next({
      type: 'ike:failed',
      peer: { address: '192.0.2.7', port: 500 },
      reason: 'NO_PROPOSAL_CHOSEN',
      message: 'no proposal matched',
      localId: 'vpn.example',
      remoteId: 'peer.example'
    } as IkeEvent)
    expect(lines).to.have.length(1)
    expect(lines[0]).to.deep.include({ component: 'ike', level: 'error' })
    expect(lines[0]!.fields).to.include({
      type: 'ike:failed',
      peer: '192.0.2.7:500',
      notify: 'NO_PROPOSAL_CHOSEN',
      localId: 'vpn.example',
      remoteId: 'peer.example'
    })
    await service.connect({} as never).catch(() => undefined)
    const text = await registry.metrics()
    expect(text).to.match(
      /^vipsec_ike_events_total\{type="ike:failed",reason="NO_PROPOSAL_CHOSEN"\} 1$/m
    )
    expect(text).to.match(
      /^vipsec_ike_handshake_duration_seconds_count\{kind="connect",outcome="failed"\} 1$/m
    )
  })
})

describe('eventFields', () => {
  /** What the fields were before the fast path: each through JSON. */
  const throughJson = (event: Record<string, unknown>): Record<string, unknown> => {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(event))
      out[k === 'node' ? 'subject' : k] = JSON.parse(
        JSON.stringify(v ?? null, (_k, x: unknown) =>
          x instanceof Uint8Array ? { bytes: x.length } : typeof x === 'bigint' ? x.toString() : x
        ) ?? 'null'
      ) as unknown
    return out
  }

  it('should give what JSON gives, byte arrays as lengths and bigints as text (property)', () => {
    const value = fc.oneof(
      fc.anything({ withBigInt: true, withDate: true, withMap: true, withNullPrototype: true }),
      fc.uint8Array({ maxLength: 8 }),
      fc.constantFrom(Number.NaN, -0, Infinity, undefined)
    )
    fc.assert(
      fc.property(fc.dictionary(fc.string(), value), (fields) => {
        const event = { ...fields, type: 'esp:test' }
        expect(eventFields(event)).to.deep.equal(throughJson(event))
      }),
      { numRuns: 500 }
    )
  })

  it('should not go through JSON text for what an ESP SA event holds', () => {
    const event = {
      type: 'sa:installed',
      spi: 0x1234,
      direction: 'inbound',
      sequence: 5n,
      key: new Uint8Array(32),
      selectors: [{ source: '10.0.0.0/24', ports: [0, 65535] }],
      nat: null
    }
    const stringify = JSON.stringify
    let calls = 0
    JSON.stringify = ((...args: Parameters<typeof stringify>) => {
      calls++
      return stringify(...args)
    }) as typeof stringify
    let fields
    try {
      fields = eventFields(event)
    } finally {
      JSON.stringify = stringify
    }
    expect(calls).to.equal(0)
    expect(fields).to.deep.equal(throughJson(event))
  })

  it('should move the event’s node to subject, so that node stays the writer', () => {
    expect(eventFields({ type: 'node:failed', node: 'dp-2' })).to.deep.equal({
      type: 'node:failed',
      subject: 'dp-2'
    })
  })
})

describe('pinoLogger', () => {
  it('should write JSON lines with the writer node, the component and the level by name', () => {
    const out: string[] = []
    const log = pinoLogger({
      node: 'dp-1',
      destination: { write: (l: string) => void out.push(l) }
    })
    log
      .forComponent('detector')
      .warn(eventFields({ type: 'node:failed', node: 'dp-2' }), 'node:failed')
    const line = JSON.parse(out[0]!) as Record<string, unknown>
    expect(line).to.include({
      node: 'dp-1',
      component: 'detector',
      level: 'warn',
      type: 'node:failed',
      subject: 'dp-2'
    })
  })
})

describe('logDestination', () => {
  it('should write a burst of lines in a few asynchronous writes, not one blocking write per line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vipsec-log-'))
    const file = join(dir, 'node.log')
    const fd = openSync(file, 'w')
    const calls = { sync: 0, async: 0 }
    const { writeSync, write } = fs
    fs.writeSync = ((...args: Parameters<typeof writeSync>) => {
      calls.sync++
      return writeSync(...args)
    }) as typeof writeSync
    fs.write = ((...args: Parameters<typeof write>) => {
      calls.async++
      return (write as (...a: unknown[]) => void)(...args)
    }) as typeof write
    const N = 500
    try {
      const destination = logDestination(fd)
      const log = pinoLogger({ node: 'dp-2', destination }).forComponent('ike')
      for (let i = 0; i < N; i++) log.info({ type: 'ike:established', n: i }, 'IKE SA established')
      expect(calls.sync).to.equal(0)
      // written out and closed (the fd with it) once what waits is written
      const stream = destination as unknown as SonicBoomLike
      await new Promise<void>((resolve) => {
        stream.once('close', () => resolve())
        stream.end()
      })
    } finally {
      fs.writeSync = writeSync
      fs.write = write
    }
    // the first line starts a write; the others wait for it and go out together
    expect(calls.async).to.be.below(N / 10)
    const lines = readFileSync(file, 'utf8').trim().split('\n')
    expect(lines).to.have.length(N)
    expect(JSON.parse(lines[N - 1]!)).to.include({ node: 'dp-2', component: 'ike', n: N - 1 })
    rmSync(dir, { recursive: true, force: true })
  })
})

/** The part of sonic-boom's stream the test waits on. */
interface SonicBoomLike {
  once(event: 'close', fn: () => void): void
  end(): void
}
