/**
 * The interop matrix against strongSwan's charon (5.9.8, kernel-libipsec) in network
 * namespaces: each cell configures both ends from one strongSwan proposal string, connects from
 * the side it names, and passes a UDP datagram through the tunnel and back. Groups: IKE proposal
 * families × key exchange, ESP with and without PFS, authentication with an intermediate CA,
 * proposal orders where the responder picks the initiator's non-first proposal, vipsec behind a
 * port-remapping NAT (as initiator and as responder), and IKE and Child SA rekeys started by
 * each side under continuous traffic, counted by sequence number. One charon per describe; its
 * connection is reloaded with swanctl between cells. The table (table.ts) is printed at the end
 * of the run and written into the README.
 */
import { expect } from 'chai'
import type { IkeSaRecords } from '@vipsec/interface'
import { Charon, requireStrongSwan, sh, Topology } from '../helpers/netns.js'
import { C_INNER, V_INNER } from '../helpers/policies.js'
import { Harness, type Cell } from './harness.js'
import { NatTopology } from './nat.js'
import { cell, registerTable } from './table.js'
import { CountingEcho, Stream, type StreamCount } from './traffic.js'

registerTable()

const GCM = 'aes256gcm16-prfsha256-x25519'
const ECHO_PORT = 5000
const V = 'vipsec → charon'
const C = 'charon → vipsec'
const dir = (c: Cell): string => (c.initiator === 'vipsec' ? V : C)

/** A named cell of a group. */
interface Named extends Cell {
  group: string
  name: string
}

const IKE_CELLS: Named[] = [
  ['aes256gcm16-prfsha256-x25519', 'AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519'],
  ['aes128gcm16-prfsha384-ecp256', 'AES_GCM_16-128/PRF_HMAC_SHA2_384/ECP_256'],
  ['aes256gcm16-prfsha512-modp2048', 'AES_GCM_16-256/PRF_HMAC_SHA2_512/MODP_2048'],
  ['aes256gcm16-prfsha384-ecp384', 'AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384'],
  ['aes128gcm16-prfsha256-curve448', 'AES_GCM_16-128/PRF_HMAC_SHA2_256/CURVE_448'],
  ['aes128-sha256-x25519', 'AES_CBC-128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519'],
  ['aes256-sha384-ecp256', 'AES_CBC-256/HMAC_SHA2_384_192/PRF_HMAC_SHA2_384/ECP_256'],
  ['aes192-sha512-modp2048', 'AES_CBC-192/HMAC_SHA2_512_256/PRF_HMAC_SHA2_512/MODP_2048'],
  ['aes256-sha256-modp3072', 'AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_3072'],
  ['aes128-sha1-ecp384', 'AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/ECP_384'],
  ['chacha20poly1305-prfsha256-x25519', 'CHACHA20_POLY1305/PRF_HMAC_SHA2_256/CURVE_25519'],
  ['chacha20poly1305-prfsha256-curve448', 'CHACHA20_POLY1305/PRF_HMAC_SHA2_256/CURVE_448'],
  ['chacha20poly1305-prfsha256-ecp256', 'CHACHA20_POLY1305/PRF_HMAC_SHA2_256/ECP_256'],
  ['chacha20poly1305-prfsha256-modp3072', 'CHACHA20_POLY1305/PRF_HMAC_SHA2_256/MODP_3072']
].map(([ike, expectIke], i) => ({
  group: 'IKE proposal',
  name: ike!,
  initiator: i % 2 === 0 ? 'vipsec' : 'charon',
  charonIke: ike!,
  charonEsp: 'aes256gcm16',
  expectIke
}))

