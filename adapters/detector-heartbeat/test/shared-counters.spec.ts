import { expect } from 'chai'
import { CLUSTER_FRAME_DROP_REASONS } from '@vipsec/cluster-link-udp'
import { emptyHeartbeatCounters } from '../src/heartbeat-failure-detector.js'
import {
  readSharedCounters,
  SHARED_COUNTERS_BYTES,
  writeSharedCounters
} from '../src/shared-counters.js'

describe('shared heartbeat counters', () => {
  it('should read back every counter a worker wrote, each in its own slot', () => {
    const slots = new Float64Array(new SharedArrayBuffer(SHARED_COUNTERS_BYTES))
    const counters = emptyHeartbeatCounters()
    let n = 1
    counters.sent = n++
    counters.received = n++
    counters.ignored = n++
    counters.selfSuspicions = n++
    counters.verdictsWithheld = n++
    counters.judgementsDeferred = n++
    for (const r of CLUSTER_FRAME_DROP_REASONS) counters.dropped[r] = 2 ** 40 + n++
    writeSharedCounters(slots, counters)
    expect(readSharedCounters(slots)).to.deep.equal(counters)
    expect(slots.length).to.equal(n - 1)
    // a copy: changing it does not change what the next read gives
    const first = readSharedCounters(slots)
    first.dropped.replayed = -1
    expect(readSharedCounters(slots)).to.deep.equal(counters)
  })
})
