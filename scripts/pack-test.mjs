/* eslint-disable no-console */
// The package as an app developer gets it: `npm pack`, a fresh app in a temp
// dir, a plain `npm install` of the tarball (no overrides), then a strict
// TypeScript check of the app and a call between two libp2p nodes through
// `decloud/opencloud` (127.0.0.1 only); the full `decloud` entry is imported
// too. Exits non-zero on any failure.
//
//   node scripts/pack-test.mjs [--scripts] [--node /path/to/node]… [--keep]
//
// --scripts  also pass --dangerously-allow-all-scripts (npm 11's allowScripts
//            gating, as configured on the development machine, skips some
//            packages' install scripts; a user's npm runs them all): the
//            install must succeed either way
// --with-bcoin  also follow the docs' recipe for the embedded regtest chain
//            (bcoin is an optional peer dependency, not installed by
//            default): "overrides": { "leveldown": "^6.1.1" } in the app and
//            npm install bcoin@1.0.2; the app then opens the chain. Slower:
//            bcoin's native helpers try to compile
// --node     run the app with this node binary as well (e.g. Node 22 or 24)
// --keep     leave the temp dir for a look
//
// Needs a built dist/ (`npm run test:pack` builds first). Installs go to the
// registry with --prefer-offline, so a warm npm cache makes them quick.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(fileURLToPath(new URL('..', import.meta.url)))
const args = process.argv.slice(2)
const withScripts = args.includes('--scripts')
const keep = args.includes('--keep')
const withBcoin = args.includes('--with-bcoin')
const nodes = [process.execPath]
for (let i = 0; i < args.length; i++) { if (args[i] === '--node') { nodes.push(resolve(args[++i])) } }

