import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import {
  ColumnsReply,
  DatasetSummary,
  PanelApi,
  PanelError,
  QueriesReply
} from './api';
import {
  boundsText,
  categoriesText,
  connectionText,
  engineText,
  filterDatasets,
  liveText,
  maxQueryText,
  PUBLIC_KEYS_EXPLAINED,
  queryLine,
  queryMarks,
  staleText,
  summaryDisplay,
  typeText
} from './panelText';
import { shortTime } from './budget';
import { element as elementOf } from './dom';
import { budgetRows } from './render';
import { BudgetStore } from './store';
import { ConnectedReply, ServerBudgets } from './sync';

type Loaded<T> = { state: 'loading' } | { state: 'done'; value: T } | { state: 'failed'; message: string };

function messageOf(err: unknown): string {
  // Anything but our own errors is a bug or a network failure: one line, never a stack.
  return err instanceof PanelError ? err.message : 'Something went wrong reading the budget.';
}

async function load<T>(work: () => Promise<T>): Promise<Loaded<T>> {
  try {
    return { state: 'done', value: await work() };
  } catch (err) {
    return { state: 'failed', message: messageOf(err) };
  }
}

/** An element of the page (see dom.ts). */
function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text?: string
): HTMLElementTagNameMap[K] {
  return elementOf(document, tag, className, text);
}

/** Past this many datasets, a filter box helps find one. */
const FILTER_FROM = 10;

export interface BudgetPanelOptions {
  api: PanelApi;
  store: BudgetStore;
  /** The route's budgets, shared with the status bar; the panel makes its own without one. */
  sync?: ServerBudgets;
  /** The refresh button's icon (JupyterLab's); the button says "Refresh" without one. */
  refreshIcon?: () => HTMLElement;
}

/**
 * The side panel: the connected datasets with their budgets; a dataset's columns (types,
 * bounds, categories, public keys) and its recent queries.
 */
export class BudgetPanel extends Widget {
  constructor(options: BudgetPanelOptions) {
    super();
    this._api = options.api;
    this._store = options.store;
    this._ownsSync = !options.sync;
    this._sync = options.sync ?? new ServerBudgets(options.api, options.store);
    this.addClass('lomas-Panel');
    this.title.caption = 'Privacy budget';

    const header = element('div', 'lomas-Panel-header');
    header.appendChild(element('h2', 'lomas-Panel-title', 'Privacy budget'));
    const refresh = element('button', 'lomas-Panel-refresh jp-Button jp-mod-minimal');
    refresh.type = 'button';
    refresh.title = 'Refresh';
    refresh.setAttribute('aria-label', 'Refresh the privacy budget');
    if (options.refreshIcon) {
      refresh.appendChild(options.refreshIcon());
    } else {
      refresh.textContent = 'Refresh';
    }
    refresh.addEventListener('click', () => {
      if (!this._sync.refreshing) {
        void this.refresh(true);
      }
    });
    this._refreshButton = refresh;
    this._progress = element('span', 'lomas-Panel-progress', 'refreshing…');
    this._progress.hidden = true;
    header.appendChild(this._progress);
    header.appendChild(refresh);
    this.node.appendChild(header);
    // Outside the redrawn body, so that typing in it is never interrupted by a refresh.
    this._filter = element('input', 'lomas-Panel-filter jp-mod-styled');
    this._filter.type = 'search';
    this._filter.placeholder = 'Filter datasets';
    this._filter.setAttribute('aria-label', 'Filter datasets by name');
    this._filter.hidden = true;
    this._filter.addEventListener('input', () => this._render());
    this.node.appendChild(this._filter);
    // The body is redrawn at every step of a refresh: a live body would be read out whole
    // each time. One short line says what changed instead.
    this._live = element('div', 'lomas-Panel-live');
    this._live.setAttribute('role', 'status');
    this.node.appendChild(this._live);
    this._body = element('div', 'lomas-Panel-body');
    this.node.appendChild(this._body);

    this._sync.changed.connect(this._onSync, this);
    this._render();
  }

