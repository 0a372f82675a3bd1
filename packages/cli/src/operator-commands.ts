/**
 * `vipsec reload` and `vipsec switchover`: the operator's commands against a running cluster.
 *
 * @module
 */
import { readFile } from 'node:fs/promises'
import { request } from 'node:http'
import { parseDocument } from 'yaml'
import { EtcdCouplingStore } from '@vipsec/store-etcd'
import { RedisCouplingStore } from '@vipsec/store-redis'
import type { CouplingStore, Ownership } from '@vipsec/interface'
import { nodeFileSchema } from './config-files.js'
import { parseConfig } from '@vipsec/container'
import { loadConfigOrThrow } from './load-config.js'
import type { ReloadResult } from './reload.js'
import { statusTarget } from './status-command.js'

/**
 * The URL of a node's admin endpoint from its node file alone (so that a reload can report the
 * errors of the other files): an unspecified address (`0.0.0.0`, `::`) is reached on loopback.
 *
 * @param path - the node file
 * @throws Error when the file cannot be read or names no `admin` endpoint
 */
export async function adminUrl(path: string): Promise<string> {
  const doc = parseDocument(await readFile(path, 'utf8'))
  const parsed = parseConfig(nodeFileSchema, doc.toJS())
  if (!parsed.ok)
    throw new Error(`${path}: ${parsed.issues[0]!.path}: ${parsed.issues[0]!.message}`)
  const admin = parsed.value.admin
  if (admin === undefined)
    throw new Error(`${path} names no admin endpoint: add admin: 127.0.0.1:PORT to reach the node`)
  const host =
    admin.address === '0.0.0.0' ? '127.0.0.1' : admin.address === '::' ? '::1' : admin.address
  return `http://${host.includes(':') ? `[${host}]` : host}:${admin.port}`
}

