import { ISignal, Signal } from '@lumino/signaling';

import { Amount, BudgetDisplay } from './budget';

/** A display the front end has seen, and where it stands among the others. */
export interface Seen {
  readonly display: BudgetDisplay;
  /** The budget it is about: server, account and dataset (see `budgetKey`). */
  readonly key: string;
  /** Milliseconds since the epoch (with the microseconds as a fraction), or null. */
  readonly time: number | null;
  /** Arrival order: the tie-breaker, and the only order for displays without a time. */
  readonly order: number;
  /** Whether it is the panel's route's reading rather than an output. */
  readonly fromServer: boolean;
}

/** How far the numbers of a budget can be trusted to be the server's current ones. */
export interface Freshness {
  /**
   * False when a refresh from the server was tried since these numbers were known, and did not
   * confirm them: it failed, or the server it reads is not the one the numbers came from.
   */
  fresh: boolean;
  /** When the numbers were last known current (milliseconds since the epoch), if known. */
  time: number | null;
}

/** A dataset's budget as the panel's route reads it (`DatasetSummary`'s numbers). */
export interface ServerBudget {
  name: string;
  initial: Amount;
  spent: Amount;
  remaining: Amount;
}

/**
 * The budget a display is about. The same dataset name on another DP server, or another
 * analyst's account, is another budget; a display without server and account (an older
 * kernel's) stays apart from those that have them.
 */
export function budgetKey(server: string | null, account: string | null, dataset: string): string {
  return JSON.stringify([server ? server.replace(/\/+$/, '') : null, account, dataset]);
}

function keyOfDisplay(d: BudgetDisplay): string {
  return budgetKey(d.server, d.account, d.dataset);
}

/**
 * `at` as a number that keeps Python's microseconds, so that two displays made within one
 * millisecond are still ordered by when they were made.
 */
export function displayTime(at: string | null): number | null {
  if (!at) {
    return null;
  }
  const ms = Date.parse(at);
  if (Number.isNaN(ms)) {
    return null;
  }
  const fraction = /T[\d:]+\.\d{3}(\d+)/.exec(at);
  return fraction ? ms + Number(`0.${fraction[1]}`) : ms;
}

/**
 * Whether `a` was made after `b`: by `at` first, then by arrival. A display without `at` comes
 * from a kernel older than the field, so it is older than any display that has one.
 */
export function isNewer(a: Seen, b: Seen): boolean {
  const ta = a.time ?? -Infinity;
  const tb = b.time ?? -Infinity;
  if (ta !== tb) {
    return ta > tb;
  }
  return a.order > b.order;
}

/** The identity of a display: the same output rendered twice is one display, seen once. */
function identityOf(d: BudgetDisplay): string {
  return JSON.stringify([
    d.server,
    d.account,
    d.dataset,
    d.kind,
    d.at,
    d.query_id,
    d.replay_of,
    d.cost,
    d.spent,
    d.remaining,
    d.initial
  ]);
}

function sameAmount(a: Amount, b: Amount): boolean {
  return a.epsilon === b.epsilon && a.delta === b.delta;
}

function sameNumbers(d: BudgetDisplay, b: ServerBudget): boolean {
  return (
    sameAmount(d.initial, b.initial) &&
    sameAmount(d.spent, b.spent) &&
    sameAmount(d.remaining, b.remaining)
  );
}

/**
 * Every budget display the page has seen, and per budget (server, account, dataset) the
 * newest: what lets an older output say "as of" and the status bar show the latest numbers.
 * The panel's route feeds it too: spending that made no output in this page (a Python call,
 * another browser) shows up once the route has been read.
 */
export class BudgetStore {
  /** Emits a budget's key when its newest display, or what is known of its freshness, changes. */
  get changed(): ISignal<this, string> {
    return this._changed;
  }

  /** Emits each output display the first time it is seen: a sign that budget was spent. */
  get outputSeen(): ISignal<this, BudgetDisplay> {
    return this._outputSeen;
  }

