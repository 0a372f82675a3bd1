/**
 * A custom coupling store: `FileCouplingStore` keeps the whole coupling state (ownership and
 * epochs, records, takeover journals, mailboxes, leases) in one JSON file, and replaces that file
 * atomically (write a temporary file, fsync, rename) on every change. It passes the
 * `couplingStoreSuite` of `@vipsec/compliance` (see `test/examples-file-store.spec.ts`).
 *
 * **A single-process example.** Operations are serialised by a queue in this process (shared by
 * every store on the same path), which is what makes claims compare-and-set, batches
 * all-or-none and read-and-clear atomic. Two processes on one file would race between their read
 * and their rename; a real shared store needs a server that serialises for everyone (Redis, see
 * `@vipsec/store-redis`) or a file lock. The change stream, too, only reaches stores of this
 * process.
 *
 * The file: `{ "dvipas": { [dvipa]: { ownership, owner, epoch, records, journals } },
 * "mailboxes": { [node]: [...] }, "leases": { [node]: expiresAtMs } }`, where ownership, records
 * (by `kind/id`), journals (by epoch, then `kind/id`) and messages are the bytes the codec of
 * `@vipsec/interface` makes (`encodeRecord`, `encodeOwnership`, `encodeDeleteMessage`), in base64.
 * Every read decodes (and so validates) them again, as a remote store would.
 *
 * Run it: `node --import tsx --conditions=vipsec-source examples/file-coupling-store.ts`.
 */
import { mkdtemp, open, readFile, rename, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { Subject, type Observable } from 'rxjs'
import {
  countRecords,
  decodeDeleteMessage,
  decodeOwnership,
  decodeRecord,
  decodeRecordSet,
  encodeDeleteMessage,
  encodeOwnership,
  encodeRecord,
  InvalidParametersError,
  NotFoundError,
  NotStartedError,
  OwnershipConflictError,
  StaleEpochError,
  throwIfAborted,
  type AbortOptions,
  type ConnectionRecord,
  type CouplingStore,
  type CouplingStoreEvent,
  type DeleteMessage,
  type Dvipa,
  type DvipaRecord,
  type DvipaRecordSet,
  type Fence,
  type ListRecordsOptions,
  type NodeId,
  type Ownership,
  type OwnershipClaim,
  type RecordByKind,
  type RecordKind,
  type StoredEntry
} from '@vipsec/interface'

/** Base64 of encoded bytes, by `kind/id`. */
type Entries = Record<string, string>

/** What the file holds for one DVIPA. */
interface DvipaState {
  ownership?: string
  owner: NodeId | null
  epoch: number
  records: Entries
  journals: Record<string, Entries>
}

/** The whole file. */
interface FileState {
  dvipas: Record<Dvipa, DvipaState>
  mailboxes: Record<NodeId, string[]>
  leases: Record<NodeId, number>
}

const toBase64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64')
const fromBase64 = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'base64'))

function toStored(entries: Entries): StoredEntry[] {
  return Object.entries(entries).map(([key, bytes]) => {
    const slash = key.indexOf('/')
    return {
      kind: key.slice(0, slash) as RecordKind,
      id: key.slice(slash + 1),
      bytes: fromBase64(bytes)
    }
  })
}

/** One queue and one change stream per file, shared by the stores of this process. */
interface Shared {
  tail: Promise<unknown>
  changes: Subject<CouplingStoreEvent>
}
const shared = new Map<string, Shared>()

let tmpCounter = 0

/** A `CouplingStore` in a JSON file, for one process. */
export class FileCouplingStore implements CouplingStore {
  private readonly shared: Shared
  private events = new Subject<CouplingStoreEvent>()
  private subscription: { unsubscribe(): void } | undefined

  /**
   * @param path - the JSON file (created on the first write; its directory must exist)
   * @param now - the clock for `claimedAt` and leases
   */
  constructor(
    readonly path: string,
    private readonly now: () => number = Date.now
  ) {
    let s = shared.get(path)
    if (s === undefined) {
      s = { tail: Promise.resolve(), changes: new Subject() }
      shared.set(path, s)
    }
    this.shared = s
  }

  get events$(): Observable<CouplingStoreEvent> {
    return this.events.asObservable()
  }

