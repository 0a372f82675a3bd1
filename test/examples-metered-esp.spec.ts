import { espEngineSuite } from '@vipsec/compliance/esp-engine'
import { VirtualClock } from '@vipsec/clock'
import { SoftwareEspEngine } from '@vipsec/esp-software'
import type { EspEngine } from '@vipsec/interface'
import { MeteredEspEngine } from '../examples/metered-esp-engine.js'

const clocks = new WeakMap<EspEngine, VirtualClock>()

describe('examples/metered-esp-engine.ts: MeteredEspEngine', () => {
  espEngineSuite({
    setup: () => {
      const clock = new VirtualClock()
      const engine = new MeteredEspEngine(new SoftwareEspEngine({ clock }))
      clocks.set(engine, clock)
      return engine
    },
    advanceTime: async (engine, ms) => clocks.get(engine)?.advance(ms)
  })
})
