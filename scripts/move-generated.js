// protons writes proto/x.ts beside proto/x.proto; the code lives in src/protocols/opencloud/pb/
import { renameSync, readdirSync } from 'node:fs'
for (const f of readdirSync('proto')) {
  if (f.endsWith('.ts')) renameSync(`proto/${f}`, `src/protocols/opencloud/pb/${f}`)
}
