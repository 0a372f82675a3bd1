/**
 * The three files of a vipsec deployment, each declared once as a zod schema that yields its
 * type and its validation:
 * - the **cluster file**, the same on every node: store, nodes, DVIPAs with ranks and targets,
 *   and the peer connections in swanctl.conf's vocabulary;
 * - the **node file**, one per node: which node this is, its interface, admin endpoint, and
 *   where the cluster and secrets files are;
 * - the **secrets file**: PSKs, private keys and the store password, readable by its owner only.
 *
 * They are YAML (JSON is YAML too). Keys follow swanctl.conf where it has one
 * (`proposals`, `esp_proposals`, `local_ts`, `rekey_time`, `local { id }`).
 *
 * @module
 */
import { isIP } from 'node:net'
import type { Endpoint } from '@vipsec/interface'
import * as z from 'zod'
import { count, espProposals, identity, ikeProposals, seconds } from './strongswan.js'

function parsed<T, I>(base: z.ZodType<I, I>, parse: (value: I) => T) {
  return base.transform((value, ctx): T => {
    try {
      return parse(value)
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message, input: value })
      return z.NEVER
    }
  })
}

const address = z.string().refine((v) => isIP(v) !== 0, { message: 'expected an IP address' })
const port = z.number().int().min(1).max(65535)
const duration = parsed(z.union([z.string(), z.number()]), seconds)
const ms = parsed(z.union([z.string(), z.number()]), (v) => Math.round(seconds(v) * 1000))
const bytes = parsed(z.union([z.string(), z.number()]), count)
const nodeName = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, {
  message: 'expected 1 to 64 letters, digits, ".", "_" or "-"'
})
/** `host:port` or `[v6]:port`. */
const endpoint = parsed(z.string(), (v): Endpoint => {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(v)
  const host = m?.[1] ?? m?.[2]
  if (m === null || host === undefined || isIP(host) === 0 || Number(m[3]) > 65535)
    throw new Error(`expected address:port such as 127.0.0.1:9100, got '${v}'`)
  return { address: host, port: Number(m[3]) }
})

const childSchema = z.strictObject({
  /** Our selectors: the service subnet behind the DVIPA. Default `dynamic` (the DVIPA). */
  local_ts: z.union([z.string(), z.array(z.string())]).optional(),
  /** The peer's selectors, e.g. `172.16.2.0/24`. */
  remote_ts: z.union([z.string(), z.array(z.string())]),
  /** ESP proposals, e.g. `aes256gcm16` or `aes256gcm16-x25519` (PFS). Default `default`. */
  esp_proposals: parsed(z.string(), espProposals).optional(),
  /** `tunnel` (default) or `transport`. */
  mode: z.enum(['tunnel', 'transport']).optional(),
  /** Seconds (or `1h`) to rekey; 0: never. Default 1h. */
  rekey_time: duration.optional(),
  /** Hard lifetime; default rekey_time + 10%. */
  life_time: duration.optional(),
  /** Bytes to rekey (0: no limit). */
  rekey_bytes: bytes.optional(),
  /** Bytes to delete (0: no limit). */
  life_bytes: bytes.optional(),
  /** Packets to rekey (0: no limit). */
  rekey_packets: bytes.optional(),
  /** Packets to delete (0: no limit). */
  life_packets: bytes.optional()
})

const authSchema = z.strictObject({
  /** `psk` (default) or `pubkey` (a certificate; with `certs` on the local side). */
  auth: z.enum(['psk', 'pubkey']).optional(),
  /** The identity, as swanctl writes it: `vpn.example.com`, `@name`, `user@host`, `C=.., CN=..`. */
  id: parsed(z.string(), identity).optional(),
  /** Local side with `pubkey`: the certificate file (PEM), relative to the cluster file. */
  certs: z.string().optional(),
  /** Remote side with `pubkey`: the CA certificate file (PEM) the peer's must chain to. */
  cacerts: z.string().optional()
})

