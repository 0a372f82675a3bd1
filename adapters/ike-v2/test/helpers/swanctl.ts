/**
 * swanctl.conf text for the strongSwan system tests, from a typed description of charon's side
 * of one connection. swanctl refuses a section written on one line, so every block is written
 * over several lines.
 */

/** How charon authenticates itself and the peer. */
export type SwanctlAuth =
  | {
      /** A pre-shared key, under `secrets { ike-… }`. */
      kind: 'psk'
      /** The key. */
      secret: string
    }
  | {
      /** Certificates: charon's own, and the CA(s) it trusts for the peer's. */
      kind: 'pubkey'
      /** Path of charon's certificate (PEM). */
      cert: string
      /** Paths of the trust anchors for the peer's certificate (PEM). */
      cacerts: string[]
      /** `auth = pubkey`, `rsa/pss` or `ecdsa`... as swanctl writes it. Default `pubkey`. */
      method?: string
    }

/** One connection of charon's, as the tests configure it. */
export interface SwanctlConnection {
  /** The connection's name. Default `vipsec`. */
  name?: string
  /** charon's own address. */
  localAddrs: string
  /** The peer's address (`%any` to accept any, e.g. behind a NAT). */
  remoteAddrs: string
  /** IKE proposals, strongSwan syntax (`aes256gcm16-prfsha256-x25519,...`). */
  proposals: string
  /** ESP proposals, strongSwan syntax; a DH group in one asks for PFS. */
  espProposals: string
  /** charon's identity. */
  localId: string
  /** The identity it expects of the peer. */
  remoteId: string
  /** Authentication. */
  auth: SwanctlAuth
  /** charon's inner traffic selector. */
  localTs: string
  /** The peer's inner traffic selector. */
  remoteTs: string
  /** `dpd_delay` (e.g. `5s`). Default: none. */
  dpdDelay?: string
  /** `unique` (`no`, `never`, `replace`, `keep`). Default: charon's (`no`). */
  unique?: string
  /** The Child SA's name. Default `net`. */
  child?: string
  /** `encap = yes` (forced UDP encapsulation). Default true. */
  encap?: boolean
  /** `fragmentation` (RFC 7383: `yes`, `accept`, `force`, `no`). Default: charon's (`yes`). */
  fragmentation?: 'yes' | 'accept' | 'force' | 'no'
}

/** The swanctl.conf text for `connections` (and their secrets). */
export function swanctlConf(connections: SwanctlConnection[]): string {
  const conns: string[] = []
  const secrets: string[] = []
  for (const [i, c] of connections.entries()) {
    const name = c.name ?? 'vipsec'
    const method = c.auth.kind === 'psk' ? 'psk' : (c.auth.method ?? 'pubkey')
    const local =
      c.auth.kind === 'psk' ? 'auth = psk' : `auth = ${method}\n      certs = ${c.auth.cert}`
    const remote =
      c.auth.kind === 'psk'
        ? 'auth = psk'
        : `auth = ${method}\n      cacerts = ${c.auth.cacerts.join(',')}`
    conns.push(`  ${name} {
    version = 2
    local_addrs = ${c.localAddrs}
    remote_addrs = ${c.remoteAddrs}
    proposals = ${c.proposals}
    encap = ${c.encap === false ? 'no' : 'yes'}
    rekey_time = 0
${c.fragmentation === undefined ? '' : `    fragmentation = ${c.fragmentation}\n`}${c.dpdDelay === undefined ? '' : `    dpd_delay = ${c.dpdDelay}\n`}${c.unique === undefined ? '' : `    unique = ${c.unique}\n`}    local {
      ${local}
      id = ${c.localId}
    }
    remote {
      ${remote}
      id = ${c.remoteId}
    }
    children {
      ${c.child ?? 'net'} {
        local_ts = ${c.localTs}
        remote_ts = ${c.remoteTs}
        esp_proposals = ${c.espProposals}
        mode = tunnel
        rekey_time = 0
        start_action = none
      }
    }
  }`)
    if (c.auth.kind === 'psk')
      secrets.push(`  ike-${i} {
    id-1 = ${c.localId}
    id-2 = ${c.remoteId}
    secret = "${c.auth.secret}"
  }`)
  }
  return `connections {\n${conns.join('\n')}\n}\nsecrets {\n${secrets.join('\n')}\n}\n`
}
