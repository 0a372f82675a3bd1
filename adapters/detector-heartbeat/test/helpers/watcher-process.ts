// A process that watches one node with a heartbeat detector and prints what it decides, one JSON
// line each: `{"ready":true}` once running, every event, and `{"health":...}` every 50 ms. For
// the stall test, which stops and continues this whole process (SIGSTOP, SIGCONT).
//   argv: plain | threaded, its port, the watched node's port (all on 127.0.0.1)
import { SystemClock } from '@vipsec/clock'
import type { FailureDetector } from '@vipsec/interface'
import { DgramNetwork } from '../../src/dgram-network.js'
import { HeartbeatFailureDetector, ThreadedHeartbeatFailureDetector } from '../../src/index.js'

const [variant, mine, theirs] = process.argv.slice(2) as [string, string, string]
const init = {
  node: 'dp-2',
  local: { address: '127.0.0.1', port: Number(mine) },
  intervalMs: 100,
  multiplier: 3,
  insecure: true,
  // no self-suspicion: the test shows what the silence judgement alone does after a stall
  pauseThresholdMs: 60_000
}
const network = new DgramNetwork()
await network.start()
const detector: FailureDetector =
  variant === 'threaded'
    ? new ThreadedHeartbeatFailureDetector(init)
    : new HeartbeatFailureDetector({ network, clock: new SystemClock() }, init)
detector.watch({ node: 'dp-1', endpoint: { address: '127.0.0.1', port: Number(theirs) } })
detector.events$.subscribe((event) => console.log(JSON.stringify({ event })))
await detector.start()
console.log(JSON.stringify({ ready: true }))
const timer = setInterval(
  () => console.log(JSON.stringify({ health: detector.health('dp-1') })),
  50
)
process.once('SIGTERM', () => {
  clearInterval(timer)
  void detector.stop().then(async () => {
    await network.stop()
    process.exit(0)
  })
})
