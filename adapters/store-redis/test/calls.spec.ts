import { createHash } from 'node:crypto'
import { expect } from 'chai'
import { decodeOwnership, encodeRecord, type Ownership } from '@vipsec/interface'
import { sampleDeleteMessage, samplePhase1, sampleRecords } from '@vipsec/compliance/coupling-store'
import { releasedOwnership } from '@vipsec/store-memory'
import { redisKeys } from '../src/index.js'
import {
  checkFence,
  claimCall,
  deleteCall,
  postCall,
  putCall,
  releaseCall,
  settleCall,
  takeCall,
  takeMessagesCall
} from '../src/calls.js'
import { splitField } from '../src/keys.js'
import { pairs, parseOutcome, SCRIPTS } from '../src/scripts.js'

const DVIPA = '10.0.0.100'
const keys = redisKeys('c1:')
const text = (v: unknown): string => (Buffer.isBuffer(v) ? v.toString('utf8') : String(v))

function thrown(fn: () => unknown): Error & Record<string, unknown> {
  try {
    fn()
  } catch (err) {
    return err as Error & Record<string, unknown>
  }
  throw new Error('expected a throw')
}

describe('redisKeys', () => {
  it('should put every key of a DVIPA under its hash tag and the prefix', () => {
    expect(keys.owner(DVIPA)).to.equal('c1:{10.0.0.100}:owner')
    expect(keys.records(DVIPA)).to.equal('c1:{10.0.0.100}:records')
    expect(keys.journal(DVIPA)).to.equal('c1:{10.0.0.100}:journal')
  })

  it('should name mailboxes, receipts and the channel', () => {
    expect(keys.mailbox('dp-1')).to.equal('c1:mailbox:{dp-1}')
    expect(keys.receipt('dp-1', 'taken', 'r1')).to.equal('c1:mailbox:{dp-1}:taken:r1')
    expect(keys.events).to.equal('c1:events')
  })

  it('should default the prefix to vipsec:', () => {
    expect(redisKeys().owner(DVIPA)).to.equal('vipsec:{10.0.0.100}:owner')
  })

  it('should split a field at its first slash, keeping slashes in the id', () => {
    expect(keys.field('phase1', 'a/b')).to.equal('phase1/a/b')
    expect(splitField('phase1/a/b')).to.deep.equal({ kind: 'phase1', id: 'a/b' })
  })
})

describe('checkFence', () => {
  describe('when the fence is malformed', () => {
    it('should throw InvalidParametersError naming the field', () => {
      expect(thrown(() => checkFence({ owner: '', epoch: 1 }))).to.include({
        name: 'InvalidParametersError',
        argument: 'fence.owner'
      })
      expect(thrown(() => checkFence({ owner: 'dp-1', epoch: 1.5 }))).to.include({
        argument: 'fence.epoch'
      })
    })
  })
})

