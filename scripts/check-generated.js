// Fails when src/protocols/opencloud/pb/*.ts is stale against proto/*.proto:
// regenerates into a temp dir and compares byte for byte.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, copyFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PROTO_DESTINATIONS } from './proto-destinations.js'

const dir = mkdtempSync(join(tmpdir(), 'decloud-proto-'))
let stale = false
try {
  for (const f of readdirSync('proto').filter(f => f.endsWith('.proto'))) {
    copyFileSync(join('proto', f), join(dir, f))
    execFileSync(process.execPath, ['node_modules/protons/dist/bin/protons.js', join(dir, f)], { stdio: 'inherit' })
    const name = f.replace(/\.proto$/, '.ts')
    const fresh = readFileSync(join(dir, name), 'utf8')
    const dest = PROTO_DESTINATIONS[f]
    if (dest == null) throw new Error(`no destination for proto/${f}: add it to scripts/proto-destinations.js`)
    const committed = readFileSync(join(dest, name), 'utf8')
    if (fresh !== committed) {
      console.error(`stale generated code: ${dest}/${name} differs from proto/${f}; run npm run generate`)
      stale = true
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
}
if (stale) process.exit(1)
console.log('generated protobuf code is up to date')
