import { Widget } from '@lumino/widgets';

import { asOfLabel, formatNumber, formatTime, shortTime, shownBudgets } from './budget';
import { Freshness, Seen } from './store';

export interface StatusText {
  /**
   * What the status bar shows: "PENGUIN: ε 8.5 left", with δ when the dataset has delta, and
   * "as of 14:30" when the numbers could not be confirmed since.
   */
  text: string;
  /** The same in words, for the tooltip and screen readers. */
  title: string;
}

/**
 * The status bar's words for `seen`. When `freshness` says the numbers are not known to be
 * current (a refresh since failed, or could not read this server's budget), the text itself
 * says as of when they are: a tooltip alone would let them pass for current.
 */
export function statusText(seen: Seen, freshness?: Freshness, now: Date = new Date()): StatusText {
  const d = seen.display;
  const names = shownBudgets(d.initial);
  const symbols = names.map(
    name => `${name === 'epsilon' ? 'ε' : 'δ'} ${formatNumber(d.remaining[name])}`
  );
  const words = names.map(
    name =>
      `${name} ${formatNumber(d.remaining[name])} of ${formatNumber(d.initial[name])}`
  );
  const stale = freshness !== undefined && !freshness.fresh;
  const time = freshness?.time ?? seen.time;
  const asOf = stale ? (time !== null ? ` as of ${shortTime(time, now)}` : ' as of an earlier output') : '';
  const when = stale
    ? `${asOf.trim()} (could not be confirmed since)`
    : time !== null
      ? `as of ${formatTime(new Date(time).toISOString(), now)}`
      : asOfLabel(d, now);
  return {
    text: `${d.dataset}: ${symbols.join(', ')} left${asOf}`,
    title:
      `Privacy budget left on ${d.dataset}, ${when}: ${words.join(', ')}. ` +
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
  setBudget(seen: Seen | undefined, freshness?: Freshness): void {
    if (!seen) {
      this.node.textContent = '';
      this.node.removeAttribute('title');
      this.node.removeAttribute('aria-label');
      return;
    }
    const { text, title } = statusText(seen, freshness);
    this.node.textContent = text;
    this.node.title = title;
    this.node.setAttribute('aria-label', title);
  }
}
