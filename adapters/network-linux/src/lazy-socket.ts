/** Something that can be closed, such as the route and packet sockets. */
interface Closable {
  close(): void
}

/**
 * The socket a component option chooses: the caller's own, or one this holder opens on first
 * use (and closes in {@link close}), or none.
 */
export class LazySocket<T extends Closable> {
  /** `true`: one of its own; `false`/`null`: none; or the caller's. */
  private readonly choice: T | boolean | null
  private own: T | undefined

  /**
   * @param given - the caller's socket, `null` for none, or undefined for the default
   * @param openByDefault - whether the default is a socket of its own (else none)
   * @param open - opens one; undefined when it cannot be had (asked again on the next use)
   */
  constructor(
    given: T | null | undefined,
    openByDefault: boolean,
    private readonly open: () => T | undefined
  ) {
    this.choice = given === undefined ? openByDefault : given
  }

  /** The socket, opened now if it is one of its own not open yet; undefined for none. */
  get(): T | undefined {
    if (this.choice === false || this.choice === null) return undefined
    if (this.choice !== true) return this.choice
    this.own ??= this.open()
    return this.own
  }

  /** Closes the socket it opened, if any (the caller's stays open); {@link get} opens anew. */
  close(): void {
    this.own?.close()
    this.own = undefined
  }
}
