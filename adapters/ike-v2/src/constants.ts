/**
 * IKEv2 numbers (RFC 7296 section 3 and the IANA IKEv2 registries) that this implementation uses.
 *
 * @module
 */

/** Exchange types (RFC 7296 section 3.1). */
export const ExchangeType = {
  /** IKE_SA_INIT. */
  IKE_SA_INIT: 34,
  /** IKE_AUTH. */
  IKE_AUTH: 35,
  /** CREATE_CHILD_SA. */
  CREATE_CHILD_SA: 36,
  /** INFORMATIONAL. */
  INFORMATIONAL: 37
} as const

/** Header flags (RFC 7296 section 3.1). */
export const HeaderFlag = {
  /** Sent by the original initiator of the IKE SA. */
  INITIATOR: 0x08,
  /** Version: the sender can speak a higher major version. */
  VERSION: 0x10,
  /** The message is a response. */
  RESPONSE: 0x20
} as const

/** Payload types (RFC 7296 section 3.2). */
export const PayloadType = {
  /** No next payload. */
  NONE: 0,
  /** Security Association. */
  SA: 33,
  /** Key Exchange. */
  KE: 34,
  /** Identification - Initiator. */
  IDi: 35,
  /** Identification - Responder. */
  IDr: 36,
  /** Certificate. */
  CERT: 37,
  /** Certificate Request. */
  CERTREQ: 38,
  /** Authentication. */
  AUTH: 39,
  /** Nonce. */
  NONCE: 40,
  /** Notify. */
  NOTIFY: 41,
  /** Delete. */
  DELETE: 42,
  /** Vendor ID. */
  VENDOR: 43,
  /** Traffic Selector - Initiator. */
  TSi: 44,
  /** Traffic Selector - Responder. */
  TSr: 45,
  /** Encrypted and Authenticated. */
  SK: 46,
  /** Configuration. */
  CP: 47,
  /** Extensible Authentication. */
  EAP: 48,
  /** Encrypted and Authenticated Fragment (RFC 7383). */
  SKF: 53
} as const

/** Protocol ids in proposals, notifies and deletes. */
export const ProtocolId = {
  /** IKE. */
  IKE: 1,
  /** AH. */
  AH: 2,
  /** ESP. */
  ESP: 3
} as const

/** Transform types (RFC 7296 section 3.3.2). */
export const TransformType = {
  /** Encryption algorithm. */
  ENCR: 1,
  /** Pseudo-random function. */
  PRF: 2,
  /** Integrity algorithm. */
  INTEG: 3,
  /** Key exchange method (Diffie-Hellman group). */
  KE: 4,
  /** Extended sequence numbers. */
  ESN: 5
} as const

/** Encryption transform ids. */
export const EncrId = {
  /** AES-CBC (RFC 3602). */
  AES_CBC: 12,
  /** AES-GCM with a 16-byte ICV (RFC 4106, RFC 5282). */
  AES_GCM_16: 20,
  /** AES-GMAC, no encryption (RFC 4543). */
  NULL_AUTH_AES_GMAC: 21,
  /** ChaCha20-Poly1305 (RFC 7634), no Key Length attribute. */
  CHACHA20_POLY1305: 28
} as const

/** PRF transform ids. */
export const PrfId = {
  /** HMAC-SHA1 (RFC 2104), for legacy peers. */
  HMAC_SHA1: 2,
  /** HMAC-SHA2-256. */
  HMAC_SHA2_256: 5,
  /** HMAC-SHA2-384. */
  HMAC_SHA2_384: 6,
  /** HMAC-SHA2-512. */
  HMAC_SHA2_512: 7
} as const

/** Integrity transform ids. */
export const IntegId = {
  /** None (with AEAD). */
  NONE: 0,
  /** HMAC-SHA1-96 (RFC 2404), for legacy peers. */
  HMAC_SHA1_96: 2,
  /** HMAC-SHA2-256-128. */
  HMAC_SHA2_256_128: 12,
  /** HMAC-SHA2-384-192. */
  HMAC_SHA2_384_192: 13,
  /** HMAC-SHA2-512-256. */
  HMAC_SHA2_512_256: 14
} as const

/** Key exchange method ids. */
export const GroupId = {
  /** No key exchange. */
  NONE: 0,
  /** 2048-bit MODP (RFC 3526). */
  MODP_2048: 14,
  /** 3072-bit MODP (RFC 3526). */
  MODP_3072: 15,
  /** 4096-bit MODP (RFC 3526). */
  MODP_4096: 16,
  /** 256-bit random ECP (RFC 5903). */
  ECP_256: 19,
  /** 384-bit random ECP (RFC 5903). */
  ECP_384: 20,
  /** 521-bit random ECP (RFC 5903). */
  ECP_521: 21,
  /** Curve25519 (RFC 8031). */
  CURVE25519: 31,
  /** Curve448 (RFC 8031). */
  CURVE448: 32
} as const

