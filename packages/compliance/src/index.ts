/**
 * Compliance suites for the contracts of `@vipsec/interface`. Every adapter runs the suite of its
 * contract from a short `test/compliance.spec.ts`; a suite is a function that declares mocha
 * tests, so it runs inside the adapter's own test run. Each suite lives at a subpath:
 * `@vipsec/compliance/coupling-store`, `@vipsec/compliance/clock`,
 * `@vipsec/compliance/random-source`, and one for each further contract.
 *
 * @example Running the coupling-store suite against an adapter
 * ```ts
 * import { couplingStoreSuite } from '@vipsec/compliance/coupling-store'
 * import { MemoryCouplingStore } from '@vipsec/store-memory'
 *
 * describe('MemoryCouplingStore compliance', () => {
 *   couplingStoreSuite({
 *     setup: () => new MemoryCouplingStore(),
 *     teardown: async (store) => { await store.stop() }
 *   })
 * })
 * ```
 *
 * @packageDocumentation
 */
export { runSuiteInChild, type ChildSuiteResult } from './run-suite-in-child.js'
export type { TestSetup } from './test-setup.js'