const connectionSchema = z.strictObject({
  /** The DVIPA this connection terminates on (swanctl's `local_addrs`). Default: the only DVIPA. */
  local_addrs: address.optional(),
  /** The peer's address (swanctl's `remote_addrs`); needed to initiate. */
  remote_addrs: address.optional(),
  /**
   * `start`: the owner of the DVIPA initiates the connection and keeps it up (swanctl's
   * `start_action = start`); `none` (default): it only answers.
   */
  start_action: z.enum(['none', 'start']).optional(),
  /** IKE proposals, e.g. `aes256gcm16-prfsha256-x25519`. Default `default`. */
  proposals: parsed(z.string(), ikeProposals).optional(),
  /**
   * IKE fragmentation (RFC 7383), as swanctl's: `yes` (default), `accept` and `force` fragment
   * large messages when the peer supports it, `no` never does. Sizes: `ike.fragment_size`.
   */
  fragmentation: z.enum(['yes', 'accept', 'force', 'no']).optional(),
  /** Seconds (or `4h`) to rekey the IKE SA; 0: never. Default 4h. */
  rekey_time: duration.optional(),
  /** Seconds to reauthenticate; 0 (default): never. */
  reauth_time: duration.optional(),
  /** Idle time before a liveness check; 0 (default): off. */
  dpd_delay: duration.optional(),
  /** Time without an answer after which the peer is dead. Default 30s. */
  dpd_timeout: duration.optional(),
  /** This side (the cluster). */
  local: authSchema,
  /** The peer. */
  remote: authSchema,
  /** The Child SAs accepted, by name. */
  children: z.record(z.string(), childSchema).refine((c) => Object.keys(c).length > 0, {
    message: 'expected at least one child'
  })
})

const nodeEntry = z.union([
  address,
  z.strictObject({
    /** The node's address on the cluster network. */
    address,
    /** Its cluster-link port. Default `ports.link`. */
    link_port: port.optional(),
    /** Its heartbeat port. Default `ports.heartbeat`. */
    heartbeat_port: port.optional()
  })
])

const storeSchema = z.discriminatedUnion('type', [
  z.strictObject({
    /** One process only (tests and demos): every node of the cluster must run in it. */
    type: z.literal('memory')
  }),
  z.strictObject({
    /** A Redis server (or a Sentinel-watched master group) shared by the cluster. */
    type: z.literal('redis'),
    /** `host:port`, e.g. `10.88.0.20:6379`. Required unless `sentinels` is given. */
    address: endpoint.optional(),
    /**
     * Sentinels (`host:port` each) to ask for the master of `name`; the store follows a Sentinel
     * failover. Replication is asynchronous: without `wait_for_replicas`, a failover can lose
     * acknowledged claims (the nodes detect it and recover above the highest epoch seen).
     */
    sentinels: z.array(endpoint).min(1).optional(),
    /** The master group name the Sentinels watch; required with `sentinels`. */
    name: z.string().min(1).optional(),
    /**
     * The replicated mode: acknowledge a write (and a read) only once this many replicas have it
     * (`WAIT`); run the master with `min-replicas-to-write` at the same number. Default 0.
     */
    wait_for_replicas: z.number().int().min(0).optional(),
    /** How long one `WAIT` of the replicated mode may take. Default 1s. */
    wait_timeout: ms.optional(),
    /** The cluster's key prefix. Default `vipsec:`. */
    prefix: z.string().optional(),
    /** The database number. Default 0. */
    db: z.number().int().min(0).optional(),
    /** The user (ACL); the password is in the secrets file. */
    username: z.string().optional(),
    /** Use TLS. Default false. */
    tls: z.boolean().optional()
  }),
  z.strictObject({
    /** An etcd cluster shared by the cluster. */
    type: z.literal('etcd'),
    /** The members' client URLs, e.g. `http://10.88.0.21:2379`. */
    endpoints: z
      .array(
        z.string().regex(/^https?:\/\/[^/\s]+\/?$/, {
          message: 'expected a URL such as http://10.88.0.21:2379'
        })
      )
      .min(1),
    /** The cluster's key prefix. Default `vipsec/`. */
    prefix: z.string().optional(),
    /** The etcd user; the password is in the secrets file. */
    username: z.string().optional()
  })
])

