import type { NodeId } from '@vipsec/interface'
import type { ReplyFault } from './faulty-store.js'

/**
 * A node a fault names: a fixed node, or one chosen when the fault fires: `@owner` (the DP the
 * store names as owner, else the latest claimer), `@taker` (the DP whose event triggered the
 * fault), `@backup` (the best-ranked live DP that is neither of those).
 */
export type NodeRef = NodeId | '@owner' | '@taker' | '@backup'

/** What a fault does. Every fault with a duration heals by itself; all heal at the heal point. */
export type FaultAction =
  | {
      /** The node stops (no store write, no goodbye); restarted with fresh state later, or at the heal point. */
      kind: 'crash'
      /** A DP or a target. */
      node: NodeRef
      /** When to restart it, ms after the crash; `null`: it stays down, even after the heal point. */
      restartAfterMs: number | null
    }
  | {
      /** The DP's timers, replies and datagrams are frozen, then released in order (SIGSTOP, SIGCONT). */
      kind: 'pause'
      /** A DP. */
      node: NodeRef
      /** How long. */
      durationMs: number
    }
  | {
      /** The network between two groups of nodes is cut (both ways). */
      kind: 'partition'
      /** One side. */
      a: NodeRef[]
      /** The other side. */
      b: NodeRef[]
      /** How long. */
      durationMs: number
    }
  | {
      /** A DP's path to the coupling store is cut: its calls time out unapplied, it sees no changes. */
      kind: 'store-cut'
      /** A DP. */
      node: NodeRef
      /** How long. */
      durationMs: number
    }
  | {
      /** A DP's store replies are lost (applied, caller times out), duplicated (applied again later) or delayed. */
      kind: 'store-replies'
      /** A DP. */
      node: NodeRef
      /** What happens to a reply. */
      mode: ReplyFault
      /** The fraction of calls it happens to. */
      rate: number
      /** The delay of a delayed reply or of the duplicate, ms. */
      delayMs: number
      /** How long. */
      durationMs: number
    }
  | {
      /**
       * The store loses data: restarts empty, or goes back to the state it had `rollbackMs` ago
       * (a replica that had not received the latest writes).
       */
      kind: 'store-loss'
      /** Empty, or an older snapshot. */
      mode: 'empty' | 'rollback'
      /** How far back, for `rollback`. */
      rollbackMs: number
    }

/** When a fault fires: ms after the faults begin, or some time after the nth event of a kind. */
export type FaultStart =
  | number
  | {
      /** The DP event that triggers it. */
      after: 'takeover:started' | 'ownership:claimed'
      /** Which one (1: the first after the faults began). */
      nth: number
      /** How long after it. */
      delayMs: number
    }

/** One fault of a schedule. */
export interface Fault {
  /** Its number in the schedule (kept when others are dropped by shrinking). */
  id: number
  /** When it fires. */
  start: FaultStart
  /** What it does. */
  action: FaultAction
}

/** The cluster settings of a schedule family. */
export interface ChaosConfig {
  /** The DPs' failure detector. */
  detector: 'heartbeat' | 'lease'
  /** The DPs' `selfFenceMs`; also the bound on two DPs serving at once. */
  selfFenceMs: number
  /** The DPs' `rankDelayMs`. */
  rankDelayMs: number
  /** The store client's call timeout (as the Redis store's `operationTimeoutMs`). */
  storeTimeoutMs: number
  /**
   * Whether the peers run dead peer detection (500 ms) and connect again when it fails: for the
   * families that lose the store, where the records of the SAs may be gone. Default false.
   */
  peerDpd?: boolean
}

/** A seeded fault schedule. */
export interface Schedule {
  /** The seed it came from. */
  seed: number
  /** Its family. */
  family: string
  /** The cluster settings. */
  config: ChaosConfig
  /** The faults. */
  faults: Fault[]
}

/** A seeded source of numbers for building schedules (mulberry32). */
export class ScheduleRandom {
  private state: number

  /** @param seed - any integer */
  constructor(seed: number) {
    this.state = seed >>> 0
  }

