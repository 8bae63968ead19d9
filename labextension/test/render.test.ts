import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { MIME_TYPE } from '../src/budget';
import { renderDisplay } from '../src/render';
import { BudgetRenderer, budgetRendererFactory } from '../src/renderer';
import { BudgetStore } from '../src/store';
import { display } from './fixtures';

function model(data: unknown) {
  return {
    trusted: false,
    data: { [MIME_TYPE]: data, 'text/plain': 'PENGUIN: ...' },
    metadata: {},
    setData: () => undefined
  } as any;
}

async function rendered(store: BudgetStore, data: unknown): Promise<BudgetRenderer> {
  const renderer = new BudgetRenderer(store);
  await renderer.renderModel(model(data));
  return renderer;
}

function asOf(renderer: BudgetRenderer): HTMLElement {
  return renderer.node.querySelector('.lomas-BudgetDisplay-asOf') as HTMLElement;
}

describe('renderDisplay', () => {
  it('shows the headline, a bar per budget and the numbers in words', () => {
    const root = renderDisplay(document, display());
    expect(root.querySelector('.lomas-BudgetDisplay-head')?.textContent).toBe(
      'PENGUIN: query 3f2ff423 cost epsilon=0.5'
    );
    const rows = [...root.querySelectorAll('.lomas-BudgetRow')];
    expect(rows.map(r => r.querySelector('.lomas-BudgetRow-name')?.textContent)).toEqual([
      'epsilon',
      'delta'
    ]);
    expect(rows[0].querySelector('.lomas-BudgetRow-text')?.textContent).toBe(
      'spent 2 (0.5 by this query) · 8 left of 10'
    );
    expect(rows[0].querySelector('.lomas-Bar')?.getAttribute('aria-label')).toBe(
      'epsilon: spent 2 (0.5 by this query) · 8 left of 10'
    );
    expect(root.textContent).toContain('16 more queries like this fit');
  });

  it('gives "this query" its own patterned part, named by a swatch beside its number', () => {
    const root = renderDisplay(document, display());
    const parts = root.querySelectorAll('.lomas-BudgetRow')[0].querySelectorAll('.lomas-Bar-part');
    expect([...parts].map(p => [p.className, (p as HTMLElement).style.width])).toEqual([
      ['lomas-Bar-part lomas-mod-spent', '15%'],
      ['lomas-Bar-part lomas-mod-this', '5%'],
      ['lomas-Bar-part lomas-mod-left', '80%']
    ]);
    const phrase = root.querySelector('.lomas-Swatch.lomas-mod-this')?.parentElement;
    expect(phrase?.textContent).toBe('(0.5 by this query)');
  });

  it('keeps the bar and its numbers together, apart from the name, to wrap under the bar', () => {
    const row = renderDisplay(document, display()).querySelector('.lomas-BudgetRow') as HTMLElement;
    expect([...row.children].map(c => c.className)).toEqual([
      'lomas-BudgetRow-name',
      'lomas-BudgetRow-main'
    ]);
    expect([...row.children[1].children].map(c => c.className)).toEqual([
      'lomas-Bar',
      'lomas-BudgetRow-text'
    ]);
  });

  it("draws an estimate's cost inside what is left, as wide as its words", () => {
    const unspent = display({
      kind: 'estimate',
      query_id: null,
      spent: { epsilon: 0, delta: 0 },
      remaining: { epsilon: 10, delta: 0.001 },
      cost: { epsilon: 1.5, delta: 0 }
    });
    const row = renderDisplay(document, unspent).querySelector('.lomas-BudgetRow') as HTMLElement;
    expect(row.querySelector('.lomas-BudgetRow-text')?.textContent).toBe(
      'spent 0 · would cost 1.5 · 10 left of 10'
    );
    const left = row.querySelector('.lomas-Bar > .lomas-mod-left') as HTMLElement;
    expect(left.style.width).toBe('100%');
    expect((left.querySelector('.lomas-mod-would') as HTMLElement).style.width).toBe('15%');
  });

  it('draws a tiny amount as a part of its own, which the style keeps visible', () => {
    const tiny = display({
      spent: { epsilon: 1e-6, delta: 0 },
      remaining: { epsilon: 10 - 1e-6, delta: 0.001 },
      kind: 'budget',
      cost: null
    });
    const bar = renderDisplay(document, tiny).querySelector('.lomas-Bar') as HTMLElement;
    expect(bar.querySelector('.lomas-mod-spent')).not.toBeNull();
  });

  it('leaves delta out when none was granted', () => {
    const pure = display({ initial: { epsilon: 10, delta: 0 }, remaining: { epsilon: 8, delta: 0 } });
    expect(renderDisplay(document, pure).querySelectorAll('.lomas-BudgetRow')).toHaveLength(1);
  });

  it('writes the note as text, never as HTML', () => {
    const root = renderDisplay(document, display({ note: '<img src=x onerror=alert(1)>' }));
    expect(root.querySelector('img')).toBeNull();
    expect(root.textContent).toContain('<img src=x onerror=alert(1)>');
  });
});

