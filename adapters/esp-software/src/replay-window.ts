import { InvalidParametersError } from '@vipsec/interface'

/** The largest anti-replay window the engine supports, in packets. */
export const MAX_REPLAY_WINDOW = 4096
/** The default anti-replay window, in packets. */
export const DEFAULT_REPLAY_WINDOW = 128

const TWO_32 = 4294967296
const HALF = 2147483648

/** What {@link ReplayWindow.check} decides about a sequence number. */
export type ReplayVerdict = 'ok' | 'replay' | 'outside-window'

/**
 * An anti-replay sliding window (RFC 4303 section 3.4.3 and appendix A) over 32-bit or extended
 * 64-bit sequence numbers. A sequence number is first {@link check}ed (before the ICV is
 * verified) and, only once the ICV verified, {@link accept}ed. Sequence numbers are handled as a
 * high and a low 32-bit half; with ESN the high half is inferred from the window (appendix A2.2).
 * A window of 0 turns the replay check off (the high half is still inferred).
 */
export class ReplayWindow {
  /** The window size in packets. */
  readonly size: number
  private readonly bits: Uint32Array
  private readonly mask: number
  private topHigh: number
  private topLow: number

  /**
   * @param size - window size in packets, 0 to {@link MAX_REPLAY_WINDOW}
   * @param top - the highest sequence number already received (default 0); every number at or
   *   below it counts as seen
   */
  constructor(size = DEFAULT_REPLAY_WINDOW, top = 0n) {
    if (!Number.isInteger(size) || size < 0 || size > MAX_REPLAY_WINDOW) {
      throw new InvalidParametersError(
        'replayWindow',
        `must be an integer from 0 to ${MAX_REPLAY_WINDOW}`
      )
    }
    this.size = size
    // a ring of bits, a power of two at least one word larger than the window
    let capacity = 64
    while (capacity < size + 32) capacity *= 2
    this.bits = new Uint32Array(capacity / 32)
    this.mask = capacity - 1
    if (typeof top !== 'bigint' || top < 0n || top > 0xffffffffffffffffn) {
      throw new InvalidParametersError('initialSequence', 'must be a bigint from 0 to 2^64-1')
    }
    this.topHigh = Number(top >> 32n)
    this.topLow = Number(top & 0xffffffffn)
    // sequence number 0 is never sent, and a window that starts late takes the past as seen
    if (top === 0n) this.bits[0] = 1
    else this.bits.fill(0xffffffff)
  }

  /** The highest sequence number accepted so far (0 before the first). */
  get top(): bigint {
    return (BigInt(this.topHigh) << 32n) | BigInt(this.topLow)
  }

  /**
   * The high half of a received sequence number's low half, inferred from the top of the window
   * (RFC 4303 appendix A2.2, with the inference span widened from the window size to 2^31): a low
   * half is placed in the subspace that puts it nearest to the top. Packets far below the window
   * thus count as `outside-window` rather than as ICV failures, and a packet is only taken for
   * the next 2^32 block when it is less than 2^31 ahead. Without ESN it is always 0.
   *
   * @param low - the 32 bits from the packet
   * @param esn - whether extended sequence numbers are in use
   */
  inferHigh(low: number, esn: boolean): number {
    if (!esn) return 0
    const tl = this.topLow
    const th = this.topHigh
    if (tl >= HALF - 1) {
      // the span [tl - 2^31 + 1, tl] lies within one subspace
      return low >= tl - HALF + 1 ? th : (th + 1) >>> 0
    }
    // the span reaches into the previous subspace
    return low >= tl - HALF + 1 + TWO_32 && th > 0 ? th - 1 : th
  }

  private difference(high: number, low: number): number {
    return (high - this.topHigh) * TWO_32 + (low - this.topLow)
  }

  /**
   * Decides, before ICV verification, whether a sequence number can be accepted.
   *
   * @param high - its high half (0 without ESN)
   * @param low - its low half
   */
  check(high: number, low: number): ReplayVerdict {
    const d = this.difference(high, low)
    if (d > 0) return 'ok'
    if (this.size === 0) return high === 0 && low === 0 ? 'replay' : 'ok'
    if (-d >= this.size) return 'outside-window'
    const bit = low & this.mask
    return (this.bits[bit >>> 5] & (1 << (bit & 31))) !== 0 ? 'replay' : 'ok'
  }

  /**
   * Records a sequence number whose packet verified: slides the window if it is new.
   *
   * @param high - its high half
   * @param low - its low half
   */
  accept(high: number, low: number): void {
    const d = this.difference(high, low)
    if (d > 0) {
      if (d > this.mask) {
        this.bits.fill(0)
      } else {
        // clear the bits of the numbers skipped over, and of the new top
        let s = (this.topLow + 1) & this.mask
        for (let i = 0; i < d; i++) {
          this.bits[s >>> 5] &= ~(1 << (s & 31))
          s = (s + 1) & this.mask
        }
      }
      this.topHigh = high
      this.topLow = low
    }
    const bit = low & this.mask
    this.bits[bit >>> 5] |= 1 << (bit & 31)
  }
}
