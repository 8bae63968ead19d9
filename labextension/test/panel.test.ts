import { Widget } from '@lumino/widgets';
import { afterEach, describe, expect, it, vi } from 'vitest';

import { DatasetsReply, PanelApi, PanelError } from '../src/api';
import { BudgetPanel } from '../src/panel';
import { BudgetStore } from '../src/store';
import { display } from './fixtures';

const DATASETS: DatasetsReply = {
  connected: true,
  url: 'http://127.0.0.1:8765',
  user: 'alice',
  datasets: [
    {
      name: 'PENGUIN',
      engines: ['smartnoise-sql', 'opendp'],
      initial: { epsilon: 10, delta: 0.001 },
      spent: { epsilon: 2, delta: 0 },
      remaining: { epsilon: 8, delta: 0.001 },
      max_query: { epsilon: 5, delta: 0.0005 }
    },
    {
      name: 'TITANIC',
      engines: ['smartnoise-sql'],
      initial: { epsilon: 1, delta: 0 },
      spent: { epsilon: 0, delta: 0 },
      remaining: { epsilon: 1, delta: 0 },
      max_query: null
    }
  ]
};

function fakeApi(datasets: () => Promise<DatasetsReply> = async () => DATASETS) {
  const calls: string[] = [];
  const api = {
    datasets: () => {
      calls.push('datasets');
      return datasets();
    },
    columns: async (name: string) => {
      calls.push(`columns ${name}`);
      if (name === 'TITANIC') {
        throw new PanelError('The DP server could not be reached.');
      }
      return {
        dataset: name,
        max_ids: 1,
        columns: [
          {
            name: 'species',
            type: 'string',
            nullable: false,
            lower: null,
            upper: null,
            categories: ['Adelie', 'Chinstrap', 'Gentoo'],
            public_keys: true
          },
          {
            name: 'body_mass_g',
            type: 'float',
            nullable: true,
            lower: 2700,
            upper: 6300,
            categories: null,
            public_keys: false
          }
        ]
      };
    },
    queries: async (name: string) => {
      calls.push(`queries ${name}`);
      return {
        queries: [
          {
            query_id: '3f2ff423aa5b',
            dataset: name,
            engine: 'smartnoise-sql',
            query: 'SELECT COUNT(*) AS n FROM df',
            cost: { epsilon: 0.5, delta: 0 },
            status: 'done',
            created_at: '2026-11-30T14:03:12+00:00',
            replayable: true,
            repeats: null
          }
        ]
      };
    }
  };
  return { api: api as unknown as PanelApi, calls };
}

const panels: BudgetPanel[] = [];

function open(api: PanelApi, store = new BudgetStore()): BudgetPanel {
  const panel = new BudgetPanel({ api, store });
  Widget.attach(panel, document.body);
  panels.push(panel);
  return panel;
}

async function settled(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await new Promise(resolve => setTimeout(resolve, 0));
  }
}

afterEach(() => {
  panels.splice(0).forEach(p => p.dispose());
  vi.useRealTimers();
});

