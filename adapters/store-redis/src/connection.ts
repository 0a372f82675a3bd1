import type { Redis } from 'ioredis'
import { AbortError } from '@vipsec/interface'

/** Rejects a call's attempt when its connection closed while the attempt was in flight. */
export class ConnectionLostError extends Error {
  override readonly name = 'ConnectionLostError'
}

/** Rejects an attempt of the replicated mode whose WAIT was not confirmed by enough replicas. */
export class NotReplicatedError extends Error {
  override readonly name = 'NotReplicatedError'
}

/** Rejects a wait that ran out of time. */
export class DeadlineError extends Error {
  override readonly name = 'DeadlineError'
}

/** Whether `err` is the server refusing the credentials or the rights of the connection. */
export function isAuthError(err: unknown): boolean {
  return err instanceof Error && /^(WRONGPASS|NOAUTH|NOPERM|ERR AUTH)/.test(err.message)
}

const noop = (): void => {}

/**
 * Watches one ioredis connection: whether it is ready, a promise that rejects when the current
 * connection closes, waiting for it to be ready again, and the last error it reported.
 */
export class Connection {
  /** The last error the connection reported, for messages. */
  lastError: Error | undefined
  private ready = false
  private closed!: Promise<never>
  private rejectClosed!: (err: Error) => void
  private readonly waiters = new Set<{
    resolve: () => void
    reject: (err: Error) => void
    failOnAuth: boolean
  }>()

  /** @param redis - the connection to watch */
  constructor(readonly redis: Redis) {
    this.renew()
    redis.on('ready', () => {
      this.renew()
      this.ready = true
      for (const waiter of this.waiters) waiter.resolve()
    })
    redis.on('close', () => {
      this.ready = false
      this.rejectClosed(new ConnectionLostError('connection closed'))
    })
    redis.on('error', (err: Error) => {
      this.lastError = err
      if (isAuthError(err)) {
        for (const waiter of this.waiters) if (waiter.failOnAuth) waiter.reject(err)
      }
    })
  }

  /** Whether commands can be sent now. */
  isReady(): boolean {
    // ioredis reports its status before it emits the event: trust only what was emitted
    return this.ready && this.redis.status === 'ready'
  }

  /**
   * Waits until the connection is ready.
   *
   * @param ms - at most this long
   * @param signal - aborts the wait
   * @param failOnAuth - reject as soon as the server refuses the credentials
   */
  async whenReady(ms: number, signal?: AbortSignal, failOnAuth = false): Promise<void> {
    if (this.isReady()) return
    await new Promise<void>((resolve, reject) => {
      const waiter = {
        resolve: () => settle(resolve),
        reject: (err: Error) => settle(() => reject(err)),
        failOnAuth
      }
      const onAbort = (): void => settle(() => reject(new AbortError()))
      const timer = setTimeout(
        () => settle(() => reject(new DeadlineError(`not ready within ${ms} ms`))),
        ms
      )
      const settle = (then: () => void): void => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        this.waiters.delete(waiter)
        then()
      }
      this.waiters.add(waiter)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  /**
   * Settles like `promise`, but rejects with {@link ConnectionLostError} if the connection closes
   * first and with {@link DeadlineError} after `ms`.
   *
   * @param promise - a command sent on this connection
   * @param ms - the time left
   */
  async race<T>(promise: Promise<T>, ms: number): Promise<T> {
    promise.catch(noop)
    let timer: ReturnType<typeof setTimeout> | undefined
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new DeadlineError(`no reply within ${ms} ms`)), ms)
    })
    try {
      return await Promise.race([promise, this.closed, deadline])
    } finally {
      clearTimeout(timer)
    }
  }

  /** Closes the connection at once; pending waits and attempts reject. */
  close(): void {
    this.redis.disconnect()
    for (const waiter of this.waiters) waiter.reject(new ConnectionLostError('closed by stop()'))
  }

  private renew(): void {
    this.closed = new Promise<never>((_, reject) => (this.rejectClosed = reject))
    this.closed.catch(noop)
  }
}