  /** The dataset whose columns and queries are shown, if any. */
  get selected(): string | null {
    return this._selected;
  }

  /**
   * Reads the datasets again, and the selected one's queries; its columns too when `all`
   * (they change only when the data owner changes the metadata).
   */
  async refresh(all = false): Promise<void> {
    if (all) {
      this._columnsOf = null;
    }
    await this._sync.refresh();
    await this._details;
  }

  /** Shows `dataset`'s columns and queries (or hides them, when it is already shown). */
  async select(dataset: string | null): Promise<void> {
    this._chosen = true;
    this._selected = dataset === this._selected ? null : dataset;
    await this._loadDetails(++this._generation);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._sync.changed.disconnect(this._onSync, this);
    if (this._ownsSync) {
      this._sync.dispose();
    }
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    if (this._stale || !this._sync.tried) {
      void this.refresh();
    }
  }

  private async _loadDetails(generation: number): Promise<void> {
    const dataset = this._selected;
    if (dataset === null) {
      this._columns = null;
      this._queries = null;
      this._render();
      return;
    }
    const known = this._columnsOf === dataset && this._columns?.state === 'done';
    if (!known) {
      this._columns = { state: 'loading' };
    }
    if (this._queriesOf !== dataset) {
      // Another dataset's list would mislead; the same one's stays until the new one is read.
      this._queries = { state: 'loading' };
    }
    this._render();
    const [columns, queries] = await Promise.all([
      known && this._columns ? this._columns : load(() => this._api.columns(dataset)),
      load(() => this._api.queries(dataset))
    ]);
    if (generation !== this._generation) {
      return;
    }
    this._columns = columns;
    this._columnsOf = dataset;
    this._queries = queries;
    this._queriesOf = dataset;
    this._render();
  }

  /** The datasets a refresh read, when it succeeded; none otherwise. */
  private _names(): string[] {
    const last = this._sync.last;
    return last ? last.reply.datasets.map(d => d.name) : [];
  }

  private _onSync(): void {
    if (this._sync.refreshing) {
      this._render();
      return;
    }
    this._announce();
    if (!this.isVisible) {
      // The queries are read again when the panel is shown.
      this._stale = true;
      this._render();
      return;
    }
    this._stale = false;
    this._details = this._afterDatasets();
  }

  private async _afterDatasets(): Promise<void> {
    const names = this._names();
    if (this._selected !== null && !names.includes(this._selected)) {
      this._selected = null;
    }
    if (this._selected === null && !this._chosen) {
      // Until the analyst picks one: the dataset of the newest lomas output, if any. Not the
      // first of the list: with many datasets its columns would push the others away.
      const latest = this._store.latest()?.display.dataset;
      this._selected = latest && names.includes(latest) ? latest : null;
    }
    await this._loadDetails(++this._generation);
  }

  private _render(): void {
    this._showBusy();
    const body = element('div', 'lomas-Panel-content');
    const last = this._sync.last;
    const problem = this._sync.problem;
    if (problem && problem.kind === 'not_configured') {
      // Not an error: the Jupyter server was started without a connection, and the message
      // says how to give it one.
      body.appendChild(this._message(problem.message, 'info'));
    } else if (last) {
      if (problem) {
        body.appendChild(this._message(staleText(problem.message, problem.at), 'error'));
      }
      this._renderDatasets(body, last.reply, problem !== null);
    } else if (problem) {
      body.appendChild(this._message(problem.message, 'error'));
    } else {
      body.appendChild(element('p', 'lomas-Panel-message', 'Reading your datasets…'));
    }
    // Redrawing must not throw the keyboard's place away: the same control is focused again.
    const focused = this._body.contains(document.activeElement)
      ? (document.activeElement as HTMLElement).dataset.lomasFocus
      : undefined;
    this._body.replaceChildren(body);
    if (focused) {
      [...body.querySelectorAll<HTMLElement>('[data-lomas-focus]')]
        .find(node => node.dataset.lomasFocus === focused)
        ?.focus();
    }
  }

