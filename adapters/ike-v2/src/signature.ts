/**
 * Certificate authentication with digital signatures (RFC 7427, AUTH method 14): ECDSA, RSA
 * PKCS#1 v1.5 and RSASSA-PSS with SHA-256, -384 or -512, the hash chosen among those the peer's
 * SIGNATURE_HASH_ALGORITHMS notify names (RFC 7427 section 4). The peer's end-entity certificate comes in a CERT payload and
 * must be signed by a configured trust anchor, be valid at the clock's time, and name the peer's
 * identity (subject DN, or a subjectAltName of type DNS, e-mail or IP).
 *
 * @module
 */
import {
  X509Certificate,
  constants,
  createHash,
  createPrivateKey,
  sign,
  verify,
  type KeyObject
} from 'node:crypto'
import { IkeProtocolError, type Identity } from '@vipsec/interface'
import { AuthMethodId, CertEncoding, NotifyType, PayloadType } from './constants.js'
import type { IkeContext } from './context.js'
import type { IkeSa } from './ike-sa.js'
import { concat, findNotify, type AuthPayload, type CertPayload, type Payload } from './message.js'
import { decodeDn, encodeDn } from './dn.js'
import { sameIdentity } from './selectors.js'
import { MAX_INTERMEDIATES, verifyChain } from './chain.js'
import {
  encodeScheme,
  parseScheme,
  SIGNATURE_HASH_NUMBER,
  type SignatureHash,
  type SignatureScheme
} from './signature-scheme.js'

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

/** The SIGNATURE_HASH_ALGORITHMS notify data: SHA2-256, SHA2-384, SHA2-512 (RFC 7427). */
export const SIGNATURE_HASHES = Uint8Array.of(0, 2, 0, 3, 0, 4)

/**
 * The hash numbers of a SIGNATURE_HASH_ALGORITHMS notify among `payloads`.
 *
 * @returns the numbers, or undefined when there is no such notify
 */
export function signatureHashes(payloads: Payload[]): number[] | undefined {
  const n = findNotify(payloads, NotifyType.SIGNATURE_HASH_ALGORITHMS)
  if (n === undefined) return undefined
  const out: number[] = []
  for (let i = 0; i + 1 < n.data.length; i += 2) out.push((n.data[i] << 8) | n.data[i + 1])
  return out
}

/** The hash that fits an ECDSA key's curve (RFC 5656 section 6.2.1). */
const CURVE_HASH: Record<string, SignatureHash> = {
  prime256v1: 'sha256',
  secp384r1: 'sha384',
  secp521r1: 'sha512'
}

/**
 * The scheme our key signs with: ECDSA with the hash of its curve, RSA with SHA-256 (PKCS#1
 * v1.5, or RSASSA-PSS when `rsaPss`), or failing that the first hash the peer named that we
 * have; without a notify from the peer, that default.
 *
 * @param key - our private key
 * @param peerHashes - what the peer's SIGNATURE_HASH_ALGORITHMS named, if it sent one
 * @param rsaPss - whether RSA keys sign with PSS
 * @returns the scheme, or undefined when the key type is not one vipsec signs with
 */
export function chooseScheme(
  key: KeyObject,
  peerHashes: number[] | undefined,
  rsaPss: boolean
): SignatureScheme | undefined {
  const type = key.asymmetricKeyType
  let kind: SignatureScheme['kind']
  let preferred: SignatureHash = 'sha256'
  if (type === 'ec') {
    kind = 'ecdsa'
    preferred = CURVE_HASH[key.asymmetricKeyDetails?.namedCurve ?? ''] ?? 'sha256'
  } else if (type === 'rsa') kind = rsaPss ? 'pss' : 'pkcs1'
  else if (type === 'rsa-pss') kind = 'pss'
  else return undefined
  const ours = Object.keys(SIGNATURE_HASH_NUMBER) as SignatureHash[]
  const usable = (h: SignatureHash): boolean =>
    peerHashes === undefined || peerHashes.includes(SIGNATURE_HASH_NUMBER[h])
  const hash = usable(preferred) ? preferred : (ours.find(usable) ?? preferred)
  return { kind, hash }
}

