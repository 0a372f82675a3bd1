import { ESP_SUITE_TRANSFORMS, espEngineSuite } from '@vipsec/compliance/esp-engine'
import { VirtualClock } from '@vipsec/clock'
import type { EspEngine } from '@vipsec/interface'
import { SoftwareEspEngine } from '../src/index.js'

const clocks = new WeakMap<EspEngine, VirtualClock>()

describe('SoftwareEspEngine', () => {
  for (const transform of [undefined, ...ESP_SUITE_TRANSFORMS]) {
    espEngineSuite({
      setup: () => {
        const clock = new VirtualClock()
        const engine = new SoftwareEspEngine({ clock })
        clocks.set(engine, clock)
        return engine
      },
      advanceTime: async (engine, ms) => clocks.get(engine)?.advance(ms),
      ...(transform !== undefined ? { transform } : {})
    })
  }
})
