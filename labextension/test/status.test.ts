import { Signal } from '@lumino/signaling';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { BudgetDisplay, MIME_TYPE } from '../src/budget';
import { ActiveNotebookBudget, CellLike, displaysIn, NotebookLike } from '../src/notebookBudget';
import { BudgetStatus, statusText } from '../src/status';
import { BudgetStore } from '../src/store';
import { display } from './fixtures';

describe('statusText', () => {
  // The fixtures' outputs are from 2026-11-30: "today", so that 'as of' shows the clock only.
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2026-11-30T16:00:00Z'));
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('shows what is left of epsilon and delta', () => {
    const store = new BudgetStore();
    const { text, title } = statusText(store.observe(display()));
    expect(text).toBe('PENGUIN: ε 8, δ 0.001 left');
    expect(title).toBe(
      'Privacy budget left on PENGUIN, as of 14:00:38: epsilon 8 of 10, ' +
        'delta 0.001 of 0.001. Click to open the Privacy budget panel.'
    );
  });

  it('leaves delta out when the dataset has none', () => {
    const store = new BudgetStore();
    const pure = display({ initial: { epsilon: 3, delta: 0 }, remaining: { epsilon: 2.5, delta: 0 } });
    expect(statusText(store.observe(pure)).text).toBe('PENGUIN: ε 2.5 left');
  });

  it('says "as of" in the text itself when the numbers could not be confirmed', () => {
    const store = new BudgetStore();
    const seen = store.observe(display());
    const now = new Date('2026-11-30T16:00:00Z');
    const stale = statusText(seen, { fresh: false, time: seen.time }, now);
    expect(stale.text).toBe('PENGUIN: ε 8, δ 0.001 left as of 14:00');
    expect(stale.title).toContain('as of 14:00 (could not be confirmed since)');
    expect(statusText(seen, { fresh: true, time: seen.time }, now).text).toBe(
      'PENGUIN: ε 8, δ 0.001 left'
    );
    const yesterday = statusText(seen, { fresh: false, time: seen.time }, new Date('2026-12-01T09:00:00Z'));
    expect(yesterday.text).toBe('PENGUIN: ε 8, δ 0.001 left as of 2026-11-30 14:00');
  });
});

describe('BudgetStatus', () => {
  it('is a button that opens the panel, and is empty with nothing to show', () => {
    const onClick = vi.fn();
    const item = new BudgetStatus(onClick);
    item.setBudget(new BudgetStore().observe(display()));
    expect(item.node.tagName).toBe('BUTTON');
    expect(item.node.textContent).toBe('PENGUIN: ε 8, δ 0.001 left');
    item.node.click();
    expect(onClick).toHaveBeenCalledOnce();
    item.setBudget(undefined);
    expect(item.node.textContent).toBe('');
  });
});

/** A notebook as the watcher sees it: cells with outputs, and the notebook's signals. */
class FakeNotebook implements NotebookLike {
  isDisposed = false;
  cells: CellLike[] = [];
  readonly content = {
    model: { cells: this.cells as Iterable<CellLike> },
    modelChanged: new Signal<any, void>(this),
    modelContentChanged: new Signal<any, void>(this)
  };

  addOutput(...displays: Array<BudgetDisplay | { text: string }>): void {
    const outputs = displays.map(d =>
      'text' in d ? { data: { 'text/plain': d.text } } : { data: { [MIME_TYPE]: d, 'text/plain': '' } }
    );
    this.cells.push({ type: 'code', outputs: { length: outputs.length, get: (i: number) => outputs[i] } });
    this.content.modelContentChanged.emit();
  }
}

class FakeTracker {
  currentWidget: FakeNotebook | null = null;
  readonly currentChanged = new Signal<any, FakeNotebook | null>(this);

  activate(panel: FakeNotebook | null): void {
    this.currentWidget = panel;
    this.currentChanged.emit(panel);
  }
}

describe('displaysIn', () => {
  it('finds the budget displays among the outputs, in order', () => {
    const notebook = new FakeNotebook();
    notebook.cells.push({ type: 'markdown' });
    notebook.addOutput({ text: 'hello' }, display({ query_id: 'a' }));
    notebook.addOutput(display({ query_id: 'b' }));
    expect(displaysIn(notebook.cells).map(d => d.query_id)).toEqual(['a', 'b']);
  });
});

