#!/usr/bin/env node
/**
 * Runs every command of README.md literally, in order, as a newcomer would
 * paste them: the lines of each ```sh block, in one bash session (so
 * `A=$(…)` set in one block is there in the next), from the repository root,
 * with a fresh empty HOME (so the default data dir ~/.decloud is new) and
 * the user's DECLOUD_* variables removed. Fails on the first command that
 * exits non-zero.
 *
 * Long-running commands (`npx decloud node …`, `npx decloud chain serve …`),
 * which the README runs in shells of their own, start in the background, each
 * in its own process group; the next line runs once the command printed its
 * ready line (`listening on` / `chain rpc:`). At the end they get SIGINT, as
 * Ctrl-C would send, and must exit 0 (or 130, which is how npm exec reports a
 * child that stopped on SIGINT).
 *
 * Not run (each is printed as skipped): `npm ci` (the README's first line is
 * `npm ci && npx decloud node`; the `npx decloud node` part runs), and the
 * Development commands CI runs on its own or that are not pass/fail checks:
 * `npm test`, `npm run build`, `npm run lint`, `npm run generate` (rewrites
 * files of the checkout), `npm run bench` (minutes of measurements). The
 * checkout must have been installed (`npm ci`) before.
 *
 * npm runs with the update notifier off and prefers the user's npm cache: only
 * the embedding example's `npm install` may reach the npm registry, for what
 * the cache lacks; every node dials 127.0.0.1 only (the README's nodes
 * bootstrap off each other).
 *
 *   node scripts/readme-literal.mjs [--direct] [--timeout SECONDS]
 *
 * --timeout (default 600 s) guards against a hang; then every process the
 * script started is killed. Measured on the shared 2-core development
 * machine: 169 s as written (load average 3–7; `npx` adds npm's start-up to
 * every command, and its first call installs and builds the checkout in
 * npm's exec cache), 64 s with --direct; 301 s as written at load ~10.
 *
 * --direct runs `node bin/decloud.js` where the README says `npx decloud`
 * (quicker on a loaded machine; CI runs without it).
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { homedir, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)))
const args = process.argv.slice(2)
const direct = args.includes('--direct')
const timeoutArg = args.indexOf('--timeout')
const LIMIT_S = timeoutArg >= 0 ? Number(args[timeoutArg + 1]) : 600

/** commands not run, with why */
const SKIP = new Map([
  ['npm ci', 'installs the checkout; run before this script'],
  ['npm test', 'CI runs it on its own'],
  ['npm run build', 'npm test builds; CI runs it'],
  ['npm run lint', 'CI runs it on its own'],
  ['npm run generate', 'rewrites generated files of the checkout (npm test checks they are fresh)'],
  ['npm run bench', 'minutes of measurements, not a pass/fail check']
])

/** long-running commands and the line that says they are ready */
const BACKGROUND = [
  { re: /^npx decloud node\b/, ready: 'listening on ' },
  { re: /^npx decloud chain serve\b/, ready: 'chain rpc: ' }
]

/**
 * The lines of README.md's ```sh blocks, in order
 *
 * @param {string} markdown - the README
 * @param markdown
 * @param markdown
 * @param markdown
 * @param markdown
 * @param markdown
 * @param markdown
 * @param markdown
 * @param markdown
 * @param markdown
 * @param markdown
 */
function shLines (markdown) {
  const lines = []
  let inSh = false
  for (const line of markdown.split('\n')) {
    if (!inSh && /^```sh\s*$/.test(line)) { inSh = true; continue }
    if (inSh && /^```\s*$/.test(line)) { inSh = false; continue }
    if (inSh) { lines.push(line) }
  }
  return lines
}

/**
 * The command of a line without its trailing comment (only to classify it; the line runs as written)
 *
 * @param {string} line - a line of a sh block
 */
