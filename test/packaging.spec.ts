import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { writeFile, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)
const listHook = fileURLToPath(new URL('./module-list.js', import.meta.url))
// the package root: `decloud` and `decloud/opencloud` resolve from here through package.json "exports"
const root = fileURLToPath(new URL('../../', import.meta.url))

/** what the light entry point must never load */
const HEAVY = /bcoin|\/bdb\/|leveldown|[/-]level\b|\/level\/|abstract-level|@libp2p\/mdns|\/yaml\/|@scure\/btc-signer|bip322|\/dist\/src\/(payments|node|market|dht|store|policy|control|cli)\//

/** imports `specifier` in a fresh node and returns every module it loaded */
async function importAndList (specifier: string, preload: string[] = []): Promise<string[]> {
  const script = `await import(${JSON.stringify(specifier)}); await new Promise((resolve) => setTimeout(resolve, 50))`
  const { stdout } = await run(process.execPath, [...preload, '--import', listHook, '--input-type=module', '-e', script], { cwd: root, timeout: 25_000 })
  const last = stdout.trim().split('\n').pop() ?? ''
  const modules: string[] = JSON.parse(last).modules
  assert.ok(modules.length > 50, `listed only ${modules.length} modules`)
  return modules
}

describe('packaging: what an embedding app loads', () => {
  it('decloud/opencloud loads no bitcoin, chain, LevelDB, mDNS or YAML code, nor decloud\'s node parts', async () => {
    const modules = await importAndList('decloud/opencloud')
    assert.ok(modules.some(m => m.endsWith('/dist/src/opencloud.js')), 'the light entry itself was loaded')
    assert.ok(modules.some(m => m.includes('/dist/src/protocols/opencloud/')), 'the protocol was loaded')
    assert.deepEqual(modules.filter(m => HEAVY.test(m)), [])
  })

  it('the full entry (the check above sees heavy code when it is there) loads LevelDB, mDNS and YAML but not bcoin', async () => {
    const modules = await importAndList('decloud')
    for (const part of ['@libp2p/mdns', '/yaml/', 'classic-level', '@scure/btc-signer', '/dist/src/payments/']) {
      assert.ok(modules.some(m => m.includes(part)), `decloud loads ${part}`)
    }
    assert.deepEqual(modules.filter(m => /node_modules\/(bcoin|bdb|leveldown)\//.test(m)), [])
  })

  it('the light entry exports the embedding API and installs the Promise.withResolvers polyfill', async () => {
    const script = `delete Promise.withResolvers
const oc = await import('decloud/opencloud')
const names = ['openCloud', 'OpenCloudClient', 'sha256Service', 'ServiceError', 'validateService', 'computeCost', 'callPrice', 'reprice', 'QUOTE_VALIDITY', 'Status', 'statusPath', 'PROTOCOL']
console.log(JSON.stringify({ missing: names.filter(n => oc[n] == null), withResolvers: typeof Promise.withResolvers }))`
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: root, timeout: 25_000 })
    assert.deepEqual(JSON.parse(stdout), { missing: [], withResolvers: 'function' })
  })

  describe('without the optional bcoin', () => {
    let dir: string
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'decloud-nobcoin-'))
      // makes require('bcoin') fail as it does where the optional install was skipped
      await writeFile(join(dir, 'hide-bcoin.cjs'), `const Module = require('node:module')
const resolve = Module._resolveFilename
Module._resolveFilename = function (request, ...rest) {
  if (request === 'bcoin') { const err = new Error("Cannot find module 'bcoin'"); err.code = 'MODULE_NOT_FOUND'; throw err }
  return resolve.call(this, request, ...rest)
}`)
    })
    after(async () => { await rm(dir, { recursive: true, force: true }) })

    it('decloud imports, and only the embedded chain fails, with EmbeddedChainUnavailableError saying what to install', async () => {
      const script = `const d = await import('decloud')
let err
try { await d.createChainBackend({ memory: true }) } catch (e) { err = e }
console.log(JSON.stringify({ name: err?.name, isClass: err instanceof d.EmbeddedChainUnavailableError, chainUnavailable: err instanceof d.ChainUnavailableError, message: err?.message }))`
      const { stdout } = await run(process.execPath, ['--require', join(dir, 'hide-bcoin.cjs'), '--input-type=module', '-e', script], { cwd: root, timeout: 25_000 })
      const r = JSON.parse(stdout)
      assert.equal(r.name, 'EmbeddedChainUnavailableError')
      assert.equal(r.isClass, true)
      assert.equal(r.chainUnavailable, true)
      assert.match(r.message, /optional package bcoin/)
      assert.match(r.message, /npm install bcoin/)
      assert.match(r.message, /Cannot find module 'bcoin'/)
    })
  })
})
