/**
 * The software ESP engine of vipsec: the IPsec data plane in TypeScript on `node:crypto`,
 * implementing the `EspEngine` contract of `@vipsec/interface`.
 *
 * - **ESP** (RFC 4303) with **AES-GCM** and a 16-byte ICV (RFC 4106), 128, 192 or 256-bit keys;
 *   keying material is the key followed by a 4-byte salt. **AES-GMAC** (`null-aes-gmac`,
 *   RFC 4543) authenticates without encrypting. **ChaCha20-Poly1305** (RFC 7634): a 32-byte key
 *   and a 4-byte salt. **AES-CBC** (RFC 3602, 128, 192 or 256-bit keys) with `integrity`
 *   **HMAC-SHA2-256-128**, **-384-192**, **-512-256** (RFC 4868) or **HMAC-SHA1-96** (RFC 2404)
 *   for legacy peers: keying material is the AES key followed by the HMAC key, the order in which
 *   IKEv2 takes them from KEYMAT (RFC 7296 section 2.17); the ICV is checked, in constant time,
 *   before anything is decrypted. 32-bit and extended (64-bit) sequence numbers. Padding to 4
 *   bytes (16 for AES-CBC), next header, tunnel and transport mode.
 *   {@link SOFTWARE_ESP_CAPABILITIES} lists every combination with its IKEv2 transform IDs and
 *   strongSwan keyword; {@link unsupportedInEspProposal} checks a Child SA proposal against it.
 * - **Nonces never repeat**: each packet's 8-byte IV is its SA's 64-bit sequence number
 *   ({@link EspSealer}); an SA is removed at its last sequence number rather than wrapped; an
 *   outbound SA cannot be installed with keying material another outbound SA of the engine uses or
 *   used, unless it continues above the highest sequence number used with it. **AES-CBC IVs are
 *   unpredictable** (RFC 3602 section 2.1): the sequence number encrypted with AES-128 under a
 *   key drawn once per outbound SA (from the optional `random` component), 256 at a time, then
 *   once more under the SA's own key by the AES-CBC cipher the SA keeps, so they never repeat
 *   either and cost no randomness per packet. AES-CBC SAs keep one cipher per direction, so a
 *   CBC packet costs no cipher set-up, and one `createHmac` on the SA's HMAC key per packet.
 * - **ESP-in-UDP** (RFC 3948): `unprotectUdp` tells IKE (behind the four-zero-byte non-ESP marker)
 *   from ESP and ignores NAT keep-alives (0xFF); `encapsulateUdp` (in `@vipsec/wire`) frames
 *   outbound packets.
 * - **SAD** keyed by SPI and direction; **SPD** of ordered dynamic filters (source and destination
 *   prefixes, protocol, port ranges; protect, bypass or discard; lower priority first, then first
 *   installed). Installing a filter with the same id, or the same direction and selector, as an
 *   active one removes that one and emits `filter:duplicate-removed`, as a takeover needs. The SPD
 *   is indexed (ids and selectors in maps, filters grouped by prefix lengths and hashed by
 *   prefixes, a plain scan up to eight filters a direction), so installing, removing and matching
 *   cost about the same with 100 or 10,000 Child SAs: `npm run bench:spd -w @vipsec/esp-software`.
 * - **Anti-replay**: a sliding window per inbound SA (default 128, up to 4096), checked before and
 *   updated only after the ICV verified. With ESN the high half is inferred from the window.
 * - **Lifetimes** by time (on the injected `Clock`), bytes and packets, soft (`sa:soft-expired`,
 *   so that IKE rekeys; also when fewer than `sequenceSoftMargin` sequence numbers are left) and
 *   hard (`sa:removed`).
 * - **Counters** for every drop reason (`bad-padding` for an authenticated packet whose padding is
 *   wrong); malformed input is dropped and counted, never thrown.
 * - **Packet codecs** for IPv4/IPv6 with UDP, TCP and ICMP/ICMPv6, addresses, prefixes and the
 *   RFC 3948 framing live in `@vipsec/wire`; the names this package exported for them are
 *   deprecated re-exports.
 * - A **worker-thread mode** (`workers` option, {@link SoftwareEspEngine.protectBatch} and
 *   {@link SoftwareEspEngine.unprotectBatch}) that spreads the crypto of batches over threads
 *   while SAD, SPD, sequence numbers and replay windows stay on the calling thread. It pays off
 *   with cores to spare: inline already keeps about 1.15 cores busy (V8 collects the per-packet
 *   `node:crypto` objects on helper threads), so on 2 shared cores `npm run bench:esp` measures
 *   about 1.1-1.3x for 2 workers, where bare AES-256-GCM in 2 threads gets 1.6-1.8x.
 * - Sealed packets are views into 32 KB zero-filled slabs, one allocation per packet: a packet's
 *   `buffer` is its slab, which holds nothing but other sealed packets as they go on the wire.
 *
 * Limits: transport mode carries no IPv6 extension headers of the outbound packet, and does not
 * fix up TCP/UDP checksums for NAT (RFC 3948 section 3.1.2); IP fragments are not reassembled
 * (later fragments match the SPD with ports 0); dummy packets (next header 59) are dropped as
 * `malformed`. The tshark check covers AES-GCM and AES-CBC decryption and framing (ESN
 * included) and the HMAC ICVs (without ESN: tshark 4.0 leaves the high half out), but not
 * AES-GMAC; tshark 4.0 does not verify GCM ICVs and has no ChaCha20-Poly1305 for ESP, so a second
 * implementation (Python's `cryptography`) opens the ChaCha20-Poly1305 packets, and the
 * published vectors cover the rest.
 *
 * Checked against the 17 ESP test vectors of draft-mcgrew-gcm-test-01, RFC 3602 cases 5 to 8,
 * the RFC 4868 and RFC 2202 HMAC vectors, RFC 7634 appendix A and RFC 8439 section 2.8.2, with
 * property tests, with the `EspEngine` compliance suite (once per transform), and by tshark
 * decrypting its ESP-in-UDP output. `npm run bench:esp` measures each transform against its bare
 * `createCipheriv` (+ `createHmac`) ceiling.
 *
 * Throughput, `ESP_BENCH_ONLY=single npm run bench:esp`, encapsulation at 1400 B as a ratio to
 * the bare ceiling (one `createCipheriv`, plus one `createHmac` for AES-CBC, per packet; goal 0.8).
 * Each suite, size and direction runs in a fresh process, so the decapsulation phases no longer
 * grow the heap under the encapsulation rounds; the figures are medians of 15 per-round ratios
 * with their quartiles. Old and new engine measured back to back with the same bench (load
 * 0.4-3.9, 2 cores):
 *
 * | transform | before | after |
 * | --- | --- | --- |
 * | AES-256-CBC + HMAC-SHA2-256-128, 64 B | 1.17 (1.07-1.30) | 1.31 (1.23-1.43) |
 * | AES-256-CBC + HMAC-SHA2-256-128, 1400 B | 0.99 (0.93-1.16) | 1.13 (1.12-1.17) |
 * | ChaCha20-Poly1305, 1400 B | 0.79 (0.73-0.92) | 0.83 (0.81-0.89) |
 *
 * AES-CBC is above its ceiling because the SA keeps its cipher where the ceiling makes one per
 * packet; its per-packet HMAC is one `createHmac` (two hash-state copies cost more). AES-GCM,
 * AES-GMAC and ChaCha20-Poly1305 go through `@vipsec/aead`: each SA keeps one OpenSSL context per
 * direction (libcrypto through koffi) and a packet sets only its nonce, with no cipher object and
 * no copy out of `update()`. They now run at about twice their per-packet `createCipheriv`
 * ceiling: one run of `npm run bench:esp` (load 2.6), encapsulation 1.92 (64 B) and 2.33
 * (1400 B) for AES-256-GCM, 1.89 and 2.42 for ChaCha20-Poly1305. Where libcrypto does not load
 * (or `VIPSEC_AEAD=node` is set) they fall back to a node:crypto cipher per packet, as before.
 *
 * @example A tunnel from this gateway (192.0.2.1) to a peer (198.51.100.2), ESP in UDP
 * ```ts
 * import { SystemClock } from '@vipsec/clock'
 * import type { FilterSelector } from '@vipsec/interface'
 * import { softwareEspEngine } from '@vipsec/esp-software'
 *
 * const engine = softwareEspEngine({ clock: new SystemClock() })
 * await engine.start()
 * engine.events$.subscribe((event) => {
 *   if (event.type === 'sa:soft-expired') {
 *     // ask IKE to rekey the Child SA of event.tag
 *   }
 * })
 *
 * const lifetime = { softSeconds: 3000, hardSeconds: 3600, softBytes: 0, hardBytes: 0, softPackets: 0, hardPackets: 0 }
 * const common = {
 *   mode: 'tunnel',
 *   algorithm: 'aes-gcm-16',
 *   extendedSequenceNumbers: true,
 *   lifetime,
 *   tunnel: { local: '192.0.2.1', remote: '198.51.100.2' },
 *   udpEncapsulation: {
 *     local: { address: '192.0.2.1', port: 4500 },
 *     remote: { address: '198.51.100.2', port: 4500 }
 *   }
 * } as const
 * // keys from IKE: 32-byte AES key + 4-byte salt per direction
 * engine.addSa({ ...common, spi: 0xc0010001, direction: 'outbound', keyMaterial: keyOut, tag: 'child-1' })
 * engine.addSa({ ...common, spi: 0xc0020002, direction: 'inbound', keyMaterial: keyIn, tag: 'child-1' })
 *
 * const selector = {
 *   source: '10.20.0.0/16', // the service subnet behind the DVIPA
 *   destination: '172.16.2.1/32', // the peer's inner address
 *   protocol: 0,
 *   sourcePorts: [0, 65535],
 *   destinationPorts: [0, 65535]
 * } satisfies FilterSelector
 * engine.installFilter({ id: 'out-1', direction: 'outbound', selector, action: 'protect', priority: 100, spi: 0xc0010001 })
 * engine.installFilter({
 *   id: 'in-1', direction: 'inbound', action: 'protect', priority: 100, spi: 0xc0020002,
 *   selector: { ...selector, source: selector.destination, destination: selector.source }
 * })
 *
 * // outbound: an inner IP packet in, an ESP-in-UDP payload out
 * const out = engine.protect(innerPacket)
 * if (out.action === 'protect') socket.send(out.packet, out.to.port, out.to.address)
 *
 * // inbound: whatever arrives on UDP port 4500
 * socket.on('message', (payload) => {
 *   const result = engine.unprotectUdp(payload)
 *   if (result.action === 'accept') deliver(result.packet) // the inner IP packet
 *   else if (result.action === 'ike') ike.receive(result.message)
 *   // drops are counted by reason: engine.counters().dropped
 * })
 * ```
 *
 * @packageDocumentation
 */
