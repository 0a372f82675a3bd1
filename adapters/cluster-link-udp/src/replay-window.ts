/** Why a counter was refused by a {@link ReplayWindow}. */
export type ReplayVerdict = 'replayed' | 'too-old' | 'stale-incarnation'

/**
 * The anti-replay state of one sender: the incarnation (boot) it is in and a sliding window of
 * the counters seen in it (RFC 4303 §3.4.3 in shape). A frame passes when its incarnation is
 * newer, or it is the same and its counter is above the window's top, or inside the window and
 * not seen yet. {@link ReplayWindow.check} never changes the state: call
 * {@link ReplayWindow.accept} only after the frame's tag verified, so that a forgery cannot move
 * the window.
 */
export class ReplayWindow {
  /** The incarnation the window is for; -1 before the first frame. */
  incarnation = -1
  private top = -1
  private readonly bits: Uint32Array

  /**
   * @param size - how many counters below the highest one are still accepted once; a multiple of 32
   */
  constructor(readonly size: number) {
    this.bits = new Uint32Array(size / 32)
  }

  /**
   * Whether a frame would be accepted.
   *
   * @param incarnation - the sender's incarnation the frame carries
   * @param counter - its counter
   * @returns undefined when it would be, or why not
   */
  check(incarnation: number, counter: number): ReplayVerdict | undefined {
    if (incarnation > this.incarnation) return undefined
    if (incarnation < this.incarnation) return 'stale-incarnation'
    if (counter > this.top) return undefined
    if (this.top - counter >= this.size) return 'too-old'
    return this.has(counter) ? 'replayed' : undefined
  }

  /**
   * Records an authenticated frame that {@link ReplayWindow.check} passed.
   *
   * @param incarnation - its incarnation
   * @param counter - its counter
   */
  accept(incarnation: number, counter: number): void {
    if (incarnation > this.incarnation) {
      this.incarnation = incarnation
      this.top = -1
      this.bits.fill(0)
    }
    if (counter > this.top) {
      if (counter - this.top >= this.size) this.bits.fill(0)
      else for (let c = this.top + 1; c < counter; c++) this.clear(c)
      this.top = counter
    }
    this.set(counter)
  }

  /** Forgets the incarnation and every counter, as if nothing had been received. */
  reset(): void {
    this.incarnation = -1
    this.top = -1
    this.bits.fill(0)
  }

  private index(counter: number): [number, number] {
    const slot = counter % this.size
    return [slot >>> 5, 1 << (slot & 31)]
  }

  private has(counter: number): boolean {
    const [word, bit] = this.index(counter)
    return (this.bits[word]! & bit) !== 0
  }

  private set(counter: number): void {
    const [word, bit] = this.index(counter)
    this.bits[word]! |= bit
  }

  private clear(counter: number): void {
    const [word, bit] = this.index(counter)
    this.bits[word]! &= ~bit
  }
}
