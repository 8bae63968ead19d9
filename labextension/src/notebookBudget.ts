import { ISignal, Signal } from '@lumino/signaling';

import { BudgetDisplay, MIME_TYPE, readDisplay } from './budget';
import { BudgetStore, Freshness, isNewer, Seen } from './store';

/** What is read of a notebook's cells: the shape of JupyterLab's cell models. */
export interface CellLike {
  readonly type: string;
  readonly outputs?: {
    readonly length: number;
    get(index: number): { readonly data: Readonly<Record<string, unknown>> };
  };
}

/** The budget displays among a notebook's outputs, in notebook order. */
export function displaysIn(cells: Iterable<CellLike>): BudgetDisplay[] {
  const found: BudgetDisplay[] = [];
  for (const cell of cells) {
    if (cell.type !== 'code' || !cell.outputs) {
      continue;
    }
    for (let i = 0; i < cell.outputs.length; i++) {
      const data = cell.outputs.get(i).data;
      if (MIME_TYPE in data) {
        const display = readDisplay(data[MIME_TYPE]);
        if (display) {
          found.push(display);
        }
      }
    }
  }
  return found;
}

/**
 * Tells the store of every display found (outputs out of view may never be rendered) and
 * returns the newest: the dataset that notebook used last.
 */
export function lastUsed(displays: BudgetDisplay[], store: BudgetStore): Seen | undefined {
  let best: Seen | undefined;
  for (const display of displays) {
    const seen = store.observe(display);
    if (!best || isNewer(seen, best)) {
      best = seen;
    }
  }
  return best;
}

/** The parts of a notebook panel read here (JupyterLab's `NotebookPanel`). */
export interface NotebookLike {
  readonly isDisposed: boolean;
  readonly content: {
    readonly model: { readonly cells: Iterable<CellLike> } | null;
    readonly modelChanged: ISignal<any, void>;
    readonly modelContentChanged: ISignal<any, void>;
  };
}

/** The parts of the notebook tracker read here (JupyterLab's `INotebookTracker`). */
export interface TrackerLike<T extends NotebookLike> {
  readonly currentWidget: T | null;
  readonly currentChanged: ISignal<any, T | null>;
}

/** Outputs arrive in bursts (a stream, then the result); one look after the burst is enough. */
const SETTLE_MS = 150;

/**
 * The budget of the dataset last used in the active notebook: what the status bar shows.
 * `current` is the newest display seen for that budget (the same server, account and
 * dataset), wherever it was shown or read, so the numbers are the latest the page knows; a
 * display of another server or account never stands in for it.
 */
export class ActiveNotebookBudget<T extends NotebookLike = NotebookLike> {
  constructor(tracker: TrackerLike<T>, store: BudgetStore, settleMs: number = SETTLE_MS) {
    this._store = store;
    this._settleMs = settleMs;
    tracker.currentChanged.connect((_, panel) => this._follow(panel), this);
    store.changed.connect(this._onStoreChanged, this);
    store.refreshed.connect(this._onRefreshed, this);
    this._follow(tracker.currentWidget);
  }

  /** Emits when `current` or its freshness may have changed. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The dataset the active notebook used last, or null when it has no lomas output. */
  get dataset(): string | null {
    return this._dataset;
  }

  /** The budget (`budgetKey`) the active notebook used last, or null. */
  get key(): string | null {
    return this._key;
  }

  get current(): Seen | undefined {
    return this._key === null ? undefined : this._store.newest(this._key);
  }

  get freshness(): Freshness | undefined {
    return this._key === null ? undefined : this._store.freshness(this._key);
  }

  /** Reads the active notebook's outputs now (otherwise it waits for them to settle). */
  scan(): void {
    this._cancel();
    const panel = this._panel;
    const model = panel && !panel.isDisposed ? panel.content.model : null;
    const seen = model ? lastUsed(displaysIn(model.cells), this._store) : undefined;
    const key = seen ? seen.key : null;
    if (key !== this._key) {
      this._key = key;
      this._dataset = seen ? seen.display.dataset : null;
      this._changed.emit();
    }
  }

  dispose(): void {
    this._cancel();
    this._unwatch();
    Signal.clearData(this);
  }

  private _follow(panel: T | null): void {
    this._unwatch();
    this._panel = panel;
    if (panel) {
      panel.content.modelChanged.connect(this._schedule, this);
      panel.content.modelContentChanged.connect(this._schedule, this);
    }
    this.scan();
  }

  private _unwatch(): void {
    if (this._panel) {
      this._panel.content.modelChanged.disconnect(this._schedule, this);
      this._panel.content.modelContentChanged.disconnect(this._schedule, this);
    }
  }

  private _schedule(): void {
    if (this._timer === null) {
      this._timer = setTimeout(() => this.scan(), this._settleMs);
    }
  }

  private _cancel(): void {
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private _onStoreChanged(_: BudgetStore, key: string): void {
    if (key === this._key) {
      this._changed.emit();
    }
  }

  private _onRefreshed(): void {
    if (this._key !== null) {
      this._changed.emit();
    }
  }

  private _store: BudgetStore;
  private _settleMs: number;
  private _panel: T | null = null;
  private _key: string | null = null;
  private _dataset: string | null = null;
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _changed = new Signal<this, void>(this);
}