  async start(): Promise<void> {
    if (this.subscription !== undefined) return
    if (this.events.closed || this.events.isStopped) this.events = new Subject()
    this.subscription = this.shared.changes.subscribe((event) => this.events.next(event))
  }

  async stop(): Promise<void> {
    if (this.subscription === undefined) return
    this.subscription.unsubscribe()
    this.subscription = undefined
    this.events.complete()
  }

  isStarted(): boolean {
    return this.subscription !== undefined
  }

  async getOwnership(dvipa: Dvipa, options?: AbortOptions): Promise<Ownership> {
    return this.read(options, (state) => {
      const bytes = state.dvipas[dvipa]?.ownership
      if (bytes === undefined) throw new NotFoundError(`${dvipa} has never been claimed`)
      return decodeOwnership(fromBase64(bytes))
    })
  }

  async claimOwnership(
    dvipa: Dvipa,
    claim: OwnershipClaim,
    options?: AbortOptions
  ): Promise<Ownership> {
    return this.write(options, (state, publish) => {
      const slot = (state.dvipas[dvipa] ??= { owner: null, epoch: 0, records: {}, journals: {} })
      if (slot.epoch !== claim.expectedEpoch) {
        throw new OwnershipConflictError(
          dvipa,
          claim.expectedEpoch,
          slot.epoch,
          slot.owner ?? undefined
        )
      }
      const ownership: Ownership = {
        v: 1,
        dvipa,
        owner: claim.owner,
        epoch: slot.epoch + 1,
        ranks: [...claim.ranks],
        claimedAt: this.now(),
        // a planned switchover names the owner whose SAs the heir takes over
        ...(claim.previousOwner === undefined ? {} : { previousOwner: claim.previousOwner })
      }
      slot.ownership = toBase64(encodeOwnership(ownership))
      slot.owner = ownership.owner
      slot.epoch = ownership.epoch
      publish({ type: 'ownership:claimed', ownership })
      return decodeOwnership(fromBase64(slot.ownership))
    })
  }

  async releaseOwnership(dvipa: Dvipa, fence: Fence, options?: AbortOptions): Promise<void> {
    return this.write(options, (state, publish) => {
      const slot = fenced(state, dvipa, fence)
      const current = decodeOwnership(fromBase64(slot.ownership!))
      // The released record names whose SAs the records are: the owner a switchover claim
      // replaced, else the releasing owner.
      const previousOwner = current.previousOwner ?? fence.owner
      const ownership = { ...current, owner: null, previousOwner }
      slot.ownership = toBase64(encodeOwnership(ownership))
      slot.owner = null
      publish({ type: 'ownership:released', dvipa, epoch: slot.epoch, previousOwner })
    })
  }

  async putRecords(
    dvipa: Dvipa,
    records: DvipaRecord[],
    fence: Fence,
    options?: AbortOptions
  ): Promise<void> {
    return this.write(options, (state, publish) => {
      const slot = fenced(state, dvipa, fence)
      // Encode (and so validate) all of them before changing anything: all or none.
      const encoded = records.map((record, i) => {
        if (record?.dvipa !== dvipa) {
          throw new InvalidParametersError(`records[${i}].dvipa`, `must be ${dvipa}`)
        }
        return [`${record.kind}/${record.id}`, toBase64(encodeRecord(record))] as const
      })
      for (const [key, bytes] of encoded) slot.records[key] = bytes
      for (const { kind, id } of records)
        publish({ type: 'record:put', dvipa, kind, id, epoch: fence.epoch })
    })
  }

  async deleteRecords(
    dvipa: Dvipa,
    keys: { kind: RecordKind; id: string }[],
    fence: Fence,
    options?: AbortOptions
  ): Promise<void> {
    return this.write(options, (state, publish) => {
      const slot = fenced(state, dvipa, fence)
      for (const { kind, id } of keys) {
        const key = `${kind}/${id}`
        if (key in slot.records) {
          delete slot.records[key]
          publish({ type: 'record:deleted', dvipa, kind, id, epoch: fence.epoch })
        }
      }
    })
  }

