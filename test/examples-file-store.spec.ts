import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { couplingStoreSuite } from '@vipsec/compliance/coupling-store'
import { FileCouplingStore } from '../examples/file-coupling-store.js'

describe('examples/file-coupling-store.ts: FileCouplingStore', () => {
  const dirs = new Map<FileCouplingStore, string>()

  couplingStoreSuite({
    setup: () => {
      const dir = mkdtempSync(join(tmpdir(), 'vipsec-file-store-test-'))
      const store = new FileCouplingStore(join(dir, 'coupling.json'))
      dirs.set(store, dir)
      return store
    },
    teardown: async (store) => {
      rmSync(dirs.get(store as FileCouplingStore)!, { recursive: true, force: true })
      dirs.delete(store as FileCouplingStore)
    },
    // Damages a record in the file itself, as a disk or another writer could.
    corrupt: async (store, dvipa, kind, id, bytes) => {
      const path = (store as FileCouplingStore).path
      const state = JSON.parse(readFileSync(path, 'utf8'))
      state.dvipas[dvipa].records[`${kind}/${id}`] = Buffer.from(bytes).toString('base64')
      writeFileSync(path, JSON.stringify(state))
    }
  })
})
