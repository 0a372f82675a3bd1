// systemd's notification protocol against a fake $NOTIFY_SOCKET: a python3 listener on a Unix
// datagram socket in a temporary folder, which prints every datagram it receives as a JSON line.
// Needs python3 and systemd-notify (scripts/install-system-deps.sh).
import { spawn, type ChildProcess } from 'node:child_process'
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { SystemClock } from '@vipsec/clock'
import { VirtualNetwork } from '@vipsec/network-virtual'
import { startNode, type RunningNode } from '../src/index.js'
import { notifyLifecycle, SystemdNotifier, type NotifyVia } from '../src/sd-notify.js'

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url))

const LISTENER = `
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print(json.dumps('listening'), flush=True)
while True:
    print(json.dumps(s.recv(4096).decode()), flush=True)
`

async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

describe('systemd notifications (Type=notify)', function () {
  this.timeout(60_000)
  let dir: string
  let listener: ChildProcess | undefined
  let running: RunningNode | undefined
  let messages: string[]

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vipsec-vo-notify-'))
    cpSync(fixtures, dir, { recursive: true })
    chmodSync(join(dir, 'secrets.yaml'), 0o600)
    messages = []
    listener = spawn('python3', ['-c', LISTENER, join(dir, 'notify.sock')], {
      stdio: ['ignore', 'pipe', 'inherit']
    })
    createInterface({ input: listener.stdout! }).on('line', (l) =>
      messages.push(JSON.parse(l) as string)
    )
    await until(() => messages.includes('listening'), 10_000, 'the listener')
  })

  afterEach(async () => {
    await running?.stop()
    running = undefined
    if (listener?.pid !== undefined && listener.exitCode === null) process.kill(listener.pid)
    rmSync(dir, { recursive: true, force: true })
  })

  for (const via of ['python3', 'systemd-notify'] as NotifyVia[]) {
    it(`should send READY=1 once the node owns its DVIPA, WATCHDOG=1, then STOPPING=1 (${via})`, async () => {
      const network = new VirtualNetwork({ clock: new SystemClock() }).attach('dp-1')
      await network.start()
      await network.acquireAddress('10.9.0.1')
      const notifier = new SystemdNotifier(join(dir, 'notify.sock'), via)
      expect(notifier.via).to.equal(via)
      running = await startNode(join(dir, 'dp-1.yaml'), {
        host: false,
        network,
        destination: { write: () => undefined }
      })
      const end = notifyLifecycle(running.node, notifier, { watchdogUsec: 200_000, checkMs: 20 })
      await until(() => messages.some((m) => m.includes('READY=1')), 10_000, 'READY=1')
      const ready = messages.find((m) => m.includes('READY=1'))!.split('\n')
      expect(ready).to.include('READY=1')
      expect(ready).to.include('STATUS=owner of 10.9.0.100 (epoch 1)')
      expect(ready).to.include(`MAINPID=${process.pid}`)
      await until(
        () => messages.filter((m) => m === 'WATCHDOG=1').length >= 2,
        10_000,
        'two watchdog pings'
      )
      await end()
      await until(() => messages.some((m) => m.startsWith('STOPPING=1')), 10_000, 'STOPPING=1')
      await notifier.close()
      // READY=1 once only, before STOPPING=1
      expect(messages.filter((m) => m.includes('READY=1'))).to.have.length(1)
      expect(messages.findIndex((m) => m.includes('READY=1'))).to.be.below(
        messages.findIndex((m) => m.startsWith('STOPPING=1'))
      )
    })
  }

  it('should not send READY=1 while the node is not ready (a backup whose owner is unknown)', async () => {
    // dp-2 of the fixture backs up a DVIPA nobody claimed: no confirmed epoch, not ready
    const network = new VirtualNetwork({ clock: new SystemClock() }).attach('dp-2')
    await network.start()
    await network.acquireAddress('10.9.0.2')
    writeFileSync(
      join(dir, 'dp-2.yaml'),
      readFileSync(join(dir, 'dp-1.yaml'), 'utf8').replace('node: dp-1', 'node: dp-2')
    )
    running = await startNode(join(dir, 'dp-2.yaml'), {
      host: false,
      network,
      destination: { write: () => undefined }
    })
    const notifier = new SystemdNotifier(join(dir, 'notify.sock'), 'python3')
    const end = notifyLifecycle(running.node, notifier, { checkMs: 20 })
    await new Promise((resolve) => setTimeout(resolve, 500))
    await end()
    await until(() => messages.some((m) => m.startsWith('STOPPING=1')), 10_000, 'STOPPING=1')
    await notifier.close()
    expect(messages.some((m) => m.includes('READY=1'))).to.equal(false)
    expect(existsSync(join(dir, 'notify.sock'))).to.equal(true)
  })
})