  async getRecord<K extends RecordKind>(
    dvipa: Dvipa,
    kind: K,
    id: string,
    options?: AbortOptions
  ): Promise<RecordByKind[K]> {
    return this.read(options, (state) => {
      const bytes = state.dvipas[dvipa]?.records[`${kind}/${id}`]
      if (bytes === undefined) throw new NotFoundError(`no ${kind} record ${id} under ${dvipa}`)
      return decodeRecord(kind, fromBase64(bytes))
    })
  }

  async listRecords(dvipa: Dvipa, options?: ListRecordsOptions): Promise<DvipaRecordSet> {
    return this.read(options, (state) => {
      const all = toStored(state.dvipas[dvipa]?.records ?? {})
      const kind = options?.kind
      return decodeRecordSet(kind === undefined ? all : all.filter((e) => e.kind === kind))
    })
  }

  async takeRecords(dvipa: Dvipa, fence: Fence, options?: AbortOptions): Promise<DvipaRecordSet> {
    return this.write(options, (state, publish) => {
      const slot = fenced(state, dvipa, fence)
      // Unsettled journals of earlier takers first (oldest first), then the live records, so
      // that the newest bytes of a key win. All of it becomes this taker's journal.
      const merged: Entries = {}
      for (const epoch of Object.keys(slot.journals).sort((a, b) => Number(a) - Number(b)))
        Object.assign(merged, slot.journals[epoch])
      Object.assign(merged, slot.records)
      slot.journals = { [fence.epoch]: merged }
      slot.records = {}
      const count = Object.keys(merged).length
      publish({ type: 'records:taken', dvipa, epoch: fence.epoch, count })
      return decodeRecordSet(toStored(merged))
    })
  }

  async settleTakeover(dvipa: Dvipa, fence: Fence, options?: AbortOptions): Promise<void> {
    return this.write(options, (state) => {
      fenced(state, dvipa, fence).journals = {}
    })
  }

  async postMessage(message: DeleteMessage, options?: AbortOptions): Promise<void> {
    return this.write(options, (state, publish) => {
      const bytes = toBase64(encodeDeleteMessage(message)) // validates
      ;(state.mailboxes[message.to] ??= []).push(bytes)
      publish({ type: 'mailbox:posted', to: message.to, id: message.id })
    })
  }

  async takeMessages(node: NodeId, options?: AbortOptions): Promise<DeleteMessage[]> {
    return this.write(options, (state) => {
      const box = state.mailboxes[node] ?? []
      delete state.mailboxes[node]
      const messages: DeleteMessage[] = []
      for (const bytes of box) {
        try {
          messages.push(decodeDeleteMessage(fromBase64(bytes)))
        } catch {
          // Only valid messages are written; one damaged in the file cannot be acted on.
        }
      }
      return messages
    })
  }

  async renewLease(node: NodeId, ttlMs: number, options?: AbortOptions): Promise<void> {
    return this.write(options, (state) => {
      if (!Number.isSafeInteger(ttlMs) || ttlMs < 1)
        throw new InvalidParametersError('ttlMs', 'must be an integer >= 1')
      state.leases[node] = this.now() + ttlMs
    })
  }

  async readLeases(nodes: NodeId[], options?: AbortOptions): Promise<Record<NodeId, number>> {
    return this.read(options, (state) => {
      const now = this.now()
      const left: Record<NodeId, number> = {}
      for (const node of nodes) left[node] = Math.max(0, (state.leases[node] ?? now) - now)
      return left
    })
  }

  /** Runs `fn` on the file's state, in the queue; nothing is written. */
  private read<T>(options: AbortOptions | undefined, fn: (state: FileState) => T): Promise<T> {
    return this.enqueue(options, async () => fn(await this.load()))
  }

  /**
   * Runs `fn` on the file's state, in the queue, then replaces the file and publishes the
   * changes `fn` reported. If `fn` throws, the file is not touched and nothing is published.
   */
  private write<T>(
    options: AbortOptions | undefined,
    fn: (state: FileState, publish: (event: CouplingStoreEvent) => void) => T
  ): Promise<T> {
    return this.enqueue(options, async () => {
      const state = await this.load()
      const changes: CouplingStoreEvent[] = []
      const result = fn(state, (event) => changes.push(event))
      await this.save(state)
      for (const event of changes) this.shared.changes.next(event)
      return result
    })
  }

