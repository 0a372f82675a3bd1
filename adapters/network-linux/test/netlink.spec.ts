import { expect } from 'chai'
import { ackOf, addressRequest, gratuitousArp, linkUpRequest } from '../src/index.js'

/** The bytes as hex, four at a time (one 32-bit word of a netlink message each). */
const words = (bytes: Uint8Array): string[] =>
  (
    Buffer.from(bytes)
      .toString('hex')
      .match(/.{1,8}/g) ?? []
  ).map(String)

/** An NLMSG_ERROR acknowledgement of request `seq` carrying `error` (0 or -errno). */
function ack(seq: number, error: number): Uint8Array {
  const b = Buffer.alloc(36)
  b.writeUInt32LE(36, 0)
  b.writeUInt16LE(2, 4) // NLMSG_ERROR
  b.writeUInt32LE(seq, 8)
  b.writeInt32LE(error, 16)
  return b
}

describe('rtnetlink requests', () => {
  describe('addressRequest', () => {
    it('should be the RTM_NEWADDR that ip addr add A/32 dev IF sends (create, exclusive, ack)', () => {
      const bytes = addressRequest('add', 7, 2, new Uint8Array([10, 0, 0, 100]), 32)
      expect(words(bytes)).to.deep.equal([
        '28000000', // length 40
        '14000506', // RTM_NEWADDR (20), NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE
        '07000000', // seq 7
        '00000000', // port id 0: the kernel
        '02200000', // AF_INET, /32, no flags, universe scope
        '02000000', // device index 2
        '08000200', // IFA_LOCAL, 8 bytes
        '0a000064', // 10.0.0.100
        '08000100', // IFA_ADDRESS, 8 bytes
        '0a000064'
      ])
    })

    it('should be RTM_DELADDR with request and ack only for a delete', () => {
      const bytes = addressRequest('delete', 1, 3, new Uint8Array([10, 0, 0, 100]), 24)
      expect(words(bytes).slice(1, 2)).to.deep.equal(['15000500'])
      expect(words(bytes)[4]).to.equal('02180000')
    })

    it('should carry IPv6 as AF_INET6 with IFA_F_NODAD when asked', () => {
      const address = new Uint8Array(16)
      address[0] = 0xfd
      address[15] = 1
      const bytes = addressRequest('add', 1, 2, address, 128, true)
      expect(bytes.length).to.equal(16 + 8 + 2 * 20)
      expect(words(bytes)[4]).to.equal('0a800200') // AF_INET6, /128, IFA_F_NODAD
      expect(words(bytes)[6]).to.equal('14000200') // IFA_LOCAL, 20 bytes
      expect(Buffer.from(bytes.subarray(28, 44)).toString('hex')).to.equal(
        'fd000000000000000000000000000001'
      )
    })
  })

  describe('linkUpRequest', () => {
    it('should be the RTM_NEWLINK that ip link set dev D up sends: IFF_UP in flags and change', () => {
      expect(words(linkUpRequest(9, 5))).to.deep.equal([
        '20000000',
        '10000500',
        '09000000',
        '00000000',
        '00000000', // AF_UNSPEC, type 0
        '05000000', // index 5
        '01000000', // IFF_UP
        '01000000' // change: IFF_UP
      ])
    })
  })

  describe('ackOf', () => {
    it('should read the error of the acknowledgement of its request', () => {
      expect(ackOf(ack(7, 0), 7)).to.equal(0)
      expect(ackOf(ack(7, -17), 7)).to.equal(-17)
    })

    it("should skip another request's acknowledgement and find its own after it", () => {
      expect(ackOf(ack(6, -1), 7)).to.equal(undefined)
      expect(ackOf(Buffer.concat([ack(6, -1), ack(7, -99)]), 7)).to.equal(-99)
    })

    it('should give undefined for truncated or malformed messages, never throw', () => {
      expect(ackOf(ack(7, 0).subarray(0, 20), 7)).to.equal(undefined)
      expect(ackOf(new Uint8Array(3), 7)).to.equal(undefined)
      const zero = ack(7, 0)
      zero.fill(0, 0, 4) // a length of 0 would loop forever
      expect(ackOf(zero, 7)).to.equal(undefined)
    })
  })
})

describe('gratuitousArp', () => {
  const mac = new Uint8Array([2, 0, 0, 0, 0, 9])
  const address = new Uint8Array([10, 0, 0, 100])

  it('should be the request arping -U sends: sender and target both the address, target MAC broadcast', () => {
    expect(Buffer.from(gratuitousArp('request', mac, address)).toString('hex')).to.equal(
      '0001' +
        '0800' +
        '06' +
        '04' +
        '0001' +
        '020000000009' +
        '0a000064' +
        'ffffffffffff' +
        '0a000064'
    )
  })

  it('should be the reply arping -A sends: its own MAC as the target MAC', () => {
    expect(Buffer.from(gratuitousArp('reply', mac, address)).toString('hex')).to.equal(
      '0001' +
        '0800' +
        '06' +
        '04' +
        '0002' +
        '020000000009' +
        '0a000064' +
        '020000000009' +
        '0a000064'
    )
  })
})
