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

  describe('when it is killed while it announces the DVIPA', () => {
    it('should send no gratuitous ARP after its death: the neighbours stay with the node that took the address over', async () => {
      // a fresh child: the one above is dead
      const dying = new AdapterChild(lan.a)
      try {
        await dying.start()
        const a = await dying.createAdapter({
          interface: lan.device,
          holdAddresses: 'process',
          gratuitousArp: { count: 3, intervalSeconds: 1 }
        })
        await a.start()
        const macA = lan.mac(lan.a)
        const macB = lan.mac(lan.b)
        // the client knows the DVIPA at b: a gratuitous ARP updates an entry the client has
        const pointAtB = (): void =>
          void sh('ip', [
            '-n',
            lan.c,
            'neigh',
            'replace',
            DVIPA,
            'lladdr',
            macB,
            'dev',
            'br0',
            'nud',
            'stale'
          ])
        pointAtB()
        await a.acquireAddress(DVIPA)
        for (let i = 0; i < 40 && lan.neighbour(lan.c, DVIPA) !== macA; i++) await sleep(25)
        expect(lan.neighbour(lan.c, DVIPA), 'the first packet announced a').to.equal(macA)
        await dying.kill()
        // b takes the address over and the client's entry points at b again (as b's own
        // announcement sets it); a's packets due one and two seconds after its first must not
        // put it back on the dead node
        pointAtB()
        await sleep(2500)
        expect(lan.neighbour(lan.c, DVIPA), 'the client still sends to b').to.equal(macB)
      } finally {
        await dying.stop()
        sh('ip', ['-n', lan.c, 'neigh', 'flush', 'all'])
      }
    })
  })
})