describe('BudgetPanel', () => {
  it('lists the datasets with their budgets, none opened', async () => {
    const { api } = fakeApi();
    const panel = open(api);
    await panel.refresh();
    const text = panel.node.textContent ?? '';
    expect(text).toContain('Connected: alice on http://127.0.0.1:8765');
    const names = [...panel.node.querySelectorAll('.lomas-Panel-datasetName')].map(n => n.textContent);
    expect(names).toEqual(['PENGUIN', 'TITANIC']);
    expect(text).toContain('spent 2 · 8 left of 10');
    expect(text).toContain('at most epsilon 5, delta 0.0005 per query');
    expect(panel.selected).toBeNull();
    expect(panel.node.querySelector('.lomas-Panel-columns')).toBeNull();
  });

  it("shows a dataset's columns, its public keys, and its recent queries", async () => {
    const { api } = fakeApi();
    const panel = open(api);
    await panel.refresh();
    await panel.select('PENGUIN');
    const text = panel.node.textContent ?? '';
    expect(text).toContain(
      'Public keys (species): you may group by these: every declared value is shown.'
    );
    const columns = [...panel.node.querySelectorAll('.lomas-Panel-column')].map(c => [
      ...[...c.querySelectorAll('.lomas-Panel-columnHead > span')].map(n => n.textContent),
      ...[...c.querySelectorAll('.lomas-Panel-columnDetail')].map(n => n.textContent)
    ]);
    expect(columns).toEqual([
      ['species', 'string', 'public keys', 'values: Adelie, Chinstrap, Gentoo'],
      ['body_mass_g', 'float, may be missing', 'bounds: 2700 to 6300']
    ]);
    expect(text).toContain('free to rerun');
    expect(panel.node.querySelector('.lomas-Panel-queryText')?.textContent).toBe(
      'SELECT COUNT(*) AS n FROM df'
    );
    // The whole text opens from the keyboard: a disclosure, not a tooltip.
    const more = panel.node.querySelector('details.lomas-Panel-queryMore');
    expect(more?.querySelector('summary .lomas-Panel-queryText')).not.toBeNull();
  });

  it('offers a filter past ten datasets', async () => {
    const many = Array.from({ length: 12 }, (_, i) => ({
      ...(DATASETS as any).datasets[1],
      name: `DATA_${i}`
    }));
    const { api } = fakeApi(async () => ({ ...(DATASETS as any), datasets: many }));
    const panel = open(api);
    await panel.refresh();
    const filter = panel.node.querySelector('.lomas-Panel-filter') as HTMLInputElement;
    expect(filter.hidden).toBe(false);
    filter.value = 'data_1';
    filter.dispatchEvent(new Event('input'));
    const names = [...panel.node.querySelectorAll('.lomas-Panel-datasetName')].map(n => n.textContent);
    expect(names).toEqual(['DATA_1', 'DATA_10', 'DATA_11']);
    filter.value = 'nothing';
    filter.dispatchEvent(new Event('input'));
    expect(panel.node.textContent).toContain('No dataset name contains “nothing”.');
  });

  it('has no filter for a short list', async () => {
    const { api } = fakeApi();
    const panel = open(api);
    await panel.refresh();
    expect((panel.node.querySelector('.lomas-Panel-filter') as HTMLInputElement).hidden).toBe(true);
  });

  it('opens the dataset of the newest lomas output first', async () => {
    const store = new BudgetStore();
    store.observe(display({ dataset: 'TITANIC' }));
    const { api } = fakeApi();
    const panel = open(api, store);
    await panel.refresh();
    expect(panel.selected).toBe('TITANIC');
  });

  it('keeps a dataset the analyst closed closed', async () => {
    const store = new BudgetStore();
    store.observe(display());
    const { api } = fakeApi();
    const panel = open(api, store);
    await panel.refresh();
    expect(panel.selected).toBe('PENGUIN');
    await panel.select('PENGUIN');
    expect(panel.selected).toBeNull();
    await panel.refresh();
    expect(panel.selected).toBeNull();
    expect(panel.node.querySelector('.lomas-Panel-columns')).toBeNull();
  });

  it('shows an error as its message, in the panel', async () => {
    const { api } = fakeApi();
    const panel = open(api);
    await panel.refresh();
    await panel.select('TITANIC');
    const error = panel.node.querySelector('.lomas-mod-error');
    expect(error?.textContent).toBe('The DP server could not be reached.');
  });

  it("says how to connect, as information, when the Jupyter server has no connection", async () => {
    const { api } = fakeApi(async () => ({
      connected: false,
      reason: 'not_configured',
      message: 'This Jupyter server has no lomas connection: start it with LOMAS_URL set.'
    }));
    const panel = open(api);
    await panel.refresh();
    const message = panel.node.querySelector('.lomas-Panel-message.lomas-mod-info');
    expect(message?.textContent).toBe(
      'This Jupyter server has no lomas connection: start it with LOMAS_URL set.'
    );
    expect(panel.node.querySelector('.lomas-mod-error')).toBeNull();
  });

  it('keeps the last datasets when the DP server cannot be reached, marked stale', async () => {
    let reachable = true;
    const { api } = fakeApi(async () =>
      reachable
        ? DATASETS
        : { connected: false, reason: 'unreachable', message: 'cannot reach the server at x' }
    );
    const panel = open(api);
    await panel.refresh();
    reachable = false;
    await panel.refresh();
    const error = panel.node.querySelector('.lomas-Panel-message.lomas-mod-error');
    expect(error?.textContent).toMatch(/^Could not refresh at \d\d:\d\d: cannot reach the server at x$/);
    expect(panel.node.querySelector('.lomas-Panel-datasets.lomas-mod-stale')).not.toBeNull();
    expect(panel.node.textContent).toContain('spent 2 · 8 left of 10');
    expect(panel.node.textContent).toContain('Read at ');
  });

  it('says what a refresh found in one live line, and nothing else is live', async () => {
    const { api } = fakeApi();
    const panel = open(api);
    await panel.refresh();
    expect(panel.node.querySelector('[aria-live]')).toBeNull();
    const live = panel.node.querySelector('[role="status"]');
    expect(live?.textContent).toBe('PENGUIN: epsilon 8, delta 0.001 left');
    expect(panel.node.querySelector('.lomas-Panel-body')?.getAttribute('aria-busy')).toBe('false');
  });

  it('keeps the focus on the dataset it was on when the panel is redrawn', async () => {
    const { api } = fakeApi();
    const panel = open(api);
    await panel.refresh();
    const titanic = () =>
      [...panel.node.querySelectorAll<HTMLElement>('.lomas-Panel-datasetName')].find(
        n => n.textContent === 'TITANIC'
      );
    titanic()?.focus();
    await panel.refresh();
    expect(document.activeElement).toBe(titanic());
  });

  it('shows a refresh under way, and takes no second click meanwhile', async () => {
    let release: () => void = () => undefined;
    const { api, calls } = fakeApi(
      () => new Promise<DatasetsReply>(resolve => (release = () => resolve(DATASETS)))
    );
    const panel = open(api);
    const first = panel.refresh();
    const button = panel.node.querySelector('.lomas-Panel-refresh') as HTMLButtonElement;
    expect(button.getAttribute('aria-disabled')).toBe('true');
    expect((panel.node.querySelector('.lomas-Panel-progress') as HTMLElement).hidden).toBe(false);
    expect(panel.node.querySelector('.lomas-Panel-body')?.getAttribute('aria-busy')).toBe('true');
    button.click();
    release();
    await first;
    await settled();
    expect(calls.filter(c => c === 'datasets')).toHaveLength(1);
    expect(button.getAttribute('aria-disabled')).toBe('false');
    expect((panel.node.querySelector('.lomas-Panel-progress') as HTMLElement).hidden).toBe(true);
  });

  it('turns an unexpected failure into one line', async () => {
    const { api } = fakeApi(async () => {
      throw new TypeError("Cannot read properties of undefined (reading 'x')");
    });
    const panel = open(api);
    await panel.refresh();
    expect(panel.node.querySelector('.lomas-mod-error')?.textContent).toBe(
      'Something went wrong reading the budget.'
    );
  });

  it('reads again when a new lomas output appears, opening its dataset, keeping its columns', async () => {
    const store = new BudgetStore();
    const { api, calls } = fakeApi();
    const panel = open(api, store);
    await panel.refresh();
    await settled();
    calls.length = 0;
    vi.useFakeTimers();
    store.observe(display({ at: '2027-01-01T00:00:00Z' }));
    store.observe(display({ at: '2027-01-01T00:00:01Z' }));
    await vi.advanceTimersByTimeAsync(600);
    expect(calls).toEqual(['datasets', 'columns PENGUIN', 'queries PENGUIN']);
    calls.length = 0;
    store.observe(display({ at: '2027-01-01T00:00:02Z' }));
    await vi.advanceTimersByTimeAsync(600);
    expect(calls).toEqual(['datasets', 'queries PENGUIN']);
  });
});