/** The schema of the cluster file: the same on every node. */
const clusterFile = z.strictObject({
  /** The coupling store. Required: a cluster without one would not survive its owner. */
  store: storeSchema,
  /** Every node's address on the cluster network, by node id. */
  nodes: z.record(nodeName, nodeEntry),
  /** Default ports on every node. */
  ports: z
    .strictObject({
      /** Cluster link. Default 7400. */
      link: port.optional(),
      /** Heartbeats. Default 7500. */
      heartbeat: port.optional()
    })
    .optional(),
  /** The DVIPAs, by address. */
  dvipas: z.record(
    z.string().refine((v) => isIP(v) !== 0, { message: 'a DVIPA is an IP address' }),
    z.strictObject({
      /** Distribution processors, best first: `ranks[0]` owns the DVIPA, the others back it up. */
      ranks: z.array(nodeName).min(1),
      /** The targets connections are distributed to. */
      targets: z.array(nodeName).min(1),
      /**
       * `round-robin` (default), `least-connections`, or `source-hash` (a peer's inner source
       * address always on the same target while the targets stay).
       */
      policy: z.enum(['round-robin', 'least-connections', 'source-hash']).optional(),
      /**
       * Warm takeover: the owner also records each IKE SA's keys sealed under the warm keys of
       * the secrets file, so that an heir carries the SAs on (RFC 6311) instead of
       * renegotiating them. Default false.
       */
      warm: z.boolean().optional()
    })
  ),
  /** Warm takeover (for the DVIPAs that set `warm: true`). */
  warm: z
    .strictObject({
      /**
       * Outbound ESP sequence numbers reserved per coupling-store write, per Child SA. Default
       * 1048576 (2^20): one write per million packets of an SA; an heir skips at most that many.
       */
      block_size: z.number().int().min(2).max(Number.MAX_SAFE_INTEGER).optional()
    })
    .optional(),
  /** The cluster link between the nodes. */
  link: z
    .strictObject({
      /** Encrypt the frames' payload (the cleartext between DPs and targets). Default false. */
      encrypt: z.boolean().optional(),
      /**
       * Run the link and the heartbeats without a cluster key: anyone on the cluster network can
       * forge them (a `node:insecure` warning is logged at start). Default false.
       */
      insecure: z.boolean().optional()
    })
    .optional(),
  /** How distribution processors watch each other. */
  detector: z
    .discriminatedUnion('type', [
      z.strictObject({
        /** UDP heartbeats (the default). */
        type: z.literal('heartbeat'),
        /** Between heartbeats. Default 100ms. */
        interval: ms.optional(),
        /** Intervals of silence that fail a node. Default 3. */
        multiplier: z.number().int().min(2).optional(),
        /** On a worker thread, off the data plane's event loop. Default true. */
        worker: z.boolean().optional()
      }),
      z.strictObject({
        /** Leases in the coupling store. */
        type: z.literal('lease'),
        /** Between renewals. Default 100ms. */
        interval: ms.optional(),
        /** Lease lifetime. Default 3 intervals. */
        ttl: ms.optional()
      })
    ])
    .optional(),
  /** Takeover timing. */
  takeover: z
    .strictObject({
      /** Wait per better-ranked live backup before claiming. Default 200ms. */
      rank_delay: ms.optional(),
      /** How long a takeover waits for its renegotiations. Default 10s. */
      renegotiation_deadline: ms.optional(),
      /** Renegotiations at the same time. Default 64. */
      renegotiation_concurrency: z.number().int().min(1).optional(),
      /** How often ownership is read back. Default 250ms. */
      ownership_check: ms.optional(),
      /** An owner that cannot confirm its epoch this long stops serving. Default 0 (off). */
      self_fence: ms.optional(),
      /** A connection idle this long is forgotten. Default 5m; 0 keeps them. */
      connection_idle: ms.optional()
    })
    .optional(),
  /** IKE timing, named as in strongswan.conf's `charon` section. */
  ike: z
    .strictObject({
      /** First retransmission timeout. Default 2s. */
      retransmit_timeout: ms.optional(),
      /** Factor each further timeout grows by. Default 1.8. */
      retransmit_base: z.number().min(1).optional(),
      /** Retransmissions before giving up. Default 5. */
      retransmit_tries: z.number().int().min(0).optional(),
      /**
       * Largest IP datagram of an IKE fragment, bytes (RFC 7383). Default 0: 576 on IPv4, 1280
       * on IPv6.
       */
      fragment_size: z
        .number()
        .int()
        .refine((n) => n === 0 || (n >= 256 && n <= 65535), {
          message: 'expected 0 or 256 to 65535'
        })
        .optional()
    })
    .optional(),
  /** The peer connections, by name, as in swanctl.conf's `connections { }`. */
  connections: z.record(z.string(), connectionSchema).default({}),
  /**
   * An existing swanctl.conf, relative to this file: its `connections { }` are read as if they
   * were written under `connections` here (errors name its lines).
   */
  swanctl: z.string().min(1).optional()
})

