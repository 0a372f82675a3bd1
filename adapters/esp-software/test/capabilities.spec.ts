import { expect } from 'chai'
import { VirtualClock } from '@vipsec/clock'
import {
  ESP_ENCR_TRANSFORM_IDS,
  ESP_INTEGRITY,
  ESP_INTEG_TRANSFORM_IDS,
  SOFTWARE_ESP_CAPABILITIES,
  SoftwareEspEngine,
  supportsEspTransform,
  unsupportedInEspProposal
} from '../src/index.js'
import { anyFilter, inboundTwin, keyMaterial, saParams, udpPacket } from './fixtures.js'

describe('SoftwareEspEngine.capabilities', () => {
  it('should carry the IANA transform IDs of RFC 7296 and its registry', () => {
    expect(ESP_ENCR_TRANSFORM_IDS).to.deep.equal({
      'aes-cbc': 12,
      'aes-gcm-16': 20,
      'null-aes-gmac': 21,
      'chacha20-poly1305': 28
    })
    expect(ESP_INTEG_TRANSFORM_IDS).to.deep.equal({
      'hmac-sha1-96': 2,
      'hmac-sha2-256-128': 12,
      'hmac-sha2-384-192': 13,
      'hmac-sha2-512-256': 14
    })
    expect(SoftwareEspEngine.capabilities).to.equal(SOFTWARE_ESP_CAPABILITIES)
    for (const c of SOFTWARE_ESP_CAPABILITIES) {
      expect(c.encrTransformId).to.equal(ESP_ENCR_TRANSFORM_IDS[c.algorithm])
      if (c.integrity !== undefined) {
        expect(c.integTransformId).to.equal(ESP_INTEG_TRANSFORM_IDS[c.integrity])
      }
    }
  })

  it('should list only what the engine installs and carries, every key length of it', async () => {
    const engine = new SoftwareEspEngine({ clock: new VirtualClock() })
    await engine.start()
    let spi = 0x5000
    for (const c of SOFTWARE_ESP_CAPABILITIES) {
      for (const bits of c.keyBits) {
        const extra = c.integrity !== undefined ? ESP_INTEGRITY[c.integrity].keyLength : 4
        const params = saParams({
          spi: ++spi,
          algorithm: c.algorithm,
          ...(c.integrity !== undefined ? { integrity: c.integrity } : {}),
          keyMaterial: keyMaterial(spi & 0xff, bits / 8 + extra)
        })
        engine.addSa(params)
        engine.addSa(inboundTwin(params))
        engine.installFilter(anyFilter({ id: 'o', spi }))
        engine.installFilter(anyFilter({ id: 'i', direction: 'inbound', spi }))
        const packet = udpPacket()
        const out = engine.protect(packet)
        if (out.action !== 'protect') throw new Error(`${c.strongswan}: ${JSON.stringify(out)}`)
        expect(engine.unprotect(out.packet), `${c.strongswan} ${bits}`).to.deep.include({
          action: 'accept',
          packet
        })
      }
    }
    await engine.stop()
  })

  describe('supportsEspTransform', () => {
    it('should take AES-CBC only with an integrity transform and AEAD only without', () => {
      expect(supportsEspTransform('aes-cbc', 256, 'hmac-sha2-256-128')).to.equal(true)
      expect(supportsEspTransform('aes-cbc', 128, 'hmac-sha1-96')).to.equal(true)
      expect(supportsEspTransform('aes-cbc', 256, 'none')).to.equal(false)
      expect(supportsEspTransform('aes-cbc', 256)).to.equal(false)
      expect(supportsEspTransform('chacha20-poly1305', 256, 'none')).to.equal(true)
      expect(supportsEspTransform('chacha20-poly1305', 128)).to.equal(false)
      expect(supportsEspTransform('aes-gcm-16', 256, 'hmac-sha2-256-128')).to.equal(false)
      expect(supportsEspTransform('aes-ccm-16', 128)).to.equal(false)
    })
  })

  describe('unsupportedInEspProposal', () => {
    it('should name the transforms of a proposal that no combination can use', () => {
      expect(
        unsupportedInEspProposal({
          encryption: [
            { algorithm: 'aes-cbc', keyBits: 256 },
            { algorithm: 'aes-cbc', keyBits: 128 }
          ],
          integrity: ['hmac-sha2-256-128', 'hmac-sha1-96']
        })
      ).to.deep.equal([])
      expect(
        unsupportedInEspProposal({
          encryption: [
            { algorithm: 'aes-gcm-16', keyBits: 256 },
            { algorithm: 'chacha20-poly1305', keyBits: 128 }
          ],
          integrity: ['none', 'hmac-md5-96']
        })
      ).to.deep.equal(['chacha20-poly1305/128', 'hmac-md5-96'])
    })
  })
})
