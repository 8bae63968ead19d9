import { Widget } from '@lumino/widgets';

import { asOfLabel, formatNumber, shownBudgets } from './budget';
import { Seen } from './store';

export interface StatusText {
  /** What the status bar shows: "PENGUIN: ε 8.5 left", with δ when the dataset has delta. */
  text: string;
  /** The same in words, for the tooltip and screen readers. */
  title: string;
}

export function statusText(seen: Seen): StatusText {
  const d = seen.display;
  const names = shownBudgets(d.initial);
  const symbols = names.map(
    name => `${name === 'epsilon' ? 'ε' : 'δ'} ${formatNumber(d.remaining[name])}`
  );
  const words = names.map(
    name =>
      `${name} ${formatNumber(d.remaining[name])} of ${formatNumber(d.initial[name])}`
  );
  return {
    text: `${d.dataset}: ${symbols.join(', ')} left`,
    title:
      `Privacy budget left on ${d.dataset}, ${asOfLabel(d)}: ${words.join(', ')}. ` +
      'Click to open the Privacy budget panel.'
  };
}

/**
 * The status bar item: the budget left on the dataset the active notebook used last. It is a
 * button, so that the keyboard reaches the panel as the mouse does.
 */
export class BudgetStatus extends Widget {
  constructor(onClick: () => void) {
    super({ node: document.createElement('button') });
    this.addClass('lomas-Status');
    this.addClass('jp-StatusBar-TextItem');
    (this.node as HTMLButtonElement).type = 'button';
    this.node.addEventListener('click', onClick);
  }

  /** Shows `seen`, or nothing (the item is then hidden by the status bar). */
  setBudget(seen: Seen | undefined): void {
    if (!seen) {
      this.node.textContent = '';
      this.node.removeAttribute('title');
      this.node.removeAttribute('aria-label');
      return;
    }
    const { text, title } = statusText(seen);
    this.node.textContent = text;
    this.node.title = title;
    this.node.setAttribute('aria-label', title);
  }
}
