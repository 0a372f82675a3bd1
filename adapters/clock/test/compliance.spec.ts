import { clockSuite } from '@vipsec/compliance/clock'
import { SystemClock, VirtualClock } from '../src/index.js'

describe('SystemClock', () => {
  clockSuite({
    setup: () => new SystemClock(),
    advance: async (_clock, ms) => new Promise((resolve) => setTimeout(resolve, ms))
  })
})

describe('VirtualClock', () => {
  clockSuite({
    setup: () => new VirtualClock(),
    advance: async (clock, ms) => (clock as VirtualClock).advance(ms)
  })
})
