/**
 * IKEv2 (RFC 7296) for vipsec in TypeScript on `node:crypto`: {@link IkeV2Service} implements
 * the `IkeService` contract of `@vipsec/interface`, initiator and responder, and installs the
 * Child SAs it negotiates (and, by default, their protect filters) into an `EspEngine`.
 *
 * - **Exchanges**, one task module each (strongSwan's structure): IKE_SA_INIT, IKE_AUTH,
 *   CREATE_CHILD_SA (new Child SA, Child SA rekey with and without PFS, IKE SA rekey) and
 *   INFORMATIONAL (deletes, liveness). One task manager per IKE SA owns both halves of the
 *   message-ID window: our requests (one outstanding, retransmitted with exponential backoff on
 *   the injected `Clock`) and the peer's (the next expected ID, the cached response replayed for an
 *   identical retransmission). Rekey collisions, simultaneous rekeys and rekey against delete, are
 *   values with cases (`ChildRekey`, `IkeRekey`).
 * - **Nothing unauthenticated changes state** (RFC 7296 sections 2.21 and 3.10.1): a message of an
 *   IKE SA reaches its tasks only after the SK payload's ICV verified. A message without SK, with a
 *   truncated SK, a bad ICV, an ID outside the window, the wrong flags or an exchange its state does
 *   not allow is dropped and counted by reason, never answered, and moves no window. Errors to
 *   unauthenticated IKE_SA_INIT requests are unprotected notifies, at most
 *   `unprotectedNotifiesPerSecond`; an unprotected error answering our IKE_SA_INIT waits half a
 *   retransmission timeout for the real response.
 * - **Transforms**: ENCR_AES_GCM_16 (128, 256) and ENCR_AES_CBC with AUTH_HMAC_SHA2_256_128 for
 *   the SK payload; PRF_HMAC_SHA2_256/384/512; key exchange groups 31 (Curve25519), 19 (P-256)
 *   and 14 (MODP-2048); ESP proposals with AES-GCM-16 (what the ESP engine implements).
 * - **Authentication**: pre-shared keys, and certificates with digital signatures (RFC 7427,
 *   ECDSA P-256 and RSA with SHA-256; SHA-384/512 accepted), CERTREQ naming the trust anchors;
 *   identities of type FQDN, RFC822, IPv4, IPv6 and DER DN. Credentials come only from
 *   {@link IkeV2ServiceInit}.
 * - **NAT traversal**: NAT_DETECTION_*_IP, the move to port 4500 with the non-ESP marker,
 *   UDP-encapsulated Child SAs, keep-alives from the side behind the NAT; `forceEncapsulation`
 *   fakes the NAT detection as strongSwan's `encap = yes` does.
 * - **Takeover**: `renegotiate(records)` rebuilds IKE and Child SAs from coupling-store records
 *   with INITIAL_CONTACT (once per identities and peer); a received INITIAL_CONTACT deletes the
 *   older IKE SAs of the same identities.
 * - **Denial of service**: past `cookieThreshold` half-open SAs, or `halfOpenLimitPerPeer` from
 *   one address, an IKE_SA_INIT must return a COOKIE before any key exchange is computed or state
 *   kept, so a spoofed address cannot lock its peer out; at most `halfOpenLimit` half-open SAs in
 *   all. Traffic-selector narrowing, TS_UNACCEPTABLE / NO_PROPOSAL_CHOSEN / INVALID_KE_PAYLOAD
 *   (with the retry) / AUTHENTICATION_FAILED as RFC 7296 says, rekey collisions of Child and IKE
 *   SAs (the SA with the lowest nonce is deleted by its maker). Malformed messages are dropped and
 *   counted (`counters()`), never thrown out of the service; an authenticated one gets an
 *   encrypted INVALID_SYNTAX or UNSUPPORTED_CRITICAL_PAYLOAD.
 * - **Lifetimes**: Child SAs are rekeyed at the ESP engine's soft limit and deleted at its hard
 *   limit; IKE SAs are rekeyed at `lifetime.rekeySeconds`, re-authenticated at
 *   `lifetime.reauthSeconds` (by the original initiator) and probed at `liveness.intervalMs`.
 *   The last response of a deleted SA is still replayed to a retransmitted request.
 *
 * The pure protocol layer (message codec, prf+, key derivation, key exchange, SK payload) is
 * exported as {@link wire} and tested against published vectors. The service is tested in
 * process over a virtual network with deterministic randomness (loss, duplication, NAT,
 * collisions, a takeover, one forgery per path to an SA's state), with 100,000 fuzzed messages,
 * against strongSwan's charon in network namespaces (`npm run test:system`: interop, and an
 * attacker on the path with a stateful fuzz and spoofed floods), and measured by
 * `npm run bench:ike`.
 *
 * @example A responder and an initiator
 * ```ts
 * import { ikeV2Service } from '@vipsec/ike-v2'
 *
 * const service = ikeV2Service(
 *   { clock, random, espEngine, udp500, udp4500 },
 *   {
 *     psks: [{ remote: { type: 'fqdn', value: 'peer.example' }, secret: 'from local config' }],
 *     peers: [
 *       {
 *         localIdentity: { type: 'fqdn', value: 'dvipa.example' },
 *         remoteIdentity: { type: 'fqdn', value: 'peer.example' },
 *         phase1: phase1Policy,
 *         children: [{ policy: phase2Policy, mode: 'tunnel', local: [serviceNet], remote: [peerNet] }]
 *       }
 *     ]
 *   }
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
export type { IkeStartConnection } from './keep-up.js'
export * as wire from './wire.js'
