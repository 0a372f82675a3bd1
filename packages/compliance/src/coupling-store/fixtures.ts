import type {
  ConnectionRecord,
  CorrelationRecord,
  DeleteMessage,
  DvipaRecord,
  FilterRecord,
  Phase1Record,
  Phase2Record
} from '@vipsec/interface'

/** Formats `n` as `digits` lower-case hex digits. */
function hex(n: number, digits: number): string {
  return n.toString(16).padStart(digits, '0').slice(-digits)
}

/**
 * A valid phase 1 record for tests.
 *
 * @param dvipa - the DVIPA
 * @param n - makes ids, SPIs and the peer address distinct
 */
export function samplePhase1(dvipa: string, n: number): Phase1Record {
  return {
    v: 1,
    kind: 'phase1',
    id: `ike-${n}`,
    dvipa,
    ikeSaId: { initiatorSpi: hex(0x1000 + n, 16), responderSpi: hex(0x2000 + n, 16) },
    role: 'responder',
    localIdentity: { type: 'fqdn', value: 'vpn.example.test' },
    remoteIdentity: { type: 'rfc822', value: `peer${n}@example.test` },
    local: { address: dvipa, port: 4500 },
    peer: { address: `192.0.2.${(n % 250) + 1}`, port: 4500 },
    nat: { localBehindNat: false, remoteBehindNat: n % 2 === 1, encapsulated: true },
    policy: {
      proposals: [
        {
          encryption: [{ algorithm: 'aes-gcm-16', keyBits: 256 }],
          integrity: ['none'],
          prf: ['hmac-sha2-256'],
          keyExchange: ['curve25519', 'ecp256']
        }
      ],
      authMethod: 'psk',
      lifetime: { rekeySeconds: 14400, reauthSeconds: 0 },
      liveness: { intervalMs: 30000, timeoutMs: 150000 }
    },
    establishedAt: 1_700_000_000_000 + n
  }
}

/**
 * A valid phase 2 record for tests.
 *
 * @param dvipa - the DVIPA
 * @param n - makes ids and SPIs distinct
 */
export function samplePhase2(dvipa: string, n: number): Phase2Record {
  return {
    v: 1,
    kind: 'phase2',
    id: `child-${n}`,
    dvipa,
    protocol: 'esp',
    inboundSpi: hex(0xc0000000 + n, 8),
    outboundSpi: hex(0xd0000000 + n, 8),
    mode: 'tunnel',
    policy: {
      proposals: [
        {
          protocol: 'esp',
          encryption: [{ algorithm: 'aes-gcm-16', keyBits: 256 }],
          integrity: ['none'],
          keyExchange: ['none'],
          extendedSequenceNumbers: [true, false]
        }
      ],
      pfsGroup: 'curve25519',
      lifetime: {
        softSeconds: 3000,
        hardSeconds: 3600,
        softBytes: 0,
        hardBytes: 0,
        softPackets: 0,
        hardPackets: 0
      }
    },
    selectors: {
      local: [
        {
          startAddress: '10.77.0.0',
          endAddress: '10.77.0.255',
          protocol: 0,
          startPort: 0,
          endPort: 65535
        }
      ],
      remote: [
        {
          startAddress: `172.16.2.${(n % 250) + 1}`,
          endAddress: `172.16.2.${(n % 250) + 1}`,
          protocol: 0,
          startPort: 0,
          endPort: 65535
        }
      ]
    },
    encapsulation: 'udp',
    establishedAt: 1_700_000_000_000 + n
  }
}

/**
 * A valid correlation record tying `ike-n` to `child-n`.
 *
 * @param dvipa - the DVIPA
 * @param n - the index used for the phase 1 and phase 2 samples
 */
export function sampleCorrelation(dvipa: string, n: number): CorrelationRecord {
  return {
    v: 1,
    kind: 'correlation',
    id: `ike-${n}`,
    dvipa,
    phase1Id: `ike-${n}`,
    phase2Ids: [`child-${n}`]
  }
}

/**
 * A valid dynamic filter record for `child-n`.
 *
 * @param dvipa - the DVIPA
 * @param n - the index
 */
export function sampleFilter(dvipa: string, n: number): FilterRecord {
  return {
    v: 1,
    kind: 'filter',
    id: `filter-${n}`,
    dvipa,
    phase2Id: `child-${n}`,
    direction: 'outbound',
    selector: {
      source: '10.77.0.0/24',
      destination: `172.16.2.${(n % 250) + 1}/32`,
      protocol: 0,
      sourcePorts: [0, 65535],
      destinationPorts: [0, 65535]
    },
    action: 'protect',
    priority: 100 + n
  }
}

/**
 * A valid connection routing record.
 *
 * @param dvipa - the DVIPA
 * @param n - the index (the source port derives from it)
 * @param target - the target node
 */
export function sampleConnection(dvipa: string, n: number, target = 'target-1'): ConnectionRecord {
  return {
    v: 1,
    kind: 'connection',
    id: `conn-${n}`,
    dvipa,
    flow: {
      protocol: 17,
      sourceAddress: `172.16.2.${(n % 250) + 1}`,
      sourcePort: 10000 + (n % 50000),
      destinationAddress: '10.77.0.10',
      destinationPort: 7
    },
    target,
    distributed: true,
    phase2Id: `child-${n}`,
    createdAt: 1_700_000_000_000 + n
  }
}

/**
 * One record of every kind for index `n`.
 *
 * @param dvipa - the DVIPA
 * @param n - the index
 */
export function sampleRecords(dvipa: string, n: number): DvipaRecord[] {
  return [
    samplePhase1(dvipa, n),
    samplePhase2(dvipa, n),
    sampleCorrelation(dvipa, n),
    sampleFilter(dvipa, n),
    sampleConnection(dvipa, n)
  ]
}

/**
 * A valid mailbox message.
 *
 * @param to - the recipient
 * @param n - makes the id and SPIs distinct
 */
export function sampleDeleteMessage(to: string, n: number): DeleteMessage {
  return {
    v: 1,
    id: `msg-${n}`,
    to,
    from: 'dp-2',
    dvipa: '10.0.0.100',
    epoch: 2,
    ikeSas: [{ initiatorSpi: hex(0x1000 + n, 16), responderSpi: hex(0x2000 + n, 16) }],
    childSas: [{ inboundSpi: hex(0xc0000000 + n, 8), outboundSpi: hex(0xd0000000 + n, 8) }],
    sentAt: 1_700_000_000_000 + n
  }
}
