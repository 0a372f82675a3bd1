import type { Fence, NodeId, OwnershipRole } from '@vipsec/interface'

/** What this node last knew the store to say about a DVIPA's ownership. */
export type StoreView =
  | {
      /** Nobody ever claimed it (or nothing has been read yet). */
      kind: 'unclaimed'
    }
  | {
      /** Its owner gave it up at `epoch`: the best backup takes it over. */
      kind: 'released'
      /** The epoch that was released. */
      epoch: number
      /** The owner that released it, as the store's record names it (see `Ownership.previousOwner`). */
      previous?: NodeId
    }
  | {
      /** `owner` holds it at `epoch`. */
      kind: 'owned'
      /** The owner. */
      owner: NodeId
      /** Its epoch. */
      epoch: number
      /**
       * Whose SAs the records are, when `owner` was named by a claim in its name (a planned
       * switchover to it) and has not written them: that owner takes the DVIPA over from it.
       */
      previous?: NodeId
    }

/** The step a takeover attempt is at: the collision state of a claim, as a value. */
export type TakeoverPhase =
  | {
      /** Waiting for better-ranked live backups to claim first. */
      step: 'rank-delay'
      /** Monotonic ms at which the wait ends. */
      until: number
    }
  | {
      /** A compare-and-set of the ownership record is under way. */
      step: 'claiming'
      /** The epoch the claim replaces. */
      expectedEpoch: number
    }
  | {
      /** A claim's reply was lost: it may or may not have applied; the store is being read back. */
      step: 'resolving'
      /** The epoch the lost claim replaced. */
      expectedEpoch: number
      /** Monotonic ms at which the reply was lost. */
      since: number
    }
  | {
      /** The claim won: the takeover steps run under `fence`. */
      step: 'running'
      /** The fence the claim won. */
      fence: Fence
    }

/** Whether an owner serves or must first confirm its epoch in the store. */
export type OwnerStanding =
  | {
      /** It serves. */
      kind: 'serving'
    }
  | {
      /** It serves nothing until the store confirms its epoch. */
      kind: 'confirming'
      /** Why. */
      reason: 'paused' | 'epoch-regressed'
      /** Monotonic ms since when. */
      since: number
    }

/** The ownership state of one DVIPA on one node. */
export type OwnershipState =
  | {
      /**
       * Just started (or re-joining): serves nothing, claims nothing, and listens until `until`
       * for the highest epoch and live owner the cluster knows (ownership notices, the store).
       */
      role: 'joining'
      /** What the store said last. */
      view: StoreView
      /** A live owner heard of during the window (an answer to the ownership query), if any. */
      heard?: {
        /** The owner that answered (or was named on the link). */
        owner: NodeId
        /** Its epoch. */
        epoch: number
      }
      /** Monotonic ms at which the window ends. */
      until: number
    }
  | {
      /** Not serving; watching the owner. */
      role: 'backup'
      /** What the store said last. */
      view: StoreView
    }
  | {
      /** Taking the DVIPA over from `from`. */
      role: 'taking-over'
      /** What the store said when the attempt began. */
      view: StoreView
      /** The owner it is taken from (this node for a takeover from itself, or a released DVIPA). */
      from: NodeId
      /** The step. */
      phase: TakeoverPhase
    }
  | {
      /** Holds the epoch in `fence`. */
      role: 'owner'
      /** The fence. */
      fence: Fence
      /** Whether it serves. */
      standing: OwnerStanding
    }
  | {
      /** Held the epoch in `fence` but could not confirm it in time: serves nothing. */
      role: 'fenced'
      /** The fence it held. */
      fence: Fence
      /** Monotonic ms since when. */
      since: number
    }

/** The epoch a state stands for: the fence's, or the one the store named last. */
export function stateEpoch(state: OwnershipState): number {
  switch (state.role) {
    case 'owner':
    case 'fenced':
      return state.fence.epoch
    case 'taking-over':
      return state.phase.step === 'running' ? state.phase.fence.epoch : viewEpoch(state.view)
    case 'backup':
      return viewEpoch(state.view)
    case 'joining':
      return Math.max(viewEpoch(state.view), state.heard?.epoch ?? 0)
  }
}

/** The owner a state names: this node's own fence, or the one the store named last. */
export function stateOwner(state: OwnershipState): NodeId | undefined {
  switch (state.role) {
    case 'owner':
    case 'fenced':
      return state.fence.owner
    case 'taking-over':
      return state.phase.step === 'running'
        ? state.phase.fence.owner
        : state.view.kind === 'owned'
          ? state.view.owner
          : undefined
    case 'backup':
      return state.view.kind === 'owned' ? state.view.owner : undefined
    case 'joining':
      return state.heard !== undefined && state.heard.epoch >= viewEpoch(state.view)
        ? state.heard.owner
        : state.view.kind === 'owned'
          ? state.view.owner
          : undefined
  }
}

/** The epoch of a store view (0 when unclaimed). */
export function viewEpoch(view: StoreView): number {
  return view.kind === 'unclaimed' ? 0 : view.epoch
}

/** The role a state is in. */
export function roleOf(state: OwnershipState): OwnershipRole {
  return state.role
}