  /** A number in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0
    let t = this.state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  /**
   * An integer in [lo, hi].
   *
   * @param lo - the least
   * @param hi - the greatest
   */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1))
  }

  /**
   * One element.
   *
   * @param items - at least one
   */
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!
  }

  /**
   * True with probability `p`.
   *
   * @param p - 0 to 1
   */
  chance(p: number): boolean {
    return this.next() < p
  }
}

/** The nodes of the cluster every schedule runs on. */
export interface ChaosTopology {
  /** The DPs, best first. */
  readonly dps: readonly NodeId[]
  /** The targets. */
  readonly targets: readonly NodeId[]
  /** The peers. */
  readonly peers: readonly NodeId[]
}

/** A fault with its start, before it is numbered. */
export interface TimedFault {
  /** When it fires. */
  start: FaultStart
  /** What it does. */
  action: FaultAction
}

/** The nodes of the cluster every schedule runs on. */
export const CHAOS_TOPOLOGY: ChaosTopology = {
  dps: ['dp-1', 'dp-2', 'dp-3'],
  targets: ['target-1', 'target-2'],
  peers: ['peer-1', 'peer-2']
}

/** The time in which faults begin, ms after the cluster is warm. */
export const FAULT_WINDOW_MS = 1500

/** The longest a fault lasts (pauses: `MAX_PAUSE_MS`). */
export const MAX_FAULT_MS = 1200

/** The longest pause (the issue's paused owner stopped for 1.5 to 3 s). */
export const MAX_PAUSE_MS = 3000

const DPS = CHAOS_TOPOLOGY.dps
const TARGETS = CHAOS_TOPOLOGY.targets
const PEERS = CHAOS_TOPOLOGY.peers

const HEARTBEAT: ChaosConfig = {
  detector: 'heartbeat',
  selfFenceMs: 200,
  rankDelayMs: 50,
  storeTimeoutMs: 1000
}
const LEASE: ChaosConfig = { ...HEARTBEAT, detector: 'lease' }

/** A family of schedules: settings and a generator of faults. */
export interface ChaosFamily {
  /** Its name (`--family`). */
  name: string
  /** What it exercises. */
  description: string
  /**
   * The settings for a seed.
   *
   * @param random - the schedule's random source
   */
  config: (random: ScheduleRandom) => ChaosConfig
  /**
   * The faults for a seed.
   *
   * @param random - the schedule's random source
   */
  faults: (random: ScheduleRandom) => FaultAction[] | TimedFault[]
}

const at = (random: ScheduleRandom): number => random.int(0, FAULT_WINDOW_MS)
const duration = (random: ScheduleRandom): number => random.int(100, MAX_FAULT_MS)
const someDp = (random: ScheduleRandom): NodeRef =>
  random.chance(0.6) ? '@owner' : random.pick(DPS)

function crashDp(random: ScheduleRandom, permanentOk: boolean): FaultAction {
  return {
    kind: 'crash',
    node: someDp(random),
    restartAfterMs: permanentOk && random.chance(0.25) ? null : random.int(100, MAX_FAULT_MS)
  }
}

function partitionAny(random: ScheduleRandom): FaultAction {
  const dp = someDp(random)
  const kind = random.pick(['dp-dp', 'dp-dps', 'dp-target', 'dp-peer'] as const)
  const b: NodeRef[] =
    kind === 'dp-dp'
      ? [random.pick(DPS)]
      : kind === 'dp-dps'
        ? [...DPS]
        : kind === 'dp-target'
          ? [random.pick(TARGETS)]
          : [random.pick(PEERS)]
  return { kind: 'partition', a: [dp], b, durationMs: duration(random) }
}

function storeReplies(random: ScheduleRandom): Extract<FaultAction, { kind: 'store-replies' }> {
  return {
    kind: 'store-replies',
    node: someDp(random),
    mode: random.pick(['lose', 'duplicate', 'delay'] as const),
    rate: random.pick([0.3, 0.6, 1]),
    delayMs: random.int(20, 1500),
    durationMs: duration(random)
  }
}

