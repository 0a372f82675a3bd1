/**
 * The HA takeover's renegotiation (and re-authentication): new IKE SAs and Child SAs made as
 * initiator from coupling-store records of the old ones.
 *
 * @module
 */
import {
  IkeProtocolError,
  throwIfAborted,
  type AbortOptions,
  type IkeConnectRequest,
  type IkeErrorKind,
  type IkeSaRecords,
  type RenegotiationOutcome
} from '@vipsec/interface'
import type { IkeContext } from './context.js'
import { childRecord, type IkeSa } from './ike-sa.js'
import { toWireSelector } from './selectors.js'
import { createChildSa } from './tasks/create-child-sa.js'

/** What renegotiation needs of the service. */
export interface RenegotiationHost {
  /** The service as the tasks see it. */
  readonly ctx: IkeContext
  /** Establishes an IKE SA and its first Child SA as initiator. */
  connect(request: IkeConnectRequest, options: AbortOptions): Promise<IkeSaRecords>
  /** The established IKE SA with this record id. */
  findIke(phase1Id: string): IkeSa
}

/** The kind and message of an error, for an outcome or an event. */
export function toKind(err: unknown): { kind: IkeErrorKind; message: string } {
  if (err instanceof IkeProtocolError || (err as Error)?.name === 'IkeProtocolError') {
    return { kind: (err as IkeProtocolError).kind, message: (err as Error).message }
  }
  return { kind: 'TEMPORARY_FAILURE', message: (err as Error)?.message ?? String(err) }
}

/**
 * Renegotiates IKE SAs and their Child SAs from records, as initiator, all peers in parallel.
 * INITIAL_CONTACT makes the peer drop every other IKE SA of the same identities, so only the
 * first IKE SA of each (identities, peer) group carries it, and the rest of the group waits
 * for it. Never rejects for one peer: each gets an outcome, in the order of `records`.
 */
export function renegotiate(
  host: RenegotiationHost,
  records: IkeSaRecords[],
  options: AbortOptions
): Promise<RenegotiationOutcome[]> {
  const groups = new Map<string, Promise<unknown>>()
  return Promise.all(
    records.map((r) => {
      const p1 = r.phase1
      const key = JSON.stringify([p1.localIdentity, p1.remoteIdentity, p1.peer.address])
      const before = groups.get(key)
      const run =
        before === undefined
          ? renegotiateOne(host, r, options, true)
          : before.then(() => renegotiateOne(host, r, options, false))
      groups.set(key, run)
      return run
    })
  )
}

/**
 * Makes one new IKE SA from a record: the first Child SA in IKE_AUTH, the others with
 * CREATE_CHILD_SA; a Child SA that alone fails is listed in `failedChildren`.
 *
 * @param initialContact - whether the IKE_AUTH request carries INITIAL_CONTACT
 */
export async function renegotiateOne(
  host: RenegotiationHost,
  previous: IkeSaRecords,
  options: AbortOptions,
  initialContact: boolean
): Promise<RenegotiationOutcome> {
  const p1 = previous.phase1
  const [first, ...rest] = previous.phase2
  if (first === undefined) {
    return {
      status: 'failed',
      previous,
      reason: 'INVALID_SELECTORS',
      message: 'no phase 2 record to renegotiate'
    }
  }
  try {
    const peer = p1.nat.remoteBehindNat ? { ...p1.peer } : { address: p1.peer.address, port: 500 }
    const current = await host.connect(
      {
        local: { address: p1.local.address, port: 500 },
        peer,
        localIdentity: p1.localIdentity,
        remoteIdentity: p1.remoteIdentity,
        phase1: p1.policy,
        child: {
          policy: first.policy,
          mode: first.mode,
          local: first.selectors.local,
          remote: first.selectors.remote
        },
        initialContact,
        forceEncapsulation: p1.nat.encapsulated || first.encapsulation === 'udp'
      },
      options
    )
    const sa = host.findIke(current.phase1.id)
    const failedChildren: NonNullable<
      Extract<RenegotiationOutcome, { status: 'renegotiated' }>['failedChildren']
    > = []
    for (const p2 of rest) {
      try {
        throwIfAborted(options.signal)
        const child = await createChildSa(host.ctx, sa, {
          policy: p2.policy,
          mode: p2.mode,
          local: p2.selectors.local.map(toWireSelector),
          remote: p2.selectors.remote.map(toWireSelector)
        })
        current.phase2.push(childRecord(sa, child))
      } catch (err) {
        const { kind, message } = toKind(err)
        failedChildren.push({ previous: p2, reason: kind, message })
      }
    }
    return {
      status: 'renegotiated',
      previous,
      current: { ...current, phase1: sa.record() },
      failedChildren
    }
  } catch (err) {
    const { kind, message } = toKind(err)
    return { status: 'failed', previous, reason: kind, message }
  }
}
