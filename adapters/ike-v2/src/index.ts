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
 * - **Transforms** (strongSwan keywords in brackets): for the SK payload ENCR_AES_GCM_16
 *   (`aes128gcm16`, `aes256gcm16`), ENCR_CHACHA20_POLY1305 (`chacha20poly1305`, RFC 7634) and
 *   ENCR_AES_CBC 128/192/256 (`aes128`...) with AUTH_HMAC_SHA2_256_128/384_192/512_256
 *   (`sha256`, `sha384`, `sha512`) or, for legacy peers, AUTH_HMAC_SHA1_96 (`sha1`); PRFs
 *   HMAC-SHA2-256/384/512 (`prfsha256`...) and HMAC-SHA1 (`prfsha1`); key exchange groups 31
 *   Curve25519 (`x25519`), 32 Curve448 (`curve448`, `x448`), 19/20/21 P-256/384/521
 *   (`ecp256`, `ecp384`, `ecp521`), 14/15/16 MODP-2048/3072/4096 (`modp2048`...). ESP proposals
 *   with whatever the ESP engine implements: AES-GCM-16, AES-GMAC, ChaCha20-Poly1305 and AES-CBC
 *   with HMAC-SHA2 or HMAC-SHA1-96, with PFS in any of the groups. A responder's choice of any of
 *   our proposals is accepted, checked against the proposal of that number (RFC 7296 3.3.1).
 * - **Authentication**: pre-shared keys, and certificates with digital signatures (RFC 7427):
 *   ECDSA, RSA PKCS#1 v1.5 and RSASSA-PSS (`rsaPss`, strongSwan `rsa_pss = yes`) with SHA-256,
 *   -384 or -512 as the peer's SIGNATURE_HASH_ALGORITHMS allows; certificate chains through the
 *   intermediates the peer sends (basicConstraints cA and pathLen, keyUsage keyCertSign and the
 *   validity of every CA checked) and our own `intermediates` sent; CERTREQ naming the trust
 *   anchors; identities of type FQDN, RFC822, IPv4, IPv6 and DER DN. Credentials come only from
 *   {@link IkeV2ServiceInit}.
 * - **Connections it starts**: `connections` with `startAction: 'start'` (strongSwan
 *   `start_action = start`) are initiated at start and again after `retryDelayMs` when an
 *   attempt fails or their IKE SA ends (peer delete, dead peer).
 * - **Rekeys without loss**: while a Child SA and its replacement both live, the inbound filters
 *   of their selectors let in what either carried; when the old one goes, the filters are pinned
 *   to the new SPI. A responder that refused the first Child SA deletes the IKE SA (no childless
 *   IKE SA is kept).
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
 * - **Fragmentation** (RFC 7383): protected messages above `fragmentation.fragmentSize` (default
 *   576 bytes on IPv4, 1280 on IPv6) go out as SKF fragments when both sides announced support;
 *   the peer's are stored only after each fragment's ICV verified, in a bounded reassembly, with
 *   drops counted by reason in `counters().fragments` (the README's section has the details).
 * - **Warm takeover** (`warm.enabled`, RFC 6311): IKEV2_MESSAGE_ID_SYNC_SUPPORTED announced in
 *   IKE_AUTH; `exportState` gives an IKE SA's records and a versioned secret (keys, message
 *   IDs); `adopt` installs a dead owner's IKE and Child SAs as they were in an heir and runs the
 *   message ID sync (MID 0), taking only an authenticated answer that echoes its nonce;
 *   `setStateSink` is awaited at each key change before the new keys carry traffic. The README's
 *   section has the details; the secret holds keys and must be sealed by the caller.
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
export { unsupportedInIkeProposal } from './capability.js'
export { configChanged } from './config-lists.js'
export {
  KeyExchangePool,
  type KeyExchangePoolOptions,
  type KeyExchangePoolStats
} from './key-pool.js'
export type {
  CertificateCredential,
  IkeChildConfig,
  IkePeerConfig,
  IkeV2ServiceComponents,
  IkeV2ServiceInit,
  PskCredential,
  RetransmitOptions,
  TrustAnchor,
  WarmOptions
} from './config.js'
export type { WarmCounters } from './task-manager.js'
export type { IkeStartConnection } from './keep-up.js'
export type { IkeV2Counters } from './ike-v2-service.js'
export type { FragmentDropReason, FragmentationOptions, IkeFragmentCounters } from './fragments.js'
export * as wire from './wire.js'
