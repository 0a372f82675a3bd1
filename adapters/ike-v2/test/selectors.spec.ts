import { expect } from 'chai'
import {
  parseMessage,
  encodeMessage,
  type TsPayload,
  type WireTrafficSelector
} from '../src/message.js'
import { intersect, keptSelectors, narrow, toWireSelector } from '../src/selectors.js'
import { PayloadType } from '../src/constants.js'

const NET_A = toWireSelector({
  startAddress: '172.16.1.0',
  endAddress: '172.16.1.255',
  protocol: 0,
  startPort: 0,
  endPort: 65535
})
const NET_B = toWireSelector({
  startAddress: '172.16.2.0',
  endAddress: '172.16.2.255',
  protocol: 0,
  startPort: 0,
  endPort: 65535
})
const WIDE = toWireSelector({
  startAddress: '172.16.0.0',
  endAddress: '172.16.255.255',
  protocol: 0,
  startPort: 0,
  endPort: 65535
})

/** The selectors as a peer's message carries them: views of the bytes it was parsed from. */
function parsed(selectors: WireTrafficSelector[]): WireTrafficSelector[] {
  const header = {
    spiI: new Uint8Array(8).fill(1),
    spiR: new Uint8Array(8).fill(2),
    version: 0x20,
    exchange: 35,
    flags: 0x20,
    messageId: 1
  }
  const raw = encodeMessage(header, [{ type: PayloadType.TSi, selectors } as TsPayload])
  return (parseMessage(raw).payloads[0] as TsPayload).selectors
}

describe('traffic selectors', () => {
  describe('intersect', () => {
    describe('when the second selector lies inside the first', () => {
      it('should be the second selector itself', () => {
        expect(intersect(WIDE, NET_A)).to.equal(NET_A)
      })
    })

    describe('when the first selector lies inside the second', () => {
      it('should be the first selector itself', () => {
        expect(intersect(NET_A, WIDE)).to.equal(NET_A)
      })
    })

    describe('when both are the same range', () => {
      it('should be the second one, not a view of the first', () => {
        const [fromMessage] = parsed([NET_A])
        expect(intersect(fromMessage!, NET_A)).to.equal(NET_A)
      })
    })

    describe('when each only overlaps the other', () => {
      it('should be a new selector of the overlap', () => {
        const low = { ...WIDE, endPort: 1000 }
        const high = { ...NET_A, startPort: 500 }
        const i = intersect(low, high)
        expect(i).to.not.equal(low)
        expect(i).to.not.equal(high)
        expect(i).to.deep.include({ startPort: 500, endPort: 1000 })
        expect([...i!.startAddress]).to.deep.equal([172, 16, 1, 0])
      })
    })
  })

  describe('narrow', () => {
    describe('when the proposal from a message fits the policy', () => {
      it("should give the policy's selectors, which hold no view of the message", () => {
        const proposed = parsed([NET_A])
        const out = narrow(proposed, [NET_A, NET_B])
        expect(out).to.have.length(1)
        expect(out[0]).to.equal(NET_A)
      })
    })
  })

  describe('keptSelectors', () => {
    describe('when the answer is the offer', () => {
      it('should be the offered list itself', () => {
        const offered = [NET_A, NET_B]
        expect(keptSelectors(parsed(offered), offered)).to.equal(offered)
      })
    })

    describe('when the answer is the offer in another order', () => {
      it('should be the offered selectors, in the order of the answer', () => {
        const out = keptSelectors(parsed([NET_B, NET_A]), [NET_A, NET_B])
        expect(out).to.have.length(2)
        expect(out[0]).to.equal(NET_B)
        expect(out[1]).to.equal(NET_A)
      })
    })

    describe('when the answer narrowed the offer', () => {
      it('should be copies that share no memory with the message', () => {
        const answer = parsed([NET_A])
        const out = keptSelectors(answer, [WIDE])
        expect(out).to.have.length(1)
        expect(out[0]).to.deep.equal(answer[0])
        expect(out[0]!.startAddress.buffer).to.not.equal(answer[0]!.startAddress.buffer)
        expect(out[0]!.endAddress.buffer).to.not.equal(answer[0]!.endAddress.buffer)
        expect(out[0]!.startAddress.byteLength).to.equal(out[0]!.startAddress.buffer.byteLength)
      })
    })
  })
})
