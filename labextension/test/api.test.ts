import { describe, expect, it } from 'vitest';

import { ColumnInfo, PanelApi, PanelError, QueryInfo, readReply } from '../src/api';
import {
  boundsText,
  categoriesText,
  liveText,
  maxQueryText,
  queryLine,
  queryMarks,
  staleText,
  typeText
} from '../src/panelText';

describe('readReply', () => {
  it('returns the JSON of a success', () => {
    expect(readReply(200, '{"connected": false, "message": "no"}')).toEqual({
      connected: false,
      message: 'no'
    });
  });

  it("shows the server's own message for an error", () => {
    const body = JSON.stringify({ error: 'not_found', message: 'No dataset named PENGUINS.' });
    expect(() => readReply(404, body)).toThrow(new PanelError('No dataset named PENGUINS.'));
  });

  it('says what to check when the routes are missing', () => {
    expect(() => readReply(404, '<html>404: Not Found</html>')).toThrow(/server extension enabled/);
  });

  it('never shows a stack or a page, only a line', () => {
    expect(() => readReply(500, 'Traceback (most recent call last): ...')).toThrow(
      new PanelError('The Jupyter server answered with an error (HTTP 500).')
    );
    expect(() => readReply(200, 'not json')).toThrow(PanelError);
    expect(() => readReply(403, '')).toThrow(/log in again/);
  });
});

describe('PanelApi', () => {
  it('reads the routes under the Jupyter server, names escaped', async () => {
    const asked: string[] = [];
    const api = new PanelApi(async path => {
      asked.push(path);
      return { status: 200, text: '{}' };
    });
    await api.datasets();
    await api.columns('MY DATA/1');
    await api.queries('PENGUIN');
    expect(asked).toEqual([
      'lomas-jupyter/api/datasets',
      'lomas-jupyter/api/datasets/MY%20DATA%2F1/columns',
      'lomas-jupyter/api/queries?dataset=PENGUIN&limit=20'
    ]);
  });
});

function column(overrides: Partial<ColumnInfo>): ColumnInfo {
  return {
    name: 'x',
    type: 'float',
    nullable: false,
    lower: null,
    upper: null,
    categories: null,
    public_keys: false,
    ...overrides
  };
}

describe('the panel in words', () => {
  it('says a column bounds', () => {
    expect(boundsText(column({ lower: 2700, upper: 6300 }))).toBe('2700 to 6300');
    expect(boundsText(column({ lower: 0 }))).toBe('at least 0');
    expect(boundsText(column({ upper: 1.5 }))).toBe('at most 1.5');
    expect(boundsText(column({}))).toBe('');
    expect(boundsText(column({ lower: '2020-01-01', upper: '2024-12-31' }))).toBe(
      '2020-01-01 to 2024-12-31'
    );
  });

  it('lists categories, and how many more there are', () => {
    expect(categoriesText(column({ categories: ['Adelie', 'Chinstrap', 'Gentoo'] }))).toBe(
      'Adelie, Chinstrap, Gentoo'
    );
    const many = column({ categories: Array.from({ length: 15 }, (_, i) => `c${i}`) });
    expect(categoriesText(many, 2)).toBe('c0, c1 and 13 more');
    expect(typeText(column({ nullable: true }))).toBe('float, may be missing');
  });

  it("says a dataset's per-query maximum", () => {
    const dataset = {
      name: 'PENGUIN',
      engines: [],
      initial: { epsilon: 10, delta: 0.001 },
      spent: { epsilon: 0, delta: 0 },
      remaining: { epsilon: 10, delta: 0.001 },
      max_query: { epsilon: 2, delta: 1e-5 }
    };
    expect(maxQueryText(dataset)).toBe('at most epsilon 2, delta 1e-05 per query');
    expect(maxQueryText({ ...dataset, max_query: null })).toBeNull();
    // A cap beyond the whole budget is no limit: what is left is.
    const wide = { ...dataset, max_query: { epsilon: 10, delta: 0.01 } };
    expect(maxQueryText(wide)).toBe('at most epsilon 10, delta 0.001 per query (what is left)');
    const spent = { ...dataset, remaining: { epsilon: 1.5, delta: 0 }, max_query: { epsilon: 2, delta: 1e-5 } };
    expect(maxQueryText(spent)).toBe('at most epsilon 1.5 per query (what is left)');
  });

  it('marks replays and fresh repeats', () => {
    const query: QueryInfo = {
      query_id: '3f2ff423aa5b',
      dataset: 'PENGUIN',
      engine: 'smartnoise-sql',
      query: 'SELECT COUNT(*) FROM df',
      cost: { epsilon: 0.5, delta: 0 },
      status: 'done',
      created_at: '2026-11-30T14:03:12+00:00',
      replayable: true,
      repeats: null
    };
    expect(queryMarks(query)).toEqual(['free to rerun']);
    expect(queryMarks({ ...query, replayable: false, repeats: 'abcdef0123' })).toEqual([
      'fresh repeat of abcdef01'
    ]);
    expect(queryMarks({ ...query, status: 'failed', replayable: false })).toEqual(['failed']);
    expect(queryLine(query, new Date('2026-11-30T20:00:00Z'))).toBe(
      '3f2ff423 · SQL · epsilon=0.5 · 14:03:12'
    );
    expect(queryLine({ ...query, engine: 'opendp', cost: null }, new Date('2026-11-30T20:00:00Z'))).toBe(
      '3f2ff423 · OpenDP · nothing spent · 14:03:12'
    );
  });
});

describe('the live line', () => {
  const now = new Date('2026-11-30T15:00:00Z');
  const reply = {
    connected: true as const,
    url: 'http://x',
    user: null,
    datasets: [
      {
        name: 'PENGUIN',
        engines: [],
        initial: { epsilon: 10, delta: 0 },
        spent: { epsilon: 4, delta: 0 },
        remaining: { epsilon: 6, delta: 0 },
        max_query: null
      }
    ]
  };

  it("says the budget left of the dataset in view", () => {
    expect(liveText(reply, null, 'PENGUIN', now)).toBe('PENGUIN: epsilon 6 left');
    expect(liveText(reply, null, null, now)).toBe('PENGUIN: epsilon 6 left');
    expect(liveText({ ...reply, datasets: [] }, null, null, now)).toBe(
      'No dataset has been granted to you yet.'
    );
  });

  it('says why a refresh brought nothing', () => {
    const at = Date.parse('2026-11-30T14:30:00Z');
    expect(liveText(reply, { kind: 'error', message: 'down', at }, 'PENGUIN', now)).toBe(
      'Could not refresh at 14:30: down'
    );
    expect(staleText('down', at, now)).toBe('Could not refresh at 14:30: down');
    expect(liveText(null, { kind: 'not_configured', message: 'Start it with X.', at }, null, now)).toBe(
      'Start it with X.'
    );
  });
});
