/**
 * The tab store with reputation listening: every tab paid in full (a
 * promise kept) and every tab the sweep finds broken is told to `events`,
 * after the tab store wrote it. The tab store itself knows nothing of
 * reputation.
 */
import { TabStore } from '../payments/seller/tabs.js'
import type { BrokenPromise, Tab } from '../payments/seller/tab.js'
import type { CreditInput, TabStoreInit } from '../payments/seller/tabs.js'

/** What reputation hears of tabs; a listener must not throw */
export interface TabEvents {
  settled?(tab: Tab): void
  broken?(record: BrokenPromise): void
}

export class ListenedTabStore extends TabStore {
  private readonly events: TabEvents

  constructor (init: TabStoreInit & { events: TabEvents }) {
    super(init)
    this.events = init.events
  }

  override async credit (input: CreditInput): Promise<{ tab: Tab, credited: boolean }> {
    const out = await super.credit(input)
    // a credit that settled the tab (a repeated one is deduped by reputation)
    if (out.credited && out.tab.status === 'settled') { this.events.settled?.({ ...out.tab }) }
    return out
  }

  override async sweep (now = Date.now()): Promise<number> {
    const broken = await super.sweep(now)
    // this sweep's records are the ones broken at `now`
    if (broken > 0) {
      for await (const record of this.brokenPromises({ since: now })) {
        if (record.brokenAt === now) { this.events.broken?.(record) }
      }
    }
    return broken
  }
}