/** The cluster file, as read (durations in seconds or ms, proposals and identities parsed). */
export type ClusterFile = z.output<typeof clusterFile>

/** The schema of {@link ClusterFile}: parses the file's YAML value into it. */
export const clusterFileSchema: z.ZodType<ClusterFile> = clusterFile

/** The schema of a node file. */
const nodeFile = z.strictObject({
  /** Which node of the cluster file this is. */
  node: nodeName,
  /** The cluster file, relative to this file. */
  cluster: z.string(),
  /** The secrets file, relative to this file (readable by its owner only). Targets may omit it. */
  secrets: z.string().optional(),
  /** The network interface the DVIPA is added to, e.g. `eth0`. */
  interface: z.string().min(1),
  /**
   * Where an owned DVIPA's address is held: `process` (the default) on a device that exists only
   * while this node's process lives, so that after a `kill -9` the host stops answering for the
   * address at once, with no help from the dead process; `interface` on `interface` itself,
   * where it stays (and the host keeps answering ARP for it) until removed by hand. Packets
   * arrive on `interface` either way.
   */
  hold_addresses: z.enum(['process', 'interface']).optional(),
  /** Where `/metrics`, `/healthz` and `/readyz` are served, e.g. `127.0.0.1:9100`. Default: none. */
  admin: endpoint.optional(),
  /**
   * A program run on every ownership transition and every ESP SA installed or removed, with the
   * event in its environment (`VIPSEC_EVENT`, `VIPSEC_DVIPA`, ...), like keepalived's
   * `notify_master` or strongSwan's updown script. Relative to this file.
   */
  hook: z
    .strictObject({
      /** The program (run without a shell). */
      command: z.string().min(1),
      /** The most time a run may take. Default 10s. */
      timeout: ms.optional()
    })
    .optional(),
  /**
   * Cluster key files made by `vipsec keygen`, relative to this file: one, or two while rotating
   * (the first sends). Readable by their owner only. Instead of, or besides, the secrets file's
   * `cluster_key`.
   */
  cluster_key_files: z.array(z.string().min(1)).min(1).max(2).optional(),
  /**
   * What serves the packets no built-in application takes, on a target: `kernel` hands them to
   * this host's kernel through a TUN device holding the service addresses (see `kernel`), so
   * that any application listening there serves; `apps` drops them. Default `kernel`, unless
   * the file lists `apps` and has no `kernel` section.
   */
  deliver: z.enum(['kernel', 'apps']).optional(),
  /** Kernel delivery: see `KernelDeliveryInit` of `@vipsec/target-tun`. */
  kernel: z
    .strictObject({
      /** The service addresses this host serves behind the DVIPA, put on the TUN device. */
      addresses: z.array(address).min(1),
      /** The TUN device's name. Default `vipsec0`. */
      device: z.string().min(1).max(15).optional(),
      /** Its MTU. Default 1400. */
      mtu: z.number().int().min(576).max(65535).optional(),
      /** The routing table for replies from the service addresses. Default 7700. */
      table: z.number().int().min(1).max(0xffffffff).optional(),
      /** Destinations routed back through vipsec (the peers' inner prefixes). Default all. */
      routes: z.array(z.string().min(1)).optional(),
      /** The metric of their main-table routes. Default 7700. */
      metric: z.number().int().min(0).optional()
    })
    .optional(),
  /** Built-in applications this node serves as a target. */
  apps: z
    .array(
      z.strictObject({
        /** `echo` or `request-response`. */
        app: z.enum(['echo', 'request-response']),
        /** UDP port. */
        port
      })
    )
    .optional()
})