/**
 * Signs with a scheme.
 *
 * @param key - the private key
 * @param scheme - the scheme
 * @param data - what is signed (the AUTH payload's signed octets)
 */
export function signWithScheme(
  key: KeyObject,
  scheme: SignatureScheme,
  data: Uint8Array
): Uint8Array {
  return new Uint8Array(sign(scheme.hash, data, keyOptions(key, scheme)))
}

/**
 * Verifies a signature made with a scheme.
 *
 * @param key - the public key
 * @param scheme - the scheme the AlgorithmIdentifier named
 * @param data - what was signed
 * @param signature - the signature
 */
export function verifyWithScheme(
  key: KeyObject,
  scheme: SignatureScheme,
  data: Uint8Array,
  signature: Uint8Array
): boolean {
  try {
    return verify(scheme.hash, data, keyOptions(key, scheme), signature)
  } catch {
    return false
  }
}

/** sign/verify options of a scheme for node:crypto. */
function keyOptions(key: KeyObject, scheme: SignatureScheme) {
  return scheme.kind === 'pss'
    ? {
        key,
        padding: constants.RSA_PKCS1_PSS_PADDING,
        saltLength: scheme.saltLength ?? createHash(scheme.hash).digest().length
      }
    : { key }
}

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
  const scheme = chooseScheme(key, sa.peerSignatureHashes, ctx.init.rsaPss)
  if (scheme === undefined) {
    throw new IkeProtocolError(
      'AUTHENTICATION_FAILED',
      `unsupported key type ${key.asymmetricKeyType}`
    )
  }
  const algorithm = encodeScheme(scheme)
  const signature = signWithScheme(key, scheme, octets)
  return [
    ...[cred.certificate, ...(cred.intermediates ?? [])].map(
      (data) =>
        ({ type: PayloadType.CERT, encoding: CertEncoding.X509_SIGNATURE, data }) as CertPayload
    ),
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
  // the first CERT payload is the end entity's, the others intermediates (RFC 7296 section 3.6)
  const x509 = certs.filter((c) => c.encoding === CertEncoding.X509_SIGNATURE)
  if (x509.length === 0 || auth.data.length < 1) return 'no X.509 CERT payload'
  try {
    const cert = new X509Certificate(x509[0].data)
    const now = ctx.clock.now()
    if (Date.parse(cert.validFrom) > now || Date.parse(cert.validTo) < now)
      return 'certificate not valid now'
    const intermediates: X509Certificate[] = []
    for (const c of x509.slice(1, 1 + MAX_INTERMEDIATES)) {
      try {
        intermediates.push(new X509Certificate(c.data))
      } catch {
        // an intermediate that does not parse is no use for a path
      }
    }
    const anchors = ctx.init.trustAnchors.map((a) => new X509Certificate(a.certificate))
    const trusted = verifyChain(cert, intermediates, anchors, now)
    if (trusted !== true) return trusted
    if (!certMatches(cert, sa.remoteIdentity!)) return 'certificate does not name the identity'
    const algLength = auth.data[0]
    if (1 + algLength > auth.data.length) return 'bad AlgorithmIdentifier length'
    const algorithm = auth.data.subarray(1, 1 + algLength)
    const signature = auth.data.subarray(1 + algLength)
    const keyType = cert.publicKey.asymmetricKeyType
    const scheme = parseScheme(algorithm)
    const fits =
      scheme !== undefined &&
      (scheme.kind === 'ecdsa'
        ? keyType === 'ec'
        : scheme.kind === 'pkcs1'
          ? keyType === 'rsa'
          : keyType === 'rsa' || keyType === 'rsa-pss')
    if (!fits) {
      return `unsupported signature scheme ${Buffer.from(algorithm).toString('hex')} for a ${keyType} key`
    }
    return (
      verifyWithScheme(cert.publicKey, scheme, octets, signature) || 'signature does not verify'
    )
  } catch (err) {
    return `certificate: ${(err as Error).message}`
  }
}
