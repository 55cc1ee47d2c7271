import { isFileId } from '../../files/manifest.js'
import { EXIT, UsageError, commonOptions, commonUsage, err, out, parse, readCommon } from '../command.js'
import { filesError, runningClient } from '../files.js'
import type { Command } from '../command.js'

const usage = `usage: decloud rm ID [options]

Removes a file stored with decloud put: the running node asks each seller to
delete its pieces (sellers that cannot be reached keep theirs until their
lease ends) and forgets the file. Renewals and payments for it stop.

options:
${commonUsage('json', 'data-dir')}
`

export const command: Command = {
  name: 'rm',
  summary: 'remove a file stored with decloud put: decloud rm ID',
  usage,
  async run (argv) {
    const { values, positionals } = parse(argv, { ...commonOptions('json', 'data-dir') })
    if (positionals.length !== 1) { throw new UsageError('usage: decloud rm ID (see decloud rm --help)') }
    const id = positionals[0]
    if (!isFileId(id)) { throw new UsageError(`"${id}" is not a file id (32 hex characters, as decloud put printed)`) }
    const { dataDir, json } = readCommon(values)
    const client = await runningClient(dataDir)
    const r = await client.removeFile(id).catch(e => { throw filesError(e, dataDir) })
    if (json) {
      await out(JSON.stringify(r, null, 2) + '\n')
    } else {
      await err(`decloud: removed ${id}: ${r.deleted} piece${r.deleted === 1 ? '' : 's'} deleted${r.failed > 0 ? `, ${r.failed} at sellers that did not answer (kept until their lease ends)` : ''}`)
    }
    return EXIT.OK
  }
}
