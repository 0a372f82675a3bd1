import { createCipheriv, hkdfSync, randomBytes } from 'node:crypto'
import { expect } from 'chai'
import { SealedStateError, type IkeSaState, type WarmRecord } from '@vipsec/interface'
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

/**
 * A record of `identity` whose plaintext is `plaintext`, sealed under key k1 as WarmKeySet seals
 * (HKDF-SHA256 of the secret with the key id as salt; the length-prefixed associated data).
 */
function sealedAs(plaintext: Uint8Array): WarmRecord {
  const key = Buffer.from(hkdfSync('sha256', secret(1), 'k1', 'vipsec warm state v1', 32))
  const fields = ['vipsec-warm-v1', DVIPA, 'ike-1', 'k1', '3', '1']
  const ad = Buffer.concat(
    fields.map((f) => {
      const b = Buffer.from(f, 'utf8')
      const n = Buffer.alloc(4)
      n.writeUInt32BE(b.length)
      return Buffer.concat([n, b])
    })
  )
  const nonce = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', key, nonce)
  cipher.setAAD(ad)
  const sealed = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()])
  return {
    v: 1,
    kind: 'warm',
    id: 'ike-1',
    dvipa: DVIPA,
    phase1Id: 'ike-1',
    keyId: 'k1',
    version: 1,
    epoch: 3,
    nonce: nonce.toString('base64'),
    sealed: sealed.toString('base64')
  }
}

/** The first plaintext format: JSON of the records, the secret in base64 and the flag. */
function format1(state: IkeSaState): Uint8Array {
  return Buffer.from(
    JSON.stringify({
      records: state.records,
      secret: Buffer.from(state.secret).toString('base64'),
      midSync: state.midSync
    })
  )
}

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

  describe('the sealed plaintext', () => {
    it('should hold the records once and the secret as it is, not in base64', () => {
      const keys = keySet()
      const state = { ...stateOf(sa(1)), secret: new Uint8Array(3000).fill(7) }
      const record = keys.seal(state, identity)
      const records = Buffer.byteLength(JSON.stringify(state.records))
      // AES-GCM keeps the length: header (6) + records + secret + tag (16)
      expect(Buffer.from(record.sealed, 'base64').length).to.equal(6 + records + 3000 + 16)
      expect(keys.open(record)).to.deep.equal(state)
      expect(keys.open({ ...keys.seal({ ...state, midSync: false }, identity) }).midSync).to.equal(
        false
      )
    })

    it('should open a record sealed in the first format', () => {
      const keys = keySet()
      for (const midSync of [true, false]) {
        const state = stateOf(sa(1), midSync)
        expect(keys.open(sealedAs(format1(state)))).to.deep.equal(state)
      }
    })

    it('should throw SealedStateError malformed for a plaintext that authenticates but does not parse', () => {
      const keys = keySet()
      const good = Buffer.from(format1(stateOf(sa(1))))
      const records = Buffer.from(JSON.stringify(sa(1)))
      const header = (flags: number, length: number): Buffer => {
        const h = Buffer.alloc(6)
        h[0] = 2
        h[1] = flags
        h.writeUInt32BE(length, 2)
        return h
      }
      const bad = [
        Buffer.alloc(0),
        Buffer.of(2, 1, 0),
        Buffer.of(9, ...good.subarray(1)),
        Buffer.concat([header(1, records.length + 1), records]),
        Buffer.concat([header(4, records.length), records]),
        Buffer.concat([header(1, 3), Buffer.from('{"a')]),
        Buffer.concat([header(1, 4), Buffer.from('null')]),
        Buffer.concat([header(1, 2), Buffer.from('{}')]),
        Buffer.from('{"records":{},"secret":"","midSync":true}'),
        Buffer.from(JSON.stringify({ records: sa(1), secret: 7, midSync: true })),
        good.subarray(0, good.length - 1)
      ]
      for (const plaintext of bad) {
        const err = thrown(() => keys.open(sealedAs(plaintext)))
        expect(err, plaintext.toString('latin1')).to.be.instanceOf(SealedStateError)
        expect(err.reason).to.equal('malformed')
      }
      expect(keys.counters().malformed).to.equal(bad.length)
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
