#!/usr/bin/env node
// The decloud command line. The TypeScript build (`npm run build`, run by
// `npm ci` through the `prepare` script) produces dist/.
let cli
try {
  cli = await import('../dist/src/cli/main.js')
} catch (err) {
  if (err?.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/src/cli/main.js')) {
    process.stderr.write('decloud: not built yet: run `npm run build` in the decloud package\n')
    process.exit(1)
  }
  throw err
}
await cli.run(process.argv.slice(2))