const ESP_CELLS: Named[] = (
  [
    ['aes128gcm16', 'AES_GCM_16-128', undefined],
    ['aes256gcm16', 'AES_GCM_16-256', undefined],
    ['aes128gcm16-x25519', 'AES_GCM_16-128/CURVE_25519', 'vipsec'],
    ['aes256gcm16-ecp256', 'AES_GCM_16-256/ECP_256', 'charon'],
    ['aes256gcm16-modp2048', 'AES_GCM_16-256/MODP_2048', 'vipsec'],
    ['aes128-sha256', 'AES_CBC-128/HMAC_SHA2_256_128', undefined],
    ['aes256-sha384', 'AES_CBC-256/HMAC_SHA2_384_192', undefined],
    ['aes256-sha512', 'AES_CBC-256/HMAC_SHA2_512_256', undefined],
    ['aes128-sha256-ecp384', 'AES_CBC-128/HMAC_SHA2_256_128/ECP_384', 'charon'],
    ['aes256-sha384-x25519', 'AES_CBC-256/HMAC_SHA2_384_192/CURVE_25519', 'vipsec'],
    ['aes256-sha512-modp3072', 'AES_CBC-256/HMAC_SHA2_512_256/MODP_3072', 'charon'],
    ['aes128-sha1', 'AES_CBC-128/HMAC_SHA1_96', undefined],
    ['chacha20poly1305', 'CHACHA20_POLY1305', undefined],
    ['chacha20poly1305-curve448', 'CHACHA20_POLY1305/CURVE_448', 'vipsec'],
    ['chacha20poly1305-x25519', 'CHACHA20_POLY1305/CURVE_25519', 'charon']
  ] as const
).map(([esp, expectEsp, rekeyChild], i) => ({
  group: 'ESP',
  name: rekeyChild === undefined ? `${esp} (no PFS)` : `${esp} (PFS, rekeyed by ${rekeyChild})`,
  initiator: i % 2 === 0 ? 'vipsec' : 'charon',
  charonIke: GCM,
  charonEsp: esp,
  rekeyChild,
  expectEsp
}))

const AUTH_CELLS: Named[] = [
  ...(['vipsec', 'charon'] as const).map((initiator) => ({
    group: 'authentication',
    name: 'PSK',
    initiator,
    charonIke: GCM,
    charonEsp: 'aes256gcm16'
  })),
  ...(
    [
      ['ecdsa', 1, 'ECDSA P-256, root > leaf'],
      ['ecdsa', 2, 'ECDSA P-256, root > intermediate > leaf'],
      ['rsa', 1, 'RSA PKCS#1 v1.5, root > leaf'],
      ['rsa', 2, 'RSA PKCS#1 v1.5, root > intermediate > leaf']
    ] as const
  ).flatMap(([auth, caDepth, name]) =>
    (['vipsec', 'charon'] as const).map((initiator) => ({
      group: 'authentication',
      name,
      initiator,
      charonIke: GCM,
      charonEsp: 'aes256gcm16',
      auth,
      caDepth
    }))
  )
]

