/**
 * A small internet in Linux network namespaces, for the NAT tests. Only
 * namespaces made here are touched; none is linked to the machine's own
 * network, so no packet leaves them. The layout (docs/nat.md has a drawing):
 *
 * - `<p>i`, the "internet": bridge br0, 10.99.0.0/24; the public nodes at 10.99.0.1, .2 and .3
 * - `<p>n1`, router 1: 10.99.0.11 outside, 192.168.1.1 inside, port-preserving MASQUERADE
 * (endpoint-independent mapping as far as Linux goes); `<p>h1`, home 1: 192.168.1.2
 * - `<p>n2`, router 2: 10.99.0.12 outside, MASQUERADE --random-fully (symmetric); `<p>h2`: 192.168.2.2
 * - `<p>n3`, `<p>h3`: like router 1 and home 1, 10.99.0.13 and 192.168.3.2
 *
 * 10.99.0.0/24 is private by every standard, so the nodes are told to treat
 * it as public (`publicRanges`), like a node on the real internet treats its
 * public address.
 */
import { execFileSync, spawnSync } from 'node:child_process'

export const INTERNET = '10.99.0.0/24'
export const PUBLIC_IPS = ['10.99.0.1', '10.99.0.2', '10.99.0.3'] as const
export const HOME_IPS = ['192.168.1.2', '192.168.2.2', '192.168.3.2'] as const
export const ROUTER_IPS = ['10.99.0.11', '10.99.0.12', '10.99.0.13'] as const

export interface Topology {
  internet: string
  homes: [string, string, string]
  routers: [string, string, string]
  /** removes every namespace made (idempotent) */
  destroy(): void
}

/** Why the tests cannot run here, or undefined when they can */
export function unsupported (): string | undefined {
  if (process.platform !== 'linux') { return 'network namespaces need Linux' }
  if (process.getuid?.() !== 0) { return 'network namespaces need root' }
  for (const tool of ['ip', 'iptables']) {
    if (spawnSync(tool, ['--version']).error != null) { return `${tool} is not installed (apt-get install -y iproute2 iptables)` }
  }
  return undefined
}

/** Runs a command, in namespace `ns` when given */
function run (args: string[], ns?: string): void {
  const [cmd, ...rest] = ns == null ? args : ['ip', 'netns', 'exec', ns, ...args]
  execFileSync(cmd, rest, { stdio: ['ignore', 'ignore', 'pipe'] })
}

const ip = (ns: string, ...args: string[]): void => { run(['ip', '-n', ns, ...args]) }

/** Builds the topology; on failure removes whatever was made and throws */
export function build (prefix = `dc${process.pid % 100000}`): Topology {
  const internet = `${prefix}i`
  const routers: [string, string, string] = [`${prefix}n1`, `${prefix}n2`, `${prefix}n3`]
  const homes: [string, string, string] = [`${prefix}h1`, `${prefix}h2`, `${prefix}h3`]
  const all = [internet, ...routers, ...homes]
  const made: string[] = []
  const destroy = (): void => {
    for (const ns of made.splice(0)) { spawnSync('ip', ['netns', 'del', ns]) }
  }
  try {
    for (const ns of all) {
      run(['ip', 'netns', 'add', ns])
      made.push(ns)
      ip(ns, 'link', 'set', 'lo', 'up')
    }
    ip(internet, 'link', 'add', 'br0', 'type', 'bridge')
    ip(internet, 'link', 'set', 'br0', 'up')
    for (const a of PUBLIC_IPS) { ip(internet, 'addr', 'add', `${a}/24`, 'dev', 'br0') }
    for (const k of [1, 2, 3] as const) {
      const router = routers[k - 1]
      const home = homes[k - 1]
      // router ⇄ internet
      ip(router, 'link', 'add', 'wan', 'type', 'veth', 'peer', 'name', `up${k}`, 'netns', internet)
      ip(internet, 'link', 'set', `up${k}`, 'master', 'br0')
      ip(internet, 'link', 'set', `up${k}`, 'up')
      ip(router, 'addr', 'add', `${ROUTER_IPS[k - 1]}/24`, 'dev', 'wan')
      ip(router, 'link', 'set', 'wan', 'up')
      // router ⇄ home
      ip(router, 'link', 'add', 'lan', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', home)
      ip(router, 'addr', 'add', `192.168.${k}.1/24`, 'dev', 'lan')
      ip(router, 'link', 'set', 'lan', 'up')
      ip(home, 'addr', 'add', `${HOME_IPS[k - 1]}/24`, 'dev', 'eth0')
      ip(home, 'link', 'set', 'eth0', 'up')
      ip(home, 'route', 'add', 'default', 'via', `192.168.${k}.1`)
      run(['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1'], router)
      // router 1 keeps the home's source port where it can; router 2 picks a random one per destination
      run(['iptables', '-t', 'nat', '-A', 'POSTROUTING', '-o', 'wan', '-j', 'MASQUERADE', ...(k === 2 ? ['--random-fully'] : [])], router)
    }
  } catch (err: any) {
    destroy()
    throw new Error(`cannot build the namespaces: ${String(err.stderr ?? err.message).trim()}`)
  }
  process.once('exit', destroy)
  return { internet, homes, routers, destroy }
}
