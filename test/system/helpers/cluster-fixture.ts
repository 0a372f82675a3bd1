// The real-cluster fixture of the system tests, for the specs here: it is one module,
// packages/cli/test/helpers/cluster-fixture.ts (the CLI's test project cannot import from test/,
// which references it), exported as `@vipsec/cli/test/cluster-fixture`.
export * from '@vipsec/cli/test/cluster-fixture'
