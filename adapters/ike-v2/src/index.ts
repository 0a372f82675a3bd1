/**
 * IKEv2 (RFC 7296) for vipsec in TypeScript on node:crypto: {@link IkeV2Service} implements the
 * `IkeService` contract — IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA and INFORMATIONAL as initiator
 * and responder, PSK and certificate (RFC 7427) authentication, NAT traversal, COOKIE, and the
 * takeover's `renegotiate()` with INITIAL_CONTACT. Negotiated Child SAs are installed in an
 * `EspEngine`. Time and randomness are injected, so two services run deterministically in one
 * process.
 *
 * @example A responder and an initiator
 * ```ts
 * import { ikeV2Service } from '@vipsec/ike-v2'
 *
 * const service = ikeV2Service(
 *   { clock, random, espEngine, udp500, udp4500 },
 *   { psks: [{ remote: { type: 'fqdn', value: 'peer.example' }, secret: 'from local config' }] }
 * )
 * await service.start()
 * const { phase1, phase2 } = await service.connect({
 *   local: { address: '192.0.2.1', port: 500 },
 *   peer: { address: '192.0.2.2', port: 500 },
 *   localIdentity: { type: 'fqdn', value: 'dvipa.example' },
 *   remoteIdentity: { type: 'fqdn', value: 'peer.example' },
 *   phase1: phase1Policy,
 *   child: { policy: phase2Policy, mode: 'tunnel', local: [serviceNet], remote: [peerNet] }
 * })
 * ```
 *
 * @packageDocumentation
 */
export { IkeV2Service, ikeV2Service, ikeV2ServiceFactory } from './ike-v2-service.js'
export type {
  CertificateCredential,
  IkeChildConfig,
  IkePeerConfig,
  IkeV2ServiceComponents,
  IkeV2ServiceInit,
  PskCredential,
  RetransmitOptions,
  TrustAnchor
} from './config.js'
export * as wire from './wire.js'
