import { expect } from 'chai'
import { VirtualClock } from '@vipsec/clock'
import type { EspSaParams } from '@vipsec/interface'
import { SoftwareEspEngine } from '../src/index.js'
import { anyFilter, inboundTwin, saParams, udpPacket } from './fixtures.js'

/** The explicit IV of an ESP packet (after SPI and sequence number) as hex, and its sequence. */
function ivOf(esp: Uint8Array): { seq: number; iv: string } {
  const view = new DataView(esp.buffer, esp.byteOffset, esp.byteLength)
  return { seq: view.getUint32(4), iv: Buffer.from(esp.subarray(8, 16)).toString('hex') }
}

describe('SoftwareEspEngine AEAD IVs of an SA that goes on from another copy of itself', () => {
  const engines: SoftwareEspEngine[] = []

  async function engine(
    params: EspSaParams,
    init: { workers?: number } = {}
  ): Promise<SoftwareEspEngine> {
    const e = new SoftwareEspEngine({ clock: new VirtualClock() }, init)
    await e.start()
    e.addSa(params)
    e.installFilter(anyFilter({ spi: params.spi }))
    engines.push(e)
    return e
  }

  /** An engine that opens what `params` seals. */
  async function receiver(params: EspSaParams): Promise<SoftwareEspEngine> {
    const e = new SoftwareEspEngine({ clock: new VirtualClock() })
    await e.start()
    e.addSa({ ...inboundTwin(params), replayWindow: 0 })
    e.installFilter(anyFilter({ id: 'in', direction: 'inbound' }))
    engines.push(e)
    return e
  }

  function seal(e: SoftwareEspEngine, n: number): Uint8Array[] {
    return Array.from({ length: n }, () => {
      const r = e.protect(udpPacket())
      if (r.action !== 'protect') throw new Error(`not sealed: ${r.action}`)
      return r.packet
    })
  }

  afterEach(async () => {
    for (const e of engines.splice(0)) await e.stop()
  })

  it('should use the sequence number as the IV of an SA with a new key', async () => {
    const sent = seal(await engine(saParams()), 3).map(ivOf)
    expect(sent).to.deep.equal([
      { seq: 1, iv: '0000000000000001' },
      { seq: 2, iv: '0000000000000002' },
      { seq: 3, iv: '0000000000000003' }
    ])
  })

  it('should give an adopted SA IVs whose high half is masked, that the peer opens', async () => {
    const params = saParams({ initialSequence: 1000n })
    const sent = seal(await engine(params), 20)
    const ivs = sent.map(ivOf)
    expect(ivs[0]!.seq).to.equal(1001)
    const high = new Set(ivs.map((x) => x.iv.slice(0, 8)))
    expect(high.size, 'one mask for the SA').to.equal(1)
    expect([...high][0]).to.not.equal('00000000')
    for (const x of ivs) expect(Number.parseInt(x.iv.slice(8), 16)).to.equal(x.seq)
    const peer = await receiver(params)
    for (const p of sent) expect(peer.unprotect(p).action).to.equal('accept')
  })

  it('should never repeat an IV of the first copy, even when a rolled-back reservation repeats its sequence numbers', async () => {
    const params = saParams()
    const owner = seal(await engine(params), 60).map((p) => ivOf(p).iv)
    // the heir was told the owner stopped at 10 (an old reservation): 11 to 60 come again
    const heir = seal(await engine({ ...params, initialSequence: 10n }), 60).map((p) => ivOf(p).iv)
    const seen = new Set(owner)
    expect(
      heir.filter((iv) => seen.has(iv)),
      'IVs used twice under the key'
    ).to.deep.equal([])
    // and two heirs of the same SA pick different masks
    const other = seal(await engine({ ...params, initialSequence: 10n }), 60).map((p) => ivOf(p).iv)
    expect(other.filter((iv) => new Set(heir).has(iv))).to.deep.equal([])
  })

  it('should mask the same way when worker threads seal the batch', async () => {
    const params = saParams({ initialSequence: 5n })
    const e = await engine(params, { workers: 2 })
    const results = await e.protectBatch(Array.from({ length: 40 }, () => udpPacket()))
    const sent = results.map((r) => {
      if (r.action !== 'protect') throw new Error(`not sealed: ${r.action}`)
      return r.packet
    })
    const high = new Set(sent.map((p) => ivOf(p).iv.slice(0, 8)))
    expect(high.size).to.equal(1)
    expect([...high][0]).to.not.equal('00000000')
    const peer = await receiver(params)
    for (const p of sent) expect(peer.unprotect(p).action).to.equal('accept')
  })
})
