import { afterEach, describe, expect, it, vi } from 'vitest';

import { DatasetsReply, PanelError } from '../src/api';
import { budgetKey, BudgetStore } from '../src/store';
import { ServerBudgets } from '../src/sync';
import { display } from './fixtures';

const URL = 'http://127.0.0.1:8765';
const ACCOUNT = '0123456789abcdef';

function reply(remaining: number): DatasetsReply {
  return {
    connected: true,
    url: URL,
    user: 'alice',
    account: ACCOUNT,
    datasets: [
      {
        name: 'PENGUIN',
        engines: ['smartnoise-sql'],
        initial: { epsilon: 10, delta: 0.001 },
        spent: { epsilon: 10 - remaining, delta: 0 },
        remaining: { epsilon: remaining, delta: 0.001 },
        max_query: null
      }
    ]
  };
}

afterEach(() => vi.useRealTimers());

describe('ServerBudgets', () => {
  it('feeds the route into the store, timed at the start of the request', async () => {
    const store = new BudgetStore();
    const own = store.observe(display({ server: URL, account: ACCOUNT }));
    const sync = new ServerBudgets({ datasets: async () => reply(6) }, store, {
      now: () => Date.parse('2026-11-30T14:30:00Z')
    });
    await sync.refresh();
    const newest = store.newest(own.key);
    expect(newest?.display.remaining.epsilon).toBe(6);
    expect(newest?.display.at).toBe('2026-11-30T14:30:00.000Z');
    expect(sync.last?.reply.datasets).toHaveLength(1);
    expect(sync.problem).toBeNull();
  });

  it('keeps the last budgets when the DP server cannot be reached, and says so', async () => {
    const store = new BudgetStore();
    let answer: DatasetsReply = reply(6);
    const sync = new ServerBudgets({ datasets: async () => answer }, store, { now: () => 1000 });
    await sync.refresh();
    answer = { connected: false, reason: 'unreachable', message: 'cannot reach the server' };
    await sync.refresh();
    expect(sync.last?.reply).toEqual(reply(6));
    expect(sync.problem).toEqual({ kind: 'error', message: 'cannot reach the server', at: 1000 });
    expect(store.freshness(budgetKey(URL, ACCOUNT, 'PENGUIN')).fresh).toBe(true);
  });

  it('drops them when no connection is configured any more', async () => {
    const store = new BudgetStore();
    let answer: DatasetsReply = reply(6);
    const sync = new ServerBudgets({ datasets: async () => answer }, store);
    await sync.refresh();
    answer = { connected: false, reason: 'not_configured', message: 'Start it with LOMAS_URL.' };
    await sync.refresh();
    expect(sync.last).toBeNull();
    expect(sync.problem?.kind).toBe('not_configured');
  });

  it('words a failure as one line', async () => {
    const sync = new ServerBudgets(
      {
        datasets: async () => {
          throw new PanelError('The Jupyter server could not be reached.');
        }
      },
      new BudgetStore()
    );
    await sync.refresh();
    expect(sync.problem?.message).toBe('The Jupyter server could not be reached.');
  });

  it('runs one request at a time, and one more for what was asked meanwhile', async () => {
    let calls = 0;
    let release: () => void = () => undefined;
    const sync = new ServerBudgets(
      {
        datasets: () => {
          calls++;
          return new Promise<DatasetsReply>(resolve => {
            release = () => resolve(reply(6));
          });
        }
      },
      new BudgetStore()
    );
    const first = sync.refresh();
    expect(sync.refreshing).toBe(true);
    const second = sync.refresh();
    const third = sync.refresh();
    expect(calls).toBe(1);
    release();
    await first;
    await new Promise(resolve => setTimeout(resolve, 0));
    expect(calls).toBe(2);
    release();
    await Promise.all([second, third]);
    expect(calls).toBe(2);
    expect(sync.refreshing).toBe(false);
  });

  it('reads the route once a burst of outputs is over', async () => {
    vi.useFakeTimers();
    const store = new BudgetStore();
    const datasets = vi.fn(async () => reply(6));
    new ServerBudgets({ datasets }, store, { settleMs: 100 });
    store.observe(display({ query_id: 'a' }));
    store.observe(display({ query_id: 'b' }));
    await vi.advanceTimersByTimeAsync(100);
    expect(datasets).toHaveBeenCalledOnce();
  });
});