function commandPart (line) {
  return line.replace(/\s+#\s.*$/, '').replace(/^#.*$/, '').trim()
}

const q = (s) => `'${s.replace(/'/g, "'\\''")}'`

function script (lines, logDir) {
  /* eslint-disable no-template-curly-in-string -- bash, not JavaScript templates */
  const out = [
    'set -m', // each background job in its own process group, stopped as a whole
    `cd ${q(ROOT)}`,
    'JOBS=()',
    'fail () { echo "readme-literal: FAILED: $1" >&2; exit 1; }',
    'TREE_BEFORE=$(git diff | sha1sum)',
    'wait_ready () { # pid pattern file what',
    '  for i in $(seq 1 1200); do',
    '    grep -q "$2" "$3" 2>/dev/null && return 0',
    '    kill -0 "$1" 2>/dev/null || { cat "$3" "$3.err" >&2; fail "$4 exited before printing \\"$2\\""; }',
    '    sleep 0.1',
    '  done',
    '  cat "$3" "$3.err" >&2; fail "$4 printed no \\"$2\\" in 120 s"',
    '}',
    'stop_all () {',
    '  local bad=0',
    '  for (( i=${#JOBS[@]}-1; i>=0; i-- )); do',
    '    local pid=${JOBS[$i]}',
    '    kill -INT -- -"$pid" 2>/dev/null',
    '    wait "$pid"; local rc=$?',
    // 130: npm exec (npx) reports its child's SIGINT stop so even when the node exited 0
    '    if [ "$rc" -ne 0 ] && [ "$rc" -ne 130 ]; then echo "readme-literal: background command $pid exited $rc after SIGINT" >&2; bad=1; fi',
    '  done',
    '  return $bad',
    '}',
    'trap \'for p in "${JOBS[@]}"; do kill -KILL -- -"$p" 2>/dev/null; done\' EXIT'
  ]
  /* eslint-enable no-template-curly-in-string */
  let n = 0
  for (const raw of lines) {
    let line = raw
    if (direct) { line = line.replaceAll('npx decloud ', 'node bin/decloud.js ') }
    let cmd = commandPart(line)
    if (cmd === '') { continue }
    const shown = raw.trim()
    if (cmd.startsWith('npm ci && ')) {
      out.push(`echo ${q('readme-literal: skipped: npm ci (' + SKIP.get('npm ci') + ')')} >&2`)
      line = line.replace(/npm ci && /, '')
      cmd = cmd.slice('npm ci && '.length)
    }
    if (SKIP.has(cmd)) {
      out.push(`echo ${q(`readme-literal: skipped: ${cmd} (${SKIP.get(cmd)})`)} >&2`)
      continue
    }
    n++
    const bg = BACKGROUND.find(b => b.re.test(direct ? cmd.replace('node bin/decloud.js ', 'npx decloud ') : cmd))
    out.push(`echo ${q(`\n$ ${shown}`)} >&2`)
    if (bg != null) {
      const log = join(logDir, `bg${n}`)
      // the line as written, inside a group so that its own comment cannot swallow the redirection
      out.push('{', line, `} > ${q(log)} 2> ${q(log + '.err')} &`)
      out.push('JOBS+=($!)')
      out.push(`wait_ready $! ${q(bg.ready)} ${q(log)} ${q(shown)}`)
      out.push(`grep ${q(bg.ready)} ${q(log)} >&2`)
    } else {
      out.push(line)
      out.push(`rc=$?; [ $rc -eq 0 ] || fail "exit $rc: "${q(shown)}`)
    }
  }
  out.push('echo "readme-literal: stopping the background commands" >&2')
  out.push('stop_all || fail "a background command did not stop cleanly"')
  out.push('JOBS=()')
  // a README command must not edit the checkout (an `npm init` in the wrong folder did once)
  out.push('[ "$(git diff | sha1sum)" = "$TREE_BEFORE" ] || fail "the README\'s commands changed tracked files of the checkout: $(git diff --stat | tail -1)"')
  out.push(`echo "readme-literal: ok, ${n} commands" >&2`)
  return out.join('\n') + '\n'
}

const home = await mkdtemp(join(tmpdir(), 'decloud-readme-home-'))
const logDir = await mkdtemp(join(tmpdir(), 'decloud-readme-logs-'))
const file = join(logDir, 'readme.sh')
await writeFile(file, script(shLines(await readFile(join(ROOT, 'README.md'), 'utf8')), logDir))

// npm keeps the user's cache (a fresh HOME would leave it empty) and prefers it: the README's
// one install (the embedding example's libp2p packages) reaches the npm registry only for what
// the cache lacks
const npmCache = process.env.npm_config_cache ?? process.env.NPM_CONFIG_CACHE ?? join(homedir(), '.npm')
const env = { ...process.env, HOME: home, NPM_CONFIG_CACHE: npmCache, NPM_CONFIG_UPDATE_NOTIFIER: 'false', NPM_CONFIG_PREFER_OFFLINE: 'true', NPM_CONFIG_FUND: 'false', NPM_CONFIG_AUDIT: 'false' }
for (const k of Object.keys(env)) { if (k.startsWith('DECLOUD_')) { delete env[k] } }

const start = Date.now()
const child = spawn('bash', [file], { cwd: ROOT, env, stdio: ['ignore', 'inherit', 'inherit'], detached: true })
const watchdog = setTimeout(() => {
  process.stderr.write(`readme-literal: FAILED: not done within ${LIMIT_S} s\n`)
  // bash leads its own session (detached) and, with job control, puts every
  // command in a process group of its own: end every group of that session
  let groups = [child.pid]
  try {
    const ps = spawnSync('ps', ['-s', String(child.pid), '-o', 'pgid='], { encoding: 'utf8' })
    groups = [...new Set([...groups, ...ps.stdout.split('\n').map(Number).filter(n => n > 1)])]
  } catch {}
  for (const g of groups) { try { process.kill(-g, 'SIGKILL') } catch {} }
}, LIMIT_S * 1000)
const code = await new Promise(resolve => child.once('exit', (c, s) => resolve(c ?? (s != null ? 1 : 0))))
clearTimeout(watchdog)
process.stderr.write(`readme-literal: ${code === 0 ? 'passed' : 'failed'} in ${Math.round((Date.now() - start) / 1000)} s (HOME was ${home}, logs in ${logDir})\n`)
if (code === 0) {
  await rm(home, { recursive: true, force: true })
  await rm(logDir, { recursive: true, force: true })
}
process.exit(code)