describe('BudgetRenderer', () => {
  // The fixtures' outputs are from 2026-11-30: "today", so that 'as of' shows the clock only.
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2026-11-30T16:00:00Z'));
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('is safe and preferred to the HTML fallback', () => {
    const factory = budgetRendererFactory(new BudgetStore());
    expect(factory.safe).toBe(true);
    expect(factory.mimeTypes).toEqual([MIME_TYPE]);
    expect(factory.defaultRank).toBeLessThan(50);
  });

  it('marks an output "as of" once a newer one for its dataset appears', async () => {
    const store = new BudgetStore();
    const first = await rendered(store, display({ query_id: 'aaaa1111', at: '2026-11-30T14:00:00Z' }));
    expect(asOf(first).hidden).toBe(true);
    expect(first.node.querySelector('.lomas-mod-superseded')).toBeNull();

    const second = await rendered(store, display({ query_id: 'bbbb2222', at: '2026-11-30T14:01:00Z' }));
    expect(asOf(first).hidden).toBe(false);
    expect(asOf(first).textContent).toBe('as of 14:00:00 (query aaaa1111)');
    expect(first.node.querySelector('.lomas-mod-superseded')).not.toBeNull();
    expect(asOf(second).hidden).toBe(true);
  });

  it('marks an older output "as of" at once, when a newer one was seen first', async () => {
    const store = new BudgetStore();
    await rendered(store, display({ query_id: 'bbbb2222', at: '2026-11-30T14:01:00Z' }));
    const old = await rendered(store, display({ query_id: 'aaaa1111', at: '2026-11-30T14:00:00Z' }));
    expect(asOf(old).textContent).toBe('as of 14:00:00 (query aaaa1111)');
  });

  it('leaves other datasets current', async () => {
    const store = new BudgetStore();
    const penguin = await rendered(store, display());
    await rendered(store, display({ dataset: 'TITANIC', at: '2027-01-01T00:00:00Z' }));
    expect(asOf(penguin).hidden).toBe(true);
  });

  it("is not marked by another account's display, but by the route's newer numbers", async () => {
    const store = new BudgetStore();
    const mine = { server: 'http://a:1', account: 'aaaa' };
    const own = await rendered(store, display({ ...mine, at: '2026-11-30T14:00:00Z' }));
    await rendered(store, display({ ...mine, account: 'bbbb', query_id: 'bbbb2222', at: '2026-11-30T15:00:00Z' }));
    expect(asOf(own).hidden).toBe(true);
    store.recordServer(Date.parse('2026-11-30T15:00:00Z'), 'http://a:1', 'aaaa', [
      { name: 'PENGUIN', initial: { epsilon: 10, delta: 0.001 }, spent: { epsilon: 3, delta: 0 }, remaining: { epsilon: 7, delta: 0.001 } }
    ]);
    expect(asOf(own).hidden).toBe(false);
  });

  it('stops listening once disposed', async () => {
    const store = new BudgetStore();
    const first = await rendered(store, display({ query_id: 'aaaa1111', at: '2026-11-30T14:00:00Z' }));
    const node = first.node;
    first.dispose();
    await rendered(store, display({ query_id: 'bbbb2222', at: '2026-11-30T14:01:00Z' }));
    expect((node.querySelector('.lomas-BudgetDisplay-asOf') as HTMLElement).hidden).toBe(true);
  });

  it('says so in one line when the data is not a display', async () => {
    const renderer = await rendered(new BudgetStore(), { dataset: 3 });
    expect(renderer.node.textContent).toBe('This lomas budget display could not be read.');
  });
});
