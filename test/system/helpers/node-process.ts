// The `vipsec node` process helper of the system tests under its older name: it is one module,
// packages/cli/test/helpers/vipsec-process.ts (import `VipsecProcess` from
// `@vipsec/cli/test/vipsec-process` in new code).
export { VipsecProcess as NodeProcess } from '@vipsec/cli/test/vipsec-process'