const started = Date.now()
const step = (msg) => { console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`) }
const npm = (cwd, npmArgs, opts = {}) => execFileSync('npm', npmArgs, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000, ...opts })

function main () {
  const dir = mkdtempSync(join(tmpdir(), 'decloud-pack-'))
  try {
    if (!existsSync(join(root, 'dist/src/opencloud.js'))) { throw new Error('dist/ is not built: run npm run build first') }
    // --ignore-scripts: `prepare` would build again
    npm(root, ['pack', '--ignore-scripts', '--silent', '--pack-destination', dir])
    const tgz = readdirSync(dir).find(f => /^decloud-.*\.tgz$/.test(f))
    if (tgz == null) { throw new Error('npm pack made no decloud-*.tgz') }
    step(`packed ${tgz}`)

    const app = join(dir, 'app')
    execFileSync('mkdir', [app])
    const pkg = { name: 'decloud-pack-test-app', version: '1.0.0', private: true, type: 'module' }
    // the override bcoin 1.0.2 needs (docs/chain.md): npm applies only the app's own overrides
    if (withBcoin) { pkg.overrides = { leveldown: '^6.1.1' } }
    writeFileSync(join(app, 'package.json'), JSON.stringify(pkg, null, 2))
    // the app's own libp2p stack; libp2p and @libp2p/interface are decloud's peer dependencies, so it shares them
    const install = ['install', join(dir, tgz), 'libp2p', '@libp2p/interface', '@libp2p/tcp', '@chainsafe/libp2p-noise', '@libp2p/yamux',
      '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error']
    if (withScripts) { install.push('--dangerously-allow-all-scripts=true') }
    if (withBcoin) { install.push('bcoin@1.0.2') }
    try {
      npm(app, install)
    } catch (err) {
      console.error(err.stdout, err.stderr)
      throw new Error(`npm install failed in the app${withScripts ? ' (install scripts enabled)' : ''}`)
    }
    const ls = JSON.parse(npm(app, ['ls', '--all', '--json', '--silent']).toString() || '{}')
    const count = new Set()
    const walk = (deps) => { for (const [name, d] of Object.entries(deps ?? {})) { count.add(`${name}@${d.version}`); walk(d.dependencies) } }
    walk(ls.dependencies)
    const bcoin = existsSync(join(app, 'node_modules/bcoin/package.json'))
    step(`installed: ${count.size} packages${withScripts ? ' (install scripts enabled)' : ''}; bcoin (optional peer) ${bcoin ? 'installed' : 'not installed'}`)
    if (bcoin !== withBcoin) { throw new Error(`bcoin is ${bcoin ? '' : 'not '}installed`) }

    // a strict TypeScript consumer: the light entry's types resolve and type-check
    writeFileSync(join(app, 'app.ts'), APP_TS)
    writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'node16', moduleResolution: 'node16', strict: true, noEmit: true, skipLibCheck: true, types: ['node'], typeRoots: [join(root, 'node_modules/@types')] },
      files: ['app.ts']
    }))
    execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: app, stdio: 'inherit', timeout: 120_000 })
    step('app.ts type-checks (strict) against decloud/opencloud')

    writeFileSync(join(app, 'app.mjs'), APP_MJS)
    for (const node of nodes) {
      const version = execFileSync(node, ['--version'], { encoding: 'utf8' }).trim()
      const result = JSON.parse(execFileSync(node, ['app.mjs'], { cwd: app, encoding: 'utf8', timeout: 60_000 }).trim().split('\n').pop())
      step(`node ${version}: ${JSON.stringify(result)}`)
      if (withBcoin !== result.chain.startsWith('embedded regtest')) { throw new Error(`embedded chain: ${result.chain}`) }
    }
    step('ok')
  } finally {
    if (keep) { console.log(`kept ${dir}`) } else { rmSync(dir, { recursive: true, force: true }) }
  }
}

// Type-checked only: what an app in strict TypeScript writes
const APP_TS = `import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { openCloud, sha256Service, ServiceError, Status, computeCost } from 'decloud/opencloud'
import type { OpenCloud, ServiceDefinition, CallResult } from 'decloud/opencloud'

const echo: ServiceDefinition = {
  name: 'echo',
  version: '1.0.0',
  description: 'returns the body',
  methods: {
    echo: {
      description: 'returns the body',
      units: ['byte'],
      pricing: { base: 0n, rate: 1n, per: 1000n },
      usage: (call) => [BigInt(call.body.byteLength)],
      handler: (call) => {
        if (call.body.byteLength === 0) { throw new ServiceError(Status.BAD_REQUEST, 'empty') }
        return { body: call.body }
      }
    }
  }
}

export async function run (): Promise<CallResult> {
  const node = await createLibp2p<{ opencloud: OpenCloud }>({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { opencloud: openCloud({ services: [sha256Service(), echo] }) }
  })
  const cost: bigint = computeCost(echo.methods.echo.pricing, [10n]).total
  const r = await node.services.opencloud.call(node.getMultiaddrs()[0], { service: 'echo', method: 'echo', body: new Uint8Array(Number(cost)) })
  await node.stop()
  return r
}
`

// Run with each node: two libp2p nodes, one call through the light entry point
const APP_MJS = `import { createHash } from 'node:crypto'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { openCloud, sha256Service, Status } from 'decloud/opencloud'

const node = (services) => createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { opencloud: openCloud({ services }) }
})
const seller = await node([sha256Service()])
const buyer = await node([])
const body = new TextEncoder().encode('packed, installed, called')
const r = await buyer.services.opencloud.call(seller.getMultiaddrs()[0], { service: 'sha256', method: 'hash', body })
await buyer.stop()
await seller.stop()
const hash = Buffer.from(r.body).toString('hex')
if (r.status !== Status.OK || hash !== createHash('sha256').update(body).digest('hex')) { throw new Error('wrong answer: ' + r.path) }

// the full entry imports too; the embedded chain works or says what it needs
const full = await import('decloud')
let chain
try {
  const c = await full.createChainBackend({ memory: true })
  chain = 'embedded regtest at height ' + await c.height()
  await c.close()
} catch (err) {
  if (!(err instanceof full.EmbeddedChainUnavailableError)) { throw err }
  chain = 'unavailable: ' + err.message.slice(0, 80) + '…'
}
console.log(JSON.stringify({ call: r.path, hash: hash.slice(0, 16) + '…', fullEntry: Object.keys(full).length + ' exports', chain }))
`

main()
