import { describe, expect, it } from 'vitest';

import { BudgetStore, displayTime } from '../src/store';
import { display } from './fixtures';

describe('BudgetStore', () => {
  it('keeps the newest display per dataset, by `at`', () => {
    const store = new BudgetStore();
    const later = store.observe(display({ query_id: 'b', at: '2026-11-30T14:05:00+00:00' }));
    const earlier = store.observe(display({ query_id: 'a', at: '2026-11-30T14:00:00+00:00' }));
    expect(store.isCurrent(later)).toBe(true);
    expect(store.isCurrent(earlier)).toBe(false);
    expect(store.newest('PENGUIN')).toBe(later);
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
    expect(changes).toEqual(['PENGUIN', 'TITANIC']);
  });
});