describe('script calls', () => {
  const fence = { owner: 'dp-1', epoch: 7 }

  describe('claimCall', () => {
    it('should send expected and new epoch as decimals, the encoded ownership and the event', () => {
      const ownership: Ownership = {
        v: 1,
        dvipa: DVIPA,
        owner: 'dp-1',
        epoch: 3,
        ranks: ['dp-2'],
        claimedAt: 5
      }
      const call = claimCall(keys, ownership, 'req-1')
      expect(call.keys).to.deep.equal(['c1:{10.0.0.100}:owner'])
      expect(call.args.slice(0, 3)).to.deep.equal(['2', '3', 'dp-1'])
      expect(decodeOwnership(call.args[3] as Buffer)).to.deep.equal(ownership)
      expect(call.args.slice(4, 6)).to.deep.equal(['req-1', 'c1:events'])
      expect(JSON.parse(text(call.args[6]))).to.deep.equal([
        { type: 'ownership:claimed', ownership }
      ])
    })

    it('should reject an invalid ownership before anything is sent', () => {
      const bad = { v: 1, dvipa: DVIPA, owner: '', epoch: 1, ranks: [], claimedAt: 0 } as Ownership
      expect(thrown(() => claimCall(keys, bad, 'r')).name).to.equal('CorruptRecordError')
    })
  })

  describe('releaseCall', () => {
    const held: Ownership = {
      v: 1,
      dvipa: DVIPA,
      owner: 'dp-1',
      epoch: 7,
      ranks: [],
      claimedAt: 1
    }

    it('should send the ownership without its owner, naming the releasing owner', () => {
      const call = releaseCall(keys, releasedOwnership(held, fence), fence, 'req-2')
      expect(call.args.slice(0, 2)).to.deep.equal(['dp-1', '7'])
      const stored = decodeOwnership(call.args[2] as Buffer)
      expect(stored.owner).to.equal(null)
      expect(stored.previousOwner).to.equal('dp-1')
      expect(JSON.parse(text(call.args[5]))).to.deep.equal([
        { type: 'ownership:released', dvipa: DVIPA, epoch: 7, previousOwner: 'dp-1' }
      ])
    })

    it('should name the previous owner a switchover claim recorded, in the record and the event', () => {
      const switched = { ...held, previousOwner: 'dp-0' }
      const call = releaseCall(keys, releasedOwnership(switched, fence), fence, 'req-3')
      expect(decodeOwnership(call.args[2] as Buffer).previousOwner).to.equal('dp-0')
      expect(JSON.parse(text(call.args[5]))).to.deep.equal([
        { type: 'ownership:released', dvipa: DVIPA, epoch: 7, previousOwner: 'dp-0' }
      ])
    })
  })

  describe('putCall', () => {
    it('should send each record as field and the bytes encodeRecord makes, with one event each', () => {
      const records = sampleRecords(DVIPA, 1)
      const call = putCall(keys, DVIPA, records, fence)
      expect(call.keys).to.deep.equal(['c1:{10.0.0.100}:owner', 'c1:{10.0.0.100}:records'])
      expect(call.args.slice(0, 3)).to.deep.equal(['dp-1', '7', 'c1:events'])
      const events = JSON.parse(text(call.args[3])) as Array<{ id: string }>
      expect(events.map((e) => e.id)).to.deep.equal(records.map((r) => r.id))
      records.forEach((record, i) => {
        expect(call.args[4 + 2 * i]).to.equal(`${record.kind}/${record.id}`)
        expect(Buffer.compare(call.args[5 + 2 * i] as Buffer, encodeRecord(record))).to.equal(0)
      })
    })

    describe('when one record is invalid or under another DVIPA', () => {
      it('should throw before anything is sent', () => {
        const bad = { ...samplePhase1(DVIPA, 2), ikeSaId: { initiatorSpi: 'x', responderSpi: 'y' } }
        expect(thrown(() => putCall(keys, DVIPA, [samplePhase1(DVIPA, 1), bad], fence))).to.include(
          { name: 'CorruptRecordError' }
        )
        expect(
          thrown(() => putCall(keys, DVIPA, [samplePhase1('10.0.0.200', 1)], fence))
        ).to.include({ name: 'InvalidParametersError', argument: 'records[0].dvipa' })
      })
    })
  })

  describe('deleteCall', () => {
    it('should pair each field with the event published if it existed', () => {
      const call = deleteCall(keys, DVIPA, [{ kind: 'filter', id: 'f-1' }], fence)
      expect(call.args.slice(0, 4)).to.deep.equal(['dp-1', '7', 'c1:events', 'filter/f-1'])
      expect(JSON.parse(text(call.args[4]))).to.deep.equal({
        type: 'record:deleted',
        dvipa: DVIPA,
        kind: 'filter',
        id: 'f-1',
        epoch: 7
      })
    })
  })

  describe('takeCall', () => {
    it('should send the event up to its count, which the script completes', () => {
      const call = takeCall(keys, DVIPA, fence, 'req-3')
      expect(call.keys).to.deep.equal([
        'c1:{10.0.0.100}:owner',
        'c1:{10.0.0.100}:records',
        'c1:{10.0.0.100}:journal'
      ])
      const completed = `${text(call.args[4])}5}]`
      expect(JSON.parse(completed)).to.deep.equal([
        { type: 'records:taken', dvipa: DVIPA, epoch: 7, count: 5 }
      ])
    })
  })

  describe('settleCall', () => {
    it('should name the owner hash and the journal', () => {
      expect(settleCall(keys, DVIPA, fence).keys).to.deep.equal([
        'c1:{10.0.0.100}:owner',
        'c1:{10.0.0.100}:journal'
      ])
    })
  })

  describe('postCall and takeMessagesCall', () => {
    it('should use the recipient mailbox and a receipt per request id', () => {
      const post = postCall(keys, sampleDeleteMessage('dp-9', 1), 'p1', 60000)
      expect(post.keys).to.deep.equal(['c1:mailbox:{dp-9}', 'c1:mailbox:{dp-9}:posted:p1'])
      expect(post.args[1]).to.equal('60000')
      const take = takeMessagesCall(keys, 'dp-9', 't1', 60000)
      expect(take.keys).to.deep.equal(['c1:mailbox:{dp-9}', 'c1:mailbox:{dp-9}:taken:t1'])
    })

    it('should reject an invalid message with CorruptRecordError', () => {
      const bad = { ...sampleDeleteMessage('dp-9', 1), epoch: 0 }
      expect(thrown(() => postCall(keys, bad, 'p', 1)).name).to.equal('CorruptRecordError')
    })
  })
})

describe('RedisScript', () => {
  it('should carry the SHA-1 of its source, as EVALSHA wants it', () => {
    for (const script of SCRIPTS) {
      expect(script.sha).to.equal(createHash('sha1').update(script.lua).digest('hex'))
    }
    expect(new Set(SCRIPTS.map((s) => s.sha)).size).to.equal(SCRIPTS.length)
  })
})

describe('parseOutcome', () => {
  it('should decode ok, stale and conflict replies', () => {
    const b = (s: string): Buffer => Buffer.from(s)
    expect(parseOutcome([b('ok')])).to.deep.equal({ status: 'ok', result: undefined })
    expect(parseOutcome([b('stale'), b('4')])).to.deep.equal({ status: 'stale', current: 4 })
    expect(parseOutcome([b('conflict'), b('2'), b('dp-3')])).to.deep.equal({
      status: 'conflict',
      current: 2,
      owner: 'dp-3'
    })
    expect(parseOutcome([b('conflict'), b('2'), b('')])).to.include({ owner: undefined })
  })

  it('should throw on a reply of another shape', () => {
    expect(() => parseOutcome('OK')).to.throw()
    expect(() => parseOutcome([Buffer.from('what')])).to.throw()
  })
})

describe('pairs', () => {
  it('should pair a flat HGETALL reply', () => {
    const got = pairs([Buffer.from('phase1/a'), Buffer.from([1, 2])])
    expect(got).to.have.length(1)
    expect(got[0]![0]).to.equal('phase1/a')
    expect([...got[0]![1]]).to.deep.equal([1, 2])
  })
})
