import { BudgetDisplay } from '../src/budget';

/** A display as the kernel sends it (lomas_jupyter/_display.py), with what a test changes. */
export function display(overrides: Partial<BudgetDisplay> = {}): BudgetDisplay {
  return {
    dataset: 'PENGUIN',
    kind: 'query',
    initial: { epsilon: 10, delta: 0.001 },
    spent: { epsilon: 2, delta: 0 },
    remaining: { epsilon: 8, delta: 0.001 },
    cost: { epsilon: 0.5, delta: 0 },
    query_id: '3f2ff423aa5b4c0e',
    replay_of: null,
    queries_left: 16,
    note: null,
    server: null,
    account: null,
    at: '2026-11-30T14:00:38.123456+00:00',
    ...overrides
  };
}