/** POSTs to a node's admin endpoint; resolves with the status and the parsed JSON body. */
function post(url: string, timeoutMs = 30_000): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', timeout: timeoutMs }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (text += c))
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as unknown })
        } catch {
          resolve({ status: res.statusCode ?? 0, body: { error: text.trim() } })
        }
      })
    })
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} in ${timeoutMs} ms`)))
    req.on('error', reject)
    req.end()
  })
}

/**
 * `vipsec reload --config FILE`: asks the node of the node file (through its admin endpoint, on
 * this host) to reload its files; prints what it applied or why it refused. Exit code 0 when
 * applied or unchanged, 1 when refused or invalid.
 *
 * @param path - the node file
 * @param print - where output goes
 */
export async function runReload(path: string, print: (line: string) => void): Promise<number> {
  const url = await adminUrl(path)
  const { status, body } = await post(`${url}/reload`)
  if (status !== 200) {
    print(`vipsec reload: ${url} answered ${status}: ${(body as { error?: string }).error ?? ''}`)
    return 1
  }
  const result = body as ReloadResult
  for (const c of result.changes)
    print(
      `applied  ${c.kind} ${c.name}${c.added?.length ? ` +${c.added.join(',')}` : ''}${c.removed?.length ? ` -${c.removed.join(',')}` : ''}`
    )
  for (const r of result.refused) print(`refused  ${r.path}: ${r.message} (${r.reason})`)
  for (const i of result.issues ?? []) print(`error    ${i}`)
  if (result.outcome === 'unchanged') print('unchanged: the files say what the node runs')
  if (result.outcome === 'refused' || result.outcome === 'invalid')
    print('nothing changed: restart the node to apply these (its DVIPAs fail over)')
  return result.outcome === 'applied' || result.outcome === 'unchanged' ? 0 : 1
}

/** Options of {@link switchover}. */
export interface SwitchoverOptions {
  /** The DVIPA. */
  dvipa: string
  /** The node to hand it to; default the best live backup. */
  to?: string
  /** How long to wait for the new owner, ms. Default 15000. */
  timeoutMs?: number
}

/** An owner and its epoch. */
export interface OwnerAtEpoch {
  /** The owning node. */
  owner: string
  /** Its epoch. */
  epoch: number
}

/** The result of {@link switchover}. */
export interface SwitchoverResult {
  /** The owner before. */
  from: OwnerAtEpoch
  /** The owner after, if one claimed in time. */
  to: OwnerAtEpoch | undefined
  /** Milliseconds from the store write until the new owner's claim was seen. */
  ms: number
}

/**
 * A planned switchover through the coupling store, with the store credentials of a node file:
 * without `to`, releases the DVIPA under its owner's epoch (the owner stops serving at once, and
 * the best live backup claims without waiting for its detector, the others after their rank
 * delay); with `to`, claims the next epoch in that node's name (the owner stops serving, and the
 * named node takes the DVIPA over as a restarted owner would). Waits until a new owner holds it.
 *
 * @param store - a started coupling store
 * @param options - the DVIPA and the new owner
 * @throws Error when nobody owns the DVIPA, or `to` is not one of its ranks or owns it already
 */
export async function switchover(
  store: CouplingStore,
  options: SwitchoverOptions
): Promise<SwitchoverResult> {
  let current: Ownership
  try {
    current = await store.getOwnership(options.dvipa)
  } catch (err) {
    if ((err as Error).name === 'NotFoundError')
      throw new Error(`${options.dvipa}: never claimed in this store (a wrong prefix?)`, {
        cause: err
      })
    throw err
  }
  if (current.owner === null)
    throw new Error(`${options.dvipa} is released (epoch ${current.epoch}): nobody to switch from`)
  const from = { owner: current.owner, epoch: current.epoch }
  const to = options.to
  if (to !== undefined) {
    if (!current.ranks.includes(to))
      throw new Error(`${to} is not in the ranks of ${options.dvipa} (${current.ranks.join(', ')})`)
    if (to === current.owner) throw new Error(`${to} owns ${options.dvipa} already`)
  }
  const started = Date.now()
  if (to === undefined) await store.releaseOwnership(options.dvipa, from)
  else
    // in the record: `to` takes the DVIPA over from the owner it replaces, not from itself
    await store.claimOwnership(options.dvipa, {
      owner: to,
      ranks: current.ranks,
      expectedEpoch: current.epoch,
      previousOwner: current.owner
    })
  // the named node claims again in its own name (an epoch above ours): wait for that
  const floor = to === undefined ? from.epoch : from.epoch + 1
  const deadline = started + (options.timeoutMs ?? 15_000)
  while (Date.now() < deadline) {
    const o = await store.getOwnership(options.dvipa).catch(() => undefined)
    if (o !== undefined && o.owner !== null && o.epoch > floor && o.owner !== from.owner) {
      if (to === undefined || o.owner === to)
        return { from, to: { owner: o.owner, epoch: o.epoch }, ms: Date.now() - started }
    }
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return { from, to: undefined, ms: Date.now() - started }
}

/**
 * `vipsec switchover --config FILE --dvipa A [--to NODE]`: {@link switchover} with the store of
 * a node file; prints who owns the DVIPA before and after. Exit code 0 when a new owner claimed.
 *
 * @param path - a node file of the cluster (for the store and its password)
 * @param options - the DVIPA and the new owner
 * @param print - where output goes
 */
export async function runSwitchover(
  path: string,
  options: SwitchoverOptions,
  print: (line: string) => void
): Promise<number> {
  const config = await loadConfigOrThrow(path, { host: false })
  if (!(options.dvipa in config.cluster.dvipas))
    throw new Error(
      `${options.dvipa} is not a DVIPA of the cluster file (${Object.keys(config.cluster.dvipas).join(', ')})`
    )
  const { init } = await statusTarget(path)
  const store: CouplingStore =
    'etcd' in init ? new EtcdCouplingStore({}, init.etcd) : new RedisCouplingStore({}, init)
  await store.start()
  try {
    const result = await switchover(store, options)
    if (result.to === undefined) {
      print(
        `${options.dvipa}: ${result.from.owner} (epoch ${result.from.epoch}) stopped serving, but no node claimed within ${result.ms} ms: is ${options.to ?? 'any backup'} running?`
      )
      return 1
    }
    print(
      `${options.dvipa}: ${result.from.owner} (epoch ${result.from.epoch}) -> ${result.to.owner} (epoch ${result.to.epoch}) in ${result.ms} ms`
    )
    return 0
  } finally {
    await store.stop()
  }
}