  /** Checks lifecycle and signal, then chains `job` behind every earlier operation on the file. */
  private enqueue<T>(options: AbortOptions | undefined, job: () => Promise<T>): Promise<T> {
    throwIfAborted(options?.signal)
    if (!this.isStarted()) throw new NotStartedError('FileCouplingStore is not started')
    const run = this.shared.tail.then(job)
    this.shared.tail = run.catch(() => undefined)
    return run
  }

  private async load(): Promise<FileState> {
    try {
      return JSON.parse(await readFile(this.path, 'utf8')) as FileState
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        return { dvipas: {}, mailboxes: {}, leases: {} }
      throw err
    }
  }

  /** Writes a temporary file next to the real one, syncs it, and renames it over the real one. */
  private async save(state: FileState): Promise<void> {
    const tmp = `${this.path}.${process.pid}.${++tmpCounter}.tmp`
    const file = await open(tmp, 'w')
    try {
      await file.writeFile(JSON.stringify(state))
      await file.sync()
    } finally {
      await file.close()
    }
    await rename(tmp, this.path)
  }
}

/** The DVIPA's state if `fence` names its current owner and epoch; else StaleEpochError. */
function fenced(state: FileState, dvipa: Dvipa, fence: Fence): DvipaState {
  const slot = state.dvipas[dvipa]
  const epoch = slot?.epoch ?? 0
  if (
    slot === undefined ||
    slot.owner === null ||
    slot.owner !== fence.owner ||
    epoch !== fence.epoch
  )
    throw new StaleEpochError(dvipa, fence.epoch, epoch)
  return slot
}

/** The demonstration: two nodes share one file; the second takes the DVIPA over. */
async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'vipsec-file-store-'))
  const path = join(dir, 'coupling.json')
  const dvipa = '10.0.0.100'
  const dp1 = new FileCouplingStore(path)
  const dp2 = new FileCouplingStore(path)
  try {
    await dp1.start()
    await dp2.start()
    dp2.events$.subscribe((e) => console.log(`  event ${e.type}`))

    const owned = await dp1.claimOwnership(dvipa, {
      owner: 'dp-1',
      ranks: ['dp-2'],
      expectedEpoch: 0
    })
    const fence1 = { owner: 'dp-1', epoch: owned.epoch }
    const flow = (n: number): ConnectionRecord => ({
      v: 1,
      kind: 'connection',
      id: `conn-${n}`,
      dvipa,
      flow: {
        protocol: 17,
        sourceAddress: `172.16.2.${n}`,
        sourcePort: 40000 + n,
        destinationAddress: '10.77.0.10',
        destinationPort: 7
      },
      target: `target-${n}`,
      distributed: true,
      phase2Id: null,
      createdAt: Date.now()
    })
    await dp1.putRecords(dvipa, [flow(1), flow(2)], fence1)
    console.log(`dp-1 owns ${dvipa} at epoch ${owned.epoch} and recorded 2 flows in ${path}`)

    // dp-1 dies; dp-2 claims with compare-and-set and takes what dp-1 left.
    const claimed = await dp2.claimOwnership(dvipa, {
      owner: 'dp-2',
      ranks: [],
      expectedEpoch: owned.epoch
    })
    const fence2 = { owner: 'dp-2', epoch: claimed.epoch }
    const taken = await dp2.takeRecords(dvipa, fence2)
    console.log(`dp-2 claimed epoch ${claimed.epoch} and took ${countRecords(taken)} records`)
    await dp2.putRecords(dvipa, taken.connection, fence2)
    await dp2.settleTakeover(dvipa, fence2)

    try {
      await dp1.putRecords(dvipa, [flow(3)], fence1)
    } catch (err) {
      console.log(`dp-1's late write: ${(err as Error).name}`)
    }
    const onDisk = JSON.parse(await readFile(path, 'utf8')) as FileState
    console.log(
      `on disk: owner ${onDisk.dvipas[dvipa].owner}, epoch ${onDisk.dvipas[dvipa].epoch}, ${Object.keys(onDisk.dvipas[dvipa].records).length} records`
    )
  } finally {
    await dp1.stop()
    await dp2.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => {
    console.error(err)
    process.exitCode = 1
  })
}
