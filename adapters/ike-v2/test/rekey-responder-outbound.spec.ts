import { expect } from 'chai'
import { buildIpPacket, buildUdp, type SoftwareEspEngine } from '@vipsec/esp-software'
import { wire } from '../src/index.js'
import { makePair } from './helpers/pair.js'

const { ExchangeType, parseHeader } = wire

function exchange(data: Uint8Array): number {
  const d =
    data[0] === 0 && data[1] === 0 && data[2] === 0 && data[3] === 0 ? data.subarray(4) : data
  return parseHeader(d).exchange
}

/** The SPI (hex, as records write it) that `sender` protects a datagram with now. */
function outboundSpi(sender: SoftwareEspEngine, from: string, to: string): string {
  const out = sender.protect(
    buildIpPacket({
      source: from,
      destination: to,
      protocol: 17,
      payload: buildUdp({
        source: from,
        destination: to,
        sourcePort: 4000,
        destinationPort: 5000,
        payload: new TextEncoder().encode('x')
      })
    })
  )
  if (out.action !== 'protect') throw new Error(`protect: ${JSON.stringify(out)}`)
  return out.spi.toString(16).padStart(8, '0')
}

describe('IkeV2Service', () => {
  describe('when it answers a Child SA rekey', () => {
    it('should keep sending on the old Child SA until the initiator deletes it (the initiator may not have installed the new one yet)', async () => {
      const p = makePair()
      await p.start()
      const r = await p.drive(p.a.connect(p.request()))
      await p.settle()
      const old = r.phase2[0]
      // hold the Delete of the old Child SA: both Child SAs live at once
      p.net.filter = (x) => (exchange(x.data) === ExchangeType.INFORMATIONAL ? 'drop' : 'deliver')
      const rekey = p.a.rekeyChildSa(old.id)
      await p.settle()
      expect(p.bEngine.listSas()).to.have.length(4)
      // b, the responder, still sends on the old SA (a's old inbound SPI)
      expect(outboundSpi(p.bEngine, '172.16.2.7', '172.16.1.5')).to.equal(old.inboundSpi)
      p.net.filter = () => 'deliver'
      const next = await p.drive(rekey)
      await p.settle()
      // a, the initiator, moved at once; b moves when the old SA is deleted
      expect(outboundSpi(p.aEngine, '172.16.1.5', '172.16.2.7')).to.equal(next.outboundSpi)
      expect(outboundSpi(p.bEngine, '172.16.2.7', '172.16.1.5')).to.equal(next.inboundSpi)
      await p.stop()
    })
  })
})
