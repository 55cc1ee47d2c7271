import { isFileId } from '../../files/manifest.js'
import { EXIT, UsageError, commonOptions, commonUsage, out, parse, readCommon, terminalSafe } from '../command.js'
import { filesError, formatBytes, runningClient } from '../files.js'
import type { Command } from '../command.js'

const usage = `usage: decloud status ID [options]

Shows how a file stored with decloud put is doing: per segment, the pieces
the sellers still hold of N (asked now, unless --no-check), and what it cost.
(Last audit and next renewal come with storage leases.)

options:
  --no-check             show what the manifest records without asking the sellers
${commonUsage('json', 'data-dir')}
`

export const command: Command = {
  name: 'status',
  summary: 'how a stored file is doing: pieces alive per segment, cost: decloud status ID',
  usage,
  async run (argv) {
    const { values, positionals } = parse(argv, { 'no-check': { type: 'boolean', default: false }, ...commonOptions('json', 'data-dir') })
    if (positionals.length !== 1) { throw new UsageError('usage: decloud status ID (see decloud status --help)') }
    const id = positionals[0]
    if (!isFileId(id)) { throw new UsageError(`"${id}" is not a file id (32 hex characters, as decloud put printed)`) }
    const { dataDir, json } = readCommon(values)
    const client = await runningClient(dataDir)
    const s = await client.fileStatus(id, values['no-check'] !== true).catch(e => { throw filesError(e, dataDir) })
    if (json) {
      await out(JSON.stringify(s, null, 2) + '\n')
      return EXIT.OK
    }
    const lines = [
      `${s.id}${s.name != null ? ` (${s.name})` : ''}: ${formatBytes(s.size)}, ${s.k} of ${s.n}, ${s.state}, cost ${s.cost} sat, on ${s.sellers.length} sellers`,
      'segment  size        pieces  cost (sat)  last audit        next renewal'
    ]
    for (const g of s.segments) {
      const pieces = g.alive != null ? `${g.alive}/${s.n}` : `${g.pieces}/${s.n}?`
      // minutes are enough to read a schedule: 2026-12-06 07:47
      const when = (t: string | null | undefined): string => t == null ? '-' : t.slice(0, 16).replace('T', ' ')
      lines.push(`${String(g.index).padEnd(7)}  ${formatBytes(g.size).padEnd(10)}  ${pieces.padEnd(6)}  ${g.cost.padEnd(10)}  ${when(g.lastAudit).padEnd(16)}  ${when(g.nextRenewal)}`)
    }
    const weakest = Math.min(...s.segments.map(g => g.alive ?? g.pieces))
    if (s.segments.length > 0 && weakest < s.n) { lines.push(`weakest segment: ${weakest} of ${s.n} pieces${weakest < s.k ? ' (LOST: fewer than k)' : ''}`) }
    await out(terminalSafe(lines.join('\n') + '\n'))
    return EXIT.OK
  }
}