/** The Key Length transform attribute type (RFC 7296 section 3.3.5). */
export const ATTRIBUTE_KEY_LENGTH = 14

/** Identification types (RFC 7296 section 3.5). */
export const IdType = {
  /** IPv4 address. */
  IPV4_ADDR: 1,
  /** Fully qualified domain name. */
  FQDN: 2,
  /** RFC 822 e-mail address. */
  RFC822_ADDR: 3,
  /** IPv6 address. */
  IPV6_ADDR: 5,
  /** DER-encoded X.500 distinguished name. */
  DER_ASN1_DN: 9,
  /** Opaque key id. */
  KEY_ID: 11
} as const

/** Authentication methods (RFC 7296 section 3.8, RFC 7427). */
export const AuthMethodId = {
  /** RSA digital signature (PKCS#1 v1.5 with SHA-1). */
  RSA_SIG: 1,
  /** Shared key message integrity code. */
  PSK: 2,
  /** ECDSA with SHA-256 on P-256 (RFC 4754). */
  ECDSA_256: 9,
  /** Digital signature (RFC 7427). */
  DIGITAL_SIGNATURE: 14
} as const

/** Certificate encodings (RFC 7296 section 3.6). */
export const CertEncoding = {
  /** DER-encoded X.509 certificate. */
  X509_SIGNATURE: 4
} as const

/** Traffic selector types (RFC 7296 section 3.13.1). */
export const TsType = {
  /** IPv4 address range. */
  IPV4_ADDR_RANGE: 7,
  /** IPv6 address range. */
  IPV6_ADDR_RANGE: 8
} as const

/** Notify message types (RFC 7296 section 3.10.1 and the IANA registry). */
export const NotifyType = {
  /** Error. */
  UNSUPPORTED_CRITICAL_PAYLOAD: 1,
  /** Error. */
  INVALID_IKE_SPI: 4,
  /** Error. */
  INVALID_MAJOR_VERSION: 5,
  /** Error. */
  INVALID_SYNTAX: 7,
  /** Error. */
  INVALID_MESSAGE_ID: 9,
  /** Error. */
  INVALID_SPI: 11,
  /** Error. */
  NO_PROPOSAL_CHOSEN: 14,
  /** Error. */
  INVALID_KE_PAYLOAD: 17,
  /** Error. */
  AUTHENTICATION_FAILED: 24,
  /** Error. */
  SINGLE_PAIR_REQUIRED: 34,
  /** Error. */
  NO_ADDITIONAL_SAS: 35,
  /** Error. */
  INTERNAL_ADDRESS_FAILURE: 36,
  /** Error. */
  FAILED_CP_REQUIRED: 37,
  /** Error. */
  TS_UNACCEPTABLE: 38,
  /** Error. */
  INVALID_SELECTORS: 39,
  /** Error. */
  TEMPORARY_FAILURE: 43,
  /** Error. */
  CHILD_SA_NOT_FOUND: 44,
  /** Status. */
  INITIAL_CONTACT: 16384,
  /** Status. */
  SET_WINDOW_SIZE: 16385,
  /** Status. */
  ADDITIONAL_TS_POSSIBLE: 16386,
  /** Status. */
  IPCOMP_SUPPORTED: 16387,
  /** Status. */
  NAT_DETECTION_SOURCE_IP: 16388,
  /** Status. */
  NAT_DETECTION_DESTINATION_IP: 16389,
  /** Status. */
  COOKIE: 16390,
  /** Status. */
  USE_TRANSPORT_MODE: 16391,
  /** Status. */
  REKEY_SA: 16393,
  /** Status. */
  ESP_TFC_PADDING_NOT_SUPPORTED: 16394,
  /** Status. */
  NON_FIRST_FRAGMENTS_ALSO: 16395,
  /** Status (RFC 6311): the sender can take part in a message ID sync after a failover. */
  IKEV2_MESSAGE_ID_SYNC_SUPPORTED: 16420,
  /** Status (RFC 6311): the message IDs a cluster member and its peer go on with. */
  IKEV2_MESSAGE_ID_SYNC: 16422,
  /** Status (RFC 6311): the ESP replay counters after a failover (not sent by vipsec). */
  IPSEC_REPLAY_COUNTER_SYNC: 16423,
  /** Status (RFC 7383): the sender accepts and sends IKE fragments. */
  IKEV2_FRAGMENTATION_SUPPORTED: 16430,
  /** Status (RFC 7427). */
  SIGNATURE_HASH_ALGORITHMS: 16431
} as const

/** The error notify types below 16384, by number, with their names. */
export const ERROR_NOTIFY_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(NotifyType)
    .filter(([, v]) => v < 16384)
    .map(([k, v]) => [v, k])
)

/** The non-ESP marker that precedes IKE messages on port 4500 (RFC 3948). */
export const NON_ESP_MARKER = new Uint8Array(4)

/** The IKE header length. */
export const IKE_HEADER_LENGTH = 28