  /** The header's progress and the body's `aria-busy`, while anything is being read. */
  private _showBusy(): void {
    const refreshing = this._sync.refreshing;
    const busy =
      refreshing || this._columns?.state === 'loading' || this._queries?.state === 'loading';
    this._body.setAttribute('aria-busy', String(busy));
    this._progress.hidden = !refreshing;
    // aria-disabled rather than disabled: a disabled button loses the keyboard's focus.
    this._refreshButton.setAttribute('aria-disabled', String(refreshing));
    this._refreshButton.classList.toggle('lomas-mod-busy', refreshing);
  }

  /** Says in one line what a finished refresh found, when that changed. */
  private _announce(): void {
    const text = liveText(this._sync.last?.reply ?? null, this._sync.problem, this._focusName());
    if (text !== this._live.textContent) {
      this._live.textContent = text;
    }
  }

  /** The dataset the live line speaks of: the open one, else the newest output's. */
  private _focusName(): string | null {
    return this._selected ?? this._store.latest()?.display.dataset ?? null;
  }

  private _message(text: string, kind: 'plain' | 'info' | 'error' = 'plain'): HTMLElement {
    return element('p', `lomas-Panel-message${kind === 'plain' ? '' : ` lomas-mod-${kind}`}`, text);
  }

  private _renderDatasets(body: HTMLElement, reply: ConnectedReply, stale: boolean): void {
    const read = this._sync.last ? shortTime(this._sync.last.at) : '';
    body.appendChild(
      element(
        'p',
        'lomas-Panel-connection',
        stale
          ? `Read at ${read} from ${connectionText(reply.url, reply.user)}`
          : `Connected: ${connectionText(reply.url, reply.user)}`
      )
    );
    if (reply.datasets.length === 0) {
      body.appendChild(this._message('No dataset has been granted to you yet.'));
      return;
    }
    const many = reply.datasets.length > FILTER_FROM;
    this._filter.hidden = !many;
    const shown = many ? filterDatasets(reply.datasets, this._filter.value) : reply.datasets;
    if (shown.length === 0) {
      body.appendChild(this._message(`No dataset name contains “${this._filter.value.trim()}”.`));
      return;
    }
    const list = element('ul', `lomas-Panel-datasets${stale ? ' lomas-mod-stale' : ''}`);
    for (const dataset of shown) {
      list.appendChild(this._renderDataset(dataset));
    }
    body.appendChild(list);
  }

  private _renderDataset(dataset: DatasetSummary): HTMLElement {
    const selected = dataset.name === this._selected;
    const item = element('li', `lomas-Panel-dataset${selected ? ' lomas-mod-selected' : ''}`);
    const name = element('button', 'lomas-Panel-datasetName', dataset.name);
    name.type = 'button';
    name.setAttribute('aria-expanded', String(selected));
    name.title = selected ? 'Hide its columns and queries' : 'Show its columns and queries';
    name.dataset.lomasFocus = `dataset:${dataset.name}`;
    name.addEventListener('click', () => void this.select(dataset.name));
    item.appendChild(name);
    const engines = dataset.engines.map(engineText).join(', ');
    if (engines) {
      item.appendChild(element('span', 'lomas-Panel-engines', engines));
    }
    item.appendChild(budgetRows(document, summaryDisplay(dataset)));
    const max = maxQueryText(dataset);
    if (max) {
      item.appendChild(element('div', 'lomas-Panel-note', max));
    }
    if (selected) {
      item.appendChild(this._renderColumns());
      item.appendChild(this._renderQueries());
    }
    return item;
  }

