import { EXIT, UsageError, commonOptions, commonUsage, out, parse, readCommon, terminalSafe } from '../command.js'
import { filesError, formatBytes, runningClient } from '../files.js'
import type { Command } from '../command.js'

const usage = `usage: decloud ls [options]

Lists the files the running node keeps (decloud put): id, size, redundancy,
state, cost, when stored, name.

options:
${commonUsage('json', 'data-dir')}
`

export const command: Command = {
  name: 'ls',
  summary: 'list the files stored with decloud put',
  usage,
  async run (argv) {
    const { values, positionals } = parse(argv, { ...commonOptions('json', 'data-dir') })
    if (positionals.length !== 0) { throw new UsageError('usage: decloud ls (see decloud ls --help)') }
    const { dataDir, json } = readCommon(values)
    const client = await runningClient(dataDir)
    const { files } = await client.files().catch(e => { throw filesError(e, dataDir) })
    if (json) {
      await out(JSON.stringify({ files }, null, 2) + '\n')
      return EXIT.OK
    }
    if (files.length === 0) {
      await out('no files (store one with decloud put FILE)\n')
      return EXIT.OK
    }
    const rows = files.map(f => [f.id, formatBytes(f.size), `${f.k}/${f.n}`, f.state, `${f.cost} sat`, f.created.slice(0, 19).replace('T', ' '), f.name ?? ''])
    const head = ['id', 'size', 'k/n', 'state', 'cost', 'stored (UTC)', 'name']
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map(r => r[i].length)))
    const line = (r: string[]): string => r.map((c, i) => i === r.length - 1 ? c : c.padEnd(widths[i])).join('  ').trimEnd()
    // names were typed by the user but may hold anything
    await out(terminalSafe([line(head), ...rows.map(line)].join('\n') + '\n'))
    return EXIT.OK
  }
}
