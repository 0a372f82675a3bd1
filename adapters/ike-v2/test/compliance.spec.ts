import { ikeServiceSuite } from '@vipsec/compliance/ike-service'
import { makePair } from './helpers/pair.js'

describe('IkeV2Service', () => {
  ikeServiceSuite({
    setup: () => {
      const p = makePair()
      return {
        initiator: p.a,
        responder: p.b,
        request: p.request(),
        start: p.start,
        stop: p.stop,
        run: p.drive,
        settle: p.settle,
        cut: () => {
          p.net.filter = () => 'drop'
        }
      }
    }
  })
})
