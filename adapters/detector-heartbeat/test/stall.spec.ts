import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { SystemClock } from '@vipsec/clock'
import { DgramNetwork } from '../src/dgram-network.js'
import { HeartbeatFailureDetector } from '../src/index.js'
import { freePort } from './helpers/free-port.js'

const script = fileURLToPath(new URL('./helpers/watcher-process.ts', import.meta.url))

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Real sockets, real processes: dp-1 (here) sends heartbeats every 100 ms to dp-2, a process of
 * its own that watches it (100 ms x 3); dp-2 is stopped for 600 ms (SIGSTOP), twice the
 * detection time, while dp-1's heartbeats keep arriving and wait in its socket, then continued.
 * Self-suspicion is off in dp-2, so only the order of reading and judging decides.
 */
for (const variant of ['plain', 'threaded'] as const) {
  describe(`a ${variant} heartbeat detector whose process stalls`, function () {
    this.timeout(30_000)
    let child: ChildProcess | undefined
    let sender: HeartbeatFailureDetector | undefined
    let network: DgramNetwork | undefined

    afterEach(async () => {
      if (child?.pid !== undefined && child.exitCode === null) {
        process.kill(child.pid, 'SIGCONT')
        child.kill('SIGKILL')
      }
      await sender?.stop()
      await network?.stop()
    })

    it('should read the heartbeats that waited in its socket before judging, and not fail a live node', async () => {
      const [mine, theirs] = [await freePort(), await freePort()]
      network = new DgramNetwork()
      await network.start()
      sender = new HeartbeatFailureDetector(
        { network, clock: new SystemClock() },
        { node: 'dp-1', local: { address: '127.0.0.1', port: mine }, insecure: true }
      )
      sender.watch({ node: 'dp-2', endpoint: { address: '127.0.0.1', port: theirs } })
      await sender.start()
      const proc = spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          '--conditions=vipsec-source',
          script,
          variant,
          String(theirs),
          String(mine)
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] }
      )
      child = proc
      const lines: Record<string, unknown>[] = []
      createInterface({ input: proc.stdout! }).on('line', (l) => lines.push(JSON.parse(l)))
      for (let i = 0; i < 300 && !lines.some((l) => l.health === 'alive'); i++) await sleep(50)
      expect(
        lines.some((l) => l.health === 'alive'),
        'dp-2 hears dp-1'
      ).to.equal(true)
      process.kill(proc.pid!, 'SIGSTOP')
      await sleep(600)
      process.kill(proc.pid!, 'SIGCONT')
      await sleep(1000)
      const exited = new Promise((resolve) => proc.once('exit', resolve))
      proc.kill('SIGTERM')
      await exited
      const events = lines.filter((l) => l.event !== undefined).map((l) => l.event)
      expect(events, 'what dp-2 decided about dp-1').to.deep.equal([])
      expect(lines.at(-1)).to.deep.equal({ health: 'alive' })
    })
  })
}
