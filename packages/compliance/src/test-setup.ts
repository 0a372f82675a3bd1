/** How a compliance suite gets a fresh instance of the component under test, and disposes of it. */
export interface TestSetup<T> {
  /** Returns a new, not yet started instance; called before each test. */
  setup(): T | Promise<T>
  /**
   * Releases what `setup` made (stop the instance, close connections); called after each test.
   *
   * @param instance - what `setup` returned
   */
  teardown?(instance: T): void | Promise<void>
}
