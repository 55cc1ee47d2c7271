import { EXIT, UsageError, commonOptions, commonUsage, err, out, parse, readCommon } from '../command.js'
import { filesError, runningClient } from '../files.js'
import type { Command } from '../command.js'

const usage = `usage: decloud restore [options]

Finds the files stored with decloud put again, from the seed alone: the running
node looks up the encrypted catalog its wallet's seed words published on the
network (a DHT record only that seed can sign and read, pointing at catalog
pieces held by sellers) and writes back every file it does not know yet.
Start the node on a data dir holding the same seed words (a node started with
--no-payments keys its files from its node key: the same key file).
decloud ls then lists the files, decloud get fetches them.

options:
${commonUsage('json', 'data-dir')}
`

export const command: Command = {
  name: 'restore',
  summary: 'find the files of this node\'s seed again (an empty data dir with the same seed words)',
  usage,
  async run (argv) {
    const { values, positionals } = parse(argv, { ...commonOptions('json', 'data-dir') })
    if (positionals.length !== 0) { throw new UsageError('decloud restore takes no argument (see decloud restore --help)') }
    const { dataDir, json } = readCommon(values)
    const client = await runningClient(dataDir)
    const r = await client.restoreFiles().catch(e => { throw filesError(e, dataDir) })
    if (json) {
      await out(JSON.stringify(r, null, 2) + '\n')
    } else {
      await err(`decloud: the catalog lists ${r.files} file${r.files === 1 ? '' : 's'}; ${r.restored.length} restored`)
      for (const id of r.restored) { await out(`${id}\n`) }
    }
    return EXIT.OK
  }
}
