import { expect } from 'chai'
import { SealedStateError, type WarmRecord } from '@vipsec/interface'
import { WarmKeySet } from '../src/index.js'
import { DVIPA, keySet, sa, secret, stateOf } from './helpers/warm-harness.js'

function thrown(fn: () => unknown): Error & Record<string, unknown> {
  try {
    fn()
  } catch (err) {
    return err as Error & Record<string, unknown>
  }
  throw new Error('expected a throw')
}

const identity = { dvipa: DVIPA, phase1Id: 'ike-1', epoch: 3, version: 1 }

describe('WarmKeySet', () => {
  describe('when a state is sealed and opened', () => {
    it('should give the state back, and the record should hold no plaintext', () => {
      const keys = keySet()
      const state = stateOf(sa(1))
      const record = keys.seal(state, identity)
      expect(record).to.include({ kind: 'warm', id: 'ike-1', phase1Id: 'ike-1', keyId: 'k1' })
      expect(record).to.include({ epoch: 3, version: 1 })
      expect(Buffer.from(record.sealed, 'base64').toString('latin1')).not.to.include('keys of')
      expect(keys.open(record)).to.deep.equal(state)
      expect(keys.counters()).to.include({ sealed: 1, opened: 1 })
    })

    it('should use a new nonce for each sealing', () => {
      const keys = keySet()
      const a = keys.seal(stateOf(sa(1)), identity)
      const b = keys.seal(stateOf(sa(1)), identity)
      expect(a.nonce).not.to.equal(b.nonce)
      expect(a.sealed).not.to.equal(b.sealed)
    })
  })

  describe('when the record names a key id this node does not have', () => {
    it('should throw SealedStateError unknown-key and count it', () => {
      const sealer = new WarmKeySet({ keys: { k9: secret(9) }, current: 'k9' })
      const record = sealer.seal(stateOf(sa(1)), identity)
      const keys = keySet()
      const err = thrown(() => keys.open(record))
      expect(err.name).to.equal(SealedStateError.name)
      expect(err).to.include({ reason: 'unknown-key', keyId: 'k9' })
      expect(keys.counters().unknownKey).to.equal(1)
    })
  })

  describe('when a key of the same id has another secret', () => {
    it('should fail authentication', () => {
      const other = new WarmKeySet({ keys: { k1: secret(7) }, current: 'k1' })
      const record = other.seal(stateOf(sa(1)), identity)
      expect(thrown(() => keySet().open(record))).to.include({ reason: 'authentication' })
    })
  })

  describe('when the sealed blob was changed', () => {
    it('should throw SealedStateError authentication for any flipped byte', () => {
      const keys = keySet()
      const record = keys.seal(stateOf(sa(1)), identity)
      const blob = Buffer.from(record.sealed, 'base64')
      for (const at of [0, Math.floor(blob.length / 2), blob.length - 1]) {
        const changed = Buffer.from(blob)
        changed[at]! ^= 0x01
        const err = thrown(() => keys.open({ ...record, sealed: changed.toString('base64') }))
        expect(err).to.include({ name: 'SealedStateError', reason: 'authentication' })
      }
      const nonce = Buffer.from(record.nonce, 'base64')
      nonce[0]! ^= 0x80
      expect(thrown(() => keys.open({ ...record, nonce: nonce.toString('base64') }))).to.include({
        reason: 'authentication'
      })
      expect(keys.counters().authentication).to.equal(4)
    })
  })

  describe('when a blob is moved to another record', () => {
    it('should fail authentication: another IKE SA, DVIPA, epoch or version', () => {
      const keys = keySet()
      const record = keys.seal(stateOf(sa(1)), identity)
      const moved: WarmRecord[] = [
        { ...record, id: 'ike-2', phase1Id: 'ike-2' },
        { ...record, dvipa: '10.0.0.101' },
        { ...record, epoch: 4 },
        { ...record, version: 2 }
      ]
      for (const m of moved)
        expect(thrown(() => keys.open(m))).to.include({ reason: 'authentication' })
    })

    it('should refuse a record whose id is not its phase1Id', () => {
      const keys = keySet()
      const record = keys.seal(stateOf(sa(1)), identity)
      expect(thrown(() => keys.open({ ...record, id: 'ike-2' }))).to.include({
        reason: 'malformed'
      })
    })
  })

  describe('sequence reservations', () => {
    const reservation = {
      v: 1 as const,
      kind: 'sequence' as const,
      id: 'child-1',
      dvipa: DVIPA,
      phase2Id: 'child-1',
      outboundSpi: 'd0000001',
      reservedEnd: '1048576',
      inbound: '7'
    }

    it('should verify what it authenticated, also after a rotation', () => {
      const record = keySet('k1').authenticate(reservation)
      expect(record).to.include({ keyId: 'k1' })
      expect(keySet('k2').verify(record)).to.equal(record)
    })

    it('should refuse a lowered end, another Child SA, or an unknown key id, and count it', () => {
      const keys = keySet()
      const record = keys.authenticate(reservation)
      for (const changed of [
        { ...record, reservedEnd: '1' },
        { ...record, inbound: '9' },
        { ...record, id: 'child-2', phase2Id: 'child-2' },
        { ...record, outboundSpi: 'd0000002' }
      ])
        expect(thrown(() => keys.verify(changed))).to.include({
          name: 'SealedStateError',
          reason: 'authentication'
        })
      expect(thrown(() => keys.verify({ ...record, keyId: 'k9' }))).to.include({
        reason: 'unknown-key'
      })
      expect(keys.counters()).to.include({ authentication: 4, unknownKey: 1 })
    })
  })

  describe('when keys are rotated', () => {
    it('should seal with the current key and open with any configured one', () => {
      const old = keySet('k1').seal(stateOf(sa(1)), identity)
      const rotated = keySet('k2')
      expect(rotated.open(old).records.phase1.id).to.equal('ike-1')
      expect(rotated.seal(stateOf(sa(1)), identity).keyId).to.equal('k2')
    })
  })

  describe('when the configuration is bad', () => {
    it('should throw InvalidConfigError naming the field', () => {
      expect(thrown(() => new WarmKeySet({ keys: {}, current: 'k1' }))).to.include({
        name: 'InvalidConfigError',
        field: 'warm.keys'
      })
      expect(
        thrown(() => new WarmKeySet({ keys: { k1: new Uint8Array(16) }, current: 'k1' }))
      ).to.include({ field: 'warm.keys.k1' })
      expect(thrown(() => new WarmKeySet({ keys: { k1: secret(1) }, current: 'k3' }))).to.include({
        field: 'warm.current'
      })
    })
  })
})