export {
  SoftwareEspEngine,
  softwareEspEngine,
  type SoftwareEspEngineComponents,
  type SoftwareEspEngineInit
} from './software-esp-engine.js'
export * from './esp-crypto.js'
export * from './capabilities.js'
export * from './replay-window.js'
export * from './spd.js'
/**
 * The packet codecs, address helpers and RFC 3948 framing, now in `@vipsec/wire`.
 *
 * @deprecated import them from `@vipsec/wire`; these re-exports go in the next minor version.
 */
export {
  buildIcmpEcho,
  buildIpPacket,
  buildReply,
  buildTcp,
  buildUdp,
  checksumAdd,
  checksumFinish,
  classifyUdpPayload,
  encapsulateUdp,
  formatIp,
  formatPrefix,
  internetChecksum,
  NAT_T_PORT,
  natKeepalive,
  parseIp,
  parseIpPacket,
  parsePrefix,
  parseTcp,
  prefixContains,
  readFlow,
  readPorts,
  TcpFlags,
  transportChecksum,
  tryParseIp,
  verifyIpv4Checksum,
  verifyTransportChecksum,
  withNonEspMarker,
  type IcmpEchoFields,
  type IpPacketFields,
  type IpPacketInfo,
  type IpPrefix,
  type TcpFields,
  type TcpHeader,
  type UdpEncapsulationFields,
  type UdpFields,
  type UdpPayloadKind
} from '@vipsec/wire'
