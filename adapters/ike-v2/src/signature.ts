/**
 * Certificate authentication with digital signatures (RFC 7427, AUTH method 14): ECDSA P-256 and
 * RSA (PKCS#1 v1.5) with SHA-256. The peer's end-entity certificate comes in a CERT payload and
 * must be signed by a configured trust anchor, be valid at the clock's time, and name the peer's
 * identity (subject DN, or a subjectAltName of type DNS, e-mail or IP).
 *
 * @module
 */
import { X509Certificate, createHash, createPrivateKey, sign, verify } from 'node:crypto'
import { IkeProtocolError, type Identity } from '@vipsec/interface'
import { AuthMethodId, CertEncoding, PayloadType } from './constants.js'
import type { IkeContext } from './context.js'
import type { IkeSa } from './ike-sa.js'
import { concat, type AuthPayload, type CertPayload, type Payload } from './message.js'
import { decodeDn, encodeDn } from './dn.js'
import { sameIdentity } from './selectors.js'

/** AlgorithmIdentifier ecdsa-with-SHA256 (RFC 5758), DER. */
const ECDSA_SHA256 = Uint8Array.from(Buffer.from('300a06082a8648ce3d040302', 'hex'))
/** AlgorithmIdentifier sha256WithRSAEncryption (RFC 4055), DER with NULL parameters. */
const RSA_SHA256 = Uint8Array.from(Buffer.from('300d06092a864886f70d01010b0500', 'hex'))

/**
 * A CERTREQ payload naming our trust anchors (SHA-1 of each CA's SubjectPublicKeyInfo, RFC 7296
 * section 3.7), so that peers that send certificates only when asked (strongSwan's default) do.
 *
 * @returns the payload, or none when no trust anchor is configured
 */
export function certificateRequest(ctx: IkeContext): Payload[] {
  if (ctx.init.trustAnchors.length === 0) return []
  const hashes = ctx.init.trustAnchors.map((a) => {
    const spki = new X509Certificate(a.certificate).publicKey.export({
      type: 'spki',
      format: 'der'
    })
    return new Uint8Array(createHash('sha1').update(spki).digest())
  })
  return [
    {
      type: PayloadType.CERTREQ,
      encoding: CertEncoding.X509_SIGNATURE,
      data: concat(...hashes)
    } as CertPayload
  ]
}

/** The signature schemes accepted from peers: AlgorithmIdentifier DER (hex), key type, hash. */
const VERIFY_SCHEMES: { der: string; keyType: string; hash: string }[] = [
  { der: '300a06082a8648ce3d040302', keyType: 'ec', hash: 'sha256' },
  { der: '300a06082a8648ce3d040303', keyType: 'ec', hash: 'sha384' },
  { der: '300a06082a8648ce3d040304', keyType: 'ec', hash: 'sha512' },
  { der: '300d06092a864886f70d01010b0500', keyType: 'rsa', hash: 'sha256' },
  { der: '300d06092a864886f70d01010c0500', keyType: 'rsa', hash: 'sha384' },
  { der: '300d06092a864886f70d01010d0500', keyType: 'rsa', hash: 'sha512' }
]

/** The SIGNATURE_HASH_ALGORITHMS notify data: SHA2-256, SHA2-384, SHA2-512 (RFC 7427). */
export const SIGNATURE_HASHES = Uint8Array.of(0, 2, 0, 3, 0, 4)

/**
 * Signs `octets` with our certificate's key and returns CERT and AUTH payloads.
 *
 * @throws IkeProtocolError AUTHENTICATION_FAILED when there is no certificate for our identity
 */
export function signAuth(ctx: IkeContext, sa: IkeSa, octets: Uint8Array): Payload[] {
  const cred = ctx.init.certificates.find((c) => sameIdentity(c.identity, sa.localIdentity!))
  if (cred === undefined) {
    throw new IkeProtocolError('AUTHENTICATION_FAILED', 'no certificate for our identity')
  }
  const key = createPrivateKey(cred.privateKey)
  const type = key.asymmetricKeyType
  let algorithm: Uint8Array
  if (type === 'ec') algorithm = ECDSA_SHA256
  else if (type === 'rsa') algorithm = RSA_SHA256
  else throw new IkeProtocolError('AUTHENTICATION_FAILED', `unsupported key type ${type}`)
  const signature = new Uint8Array(sign('sha256', octets, key))
  return [
    {
      type: PayloadType.CERT,
      encoding: CertEncoding.X509_SIGNATURE,
      data: cred.certificate
    } as CertPayload,
    {
      type: PayloadType.AUTH,
      method: AuthMethodId.DIGITAL_SIGNATURE,
      data: concat(Uint8Array.of(algorithm.length), algorithm, signature)
    } as AuthPayload
  ]
}

function certMatches(cert: X509Certificate, id: Identity): boolean {
  switch (id.type) {
    case 'der-dn':
      try {
        const subject = decodeDn(encodeDnFromCert(cert))
        return sameIdentity({ type: 'der-dn', value: subject }, id)
      } catch {
        return false
      }
    case 'fqdn':
      return cert.checkHost(id.value, { subject: 'never' }) !== undefined
    case 'rfc822':
      return cert.checkEmail(id.value, { subject: 'never' }) !== undefined
    case 'ipv4':
    case 'ipv6':
      return cert.checkIP(id.value) !== undefined
    default:
      return false
  }
}

/** The subject DN of a certificate as DER, rebuilt from Node's text form (`K=V` lines). */
function encodeDnFromCert(cert: X509Certificate): Uint8Array {
  const text = cert.subject
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.replace(/^emailAddress=/, 'E='))
    .join(', ')
  return encodeDn(text)
}

/**
 * Verifies a digital-signature AUTH payload against the peer's certificate.
 *
 * @returns true when the certificate chains to a trust anchor, is valid now, names the peer's
 *   identity, and the signature over `octets` verifies; otherwise why not
 */
export function verifySignatureAuth(
  ctx: IkeContext,
  sa: IkeSa,
  auth: AuthPayload,
  certs: CertPayload[],
  octets: Uint8Array
): true | string {
  if (auth.method !== AuthMethodId.DIGITAL_SIGNATURE) return `AUTH method ${auth.method}`
  const first = certs.find((c) => c.encoding === CertEncoding.X509_SIGNATURE)
  if (first === undefined || auth.data.length < 1) return 'no X.509 CERT payload'
  try {
    const cert = new X509Certificate(first.data)
    const now = ctx.clock.now()
    if (Date.parse(cert.validFrom) > now || Date.parse(cert.validTo) < now)
      return 'certificate not valid now'
    const trusted = ctx.init.trustAnchors.some((a) => {
      const ca = new X509Certificate(a.certificate)
      return cert.checkIssued(ca) && cert.verify(ca.publicKey)
    })
    if (!trusted) return 'certificate not issued by a trust anchor'
    if (!certMatches(cert, sa.remoteIdentity!)) return 'certificate does not name the identity'
    const algLength = auth.data[0]
    if (1 + algLength > auth.data.length) return 'bad AlgorithmIdentifier length'
    const algorithm = auth.data.subarray(1, 1 + algLength)
    const signature = auth.data.subarray(1 + algLength)
    const keyType = cert.publicKey.asymmetricKeyType
    const hex = Buffer.from(algorithm).toString('hex')
    const scheme = VERIFY_SCHEMES.find((x) => x.der === hex && x.keyType === keyType)
    if (scheme === undefined) return `unsupported signature scheme ${hex}`
    return verify(scheme.hash, octets, cert.publicKey, signature) || 'signature does not verify'
  } catch (err) {
    return `certificate: ${(err as Error).message}`
  }
}
