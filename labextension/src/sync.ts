import { ISignal, Signal } from '@lumino/signaling';

import { DatasetsReply, PanelError } from './api';
import { BudgetStore } from './store';

/** The connected reply, as the panel lists it. */
export type ConnectedReply = Extract<DatasetsReply, { connected: true }>;

/** Why the last refresh did not bring budgets. */
export interface RefreshProblem {
  /** `not_configured`: the Jupyter server has no connection (an information, not an error). */
  kind: 'not_configured' | 'error';
  message: string;
  /** When the refresh was started (milliseconds since the epoch). */
  at: number;
}

export interface ServerBudgetsOptions {
  /** The clock (tests set it). */
  now?: () => number;
  /** How long after an output to read the route: outputs come in bursts. */
  settleMs?: number;
}

/** A new lomas output means a new spend: the route is read again once the burst is over. */
const REFRESH_AFTER_OUTPUT_MS = 500;

function messageOf(err: unknown): string {
  // Anything but our own errors is a bug or a network failure: one line, never a stack.
  return err instanceof PanelError ? err.message : 'Something went wrong reading the budget.';
}

/**
 * The budgets the panel's route reads (`GET lomas-jupyter/api/datasets`), shared by the panel
 * and the status bar, and fed into the store so that spending without an output in this page
 * shows up. One request at a time: a refresh asked for while one is under way runs after it,
 * so a spend made meanwhile is never missed.
 */
export class ServerBudgets {
  constructor(
    api: { datasets(): Promise<DatasetsReply> },
    store: BudgetStore,
    options: ServerBudgetsOptions = {}
  ) {
    this._api = api;
    this._store = store;
    this._now = options.now ?? Date.now;
    this._settleMs = options.settleMs ?? REFRESH_AFTER_OUTPUT_MS;
    store.outputSeen.connect(this.schedule, this);
  }

  /** Emits when a refresh starts and when it ends. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The last budgets read, kept when a later refresh fails. */
  get last(): { reply: ConnectedReply; at: number } | null {
    return this._last;
  }

  /** Why the last refresh brought no budgets, or null when it did. */
  get problem(): RefreshProblem | null {
    return this._problem;
  }

  get refreshing(): boolean {
    return this._running !== null;
  }

  /** Whether a refresh has ended, well or not. */
  get tried(): boolean {
    return this._last !== null || this._problem !== null;
  }

  /** Reads the route (after the refresh under way, if any); resolves when it is read. */
  refresh(): Promise<void> {
    if (this._running) {
      if (!this._queued) {
        this._queued = this._running.then(() => {
          this._queued = null;
          return this._start();
        });
      }
      return this._queued;
    }
    return this._start();
  }

  /** Reads the route once a burst of outputs is over. */
  schedule(): void {
    if (this._timer === null && !this._disposed) {
      this._timer = setTimeout(() => {
        this._timer = null;
        void this.refresh();
      }, this._settleMs);
    }
  }

  dispose(): void {
    this._disposed = true;
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
    this._store.outputSeen.disconnect(this.schedule, this);
    Signal.clearData(this);
  }

  private _start(): Promise<void> {
    const run = this._read().finally(() => {
      this._running = null;
      this._changed.emit();
    });
    this._running = run;
    this._changed.emit();
    return run;
  }

  private async _read(): Promise<void> {
    // The route's numbers are at least as new as the request: a display made after it started
    // is newer than they are.
    const startedAt = this._now();
    let reply: DatasetsReply;
    try {
      reply = await this._api.datasets();
    } catch (err) {
      this._problem = { kind: 'error', message: messageOf(err), at: startedAt };
      this._store.recordFailure(startedAt);
      return;
    }
    if (reply.connected) {
      this._last = { reply, at: startedAt };
      this._problem = null;
      this._store.recordServer(startedAt, reply.url, reply.account ?? null, reply.datasets);
      return;
    }
    if (reply.reason === 'unreachable') {
      this._problem = { kind: 'error', message: reply.message, at: startedAt };
    } else {
      // Not configured: whatever was read before was read through a connection that is gone.
      this._last = null;
      this._problem = { kind: 'not_configured', message: reply.message, at: startedAt };
    }
    this._store.recordFailure(startedAt);
  }

  private _api: { datasets(): Promise<DatasetsReply> };
  private _store: BudgetStore;
  private _now: () => number;
  private _settleMs: number;
  private _running: Promise<void> | null = null;
  private _queued: Promise<void> | null = null;
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _disposed = false;
  private _last: { reply: ConnectedReply; at: number } | null = null;
  private _problem: RefreshProblem | null = null;
  private _changed = new Signal<this, void>(this);
}
