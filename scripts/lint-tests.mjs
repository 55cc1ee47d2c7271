// Advisory review aid for test files: prints file:line for patterns that
// make a test weaker than it reads. Always exits 0; a hit is a place to
// look at, not necessarily a bug.
//
//   node scripts/lint-tests.mjs [file or dir ...]   (default: test/)
//
// Patterns:
//   guarded      an assertion that runs only when a value is present
//                (`if (x != null) { assert… }`): when x is missing the test
//                passes without checking anything
//   conditional  an assertion under any other `if` on the same or next line
//   sleep-then-negative
//                a fixed sleep followed by a negative or "unchanged"
//                assertion: it passes whether the thing never happens or
//                simply happens later; await the event, or first show the
//                positive case is observable in the same setup
//   unbounded-poll
//                a `while` loop that sleeps and has no deadline in its
//                condition: when broken it fails only by mocha's timeout
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'

const ASSERTION = /\b(assert(\.\w+)?|expect)\s*\(/
const NULL_GUARD = /\bif\s*\([^)]*(!==?\s*(null|undefined)|\?\.)[^)]*\)/
const ANY_IF = /\bif\s*\(/
const SLEEP = /await\s+(sleep|delay|setTimeoutPromise)\s*\(|await\s+new\s+Promise\s*\(\s*\(?\s*\w+\s*\)?\s*=>\s*setTimeout\s*\(/
const LOOP_OR_IF = /\b(while|for|if)\s*\(/
const NEGATIVE = [
  /assert\.ok\s*\(\s*!/,
  /assert\.(equal|strictEqual|deepEqual)\s*\(.*,\s*(0n?|false|undefined|null|\[\])\s*(,.*)?\)\s*$/,
  /assert\.(notEqual|notDeepEqual|doesNotMatch|doesNotReject|doesNotThrow)\s*\(/,
  /\.length,\s*0\s*[,)]/,
  /assert\.(equal|deepEqual)\s*\(.*,\s*\w*[Bb]efore\w*\s*(,.*)?\)/
]
const DEADLINE = /deadline|Date\.now\(\)|\.aborted\b|\bi\s*<|\btries\b|\battempts?\b/
const LOOKAHEAD = 3

function files (paths) {
  const out = []
  for (const p of paths) {
    if (statSync(p).isDirectory()) {
      out.push(...files(readdirSync(p).map(f => join(p, f))))
    } else if (/\.(spec\.)?[cm]?[jt]s$/.test(p) && !p.endsWith('.d.ts')) {
      out.push(p)
    }
  }
  return out
}

/**
 * The next lines after one, skipping blanks, closing braces and comments
 *
 * @param {string[]} lines - the file
 * @param {number} i - index of the line to look past
 * @param {number} n - how many lines to return at most
 * @returns {Array<[number, string]>} index and text of each
 */
function following (lines, i, n) {
  const out = []
  for (let j = i + 1; j < lines.length && out.length < n; j++) {
    const t = lines[j].trim()
    if (t === '' || t === '}' || t.startsWith('//')) { continue }
    out.push([j, lines[j]])
  }
  return out
}

const hits = []
const args = process.argv.slice(2)
for (const file of files(args.length > 0 ? args : ['test'])) {
  const lines = readFileSync(file, 'utf8').split('\n')
  const at = (i, kind, text) => { hits.push(`${relative(process.cwd(), file)}:${i + 1}: ${kind}: ${text.trim().slice(0, 120)}`) }
  lines.forEach((line, i) => {
    // an `if` whose body (same line, or the next line) is an assertion
    if (ANY_IF.test(line) && !/^\s*\/\//.test(line)) {
      const body = line.slice(line.search(ANY_IF))
      const next = lines[i + 1] ?? ''
      const asserts = (/\)\s*\{?\s*(assert|expect)\b/.test(body) && ASSERTION.test(body)) || (/\{\s*$/.test(line) && /^\s*(assert|expect)\b/.test(next))
      if (asserts) { at(i, NULL_GUARD.test(line) ? 'guarded' : 'conditional', line) }
    }
    if (SLEEP.test(line)) {
      if (/\bwhile\s*\(/.test(line) && !DEADLINE.test(line)) {
        at(i, 'unbounded-poll', line)
        return
      }
      // the only statement of a loop body opened on the line before
      const opener = lines[i - 1] ?? ''
      if (/\b(while|for)\s*\(.*\{\s*$/.test(opener)) {
        if (/\bwhile\s*\(/.test(opener) && !DEADLINE.test(opener)) { at(i - 1, 'unbounded-poll', opener) }
        return
      }
      // a sleep inside a polling loop or a branch is not a fixed wait before a check
      if (LOOP_OR_IF.test(line)) { return }
      for (const [j, l] of following(lines, i, LOOKAHEAD)) {
        if (NEGATIVE.some(re => re.test(l))) {
          at(j, 'sleep-then-negative', `after the sleep on line ${i + 1}: ${l}`)
          break
        }
      }
    }
  })
}
for (const h of hits) { process.stdout.write(h + '\n') }
process.stdout.write(`${hits.length} place${hits.length === 1 ? '' : 's'} to look at (advisory)\n`)
