/**
 * The timers of established IKE SAs and the lifetimes of their Child SAs: NAT keep-alives
 * (RFC 3948), liveness checks (RFC 7296 section 2.4), IKE SA rekeys and re-authentication
 * (2.8.3), and the ESP engine's soft and hard expiries of Child SAs.
 *
 * @module
 */
import type { IkeContext } from './context.js'
import type { IkeSa } from './ike-sa.js'
import { rekeyChildSa } from './tasks/create-child-sa.js'
import { checkLiveness, deleteChildSa } from './tasks/informational.js'

/** What the lifetimes need of the service beyond the tasks' context. */
export interface LifetimesHost {
  /** Whether the service is started (keep-alives stop with it). */
  isStarted(): boolean
  /** Sends a NAT keep-alive to the SA's peer. */
  keepalive(sa: IkeSa): void
  /** Rekeys an IKE SA. */
  rekeyIke(sa: IkeSa): Promise<unknown>
  /** Re-authenticates an IKE SA: a new one with new Child SAs, then the old is deleted. */
  reauthenticate(sa: IkeSa): Promise<unknown>
}

/** Arms the timers of SAs and reacts to the expiry of Child SAs. */
export class Lifetimes {
  /**
   * @param ctx - the service as the tasks see it
   * @param host - keep-alives, IKE rekey and re-authentication
   */
  constructor(
    private readonly ctx: IkeContext,
    private readonly host: LifetimesHost
  ) {}

  /** Runs `fn` after `ms` on one of the SA's timers, which is forgotten once it fires. */
  private later(sa: IkeSa, fn: () => void, ms: number): void {
    const handle = this.ctx.clock.setTimeout(() => {
      const i = sa.timers.indexOf(handle)
      if (i >= 0) sa.timers.splice(i, 1)
      fn()
    }, ms)
    sa.timers.push(handle)
  }

  /** Arms the timers of an established SA (keep-alive, liveness, rekey, re-authentication). */
  arm(sa: IkeSa): void {
    const { clock, random, init } = this.ctx
    if (sa.nat.localBehindNat && init.keepaliveIntervalMs > 0) {
      const tick = (): void => {
        if (sa.state === 'deleted') return
        if (this.host.isStarted()) this.host.keepalive(sa)
        this.later(sa, tick, init.keepaliveIntervalMs)
      }
      this.later(sa, tick, init.keepaliveIntervalMs)
    }
    const interval = sa.policy.liveness?.intervalMs ?? 0
    if (interval > 0) {
      const tick = (): void => {
        if (sa.state !== 'established') return
        if (clock.monotonic() - sa.lastReceived >= interval) {
          checkLiveness(this.ctx, sa).catch(() => undefined)
        }
        this.later(sa, tick, interval)
      }
      this.later(sa, tick, interval)
    }
    const rekey = (sa.policy.lifetime?.rekeySeconds ?? 0) * 1000
    if (rekey > 0) {
      // up to 10% early, at random, so that two peers with the same lifetime rarely collide
      this.later(
        sa,
        () => {
          if (sa.state === 'established') this.host.rekeyIke(sa).catch(() => undefined)
        },
        rekey - random.randomInt(Math.floor(rekey / 10) + 1)
      )
    }
    // re-authentication (RFC 7296 section 2.8.3), by the original initiator: a new IKE SA with
    // new Child SAs, then the old one is deleted; the deadline survives IKE SA rekeys
    const reauth = (sa.policy.lifetime?.reauthSeconds ?? 0) * 1000
    if (reauth > 0 && sa.initiator) {
      sa.reauthAt ??= clock.monotonic() + reauth - random.randomInt(Math.floor(reauth / 10) + 1)
      this.later(
        sa,
        () => {
          if (sa.state === 'established') this.host.reauthenticate(sa).catch(() => undefined)
        },
        Math.max(0, sa.reauthAt - clock.monotonic())
      )
    }
  }

  /** The ESP engine's soft limit of an outbound SA: its Child SA is rekeyed after a jitter. */
  softExpired(spi: number): void {
    for (const sa of this.ctx.sas()) {
      for (const child of sa.children.values()) {
        if (
          child.outboundSpi === spi &&
          child.rekey.state === 'idle' &&
          sa.state === 'established'
        ) {
          // both peers reach the soft limit together: a random delay makes rekey collisions rare
          const jitter = this.ctx.random.randomInt(2000)
          this.later(
            sa,
            () => {
              if (sa.state === 'established' && sa.children.get(child.id) === child) {
                rekeyChildSa(this.ctx, sa, child).catch(() => undefined)
              }
            },
            jitter
          )
          return
        }
      }
    }
  }

  /** The ESP engine's hard limit of an SA: its Child SA is deleted. */
  hardExpired(spi: number, direction: 'inbound' | 'outbound'): void {
    for (const sa of this.ctx.sas()) {
      for (const child of sa.children.values()) {
        const mine = direction === 'inbound' ? child.inboundSpi : child.outboundSpi
        if (mine === spi) {
          deleteChildSa(this.ctx, sa, child, 'expired').catch(() => undefined)
          return
        }
      }
    }
  }
}
