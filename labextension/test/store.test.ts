import { describe, expect, it } from 'vitest';

import { budgetKey, BudgetStore, displayTime, ServerBudget } from '../src/store';
import { display } from './fixtures';

describe('BudgetStore', () => {
  it('keeps the newest display per dataset, by `at`', () => {
    const store = new BudgetStore();
    const later = store.observe(display({ query_id: 'b', at: '2026-11-30T14:05:00+00:00' }));
    const earlier = store.observe(display({ query_id: 'a', at: '2026-11-30T14:00:00+00:00' }));
    expect(store.isCurrent(later)).toBe(true);
    expect(store.isCurrent(earlier)).toBe(false);
    expect(store.newest(budgetKey(null, null, 'PENGUIN'))).toBe(later);
  });

  it('orders by arrival when `at` is the same or missing', () => {
    const store = new BudgetStore();
    const first = store.observe(display({ query_id: 'a', at: null }));
    const second = store.observe(display({ query_id: 'b', at: null }));
    expect(store.isCurrent(second)).toBe(true);
    expect(store.isCurrent(first)).toBe(false);
  });

  it('takes a display without `at` (an older kernel) as older than one with it', () => {
    const store = new BudgetStore();
    const timed = store.observe(display({ query_id: 'a' }));
    store.observe(display({ query_id: 'b', at: null }));
    expect(store.isCurrent(timed)).toBe(true);
  });

  it('keeps the microseconds that order two displays of one millisecond', () => {
    expect(displayTime('2026-11-30T14:00:38.123456+00:00')).toBeGreaterThan(
      displayTime('2026-11-30T14:00:38.123455+00:00') as number
    );
    expect(displayTime('not a time')).toBeNull();
  });

  it('sees the same output rendered again as the same display', () => {
    const store = new BudgetStore();
    const old = store.observe(display({ query_id: 'a', at: null }));
    store.observe(display({ query_id: 'b', at: null }));
    expect(store.observe(display({ query_id: 'a', at: null }))).toBe(old);
    expect(store.isCurrent(old)).toBe(false);
  });

  it('keeps datasets apart', () => {
    const store = new BudgetStore();
    const penguin = store.observe(display());
    const titanic = store.observe(display({ dataset: 'TITANIC', at: '2027-01-01T00:00:00Z' }));
    expect(store.isCurrent(penguin)).toBe(true);
    expect(store.isCurrent(titanic)).toBe(true);
    expect(store.latest()).toBe(titanic);
  });

  it("says when a dataset's newest display changes, and only then", () => {
    const store = new BudgetStore();
    const changes: string[] = [];
    store.changed.connect((_, dataset) => changes.push(dataset));
    store.observe(display({ query_id: 'b', at: '2026-11-30T14:05:00+00:00' }));
    store.observe(display({ query_id: 'a', at: '2026-11-30T14:00:00+00:00' }));
    store.observe(display({ query_id: 'b', at: '2026-11-30T14:05:00+00:00' }));
    store.observe(display({ dataset: 'TITANIC' }));
    expect(changes).toEqual([budgetKey(null, null, 'PENGUIN'), budgetKey(null, null, 'TITANIC')]);
  });
});

const A = 'http://dp.example:8765';
const ALICE = '0123456789abcdef';
const MALLORY = 'fedcba9876543210';
const T0 = Date.parse('2026-11-30T14:00:38Z');

function serverBudget(remaining: number, spent = 10 - remaining): ServerBudget {
  return {
    name: 'PENGUIN',
    initial: { epsilon: 10, delta: 0.001 },
    spent: { epsilon: spent, delta: 0 },
    remaining: { epsilon: remaining, delta: 0.001 }
  };
}

