/**
 * The lifecycle of every stateful vipsec component. `start()` and `stop()` are idempotent: a
 * second call resolves without effect. After `stop()` every stream the component exposes has
 * completed.
 */
export interface Startable {
  /** Acquires resources and begins work. Resolves when the component is ready. */
  start(): Promise<void>
  /** Releases resources, completes every stream. */
  stop(): Promise<void>
  /** Whether `start()` has completed and `stop()` has not been called since. */
  isStarted(): boolean
}

/**
 * Whether `obj` implements {@link Startable}.
 *
 * @param obj - anything
 */
export function isStartable(obj: unknown): obj is Startable {
  return (
    obj != null &&
    typeof (obj as Startable).start === 'function' &&
    typeof (obj as Startable).stop === 'function' &&
    typeof (obj as Startable).isStarted === 'function'
  )
}

/**
 * Starts every {@link Startable} among `objs`, in order; non-startables are skipped.
 *
 * @param objs - components, in dependency order
 */
export async function start(...objs: unknown[]): Promise<void> {
  for (const obj of objs) {
    if (isStartable(obj)) await obj.start()
  }
}

/**
 * Stops every {@link Startable} among `objs`, in reverse order; non-startables are skipped.
 *
 * @param objs - components, in the order they were started
 */
export async function stop(...objs: unknown[]): Promise<void> {
  for (const obj of [...objs].reverse()) {
    if (isStartable(obj)) await obj.stop()
  }
}
