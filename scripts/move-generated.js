// protons writes proto/x.ts beside proto/x.proto; move each file to its module's pb/ folder
import { renameSync, readdirSync } from 'node:fs'
import { PROTO_DESTINATIONS } from './proto-destinations.js'

for (const f of readdirSync('proto')) {
  if (!f.endsWith('.ts')) continue
  const dir = PROTO_DESTINATIONS[f.replace(/\.ts$/, '.proto')]
  if (dir == null) throw new Error(`no destination for proto/${f}: add it to scripts/proto-destinations.js`)
  renameSync(`proto/${f}`, `${dir}/${f}`)
}