describe('BudgetStore keyed by server, account and dataset', () => {
  const mine = (o = {}) => display({ server: A, account: ALICE, ...o });

  it('never lets another account or server supersede an output', () => {
    const store = new BudgetStore();
    const own = store.observe(mine({ at: '2026-11-30T14:00:00Z' }));
    store.observe(mine({ account: MALLORY, query_id: 'm', at: '2026-11-30T15:00:00Z' }));
    store.observe(mine({ server: 'http://other:1', query_id: 'o', at: '2026-11-30T15:00:00Z' }));
    store.observe(display({ query_id: 'old', at: '2026-11-30T15:00:00Z' }));
    expect(store.isCurrent(own)).toBe(true);
    expect(store.newest(budgetKey(A, ALICE, 'PENGUIN'))).toBe(own);
  });

  it('takes the same server written with a trailing slash as the same', () => {
    expect(budgetKey(`${A}/`, ALICE, 'PENGUIN')).toBe(budgetKey(A, ALICE, 'PENGUIN'));
  });

  it("makes the route's other numbers the newest, read at the request's start", () => {
    const store = new BudgetStore();
    const own = store.observe(mine());
    // 1.5 spent since, by a Python call that showed no display.
    store.recordServer(T0 + 60_000, A, ALICE, [serverBudget(6.5, 3.5)]);
    expect(store.isCurrent(own)).toBe(false);
    const newest = store.newest(own.key);
    expect(newest?.fromServer).toBe(true);
    expect(newest?.display.remaining.epsilon).toBe(6.5);
    expect(newest?.time).toBe(T0 + 60_000);
    expect(store.freshness(own.key)).toEqual({ fresh: true, time: T0 + 60_000 });
    // The route's readings are not outputs.
    expect(store.latest()).toBe(own);
  });

  it("confirms an output the route agrees with, and leaves it current", () => {
    const store = new BudgetStore();
    const own = store.observe(mine());
    store.recordServer(T0 + 60_000, A, ALICE, [serverBudget(8, 2)]);
    expect(store.isCurrent(own)).toBe(true);
    expect(store.freshness(own.key)).toEqual({ fresh: true, time: T0 + 60_000 });
  });

  it('keeps an output made after the request started over what the request read', () => {
    const store = new BudgetStore();
    const own = store.observe(mine());
    store.recordServer(T0 - 1000, A, ALICE, [serverBudget(9, 1)]);
    expect(store.isCurrent(own)).toBe(true);
    expect(store.freshness(own.key).fresh).toBe(true);
  });

  it("applies the route's numbers to its own server and account only", () => {
    const store = new BudgetStore();
    const other = store.observe(mine({ account: MALLORY }));
    const legacy = store.observe(display({ query_id: 'legacy' }));
    store.recordServer(T0 + 60_000, A, ALICE, [serverBudget(1, 9)]);
    expect(store.isCurrent(other)).toBe(true);
    expect(store.isCurrent(legacy)).toBe(true);
    // ...and a refresh that could not read them leaves them unconfirmed.
    expect(store.freshness(other.key)).toEqual({ fresh: false, time: displayTime(other.display.at) });
    expect(store.freshness(legacy.key).fresh).toBe(false);
  });

  it('is fresh until a refresh is tried, and not after one that failed', () => {
    const store = new BudgetStore();
    const own = store.observe(mine());
    expect(store.freshness(own.key).fresh).toBe(true);
    store.recordFailure(T0 + 60_000);
    expect(store.freshness(own.key)).toEqual({ fresh: false, time: displayTime(own.display.at) });
    const next = store.observe(mine({ query_id: 'next', at: '2026-11-30T14:02:00Z' }));
    expect(store.freshness(next.key).fresh).toBe(true);
  });

  it('says which outputs were seen for the first time', () => {
    const store = new BudgetStore();
    const seen: string[] = [];
    store.outputSeen.connect((_, d) => seen.push(d.query_id ?? ''));
    store.observe(mine({ query_id: 'a' }));
    store.observe(mine({ query_id: 'a' }));
    store.recordServer(T0 + 60_000, A, ALICE, [serverBudget(1, 9)]);
    expect(seen).toEqual(['a']);
  });
});
