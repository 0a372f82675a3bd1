import { expect } from 'chai'
import {
  decodeRecord,
  decodeRecordSet,
  encodeRecord,
  type SequenceRecord,
  type WarmRecord
} from '../src/index.js'

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s)

function thrown(fn: () => unknown): Error & Record<string, unknown> {
  try {
    fn()
  } catch (err) {
    return err as Error & Record<string, unknown>
  }
  throw new Error('expected a throw')
}

const warm: WarmRecord = {
  v: 1,
  kind: 'warm',
  id: 'ike-1',
  dvipa: '10.0.0.1',
  phase1Id: 'ike-1',
  keyId: 'k1',
  version: 3,
  epoch: 2,
  nonce: Buffer.alloc(12, 7).toString('base64'),
  sealed: Buffer.alloc(40, 9).toString('base64')
}

const sequence: SequenceRecord = {
  v: 1,
  kind: 'sequence',
  id: 'child-1',
  dvipa: '10.0.0.1',
  phase2Id: 'child-1',
  outboundSpi: 'c0000001',
  reservedEnd: '18446744073709551615',
  inbound: '0',
  keyId: 'k1',
  mac: Buffer.alloc(16, 5).toString('base64')
}

describe('record codec: warm mode records', () => {
  it('should round-trip warm and sequence records', () => {
    expect(decodeRecord('warm', encodeRecord(warm))).to.deep.equal(warm)
    expect(decodeRecord('sequence', encodeRecord(sequence))).to.deep.equal(sequence)
  })

  describe('when a warm record is malformed', () => {
    const cases: [string, Record<string, unknown>, string][] = [
      ['a nonce of 8 bytes', { nonce: Buffer.alloc(8).toString('base64') }, 'warm.nonce'],
      ['a nonce that is not base64', { nonce: 'not base64!!' }, 'warm.nonce'],
      [
        'a blob shorter than the tag',
        { sealed: Buffer.alloc(4).toString('base64') },
        'warm.sealed'
      ],
      ['an empty key id', { keyId: '' }, 'warm.keyId'],
      ['a negative version', { version: -1 }, 'warm.version'],
      ['an unknown field', { key: 'aa' }, 'warm.key'],
      ['a DVIPA that is no address', { dvipa: 'x' }, 'warm.dvipa']
    ]
    for (const [what, change, path] of cases) {
      it(`should throw CorruptRecordError naming ${path} for ${what}`, () => {
        const err = thrown(() => decodeRecord('warm', utf8(JSON.stringify({ ...warm, ...change }))))
        expect(err.name).to.equal('CorruptRecordError')
        expect(err.path).to.equal(path)
      })
    }
  })

  describe('when a sequence record is malformed', () => {
    const cases: [string, Record<string, unknown>, string][] = [
      ['a number past 2^64-1', { reservedEnd: '18446744073709551616' }, 'sequence.reservedEnd'],
      ['a JSON number', { reservedEnd: 5 }, 'sequence.reservedEnd'],
      ['a negative number', { inbound: '-1' }, 'sequence.inbound'],
      ['leading zeros', { inbound: '007' }, 'sequence.inbound'],
      ['a bad SPI', { outboundSpi: 'C0000001' }, 'sequence.outboundSpi'],
      ['a MAC of 8 bytes', { mac: Buffer.alloc(8).toString('base64') }, 'sequence.mac'],
      ['a missing field', { phase2Id: undefined }, 'sequence.phase2Id']
    ]
    for (const [what, change, path] of cases) {
      it(`should throw CorruptRecordError naming ${path} for ${what}`, () => {
        const err = thrown(() =>
          decodeRecord('sequence', utf8(JSON.stringify({ ...sequence, ...change })))
        )
        expect(err.name).to.equal('CorruptRecordError')
        expect(err.path).to.equal(path)
      })
    }
  })

  it('should list a damaged warm entry in corrupt and keep the good ones', () => {
    const set = decodeRecordSet([
      { kind: 'warm', id: 'ike-1', bytes: encodeRecord(warm) },
      { kind: 'sequence', id: 'child-1', bytes: encodeRecord(sequence) },
      { kind: 'warm', id: 'ike-2', bytes: utf8('{"v":1,"kind":"warm"}') }
    ])
    expect(set.warm).to.deep.equal([warm])
    expect(set.sequence).to.deep.equal([sequence])
    expect(set.corrupt.map((c) => [c.kind, c.id, c.error])).to.deep.equal([
      ['warm', 'ike-2', 'CorruptRecordError']
    ])
  })
})
