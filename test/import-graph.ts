/**
 * The import graph of `src/`, read from the TypeScript sources (value and
 * type imports alike, since a type cycle is a design cycle too). Used by
 * test/layering.spec.ts; `npm run deps` prints it.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

/** the repository's src/ (this file runs from dist/test/) */
export const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src')

export interface ImportEdge { to: string, typeOnly: boolean }

/** file (relative to src/, forward slashes) → the src/ files it imports */
export function importGraph (root = SRC): Map<string, ImportEdge[]> {
  const files: string[] = []
  const walk = (d: string): void => {
    for (const f of readdirSync(d)) {
      const p = join(d, f)
      if (statSync(p).isDirectory()) { walk(p) } else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) { files.push(p) }
    }
  }
  walk(root)
  const rel = (p: string): string => relative(root, p).split('\\').join('/')
  const graph = new Map<string, ImportEdge[]>()
  const re = /^(?:import|export)\s+(type\s+)?(?:[^'";]*?\sfrom\s+)?'(\.{1,2}\/[^']+)'/gm
  for (const f of files) {
    const src = readFileSync(f, 'utf8')
    const edges: ImportEdge[] = []
    for (const m of src.matchAll(re)) {
      edges.push({ to: rel(resolve(dirname(f), m[2].replace(/\.js$/, '.ts'))), typeOnly: m[1] != null })
    }
    graph.set(rel(f), edges)
  }
  return graph
}

/** Strongly connected components with more than one file (Tarjan): each is an import cycle */
export function cycles (graph: Map<string, ImportEdge[]>): string[][] {
  let index = 0
  const stack: string[] = []
  const onStack = new Set<string>()
  const idx = new Map<string, number>()
  const low = new Map<string, number>()
  const out: string[][] = []
  const visit = (v: string): void => {
    idx.set(v, index); low.set(v, index); index++
    stack.push(v); onStack.add(v)
    for (const { to: w } of graph.get(v) ?? []) {
      if (!graph.has(w)) { continue }
      if (!idx.has(w)) {
        visit(w)
        low.set(v, Math.min(low.get(v) ?? 0, low.get(w) ?? 0))
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v) ?? 0, idx.get(w) ?? 0))
      }
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = []
      let w: string | undefined
      do { w = stack.pop(); if (w != null) { onStack.delete(w); scc.push(w) } } while (w != null && w !== v)
      if (scc.length > 1 || (graph.get(v) ?? []).some(e => e.to === v)) { out.push(scc.sort()) }
    }
  }
  for (const v of [...graph.keys()].sort()) { if (!idx.has(v)) { visit(v) } }
  return out
}

if (process.argv[1] != null && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const graph = importGraph()
  for (const [file, edges] of [...graph].sort(([a], [b]) => a.localeCompare(b))) {
    process.stdout.write(`${file} -> ${edges.map(e => (e.typeOnly ? 'type:' : '') + e.to).join(' ')}\n`)
  }
  const c = cycles(graph)
  process.stdout.write(c.length === 0 ? '\nno import cycles\n' : `\n${c.length} import cycle(s):\n${c.map(s => '  ' + s.join(' <-> ')).join('\n')}\n`)
}