/** A node file, as read. */
export type NodeFile = z.output<typeof nodeFile>

/** The schema of {@link NodeFile}: parses the file's YAML value into it. */
export const nodeFileSchema: z.ZodType<NodeFile> = nodeFile

const clusterKeyHex = z.string().regex(/^[0-9a-fA-F]{64}$/, {
  message: 'expected 64 hex digits (make a key with `vipsec keygen`)'
})
const inlineClusterKey = z.strictObject({
  /** The key id, 1 to 2^32 - 1 (frames carry it). */
  id: z.number().int().min(1).max(0xffffffff),
  /** The secret: 64 hex digits (32 bytes). */
  secret: clusterKeyHex
})

/** The schema of the secrets file. */
const secretsFile = z.strictObject({
  /** Pre-shared keys by name, as swanctl's `secrets { ike-NAME { id, secret } }`. */
  ike: z
    .record(
      z.string(),
      z.strictObject({
        /** The peer identity (or identities) the key is shared with. */
        id: z.union([parsed(z.string(), identity), z.array(parsed(z.string(), identity)).min(1)]),
        /** The key. */
        secret: z.string().min(1)
      })
    )
    .optional(),
  /** Private keys (PEM PKCS#8 files, relative to this file) of the local certificates. */
  private: z.array(z.string()).optional(),
  /**
   * The cluster key, the same on every node: it authenticates cluster-link frames and
   * heartbeats. 64 hex digits (32 bytes, key id 1), or `{ id, secret }`, or a list of one or
   * two of those while rotating (the first sends). Required unless the cluster file's
   * `link.insecure` is true (or the node file names `cluster_key_files`).
   */
  cluster_key: z
    .union([
      clusterKeyHex,
      inlineClusterKey,
      z
        .array(z.union([clusterKeyHex, inlineClusterKey]))
        .min(1)
        .max(2)
    ])
    .optional(),
  /**
   * Warm takeover's keys, the same on every node: `keys` by key id (64 hex digits, 32 bytes
   * each, e.g. `openssl rand -hex 32`), and the `current` one new states are sealed under.
   * While rotating, list the old and the new key: every node opens with either.
   */
  warm_keys: z
    .strictObject({
      /** The key id new states are sealed under. */
      current: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, {
        message: 'a key id is 1 to 64 of A-Z a-z 0-9 . _ -'
      }),
      /** The keys by id. */
      keys: z
        .record(
          z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, {
            message: 'a key id is 1 to 64 of A-Z a-z 0-9 . _ -'
          }),
          clusterKeyHex
        )
        .refine((k) => Object.keys(k).length > 0, { message: 'expected at least one key' })
    })
    .refine((w) => w.current in w.keys, {
      message: 'current must name one of the keys',
      path: ['current']
    })
    .optional(),
  /**
   * An existing swanctl.conf, relative to this file: its `secrets { ike-NAME { id secret } }`
   * are read as PSKs under `ike` (the file must be readable by its owner only, as this one).
   */
  swanctl: z.string().min(1).optional(),
  /** Store credentials. */
  store: z
    .strictObject({
      /** The Redis or etcd password. */
      password: z.string().optional()
    })
    .optional()
})

/** A secrets file, as read. */
export type SecretsFile = z.output<typeof secretsFile>

/** The schema of {@link SecretsFile}: parses the file's YAML value into it. */
export const secretsFileSchema: z.ZodType<SecretsFile> = secretsFile