function storeLoss(random: ScheduleRandom): FaultAction {
  return {
    kind: 'store-loss',
    mode: random.pick(['empty', 'rollback'] as const),
    rollbackMs: random.int(100, 1500)
  }
}

function anyFault(random: ScheduleRandom): FaultAction {
  switch (random.int(0, 6)) {
    case 0:
      return crashDp(random, true)
    case 1:
      return { kind: 'crash', node: random.pick(TARGETS), restartAfterMs: duration(random) }
    case 2:
      return { kind: 'pause', node: someDp(random), durationMs: random.int(200, MAX_PAUSE_MS) }
    case 3:
      return partitionAny(random)
    case 4:
      return { kind: 'store-cut', node: someDp(random), durationMs: duration(random) }
    case 5:
      return storeReplies(random)
    default:
      return storeLoss(random)
  }
}

/** The families of schedules, each aimed at one kind of fault, and `mixed`. */
export const CHAOS_FAMILIES: readonly ChaosFamily[] = [
  {
    name: 'crash',
    description:
      'one or two DP crashes, restarted after a while or not at all (heartbeat detector)',
    config: () => HEARTBEAT,
    faults: (random) => {
      const first = crashDp(random, true)
      return random.chance(0.5) ? [first] : [first, crashDp(random, false)]
    }
  },
  {
    name: 'crash-target',
    description: 'a target crash (and restart), sometimes with an owner crash',
    config: () => HEARTBEAT,
    faults: (random) => [
      {
        kind: 'crash',
        node: random.pick(TARGETS),
        restartAfterMs: random.chance(0.3) ? null : duration(random)
      },
      ...(random.chance(0.5) ? [crashDp(random, false)] : [])
    ]
  },
  {
    name: 'partition',
    description: 'one to three partitions: DP-DP, one DP from the others, DP-target, DP-peer',
    config: () => HEARTBEAT,
    faults: (random) => Array.from({ length: random.int(1, 3) }, () => partitionAny(random))
  },
  {
    name: 'pause',
    description: 'the owner (or another DP) paused for 0.2 to 3 s, timers released at once after',
    config: () => HEARTBEAT,
    faults: (random) => [
      { kind: 'pause', node: someDp(random), durationMs: random.int(200, MAX_PAUSE_MS) }
    ]
  },
  {
    name: 'store-cut',
    description:
      'a DP cut off from the store (lease detector, selfFenceMs 200 below the 300 ms lease)',
    config: () => LEASE,
    faults: (random) => [
      { kind: 'store-cut', node: someDp(random), durationMs: duration(random) },
      ...(random.chance(0.3) ? [partitionAny(random)] : [])
    ]
  },
  {
    name: 'store-replies',
    description:
      'lost, duplicated and delayed store replies, with an owner crash so that claims are made',
    config: () => HEARTBEAT,
    faults: (random) => {
      // The faults sit on the backups (they make the claims) and on the owner, and the owner
      // crashes while they last, so that claims, take, write and settle all go through them.
      const onset = random.int(0, 800)
      const faults: TimedFault[] = [
        {
          start: onset,
          action: {
            ...storeReplies(random),
            node: random.pick(['dp-2', 'dp-3']),
            durationMs: MAX_FAULT_MS
          }
        }
      ]
      if (random.chance(0.5))
        faults.push({ start: onset, action: { ...storeReplies(random), node: '@owner' } })
      faults.push({
        start: onset + random.int(0, 400),
        action: {
          kind: 'crash',
          node: '@owner',
          restartAfterMs: random.chance(0.5) ? null : duration(random)
        }
      })
      return faults
    }
  },
  {
    name: 'store-loss',
    description: 'the store restarts empty or from an older snapshot, with or without a takeover',
    config: () => ({ ...HEARTBEAT, peerDpd: true }),
    faults: (random) => [storeLoss(random), ...(random.chance(0.5) ? [crashDp(random, false)] : [])]
  },
  {
    name: 'takeover',
    description:
      'the owner crashes; second and third faults hit the taker or the next backup mid-takeover',
    config: (random) => ({ ...HEARTBEAT, rankDelayMs: random.pick([50, 600]) }),
    faults: (random) => {
      const faults: TimedFault[] = [
        { start: at(random), action: { kind: 'crash', node: '@owner', restartAfterMs: null } }
      ]
      const more = random.int(1, 2)
      for (let n = 1; n <= more; n++) {
        const after = random.pick(['takeover:started', 'ownership:claimed'] as const)
        const node = random.pick(['@taker', '@backup'] as const)
        const action: FaultAction = random.pick<FaultAction>([
          { kind: 'crash', node, restartAfterMs: random.chance(0.5) ? null : duration(random) },
          { kind: 'pause', node, durationMs: random.int(200, MAX_PAUSE_MS) },
          {
            kind: 'store-replies',
            node,
            mode: 'lose',
            rate: 1,
            delayMs: 0,
            durationMs: duration(random)
          },
          { kind: 'store-cut', node, durationMs: duration(random) }
        ])
        // Reply faults come at once (the claim follows the rank delay), the others any time.
        const delayMs = action.kind === 'store-replies' ? random.int(0, 40) : random.int(0, 300)
        faults.push({ start: { after, nth: n, delayMs }, action })
      }
      return faults
    }
  },
  {
    name: 'mixed',
    description: 'two to five faults of every kind, heartbeat or lease detector',
    config: (random) => ({ ...(random.chance(0.5) ? HEARTBEAT : LEASE), peerDpd: true }),
    faults: (random) => Array.from({ length: random.int(2, 5) }, () => anyFault(random))
  }
]

