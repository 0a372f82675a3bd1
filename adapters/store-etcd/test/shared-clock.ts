/**
 * The clock that the partition spec and its client processes share, so that their times can be
 * compared: the host's monotonic clock (`CLOCK_MONOTONIC`, which `process.hrtime` reads on Linux;
 * network namespaces do not change it), in milliseconds.
 *
 * `performance.timeOrigin + performance.now()` is not such a clock: each process fixes its
 * origin from the wall clock when it starts and counts on from there monotonically, so a step of
 * the wall clock between the starts of two processes puts one ahead of the other by the step for
 * good. The spec's process (mocha, running every system spec in turn) starts many minutes before
 * the clients it spawns.
 *
 * @module
 */

/** Milliseconds of the host's monotonic clock, the same in every process of the host. */
export const sharedNow = (): number => Number(process.hrtime.bigint()) / 1e6
