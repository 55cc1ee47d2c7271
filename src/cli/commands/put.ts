import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { basename } from 'node:path'
import { parseRedundancy } from '../../files/redundancy.js'
import { parseMax } from '../../payments/buyer/pay-option.js'
import { CliError, EXIT, UsageError, commonOptions, commonUsage, err, out, parse, readCommon } from '../command.js'
import { filesError, formatBytes, parseDuration, progressBar, runningClient } from '../files.js'
import type { Command } from '../command.js'

const usage = `usage: decloud put FILE|- [options]

Stores a file of any size through the running node: it is cut into segments,
encrypted with a key derived from the wallet's seed words, erasure-coded K of
N, and each segment's N pieces go to N distinct sellers (cheapest and most
reliable first, found through the market and the DHT). Any K pieces of each
segment give it back. Prints the file id on stdout; progress goes to stderr.
- reads stdin. Nothing of the file is held whole in memory.

options:
  --redundancy K/N       any K of N pieces rebuild each segment (default: from the
                         number of sellers found: 10/30, 8/16, 6/12, 4/8, 3/6 or 2/4;
                         fewer than 4 sellers is refused unless you ask for less)
  --duration D           how long to store it: 30d (default), 12h, 90m, 3600s
  --max-price SATS       the most paid or promised for one piece (default 1000)
  --name NAME            a name to show in decloud ls (default: the file's name)
${commonUsage('json', 'data-dir')}
                         --json prints {id, size, k, n, segments, sellers, cost, expiry}

exit codes: 0 stored · 1 failed (too few sellers, a payment refused…) · 2 bad
            command line · 3 the node did not answer

examples:
  decloud put photo.jpg
  decloud put backup.tar --redundancy 4/8 --json
  tar c docs | decloud put - --name docs.tar
`

export const command: Command = {
  name: 'put',
  summary: 'store a file of any size, encrypted and erasure-coded across sellers: decloud put FILE|-',
  usage,
  async run (argv) {
    const { values, positionals } = parse(argv, {
      redundancy: { type: 'string' },
      duration: { type: 'string' },
      'max-price': { type: 'string' },
      name: { type: 'string' },
      ...commonOptions('json', 'data-dir')
    })
    if (positionals.length !== 1) { throw new UsageError('usage: decloud put FILE|- (see decloud put --help)') }
    const file = positionals[0]
    const { dataDir, json } = readCommon(values)
    if (values.redundancy != null) {
      try {
        parseRedundancy(values.redundancy)
      } catch (e: any) {
        throw new UsageError(`--redundancy: ${String(e.message)}`)
      }
    }
    const duration = values.duration != null ? parseDuration(values.duration) : undefined
    let maxPrice: bigint | undefined
    if (values['max-price'] != null) {
      try {
        maxPrice = parseMax(values['max-price'])
      } catch (e: any) {
        throw new UsageError(`--max-price: ${String(e.message)}`)
      }
    }
    let size: number | undefined
    let source: AsyncIterable<Uint8Array>
    if (file === '-') {
      source = process.stdin
    } else {
      try {
        const s = await stat(file)
        if (s.isDirectory()) { throw new CliError(`cannot read ${file}: it is a directory (tar it: tar c DIR | decloud put -)`) }
        if (s.isFile()) { size = s.size }
      } catch (e: any) {
        if (e instanceof CliError) { throw e }
        throw new CliError(`cannot read ${file}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`)
      }
      source = createReadStream(file)
    }
    const client = await runningClient(dataDir)
    const bar = progressBar('put', size)
    let r
    try {
      r = await client.putFile(source, {
        ...(values.redundancy != null ? { redundancy: values.redundancy } : {}),
        ...(duration != null ? { duration } : {}),
        ...(maxPrice != null ? { maxPrice } : {}),
        ...(values.name != null ? { name: values.name } : file !== '-' ? { name: basename(file) } : {})
      }, { onSent: (b) => { bar.update(b) } })
    } catch (e: any) {
      throw filesError(e, dataDir)
    } finally {
      bar.stop()
    }
    if (json) {
      await out(JSON.stringify(r, null, 2) + '\n')
      return EXIT.OK
    }
    await err(`decloud: stored ${formatBytes(r.size)} as ${r.segments} segment${r.segments === 1 ? '' : 's'}, ${r.k} of ${r.n} pieces each, on ${r.sellers.length} sellers; cost ${r.cost} sat`)
    await out(r.id + '\n')
    return EXIT.OK
  }
}
