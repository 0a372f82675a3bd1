import { expect } from 'chai'
import fc from 'fast-check'
import type { Identity, IkeProposal } from '@vipsec/interface'
import type { IkePeerConfig, PskCredential } from '../src/config.js'
import { A_ID, A_NET, B_ID, B_NET, makePair, phase1, phase2 } from './helpers/pair.js'
import { configChanged } from '../src/config-lists.js'
import { IdentityIndex, identityKey } from '../src/identity-index.js'
import { hexSpiKey, spiKey } from '../src/sa-table.js'
import { sameIdentity } from '../src/selectors.js'

interface Entry {
  n: number
  remote?: Identity
  local: Identity
}

const index = (): IdentityIndex<Entry> => new IdentityIndex<Entry>((e) => e.remote)

const fqdn = (value: string): Identity => ({ type: 'fqdn', value })

describe('IdentityIndex', () => {
  it('should find what list.find finds, for any list, identity and condition', () => {
    const names = ['a.test', 'A.test', 'b.test', 'B.TEST', 'c.test']
    const identity = fc.oneof(
      fc.constantFrom(...names).map(fqdn),
      fc.constantFrom('10.0.0.1', '10.0.0.2').map((value): Identity => ({ type: 'ipv4', value })),
      fc
        .constantFrom('2001:db8::1', '2001:0db8:0:0::1', '2001:db8::2')
        .map((value): Identity => ({ type: 'ipv6', value })),
      fc
        .constantFrom('CN=a, O=x', 'CN=a,O=x', 'CN=b, O=x')
        .map((value): Identity => ({ type: 'der-dn', value }))
    )
    fc.assert(
      fc.property(
        fc.array(fc.record({ remote: fc.option(identity, { nil: undefined }), odd: fc.boolean() })),
        identity,
        fc.boolean(),
        (shapes, id, oddOnly) => {
          const list: Entry[] = shapes.map((s, n) => ({
            n: s.odd ? 2 * n + 1 : 2 * n,
            remote: s.remote,
            local: fqdn('me.test')
          }))
          const accept = (e: Entry): boolean => !oddOnly || e.n % 2 === 1
          const expected = list.find(
            (e) => (e.remote === undefined || sameIdentity(e.remote, id)) && accept(e)
          )
          expect(index().find(list, id, accept)).to.equal(expected)
        }
      ),
      { numRuns: 500 }
    )
  })

  it('should give equal keys exactly to identities sameIdentity calls the same', () => {
    const ids: Identity[] = [
      fqdn('peer.test'),
      fqdn('PEER.test'),
      fqdn('other.test'),
      { type: 'ipv6', value: '2001:db8::1' },
      { type: 'ipv6', value: '2001:db8:0::1' },
      { type: 'der-dn', value: 'CN=peer, O=vipsec' },
      { type: 'der-dn', value: 'CN=peer,O=vipsec' },
      { type: 'rfc822', value: 'a@peer.test' },
      { type: 'ipv4', value: '10.0.0.1' }
    ]
    for (const a of ids)
      for (const b of ids)
        expect(identityKey(a) === identityKey(b), `${a.value} / ${b.value}`).to.equal(
          sameIdentity(a, b)
        )
  })

  it('should look only at the entries of the identity asked for, not at every entry', () => {
    const list: Entry[] = Array.from({ length: 5000 }, (_, n) => ({
      n,
      remote: fqdn(`peer${n}.test`),
      local: fqdn('me.test')
    }))
    let looked = 0
    const found = index().find(list, fqdn('PEER4321.test'), () => {
      looked++
      return true
    })
    expect(found?.n).to.equal(4321)
    expect(looked).to.equal(1)
  })

  it('should keep the order of the list between exact and wildcard entries', () => {
    const list: Entry[] = [
      { n: 0, remote: fqdn('x.test'), local: fqdn('me.test') },
      { n: 1, local: fqdn('me.test') },
      { n: 2, remote: fqdn('peer.test'), local: fqdn('me.test') }
    ]
    expect(index().find(list, fqdn('peer.test'), () => true)?.n).to.equal(1)
    expect(index().find(list, fqdn('peer.test'), (e) => e.n !== 1)?.n).to.equal(2)
    expect(index().find(list, fqdn('x.test'), () => true)?.n).to.equal(0)
  })

  it('should notice a list changed in place, as a reload splices it, even at the same length', () => {
    const idx = index()
    const list: Entry[] = [
      { n: 0, remote: fqdn('old.test'), local: fqdn('me.test') },
      { n: 1, remote: fqdn('other.test'), local: fqdn('me.test') }
    ]
    expect(idx.find(list, fqdn('old.test'), () => true)?.n).to.equal(0)
    // the same length, the entry asked for replaced: never returned, even without the hook
    list.splice(0, 1, { n: 2, remote: fqdn('new.test'), local: fqdn('me.test') })
    expect(idx.find(list, fqdn('old.test'), () => true)).to.equal(undefined)
    expect(idx.find(list, fqdn('new.test'), () => true)?.n).to.equal(2)
    // another entry replaced, told by the hook
    list.splice(1, 1, { n: 3, remote: fqdn('third.test'), local: fqdn('me.test') })
    configChanged({ peers: list as unknown as IkePeerConfig[] })
    expect(idx.find(list, fqdn('third.test'), () => true)?.n).to.equal(3)
    expect(idx.find(list, fqdn('other.test'), () => true)).to.equal(undefined)
    // a new length needs no hook
    list.push({ n: 4, remote: fqdn('fourth.test'), local: fqdn('me.test') })
    expect(idx.find(list, fqdn('fourth.test'), () => true)?.n).to.equal(4)
  })

  it('should read a bounded number of entries per lookup once built, not every entry', () => {
    const entries: Entry[] = Array.from({ length: 10_000 }, (_, n) => ({
      n,
      remote: fqdn(`peer${n}.test`),
      local: fqdn('me.test')
    }))
    let reads = 0
    const list = new Proxy(entries, {
      get(target, prop, receiver) {
        if (typeof prop === 'string' && /^\d+$/.test(prop)) reads++
        return Reflect.get(target, prop, receiver) as unknown
      }
    })
    const idx = index()
    expect(idx.find(list, fqdn('peer0.test'), () => true)?.n).to.equal(0)
    reads = 0
    for (let k = 0; k < 1000; k++) {
      const n = (k * 7919) % 10_000
      expect(idx.find(list, fqdn(`peer${n}.test`), () => true)?.n).to.equal(n)
    }
    // one entry read per lookup (the one found); a check against a copy of the list read 10,000
    expect(reads).to.equal(1000)
  })

  it('should match nothing for a DN that does not parse', () => {
    const bad: Identity = { type: 'der-dn', value: '=' }
    const list: Entry[] = [{ n: 0, remote: bad, local: fqdn('me.test') }]
    expect(index().find(list, bad, () => true)).to.equal(undefined)
  })
})

