import { ISignal, Signal } from '@lumino/signaling';

import { BudgetDisplay } from './budget';

/** A display the front end has seen, and where it stands among the others. */
export interface Seen {
  readonly display: BudgetDisplay;
  /** Milliseconds since the epoch (with the microseconds as a fraction), or null. */
  readonly time: number | null;
  /** Arrival order: the tie-breaker, and the only order for displays without a time. */
  readonly order: number;
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
function keyOf(d: BudgetDisplay): string {
  return JSON.stringify([
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

/**
 * Every budget display the page has seen, and per dataset the newest: what lets an older
 * output say "as of" and the status bar show the latest numbers.
 */
export class BudgetStore {
  /** Emits a dataset's name when its newest display changes. */
  get changed(): ISignal<this, string> {
    return this._changed;
  }

  /** Records a display (again, harmlessly) and returns where it stands. */
  observe(display: BudgetDisplay): Seen {
    const key = keyOf(display);
    const known = this._seen.get(key);
    if (known) {
      return known;
    }
    const seen: Seen = { display, time: displayTime(display.at), order: this._next++ };
    this._seen.set(key, seen);
    const newest = this._newest.get(display.dataset);
    if (!newest || isNewer(seen, newest)) {
      this._newest.set(display.dataset, seen);
      this._changed.emit(display.dataset);
    }
    return seen;
  }

  newest(dataset: string): Seen | undefined {
    return this._newest.get(dataset);
  }

  isCurrent(seen: Seen): boolean {
    return this._newest.get(seen.display.dataset) === seen;
  }

  /** The newest display of any dataset. */
  latest(): Seen | undefined {
    let best: Seen | undefined;
    for (const seen of this._newest.values()) {
      if (!best || isNewer(seen, best)) {
        best = seen;
      }
    }
    return best;
  }

  private _seen = new Map<string, Seen>();
  private _newest = new Map<string, Seen>();
  private _next = 0;
  private _changed = new Signal<this, string>(this);
}
