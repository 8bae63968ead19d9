import { describe, expect, it } from 'vitest';

import {
  asOfLabel,
  barParts,
  barText,
  formatNumber,
  formatTime,
  headline,
  queriesLeftText,
  readDisplay,
  shownBudgets
} from '../src/budget';
import { display } from './fixtures';

describe('formatNumber writes numbers as the kernel does ({:.6g})', () => {
  it.each([
    [0, '0'],
    [0.5, '0.5'],
    [10, '10'],
    [8.5, '8.5'],
    [1e-7, '1e-07'],
    [0.001, '0.001'],
    [0.0001, '0.0001'],
    [0.00001, '1e-05'],
    [1234567, '1.23457e+06'],
    [123456, '123456'],
    [0.1 + 0.2, '0.3'],
    [2 / 3, '0.666667'],
    [-1.5, '-1.5']
  ])('%s -> %s', (value, text) => {
    expect(formatNumber(value)).toBe(text);
  });
});

describe('readDisplay', () => {
  it('reads what the kernel sends', () => {
    expect(readDisplay(display())).toEqual(display());
  });

  it('treats `at` as optional (displays from older kernels)', () => {
    const { at, ...old } = display();
    expect(at).toBeTruthy();
    expect(readDisplay(old)?.at).toBeNull();
  });

  it('refuses what is not a display rather than throwing', () => {
    expect(readDisplay(null)).toBeNull();
    expect(readDisplay('PENGUIN')).toBeNull();
    expect(readDisplay({ ...display(), spent: { epsilon: 'a lot' } })).toBeNull();
    expect(readDisplay({ ...display(), initial: undefined })).toBeNull();
  });

  it('reads an unknown kind as a plain budget, and a null cost as none', () => {
    const read = readDisplay({ ...display(), kind: 'future', cost: null });
    expect(read?.kind).toBe('budget');
    expect(read?.cost).toBeNull();
  });
});

describe('headline', () => {
  it('says what a query cost, without a zero delta', () => {
    expect(headline(display())).toBe('query 3f2ff423 cost epsilon=0.5');
    expect(headline(display({ cost: { epsilon: 0.5, delta: 1e-7 } }))).toBe(
      'query 3f2ff423 cost epsilon=0.5, delta=1e-07'
    );
  });

  it('says a replay spent nothing', () => {
    const replay = display({ kind: 'replay', query_id: null, replay_of: 'abcdef0123', cost: null });
    expect(headline(replay)).toBe('replay of query abcdef01: nothing spent');
  });

  it('says what an estimate would cost', () => {
    expect(headline(display({ kind: 'estimate', query_id: null }))).toBe(
      'would cost epsilon=0.5'
    );
  });

  it('names a plain budget', () => {
    expect(headline(display({ kind: 'budget', cost: null }))).toBe('privacy budget');
  });
});

describe('queriesLeftText', () => {
  it('counts the queries like this one that still fit', () => {
    expect(queriesLeftText(display())).toBe('16 more queries like this fit');
    expect(queriesLeftText(display({ queries_left: 1 }))).toBe('1 more query like this fits');
    expect(queriesLeftText(display({ queries_left: 0 }))).toBe('no more queries like this fit');
    expect(queriesLeftText(display({ queries_left: null }))).toBeNull();
  });

  it('speaks of the last query on a plain budget display', () => {
    expect(queriesLeftText(display({ kind: 'budget', queries_left: 3 }))).toBe(
      '3 more queries like the last one fit'
    );
  });
});

describe('the bars', () => {
  it('show delta only where some was granted', () => {
    expect(shownBudgets({ epsilon: 1, delta: 0.001 })).toEqual(['epsilon', 'delta']);
    expect(shownBudgets({ epsilon: 1, delta: 0 })).toEqual(['epsilon']);
  });

  it('draw a query inside the spent part, and what is left', () => {
    const parts = barParts(display(), 'epsilon');
    expect(parts.map(p => [p.role, p.value])).toEqual([
      ['spent', 2],
      ['this', 0.5],
      ['left', 8]
    ]);
    [0.15, 0.05, 0.8].forEach((share, i) => expect(parts[i].share).toBeCloseTo(share));
    expect(barText(display(), 'epsilon')).toBe('spent 2 (0.5 by this query) · 8 left of 10');
  });

  it('draw an estimate inside what is left, which keeps the width its words say', () => {
    const estimate = display({ kind: 'estimate', query_id: null });
    const parts = barParts(estimate, 'epsilon');
    expect(parts.map(p => [p.role, !!p.within])).toEqual([
      ['spent', false],
      ['would', true],
      ['left', false]
    ]);
    expect(parts[0].share + parts[2].share).toBeCloseTo(1);
    expect(parts[1].share).toBeCloseTo(0.05);
    expect(parts[2].share).toBeCloseTo(0.8);
    expect(barText(estimate, 'epsilon')).toBe('spent 2 · would cost 0.5 · 8 left of 10');
  });

  it('draw a replay as spent and left only', () => {
    const replay = display({ kind: 'replay', cost: null, replay_of: 'abc' });
    expect(barParts(replay, 'epsilon').map(p => p.role)).toEqual(['spent', 'left']);
    expect(barText(replay, 'delta')).toBe('spent 0 · 0.001 left of 0.001');
  });

  it('keep every part within the bar whatever the numbers', () => {
    const odd = display({
      spent: { epsilon: 12, delta: 0 },
      remaining: { epsilon: 0, delta: 0.001 },
      cost: { epsilon: 20, delta: 0 }
    });
    const shares = barParts(odd, 'epsilon')
      .filter(p => !p.within)
      .map(p => p.share);
    expect(Math.min(...shares)).toBeGreaterThanOrEqual(0);
    expect(shares.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(1);
  });
});

describe('as of', () => {
  const now = new Date('2026-11-30T18:00:00Z');

  it('names the time and the query an older output came with', () => {
    expect(asOfLabel(display(), now)).toBe('as of 14:00:38 (query 3f2ff423)');
    expect(asOfLabel(display({ at: null }), now)).toBe('as of query 3f2ff423');
  });

  it('names the time otherwise, with the date when it was not today', () => {
    const budget = display({ kind: 'budget', query_id: null });
    expect(asOfLabel(budget, now)).toBe('as of 14:00:38');
    expect(asOfLabel(budget, new Date('2026-12-02T09:00:00Z'))).toBe('as of 2026-11-30 14:00');
  });

  it('says something true when there is neither', () => {
    expect(asOfLabel(display({ kind: 'budget', query_id: null, at: null }), now)).toBe(
      'as of an earlier output'
    );
    expect(
      asOfLabel(display({ kind: 'replay', query_id: null, replay_of: '0123456789', at: null }), now)
    ).toBe('as of the replay of query 01234567');
  });

  it('reads no time from a text that is none', () => {
    expect(formatTime('yesterday')).toBeNull();
  });
});