const ORDER_CELLS: Named[] = [
  {
    group: 'proposal order',
    name: 'IKE: vipsec offers [cbc, gcm128], charon has [gcm128, gcm256]: vipsec’s 2nd',
    initiator: 'vipsec',
    vipsecIke: 'aes256-sha256-x25519,aes128gcm16-prfsha256-x25519',
    charonIke: 'aes128gcm16-prfsha256-x25519,aes256gcm16-prfsha384-x25519',
    charonEsp: 'aes256gcm16',
    expectIke: 'AES_GCM_16-128/PRF_HMAC_SHA2_256/CURVE_25519'
  },
  {
    group: 'proposal order',
    name: 'IKE: vipsec offers [gcm256, cbc, gcm128], charon has [gcm128, cbc]: vipsec’s 3rd',
    initiator: 'vipsec',
    vipsecIke: 'aes256gcm16-prfsha256-x25519,aes256-sha256-x25519,aes128gcm16-prfsha256-x25519',
    charonIke: 'aes128gcm16-prfsha256-x25519,aes256-sha256-x25519',
    charonEsp: 'aes256gcm16',
    expectIke: 'AES_GCM_16-128/PRF_HMAC_SHA2_256/CURVE_25519'
  },
  {
    group: 'proposal order',
    name: 'IKE: vipsec offers [x25519, ecp256], charon has ecp256 only: INVALID_KE_PAYLOAD, then vipsec’s 2nd group',
    initiator: 'vipsec',
    vipsecIke: 'aes256gcm16-prfsha256-x25519,aes256gcm16-prfsha256-ecp256',
    charonIke: 'aes256gcm16-prfsha256-ecp256',
    charonEsp: 'aes256gcm16',
    expectIke: 'AES_GCM_16-256/PRF_HMAC_SHA2_256/ECP_256'
  },
  {
    group: 'proposal order',
    name: 'ESP: vipsec offers [gcm256, gcm128], charon has gcm128: vipsec’s 2nd',
    initiator: 'vipsec',
    vipsecEsp: 'aes256gcm16,aes128gcm16',
    charonIke: GCM,
    charonEsp: 'aes128gcm16',
    expectEsp: 'AES_GCM_16-128'
  },
  {
    group: 'proposal order',
    name: 'IKE: charon offers [gcm256, cbc, gcm128], vipsec has [gcm128, cbc]: charon’s 2nd',
    initiator: 'charon',
    charonIke: 'aes256gcm16-prfsha256-x25519,aes256-sha256-x25519,aes128gcm16-prfsha256-x25519',
    vipsecIke: 'aes128gcm16-prfsha256-x25519,aes256-sha256-x25519',
    charonEsp: 'aes256gcm16',
    expectIke: 'AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519'
  },
  {
    group: 'proposal order',
    name: 'IKE: charon offers [gcm256-ecp256, gcm128-x25519], vipsec has x25519 only: charon’s 2nd, after INVALID_KE_PAYLOAD',
    initiator: 'charon',
    charonIke: 'aes256gcm16-prfsha256-ecp256,aes128gcm16-prfsha256-x25519',
    vipsecIke: 'aes128gcm16-prfsha256-x25519',
    charonEsp: 'aes256gcm16',
    expectIke: 'AES_GCM_16-128/PRF_HMAC_SHA2_256/CURVE_25519'
  },
  {
    group: 'proposal order',
    name: 'ESP: charon offers [gcm256, gcm128-x25519, gcm128], vipsec has [gcm128]: charon’s 3rd',
    initiator: 'charon',
    charonIke: GCM,
    charonEsp: 'aes256gcm16,aes128gcm16-x25519,aes128gcm16',
    vipsecEsp: 'aes128gcm16',
    expectEsp: 'AES_GCM_16-128'
  }
]

