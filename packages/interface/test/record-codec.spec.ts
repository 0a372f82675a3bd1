import { expect } from 'chai'
import fc from 'fast-check'
import {
  samplePhase1,
  samplePhase2,
  sampleRecords,
  sampleDeleteMessage
} from '@vipsec/compliance/coupling-store'
import {
  countRecords,
  decodeDeleteMessage,
  decodeOwnership,
  decodeRecord,
  decodeRecordSet,
  encodeDeleteMessage,
  encodeOwnership,
  encodeRecord,
  type DvipaRecord
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

describe('record codec', () => {
  describe('encodeRecord', () => {
    it('should give the same bytes whatever the key order of the object', () => {
      const record = samplePhase1('10.0.0.1', 1)
      const reordered = Object.fromEntries(
        Object.entries(record).reverse()
      ) as unknown as DvipaRecord
      expect(encodeRecord(reordered)).to.deep.equal(encodeRecord(record))
    })

    it("should give the text of JSON.stringify with every object's keys sorted", () => {
      const sortingReplacer = (_key: string, v: unknown): unknown => {
        if (v === null || typeof v !== 'object' || Array.isArray(v)) return v
        const sorted: Record<string, unknown> = {}
        for (const k of Object.keys(v).sort()) sorted[k] = (v as Record<string, unknown>)[k]
        return sorted
      }
      // the keys of every object in any order
      const shuffled = (v: unknown, seed: number): unknown => {
        if (v === null || typeof v !== 'object') return v
        if (Array.isArray(v)) return v.map((x, i) => shuffled(x, seed + i))
        const keys = Object.keys(v)
        const order = keys
          .map((k, i) => ({ k, w: Math.sin(seed * 31 + i * 17) }))
          .sort((a, b) => a.w - b.w)
        return Object.fromEntries(
          order.map(({ k }) => [k, shuffled((v as Record<string, unknown>)[k], seed + 1)])
        )
      }
      fc.assert(
        fc.property(fc.nat(20), fc.integer(), (n, seed) => {
          for (const record of sampleRecords(n % 2 === 0 ? '10.0.0.1' : '2001:db8::1', n)) {
            const text = new TextDecoder().decode(
              encodeRecord(shuffled(record, seed) as DvipaRecord)
            )
            expect(text).to.equal(JSON.stringify(record, sortingReplacer))
          }
        }),
        { numRuns: 200 }
      )
    })

    it('should reject an invalid record naming the field', () => {
      const bad = { ...samplePhase2('10.0.0.1', 1), mode: 'beet' } as unknown as DvipaRecord
      const err = thrown(() => encodeRecord(bad))
      expect(err.name).to.equal('CorruptRecordError')
      expect(err.path).to.equal('phase2.mode')
    })
  })

  describe('decodeRecord', () => {
    it('should round-trip every kind of record', () => {
      for (const record of sampleRecords('10.0.0.1', 3)) {
        expect(decodeRecord(record.kind, encodeRecord(record))).to.deep.equal(record)
      }
    })

    describe('when the bytes are damaged', () => {
      it('should throw CorruptRecordError, never anything else, for any byte string', () => {
        fc.assert(
          fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
            const err = thrown(() => decodeRecord('phase1', bytes))
            return err.name === 'CorruptRecordError' || err.name === 'UnsupportedRecordVersionError'
          }),
          { numRuns: 500 }
        )
      })

      it('should reject any single-byte change of a valid record or decode it to a valid record', () => {
        const bytes = encodeRecord(samplePhase2('10.0.0.1', 1))
        fc.assert(
          fc.property(fc.nat(bytes.length - 1), fc.integer({ min: 1, max: 255 }), (i, x) => {
            const copy = new Uint8Array(bytes)
            copy[i] = copy[i]! ^ x
            try {
              const record = decodeRecord('phase2', copy)
              return encodeRecord(record).length > 0
            } catch (err) {
              return ['CorruptRecordError', 'UnsupportedRecordVersionError'].includes(
                (err as Error).name
              )
            }
          }),
          { numRuns: 1000 }
        )
      })

      it('should name missing, unknown and mistyped fields', () => {
        const record = samplePhase1('10.0.0.1', 1) as unknown as Record<string, unknown>
        const { peer: _peer, ...missing } = record
        expect(thrown(() => decodeRecord('phase1', utf8(JSON.stringify(missing)))).path).to.equal(
          'phase1.peer'
        )
        const extra = { ...record, secret: 'psk' }
        expect(thrown(() => decodeRecord('phase1', utf8(JSON.stringify(extra)))).path).to.equal(
          'phase1.secret'
        )
        const badPort = { ...record, peer: { address: '192.0.2.1', port: 70000 } }
        expect(thrown(() => decodeRecord('phase1', utf8(JSON.stringify(badPort)))).path).to.equal(
          'phase1.peer.port'
        )
        const badAddress = { ...record, dvipa: '10.0.0.256' }
        expect(
          thrown(() => decodeRecord('phase1', utf8(JSON.stringify(badAddress)))).path
        ).to.equal('phase1.dvipa')
      })

      it('should reject a record of another kind', () => {
        const err = thrown(() => decodeRecord('phase2', encodeRecord(samplePhase1('10.0.0.1', 1))))
        expect(err.name).to.equal('CorruptRecordError')
      })
    })

    describe('when the version is unknown', () => {
      it('should throw UnsupportedRecordVersionError with the version', () => {
        const v9 = { ...samplePhase1('10.0.0.1', 1), v: 9 }
        const err = thrown(() => decodeRecord('phase1', utf8(JSON.stringify(v9))))
        expect(err.name).to.equal('UnsupportedRecordVersionError')
        expect(err.version).to.equal(9)
      })
    })
  })

  describe('decodeRecordSet', () => {
    it('should group and sort good entries and list bad ones in corrupt', () => {
      const records = [...sampleRecords('10.0.0.1', 2), ...sampleRecords('10.0.0.1', 1)]
      const entries = records.map((r) => ({ kind: r.kind, id: r.id, bytes: encodeRecord(r) }))
      entries.push({ kind: 'filter', id: 'broken', bytes: utf8('{') })
      entries.push({
        kind: 'phase1',
        id: 'moved',
        bytes: encodeRecord(samplePhase1('10.0.0.1', 5))
      })
      const set = decodeRecordSet(entries)
      expect(countRecords(set)).to.equal(10)
      expect(set.phase2.map((r) => r.id)).to.deep.equal(['child-1', 'child-2'])
      expect(set.corrupt.map((c) => `${c.kind}/${c.id}`)).to.deep.equal([
        'filter/broken',
        'phase1/moved'
      ])
    })
  })

  describe('ownership and mailbox messages', () => {
    it('should round-trip and validate', () => {
      const ownership = {
        v: 1 as const,
        dvipa: '10.0.0.1',
        owner: 'dp-1',
        epoch: 3,
        ranks: ['dp-2'],
        claimedAt: 5
      }
      expect(decodeOwnership(encodeOwnership(ownership))).to.deep.equal(ownership)
      expect(thrown(() => encodeOwnership({ ...ownership, epoch: 0 })).path).to.equal(
        'ownership.epoch'
      )
      const message = sampleDeleteMessage('dp-1', 4)
      expect(decodeDeleteMessage(encodeDeleteMessage(message))).to.deep.equal(message)
      expect(thrown(() => decodeDeleteMessage(utf8('[]'))).name).to.equal('CorruptRecordError')
    })
  })
})
