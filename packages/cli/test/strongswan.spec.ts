import { expect } from 'chai'
import {
  count,
  espProposals,
  identity,
  ikeProposals,
  proposalName,
  seconds,
  selectorName,
  trafficSelectors
} from '../src/index.js'

const message = (fn: () => unknown): string => {
  try {
    fn()
  } catch (err) {
    return (err as Error).message
  }
  return ''
}

describe('strongSwan syntax', () => {
  describe('ikeProposals', () => {
    it('should read several proposals and name them back the same way', () => {
      const list = 'aes256gcm16-prfsha256-x25519, aes128-sha256-modp2048'
      const parsed = ikeProposals(list)
      expect(parsed[1]).to.deep.equal({
        encryption: [{ algorithm: 'aes-cbc', keyBits: 128 }],
        integrity: ['hmac-sha2-256-128'],
        prf: ['hmac-sha2-256'],
        keyExchange: ['modp2048']
      })
      expect(parsed.map(proposalName)).to.deep.equal([
        'aes256gcm16-prfsha256-x25519',
        'aes128-sha256-prfsha256-modp2048'
      ])
    })

    it('should refuse an AEAD proposal without a PRF and a group the IKE service lacks', () => {
      expect(message(() => ikeProposals('aes256gcm16-x25519'))).to.include('has no PRF')
      expect(message(() => ikeProposals('aes256gcm16-prfsha256-ecp224'))).to.include(
        "cannot do key exchange 'ecp224'"
      )
    })

    it('should read ChaCha20-Poly1305, SHA1 and the larger groups, and name them back', () => {
      const list =
        'chacha20poly1305-prfsha256-curve448-ecp384, aes128-sha1-prfsha1-modp3072-modp4096-ecp521'
      const parsed = ikeProposals(list)
      expect(parsed[0]).to.deep.equal({
        encryption: [{ algorithm: 'chacha20-poly1305', keyBits: 256 }],
        integrity: ['none'],
        prf: ['hmac-sha2-256'],
        keyExchange: ['curve448', 'ecp384']
      })
      expect(parsed[1].integrity).to.deep.equal(['hmac-sha1-96'])
      expect(parsed.map(proposalName)).to.deep.equal(list.split(', '))
      expect(ikeProposals('aes256-sha1-x448')[0].prf).to.deep.equal(['hmac-sha1'])
    })
  })

  describe('espProposals', () => {
    it('should read PFS and ESN, CBC with HMAC and ChaCha20-Poly1305', () => {
      expect(espProposals('aes128gcm16-x25519-esn')[0]).to.deep.include({
        keyExchange: ['curve25519'],
        extendedSequenceNumbers: [true]
      })
      expect(espProposals('aes256-sha256')[0]).to.deep.include({
        encryption: [{ algorithm: 'aes-cbc', keyBits: 256 }],
        integrity: ['hmac-sha2-256-128']
      })
      expect(espProposals('chacha20poly1305-ecp384')[0]).to.deep.include({
        encryption: [{ algorithm: 'chacha20-poly1305', keyBits: 256 }],
        integrity: ['none'],
        keyExchange: ['ecp384']
      })
      expect(message(() => espProposals('aes256'))).to.include('has no integrity algorithm')
      expect(message(() => espProposals('aes256ctr'))).to.include(
        "the ESP engine cannot do encryption 'aes256ctr'"
      )
    })
  })

  describe('trafficSelectors', () => {
    it('should read prefixes, ranges, ports and dynamic, and print them back', () => {
      const ts = trafficSelectors(
        '10.77.0.0/24, 10.0.0.1-10.0.0.9[tcp/1024-2048], dynamic[udp/53]',
        '10.88.0.50'
      )
      expect(ts.map(selectorName)).to.deep.equal([
        '10.77.0.0/24',
        '10.0.0.1-10.0.0.9[tcp/1024-2048]',
        '10.88.0.50/32[udp/53]'
      ])
      expect(trafficSelectors('2001:db8::/64')[0]).to.include({
        startAddress: '2001:db8:0:0:0:0:0:0'
      })
      expect(message(() => trafficSelectors('dynamic'))).to.include("'dynamic' is not known here")
      expect(message(() => trafficSelectors('10.0.0.0/33'))).to.include('not a selector')
    })
  })

  describe('identity, seconds and count', () => {
    it('should follow swanctl’s rules', () => {
      expect(identity('vpn.example.com')).to.deep.equal({ type: 'fqdn', value: 'vpn.example.com' })
      expect(identity('@vpn')).to.deep.equal({ type: 'fqdn', value: 'vpn' })
      expect(identity('user@example.com').type).to.equal('rfc822')
      expect(identity('10.0.0.1').type).to.equal('ipv4')
      expect(identity('C=CH, O=Org, CN=vpn').type).to.equal('der-dn')
      expect(identity('@#0a1b')).to.deep.equal({ type: 'key-id', value: '0a1b' })
      expect(seconds('4h')).to.equal(14400)
      expect(seconds('100ms')).to.equal(0.1)
      expect(seconds(90)).to.equal(90)
      expect(message(() => seconds('4 hours'))).to.include('expected a duration')
      expect(count('2k')).to.equal(2048)
    })
  })
})