describe('hexSpiKey', () => {
  it('should give the table key of the SPI its hex digits spell, or undefined', () => {
    const spi = Uint8Array.from([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef])
    expect(hexSpiKey('0123456789abcdef')).to.equal(spiKey(spi))
    expect(hexSpiKey('0123456789ABCDEF')).to.equal(spiKey(spi))
    expect(hexSpiKey('0123456789abcde')).to.equal(undefined)
    expect(hexSpiKey('0123456789abcdeg')).to.equal(undefined)
  })
})

describe('IkeV2Service with its peer list changed in place (a reload)', () => {
  const AES128: IkeProposal = {
    encryption: [{ algorithm: 'aes-gcm-16', keyBits: 128 }],
    integrity: ['none'],
    prf: ['hmac-sha2-256'],
    keyExchange: ['curve25519']
  }

  it('should read a bounded number of peer configs and keys per handshake among thousands', async () => {
    const others = (n: number): Identity => fqdn(`peer${n}.other.test`)
    const peers: IkePeerConfig[] = [
      ...Array.from({ length: 2000 }, (_, n) => ({
        localIdentity: B_ID,
        remoteIdentity: others(n),
        phase1: phase1(),
        children: [{ policy: phase2(), mode: 'tunnel' as const, local: [B_NET], remote: [A_NET] }]
      })),
      {
        localIdentity: B_ID,
        remoteIdentity: A_ID,
        phase1: phase1(),
        children: [{ policy: phase2(), mode: 'tunnel', local: [B_NET], remote: [A_NET] }]
      }
    ]
    const psks: PskCredential[] = [
      ...Array.from({ length: 2000 }, (_, n) => ({ remote: others(n), secret: `key ${n}` })),
      { remote: B_ID, secret: 'shared secret' },
      { remote: A_ID, secret: 'shared secret' }
    ]
    const counted = { reads: 0 }
    const counting = <T extends object>(list: T[]): T[] =>
      new Proxy(list, {
        get(target, prop, receiver) {
          if (typeof prop === 'string' && /^\d+$/.test(prop)) counted.reads++
          return Reflect.get(target, prop, receiver) as unknown
        }
      })
    const p = makePair({
      // the initiator announces fragmentation, the responder's is off: it asks whether any peer
      // allows it
      a: { psks, fragmentation: { enabled: true } },
      b: { peers: counting(peers), psks: counting(psks), fragmentation: { enabled: false } }
    })
    await p.start()
    try {
      await p.drive(p.a.connect(p.request()))
      counted.reads = 0
      for (let k = 0; k < 5; k++) await p.drive(p.a.connect(p.request()))
      // a check of each list against a copy read all 4,000 entries (and more) per handshake
      expect(counted.reads / 5).to.be.at.most(10)
    } finally {
      await p.stop()
    }
  })

  it('should answer with the new peer config and key, though the lists keep their length', async () => {
    const peers: IkePeerConfig[] = [
      {
        localIdentity: B_ID,
        remoteIdentity: A_ID,
        phase1: phase1(),
        children: [{ policy: phase2(), mode: 'tunnel', local: [B_NET], remote: [A_NET] }]
      }
    ]
    const psks: PskCredential[] = [
      { remote: B_ID, secret: 'old secret' },
      { remote: A_ID, secret: 'old secret' }
    ]
    const p = makePair({ a: { psks }, b: { peers, psks } })
    await p.start()
    try {
      const first = await p.drive(p.a.connect(p.request()))
      expect(first.phase1.policy.proposals[0]!.encryption[0]!.keyBits).to.equal(256)
      // the reload: another proposal for the same peer, another key, same lengths
      peers.splice(0, 1, { ...peers[0]!, phase1: phase1({ proposals: [AES128] }) })
      psks.splice(
        0,
        2,
        { remote: B_ID, secret: 'new secret' },
        { remote: A_ID, secret: 'new secret' }
      )
      configChanged({ peers, psks })
      const second = await p.drive(
        p.a.connect(p.request({ phase1: phase1({ proposals: [AES128] }) }))
      )
      expect(second.phase1.id).to.not.equal(first.phase1.id)
      const refused = await p.drive(p.a.connect(p.request())).then(
        () => 'connected',
        (err: Error) => err.message
      )
      expect(refused, 'the old proposal is no longer answered').to.match(/NO_PROPOSAL_CHOSEN/)
    } finally {
      await p.stop()
    }
  })
})
