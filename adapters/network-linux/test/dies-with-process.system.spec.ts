import { expect } from 'chai'
import { LinuxNetworkAdapter } from '../src/index.js'
import { Lan, sh } from './helpers/lan.js'
import { AdapterChild } from './helpers/remote-adapter.js'

const DVIPA = '10.77.0.50'
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Whether anything on the client's bridge answers ARP for `address` within a second. */
function answersArp(lan: Lan, address: string): boolean {
  try {
    const out = sh('ip', [
      'netns',
      'exec',
      lan.c,
      'arping',
      '-c',
      '1',
      '-w',
      '1',
      '-I',
      'br0',
      address
    ])
    return /Received [1-9]/.test(out)
  } catch {
    return false // arping exits 1 when nobody answered
  }
}

describe(`${LinuxNetworkAdapter.name} with holdAddresses: process`, function () {
  this.timeout(60_000)
  const lan = new Lan('die')
  let child: AdapterChild

  before(async () => {
    lan.up()
    child = new AdapterChild(lan.a)
    await child.start()
  })

  after(async () => {
    await child.stop()
    lan.down()
  })

  describe('when the process that holds the DVIPA is killed with SIGKILL', () => {
    it('should leave no address behind: the host stops answering ARP for it at once', async () => {
      const a = await child.createAdapter({
        interface: lan.device,
        holdAddresses: 'process',
        gratuitousArp: { enabled: false }
      })
      await a.start()
      await a.acquireAddress(DVIPA)
      expect(answersArp(lan, DVIPA), 'a answers while it lives').to.equal(true)
      const addresses = (): string =>
        sh('ip', ['-n', lan.a, '-o', 'addr', 'show', 'to', `${DVIPA}/32`])
      expect(addresses()).to.include(DVIPA)

      await child.kill()
      let gone = false
      for (let i = 0; i < 20 && !gone; i++) {
        gone = !addresses().includes(DVIPA)
        if (!gone) await sleep(50)
      }
      expect(gone, 'the address left with the process').to.equal(true)
      sh('ip', ['-n', lan.c, 'neigh', 'flush', 'all'])
      expect(answersArp(lan, DVIPA), 'nobody answers after the kill').to.equal(false)
    })
  })
})