describe('interop matrix against strongSwan charon', function () {
  this.timeout(180_000)

  describe('two namespaces, one charon, a connection reloaded per cell', () => {
    const t = new Topology(`${process.pid % 10000}m`, 60 + (process.pid % 60))
    let charon: Charon
    let h: Harness
    let echo: CountingEcho

    before(async () => {
      requireStrongSwan()
      t.up()
      sh('ip', ['-n', t.c, 'addr', 'add', `${C_INNER}/32`, 'dev', 'lo'])
      charon = new Charon(t.c)
      await charon.start('connections {\n}\n')
      h = new Harness(charon, {
        vNs: t.v,
        vAddr: t.vAddr,
        vSeen: t.vAddr,
        cAddr: t.cAddr,
        forceEncapsulation: true
      })
      echo = new CountingEcho(t.c, C_INNER, ECHO_PORT)
      await echo.ready()
    })

    after(async () => {
      echo?.stop()
      await h?.dispose()
      await charon?.stop()
      t.down()
    })

    afterEach(async () => {
      await h.down()
    })

    for (const c of [...IKE_CELLS, ...ESP_CELLS, ...AUTH_CELLS, ...ORDER_CELLS]) {
      it(`${c.group}: ${c.name}, ${dir(c)}`, async () => {
        await cell({ group: c.group, cell: c.name, direction: dir(c) }, async (set) => {
          const r = await h.up(c)
          set({ handshakeMs: r.handshakeMs, detail: r.negotiated })
        })
      })
    }
  })

  describe('RSA-PSS: charon with rsa_pss = yes', () => {
    const t = new Topology(`${process.pid % 10000}s`, 120 + (process.pid % 60))
    let charon: Charon
    let h: Harness
    let echo: CountingEcho

    before(async () => {
      requireStrongSwan()
      t.up()
      sh('ip', ['-n', t.c, 'addr', 'add', `${C_INNER}/32`, 'dev', 'lo'])
      charon = new Charon(t.c, { extra: '  rsa_pss = yes' })
      await charon.start('connections {\n}\n')
      h = new Harness(charon, {
        vNs: t.v,
        vAddr: t.vAddr,
        vSeen: t.vAddr,
        cAddr: t.cAddr,
        forceEncapsulation: true
      })
      echo = new CountingEcho(t.c, C_INNER, ECHO_PORT)
      await echo.ready()
    })

    after(async () => {
      echo?.stop()
      await h?.dispose()
      await charon?.stop()
      t.down()
    })

    afterEach(async () => {
      await h.down()
    })

    for (const caDepth of [1, 2] as const) {
      for (const initiator of ['vipsec', 'charon'] as const) {
        const c: Cell = {
          initiator,
          charonIke: GCM,
          charonEsp: 'aes256gcm16',
          auth: 'rsa-pss',
          caDepth
        }
        const name = `RSA-PSS (both sign RSASSA-PSS), ${caDepth === 1 ? 'root > leaf' : 'root > intermediate > leaf'}`
        it(`authentication: ${name}, ${dir(c)}`, async () => {
          await cell({ group: 'authentication', cell: name, direction: dir(c) }, async (set) => {
            const from = charon.logLength()
            const r = await h.up(c)
            set({ handshakeMs: r.handshakeMs, detail: r.negotiated })
            const log = charon.log(from)
            expect(log, 'charon signed with PSS').to.match(/\(myself\) with RSA_EMSA_PSS/)
            expect(log, 'vipsec signed with PSS').to.match(
              /authentication of 'vipsec\.example' with RSA_EMSA_PSS/
            )
          })
        })
      }
    }
  })

  describe('through a NAT that remaps ports (nftables masquerade in a middle namespace)', () => {
    const t = new NatTopology(`${process.pid % 10000}n`, 60 + (process.pid % 60))
    let charon: Charon
    let h: Harness
    let echo: CountingEcho

    before(async () => {
      requireStrongSwan()
      t.up()
      sh('ip', ['-n', t.c, 'addr', 'add', `${C_INNER}/32`, 'dev', 'lo'])
      charon = new Charon(t.c)
      await charon.start('connections {\n}\n')
      h = new Harness(charon, {
        vNs: t.v,
        vAddr: t.vAddr,
        vSeen: t.nOuter,
        cAddr: t.cAddr,
        forceEncapsulation: false
      })
      echo = new CountingEcho(t.c, C_INNER, ECHO_PORT)
      await echo.ready()
    })

    after(async () => {
      echo?.stop()
      await h?.dispose()
      await charon?.stop()
      t.down()
    })

    afterEach(async () => {
      await h.down()
    })

    const cells: (Cell & { name: string })[] = [
      {
        name: `${GCM}, vipsec behind the NAT (source ports remapped)`,
        initiator: 'vipsec',
        charonIke: GCM,
        charonEsp: 'aes256gcm16-x25519',
        rekeyChild: 'charon'
      },
      {
        name: 'aes256-sha256-ecp256, vipsec behind the NAT (ports 500 and 4500 forwarded)',
        initiator: 'charon',
        charonIke: 'aes256-sha256-ecp256',
        charonEsp: 'aes128gcm16-ecp256',
        rekeyChild: 'vipsec'
      }
    ]
    for (const c of cells) {
      it(`NAT: ${c.name}, ${dir(c)}`, async () => {
        await cell({ group: 'NAT', cell: c.name, direction: dir(c) }, async (set) => {
          const r = await h.up(c)
          // both ends saw the NAT (vipsec from the NAT-D hashes) and moved to UDP 4500
          expect(r.sa.phase1.nat.localBehindNat, 'vipsec knows it is behind a NAT').to.equal(true)
          expect(r.sa.phase2[0]!.encapsulation).to.equal('udp')
          const sas = charon.swanctl(['--list-sas'])
          expect(sas, 'charon sees the NAT’s address').to.include(t.nOuter)
          const port = /remote 'vipsec\.example' @ [\d.]+\[(\d+)\]/.exec(sas)?.[1]
          if (c.initiator === 'vipsec')
            expect(Number(port), 'the NAT remapped vipsec’s port').to.be.within(20000, 29999)
          set({
            handshakeMs: r.handshakeMs,
            detail: `${r.negotiated}; charon sees ${t.nOuter}:${port}`
          })
        })
      })
    }
  })

  describe('rekeys under continuous traffic (100 datagrams/s, counted both ways)', () => {
    const t = new Topology(`${process.pid % 10000}r`, 180 + (process.pid % 60))
    let charon: Charon
    let h: Harness
    let echo: CountingEcho

    before(async () => {
      requireStrongSwan()
      t.up()
      sh('ip', ['-n', t.c, 'addr', 'add', `${C_INNER}/32`, 'dev', 'lo'])
      // charon's own default: the old inbound SA stays 5 s after a rekey, as deployed
      charon = new Charon(t.c, { deleteRekeyedDelay: 5 })
      await charon.start('connections {\n}\n')
      h = new Harness(charon, {
        vNs: t.v,
        vAddr: t.vAddr,
        vSeen: t.vAddr,
        cAddr: t.cAddr,
        forceEncapsulation: true
      })
      echo = new CountingEcho(t.c, C_INNER, ECHO_PORT)
      await echo.ready()
    })

    after(async () => {
      echo?.stop()
      await h?.dispose()
      await charon?.stop()
      t.down()
    })

    const tunnels = [
      { ikeInitiator: 'vipsec', ike: GCM, esp: 'aes256gcm16-x25519' },
      { ikeInitiator: 'charon', ike: 'aes256-sha256-ecp256', esp: 'chacha20poly1305-x25519' }
    ] as const
    for (const { ikeInitiator, ike, esp } of tunnels) {
      describe(`on an IKE SA that ${ikeInitiator} initiated (${ike}, ESP ${esp})`, () => {
        let streams = 0
        before(async () => {
          await h.up({ initiator: ikeInitiator, charonIke: ike, charonEsp: esp })
        })
        after(async () => {
          await h.down()
        })

        const list = (): Promise<IkeSaRecords[]> => h.current.call<IkeSaRecords[]>('list')

        /** Streams for 700 ms, runs `rekey`, streams 700 ms more; returns the counts. */
        async function underTraffic(
          rekey: () => Promise<void>
        ): Promise<StreamCount & { rekeyMs: number }> {
          const s = new Stream(h.current, echo, {
            name: `s${ikeInitiator}${streams++}`,
            from: V_INNER,
            to: C_INNER,
            port: ECHO_PORT
          })
          await new Promise((r) => setTimeout(r, 700))
          const t0 = performance.now()
          await rekey()
          const rekeyMs = performance.now() - t0
          await new Promise((r) => setTimeout(r, 700))
          return { ...(await s.stop()), rekeyMs }
        }

        const rekeys: { what: string; by: 'vipsec' | 'charon'; run: () => Promise<void> }[] = [
          {
            what: 'Child SA rekey (PFS)',
            by: 'vipsec',
            run: async () => {
              const [sa] = await list()
              const next = await h.current.call<{ inboundSpi: string }>(
                'rekeyChildSa',
                sa!.phase2[0]!.id
              )
              await waitCharon(() => charon.children().some((c) => c.out === next.inboundSpi))
            }
          },
          {
            what: 'Child SA rekey (PFS)',
            by: 'charon',
            run: async () => {
              const before = (await list())[0]!.phase2[0]!.id
              charon.swanctl(['--rekey', '--child', 'net'])
              await waitVipsec(async () => {
                const l = await list()
                return l[0]?.phase2.length === 1 && l[0].phase2[0]!.id !== before
              })
            }
          },
          {
            what: 'IKE SA rekey',
            by: 'vipsec',
            run: async () => {
              const next = await h.current.call<{ ikeSaId: { initiatorSpi: string } }>(
                'rekeyIkeSa',
                (await list())[0]!.phase1.id
              )
              await waitCharon(
                () =>
                  charon.ikeSas().length === 1 &&
                  charon
                    .swanctl(['--list-sas', '--raw'])
                    .includes(`initiator-spi=${next.ikeSaId.initiatorSpi}`)
              )
            }
          },
          {
            what: 'IKE SA rekey',
            by: 'charon',
            run: async () => {
              const before = (await list())[0]!.phase1.id
              charon.swanctl(['--rekey', '--ike', 'vipsec'])
              await waitVipsec(async () => {
                const l = await list()
                return l.length === 1 && l[0]!.phase1.id !== before && l[0]!.phase2.length === 1
              })
              await waitCharon(() => charon.ikeSas().length === 1)
            }
          }
        ]

        for (const r of rekeys) {
          it(`should lose no packet at a ${r.what} started by ${r.by}`, async () => {
            const name = `${r.what} started by ${r.by}, IKE SA by ${ikeInitiator}, ESP ${esp}`
            await cell(
              { group: 'rekey under traffic', cell: name, direction: `${r.by} starts` },
              async (set) => {
                const n = await underTraffic(r.run)
                const line = `sent ${n.sent}, reached charon ${n.reached}, echoed back ${n.returned}; lost out ${n.lostOut.length}${n.lostOut.length > 0 ? ` (seq ${n.lostOut.slice(0, 8).join(',')})` : ''}, lost back ${n.lostBack.length}${n.lostBack.length > 0 ? ` (seq ${n.lostBack.slice(0, 8).join(',')})` : ''}, unprotected ${n.unprotected}; vipsec ESP drops ${JSON.stringify(n.drops)}`
                console.log(`      ${name}: ${line}; rekey ${n.rekeyMs.toFixed(0)} ms`)
                set({ handshakeMs: n.rekeyMs, detail: line })
                expect(n.sent).to.be.greaterThan(80)
                expect(n.unprotected, 'datagrams vipsec had no SA for').to.equal(0)
                expect(n.lostOut, 'lost from vipsec to charon').to.deep.equal([])
                expect(n.lostBack, 'lost from charon to vipsec').to.deep.equal([])
                expect(n.drops, 'ESP packets vipsec dropped').to.deep.equal({})
              }
            )
          })
        }

        async function waitCharon(fn: () => boolean): Promise<void> {
          const end = Date.now() + 20_000
          while (!fn()) {
            if (Date.now() > end) throw new Error(`charon did not finish the rekey; ${h.why()}`)
            await new Promise((r) => setTimeout(r, 100))
          }
        }
        async function waitVipsec(fn: () => Promise<boolean>): Promise<void> {
          const end = Date.now() + 20_000
          while (!(await fn())) {
            if (Date.now() > end) throw new Error(`vipsec did not see the rekey; ${h.why()}`)
            await new Promise((r) => setTimeout(r, 100))
          }
        }
      })
    }
  })
})