/**
 * The family of a name.
 *
 * @param name - a family's name
 * @throws Error when there is none
 */
export function chaosFamily(name: string): ChaosFamily {
  const family = CHAOS_FAMILIES.find((f) => f.name === name)
  if (family === undefined)
    throw new Error(`no chaos family ${name} (${CHAOS_FAMILIES.map((f) => f.name).join(', ')})`)
  return family
}

/**
 * The schedule of a seed: the family (by default the seed's turn in {@link CHAOS_FAMILIES}), its
 * settings and its faults, all from the seed alone.
 *
 * @param seed - a non-negative integer
 * @param familyName - a family, or the seed's turn
 */
export function makeSchedule(seed: number, familyName?: string): Schedule {
  const family =
    familyName === undefined
      ? CHAOS_FAMILIES[seed % CHAOS_FAMILIES.length]!
      : chaosFamily(familyName)
  const random = new ScheduleRandom(seed * 2654435761 + hash(family.name))
  const config = family.config(random)
  const raw = family.faults(random)
  const faults = raw.map((f, i) =>
    'action' in f
      ? { id: i + 1, start: f.start, action: f.action }
      : { id: i + 1, start: at(random), action: f }
  )
  return { seed, family: family.name, config, faults }
}

function hash(text: string): number {
  let h = 2166136261
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619)
  return h >>> 0
}

/**
 * One line describing a fault, for traces.
 *
 * @param fault - the fault
 */
export function describeFault(fault: Fault): string {
  const start =
    typeof fault.start === 'number'
      ? `at +${fault.start}ms`
      : `${fault.start.delayMs}ms after ${fault.start.after} #${fault.start.nth}`
  const a = fault.action
  const what = (() => {
    switch (a.kind) {
      case 'crash':
        return `crash ${a.node}${a.restartAfterMs === null ? ' for good' : `, restart after ${a.restartAfterMs}ms`}`
      case 'pause':
        return `pause ${a.node} for ${a.durationMs}ms`
      case 'partition':
        return `partition [${a.a.join(',')}] | [${a.b.join(',')}] for ${a.durationMs}ms`
      case 'store-cut':
        return `cut ${a.node} from the store for ${a.durationMs}ms`
      case 'store-replies':
        return `${a.mode} ${Math.round(a.rate * 100)}% of ${a.node}'s store replies (${a.delayMs}ms) for ${a.durationMs}ms`
      case 'store-loss':
        return a.mode === 'empty' ? 'store restarts empty' : `store rolls back ${a.rollbackMs}ms`
    }
  })()
  return `#${fault.id} ${start}: ${what}`
}
