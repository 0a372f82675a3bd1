import { expect } from 'chai'
import { VirtualClock } from '@vipsec/clock'
import type { Clock, TimerHandle } from '@vipsec/interface'
import { MemoryCouplingFacility, MemoryCouplingStore } from '@vipsec/store-memory'
import { OwnershipController } from '../src/index.js'
import {
  DVIPA,
  faultyStore,
  RecordingActions,
  ScriptedDetector,
  whileAdvancing,
  type StoreFaults
} from './helpers/ownership-harness.js'

/**
 * A clock whose timers fire up to 1 ms before they are due by its own `monotonic()`, as Node's
 * timers may against `performance.now()` (they count whole milliseconds).
 */
class EarlyClock implements Clock {
  constructor(private readonly inner: VirtualClock) {}
  now(): number {
    return this.inner.now()
  }
  monotonic(): number {
    return this.inner.monotonic()
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.inner.setTimeout(fn, ms - Math.min(1, ms / 2))
  }
  clearTimeout(handle: TimerHandle): void {
    this.inner.clearTimeout(handle)
  }
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.setTimeout(resolve, ms))
  }
}

describe('OwnershipController self-fence timer', () => {
  it('should fence an owner cut off from the store even when its timer fires a little early', async () => {
    const virtual = new VirtualClock({ startTime: Date.UTC(2026, 0, 1) })
    const clock = new EarlyClock(virtual)
    const memory = new MemoryCouplingStore(
      { clock: virtual },
      { facility: new MemoryCouplingFacility() }
    )
    await memory.start()
    const faults: StoreFaults = { loseNextClaimReply: false, downWithTimeoutMs: undefined }
    const actions = new RecordingActions(clock)
    const unit = new OwnershipController(
      {
        store: faultyStore(memory, clock, faults),
        clock,
        detector: new ScriptedDetector(),
        actions
      },
      {
        node: 'dp-1',
        dvipa: DVIPA,
        ranks: ['dp-1', 'dp-2'],
        rankDelayMs: 200,
        ownershipCheckMs: 250,
        selfFenceMs: 400
      }
    )
    await whileAdvancing(virtual, unit.start())
    for (let t = 0; t < 1000; t += 10) await virtual.advance(10)
    expect(unit.current().role).to.equal('owner')
    // cut off from the store: every call hangs for 5 s and fails
    faults.downWithTimeoutMs = 5000
    for (let t = 0; t < 1000; t += 10) await virtual.advance(10)
    expect(unit.current().role, 'fenced within selfFenceMs plus a read-back').to.equal('fenced')
    expect(actions.of('ownership:fenced')).to.have.length(1)
    await unit.stop()
  })
})