describe('ActiveNotebookBudget', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("follows the active notebook's last-used dataset, and has none without lomas output", () => {
    const store = new BudgetStore();
    const tracker = new FakeTracker();
    const budget = new ActiveNotebookBudget(tracker, store, 10);
    expect(budget.current).toBeUndefined();

    const notebook = new FakeNotebook();
    tracker.activate(notebook);
    expect(budget.dataset).toBeNull();

    notebook.addOutput(display({ dataset: 'PENGUIN', at: '2026-11-30T14:00:00Z' }));
    notebook.addOutput(display({ dataset: 'TITANIC', at: '2026-11-30T14:01:00Z' }));
    vi.advanceTimersByTime(10);
    expect(budget.dataset).toBe('TITANIC');

    tracker.activate(new FakeNotebook());
    expect(budget.current).toBeUndefined();
    tracker.activate(notebook);
    expect(budget.dataset).toBe('TITANIC');
  });

  it('shows the newest numbers for that dataset, from wherever they came', () => {
    const store = new BudgetStore();
    const tracker = new FakeTracker();
    const budget = new ActiveNotebookBudget(tracker, store, 10);
    const notebook = new FakeNotebook();
    notebook.addOutput(display({ at: '2026-11-30T14:00:00Z' }));
    tracker.activate(notebook);
    expect(budget.current?.display.remaining.epsilon).toBe(8);

    const changes = vi.fn();
    budget.changed.connect(changes);
    // Another notebook spends on PENGUIN: its output reaches the store through its renderer.
    store.observe(display({ remaining: { epsilon: 7, delta: 0.001 }, at: '2026-11-30T15:00:00Z' }));
    expect(changes).toHaveBeenCalled();
    expect(budget.current?.display.remaining.epsilon).toBe(7);
  });

  it("is not changed by another account's or server's display of the same dataset", () => {
    const store = new BudgetStore();
    const tracker = new FakeTracker();
    const budget = new ActiveNotebookBudget(tracker, store, 10);
    const notebook = new FakeNotebook();
    notebook.addOutput(display({ server: 'http://a:1', account: 'aaaa', at: '2026-11-30T14:00:00Z' }));
    tracker.activate(notebook);
    store.observe(
      display({ server: 'http://a:1', account: 'bbbb', remaining: { epsilon: 1, delta: 0 }, at: '2026-11-30T15:00:00Z' })
    );
    store.observe(display({ remaining: { epsilon: 2, delta: 0 }, at: '2026-11-30T15:00:00Z' }));
    expect(budget.current?.display.remaining.epsilon).toBe(8);
  });

  it("follows the route's numbers for its server and account, and says when they are stale", () => {
    const store = new BudgetStore();
    const tracker = new FakeTracker();
    const budget = new ActiveNotebookBudget(tracker, store, 10);
    const notebook = new FakeNotebook();
    notebook.addOutput(display({ server: 'http://a:1', account: 'aaaa', at: '2026-11-30T14:00:00Z' }));
    tracker.activate(notebook);
    const changes = vi.fn();
    budget.changed.connect(changes);
    const budgets = [{ name: 'PENGUIN', initial: { epsilon: 10, delta: 0.001 }, spent: { epsilon: 4, delta: 0 }, remaining: { epsilon: 6, delta: 0.001 } }];
    store.recordServer(Date.parse('2026-11-30T14:10:00Z'), 'http://a:1', 'aaaa', budgets);
    expect(changes).toHaveBeenCalled();
    expect(budget.current?.display.remaining.epsilon).toBe(6);
    expect(budget.freshness?.fresh).toBe(true);
    store.recordFailure(Date.parse('2026-11-30T14:20:00Z'));
    expect(budget.freshness).toEqual({ fresh: false, time: Date.parse('2026-11-30T14:10:00Z') });
  });

  it('waits for a burst of outputs to settle before reading them', () => {
    const store = new BudgetStore();
    const tracker = new FakeTracker();
    const notebook = new FakeNotebook();
    tracker.activate(notebook);
    const budget = new ActiveNotebookBudget(tracker, store, 10);
    notebook.addOutput(display());
    expect(budget.dataset).toBeNull();
    vi.advanceTimersByTime(10);
    expect(budget.dataset).toBe('PENGUIN');
  });
});