  private _renderColumns(): HTMLElement {
    const section = element('section', 'lomas-Panel-section');
    section.appendChild(element('h3', 'lomas-Panel-subtitle', 'Columns'));
    const columns = this._columns;
    if (!columns || columns.state === 'loading') {
      section.appendChild(this._message('Reading its columns…'));
      return section;
    }
    if (columns.state === 'failed') {
      section.appendChild(this._message(columns.message, 'error'));
      return section;
    }
    const reply: ColumnsReply = columns.value;
    const keys = reply.columns.filter(c => c.public_keys).map(c => c.name);
    if (keys.length > 0) {
      const note = element('p', 'lomas-Panel-note');
      note.appendChild(element('strong', '', 'Public keys'));
      note.appendChild(document.createTextNode(` (${keys.join(', ')}): ${PUBLIC_KEYS_EXPLAINED}.`));
      section.appendChild(note);
    }
    if (reply.max_ids > 1) {
      section.appendChild(
        element('p', 'lomas-Panel-note', `A person may have up to ${reply.max_ids} rows.`)
      );
    }
    // A list rather than a table: the panel is narrow, and a column's categories can be long.
    const list = element('ul', 'lomas-Panel-columns');
    for (const column of reply.columns) {
      const item = element('li', 'lomas-Panel-column');
      const head = element('div', 'lomas-Panel-columnHead');
      head.appendChild(element('span', 'lomas-Panel-columnName', column.name));
      head.appendChild(element('span', 'lomas-Panel-columnType', typeText(column)));
      if (column.public_keys) {
        const mark = element('span', 'lomas-Panel-publicKeys', 'public keys');
        mark.title = `Public keys: ${PUBLIC_KEYS_EXPLAINED}`;
        head.appendChild(mark);
      }
      item.appendChild(head);
      const bounds = boundsText(column);
      if (bounds) {
        item.appendChild(element('div', 'lomas-Panel-columnDetail', `bounds: ${bounds}`));
      }
      const categories = categoriesText(column);
      if (categories) {
        item.appendChild(element('div', 'lomas-Panel-columnDetail', `values: ${categories}`));
      }
      list.appendChild(item);
    }
    section.appendChild(list);
    return section;
  }

  private _renderQueries(): HTMLElement {
    const section = element('section', 'lomas-Panel-section');
    section.appendChild(element('h3', 'lomas-Panel-subtitle', 'Recent queries'));
    const queries = this._queries;
    if (!queries || queries.state === 'loading') {
      section.appendChild(this._message('Reading its queries…'));
      return section;
    }
    if (queries.state === 'failed') {
      section.appendChild(this._message(queries.message, 'error'));
      return section;
    }
    const reply: QueriesReply = queries.value;
    if (reply.queries.length === 0) {
      section.appendChild(this._message('No query yet.'));
      return section;
    }
    const list = element('ol', 'lomas-Panel-queries');
    for (const query of reply.queries) {
      const item = element('li', 'lomas-Panel-query');
      item.appendChild(element('div', 'lomas-Panel-queryLine', queryLine(query)));
      const marks = queryMarks(query);
      if (marks.length > 0) {
        item.appendChild(element('div', 'lomas-Panel-queryMarks', marks.join(' · ')));
      }
      // A disclosure, so that the whole text is reachable by keyboard, not only on hover.
      const more = element('details', 'lomas-Panel-queryMore');
      const summary = element('summary', 'lomas-Panel-querySummary');
      summary.setAttribute('aria-label', `Query text: ${query.query}`);
      summary.appendChild(element('code', 'lomas-Panel-queryText', query.query));
      more.appendChild(summary);
      item.appendChild(more);
      list.appendChild(item);
    }
    section.appendChild(list);
    return section;
  }

  private _api: PanelApi;
  private _store: BudgetStore;
  private _sync: ServerBudgets;
  private _ownsSync: boolean;
  private _details: Promise<void> = Promise.resolve();
  private _body: HTMLElement;
  private _filter: HTMLInputElement;
  private _live: HTMLElement;
  private _progress: HTMLElement;
  private _refreshButton: HTMLButtonElement;
  private _columns: Loaded<ColumnsReply> | null = null;
  private _columnsOf: string | null = null;
  private _queriesOf: string | null = null;
  private _queries: Loaded<QueriesReply> | null = null;
  private _selected: string | null = null;
  private _chosen = false;
  private _generation = 0;
  private _stale = true;
}
