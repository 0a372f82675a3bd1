import { randomSourceSuite } from '@vipsec/compliance/random-source'
import { CryptoRandomSource, SeededRandomSource } from '../src/index.js'

describe('CryptoRandomSource', () => {
  randomSourceSuite({ setup: () => new CryptoRandomSource() })
})

describe('SeededRandomSource', () => {
  randomSourceSuite({ setup: () => new SeededRandomSource({ seed: 'compliance' }) })
})
