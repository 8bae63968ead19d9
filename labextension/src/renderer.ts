import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { MIME_TYPE, readDisplay } from './budget';
import { markCurrent, renderDisplay } from './render';
import { BudgetStore, Seen } from './store';

/**
 * One budget output. It tells the store it was seen, and keeps its "as of" mark true as newer
 * displays for its budget (its server, account and dataset) appear, in this notebook or any
 * other, or the panel's route reads newer numbers.
 */
export class BudgetRenderer extends Widget implements IRenderMime.IRenderer {
  constructor(store: BudgetStore) {
    super();
    this._store = store;
    this.addClass('lomas-BudgetOutput');
    store.changed.connect(this._onChanged, this);
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    this.node.textContent = '';
    this._root = null;
    this._seen = null;
    const display = readDisplay(model.data[MIME_TYPE]);
    if (!display) {
      this.node.textContent = 'This lomas budget display could not be read.';
      return;
    }
    this._root = renderDisplay(this.node.ownerDocument, display);
    this.node.appendChild(this._root);
    // Seen after it is drawn: observing may emit `changed`, which marks it.
    this._seen = this._store.observe(display);
    this._mark();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._store.changed.disconnect(this._onChanged, this);
    super.dispose();
  }

  private _onChanged(_: BudgetStore, key: string): void {
    if (this._seen && this._seen.key === key) {
      this._mark();
    }
  }

  private _mark(): void {
    if (this._root && this._seen) {
      markCurrent(this._root, this._seen.display, this._store.isCurrent(this._seen));
    }
  }

  private _store: BudgetStore;
  private _root: HTMLElement | null = null;
  private _seen: Seen | null = null;
}

/**
 * The renderer factory. Safe: it writes text only, so outputs of untrusted notebooks show the
 * bars too rather than falling back to the HTML.
 */
export function budgetRendererFactory(store: BudgetStore): IRenderMime.IRendererFactory {
  return {
    safe: true,
    mimeTypes: [MIME_TYPE],
    defaultRank: 0,
    createRenderer: () => new BudgetRenderer(store)
  };
}