  /** Emits after every refresh from the route, whatever came of it. */
  get refreshed(): ISignal<this, void> {
    return this._refreshed;
  }

  /** Records a display (again, harmlessly) and returns where it stands. */
  observe(display: BudgetDisplay): Seen {
    const identity = identityOf(display);
    const known = this._seen.get(identity);
    if (known) {
      return known;
    }
    const seen: Seen = {
      display,
      key: keyOfDisplay(display),
      time: displayTime(display.at),
      order: this._next++,
      fromServer: false
    };
    this._seen.set(identity, seen);
    this._offer(seen);
    this._outputSeen.emit(display);
    return seen;
  }

  /**
   * Records what the panel's route said: `budgets` are `account`'s on `server`, read by a
   * request that started at `startedAt` (so they are at least that new). Numbers that match
   * the newest display are confirmed as current; others become the newest, unless a display
   * was made after the request started.
   */
  recordServer(
    startedAt: number,
    server: string,
    account: string | null,
    budgets: ServerBudget[]
  ): void {
    this._attempt(startedAt);
    for (const budget of budgets) {
      const key = budgetKey(server, account, budget.name);
      const newest = this._newest.get(key);
      if (newest && sameNumbers(newest.display, budget)) {
        this._confirm(key, startedAt);
        this._changed.emit(key);
        continue;
      }
      if (newest && (newest.time ?? -Infinity) > startedAt) {
        continue;
      }
      const display: BudgetDisplay = {
        dataset: budget.name,
        kind: 'budget',
        initial: budget.initial,
        spent: budget.spent,
        remaining: budget.remaining,
        cost: null,
        query_id: null,
        replay_of: null,
        queries_left: null,
        note: null,
        server,
        account,
        at: new Date(startedAt).toISOString()
      };
      this._confirm(key, startedAt);
      this._offer({ display, key, time: startedAt, order: this._next++, fromServer: true });
    }
    this._refreshed.emit();
  }

  /** Records a refresh that could not read the budgets (no connection, an error) at `startedAt`. */
  recordFailure(startedAt: number): void {
    this._attempt(startedAt);
    this._refreshed.emit();
  }

  newest(key: string): Seen | undefined {
    return this._newest.get(key);
  }

  isCurrent(seen: Seen): boolean {
    return this._newest.get(seen.key) === seen;
  }

  /** The newest output of any budget (the route's readings are not outputs). */
  latest(): Seen | undefined {
    let best: Seen | undefined;
    for (const seen of this._seen.values()) {
      if (!best || isNewer(seen, best)) {
        best = seen;
      }
    }
    return best;
  }

  /**
   * Whether the newest numbers of `key` are still the server's as far as the page knows: they
   * are not once a refresh has been tried since, that did not confirm them.
   */
  freshness(key: string): Freshness {
    const newest = this._newest.get(key);
    const times = [newest?.time ?? null, this._confirmed.get(key) ?? null].filter(
      (t): t is number => t !== null
    );
    const time = times.length ? Math.max(...times) : null;
    const fresh = this._lastAttempt === null || (time !== null && time >= this._lastAttempt);
    return { fresh, time };
  }

  private _offer(seen: Seen): void {
    const newest = this._newest.get(seen.key);
    if (!newest || isNewer(seen, newest)) {
      this._newest.set(seen.key, seen);
      this._changed.emit(seen.key);
    }
  }

  private _attempt(startedAt: number): void {
    this._lastAttempt = Math.max(this._lastAttempt ?? -Infinity, startedAt);
  }

  private _confirm(key: string, at: number): void {
    this._confirmed.set(key, Math.max(this._confirmed.get(key) ?? -Infinity, at));
  }

  private _seen = new Map<string, Seen>();
  private _newest = new Map<string, Seen>();
  private _confirmed = new Map<string, number>();
  private _lastAttempt: number | null = null;
  private _next = 0;
  private _changed = new Signal<this, string>(this);
  private _outputSeen = new Signal<this, BudgetDisplay>(this);
  private _refreshed = new Signal<this, void>(this);
}
