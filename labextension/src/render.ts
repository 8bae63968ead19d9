/**
 * The DOM of a budget display: built from text nodes only (never HTML from the output), so
 * the renderer is safe in untrusted notebooks too.
 */

import {
  asOfLabel,
  barParts,
  barText,
  BarPart,
  barWords,
  BudgetDisplay,
  BudgetName,
  headline,
  queriesLeftText,
  shownBudgets
} from './budget';
import { element } from './dom';


/** The small square that ties a phrase to its segment's pattern, for eyes that need no colour. */
function swatch(doc: Document, role: string): HTMLElement {
  const node = element(doc, 'span', `lomas-Swatch lomas-mod-${role}`);
  node.setAttribute('aria-hidden', 'true');
  return node;
}

function percent(share: number): string {
  return `${(Math.min(1, share) * 100).toFixed(2)}%`;
}

/**
 * One budget's row: its name, then the bar and the numbers in words together, so that when the
 * numbers wrap at a narrow width they go under the bar, not under the name.
 */
export function budgetRow(doc: Document, display: BudgetDisplay, name: BudgetName): HTMLElement {
  const row = element(doc, 'div', 'lomas-BudgetRow');
  row.appendChild(element(doc, 'span', 'lomas-BudgetRow-name', name));
  const main = element(doc, 'span', 'lomas-BudgetRow-main');
  row.appendChild(main);

  const bar = element(doc, 'span', 'lomas-Bar');
  bar.setAttribute('role', 'img');
  bar.setAttribute('aria-label', `${name}: ${barText(display, name)}`);
  let inner: BarPart | null = null;
  for (const part of barParts(display, name)) {
    if (part.within) {
      inner = part;
      continue;
    }
    if (part.share <= 0) {
      continue;
    }
    const segment = element(doc, 'span', `lomas-Bar-part lomas-mod-${part.role}`);
    segment.style.width = percent(part.share);
    if (inner && inner.share > 0) {
      const child = element(doc, 'span', `lomas-Bar-part lomas-mod-${inner.role}`);
      child.style.width = percent(inner.share / part.share);
      segment.appendChild(child);
    }
    inner = null;
    bar.appendChild(segment);
  }
  main.appendChild(bar);

  const words = element(doc, 'span', 'lomas-BudgetRow-text');
  barWords(display, name).forEach((word, i) => {
    if (i > 0) {
      words.appendChild(doc.createTextNode(word.role === 'this' ? ' ' : ' · '));
    }
    const phrase = element(doc, 'span', 'lomas-Phrase');
    phrase.appendChild(swatch(doc, word.role));
    phrase.appendChild(doc.createTextNode(word.text));
    words.appendChild(phrase);
  });
  main.appendChild(words);
  return row;
}

/** The bars of every budget the dataset has. */
export function budgetRows(doc: Document, display: BudgetDisplay): HTMLElement {
  const rows = element(doc, 'div', 'lomas-BudgetRows');
  for (const name of shownBudgets(display.initial)) {
    rows.appendChild(budgetRow(doc, display, name));
  }
  return rows;
}

/** A whole output: headline, bars, how many more fit, the note, and a place for "as of". */
export function renderDisplay(doc: Document, display: BudgetDisplay): HTMLElement {
  const root = element(doc, 'div', `lomas-BudgetDisplay lomas-mod-${display.kind}`);
  const head = element(doc, 'div', 'lomas-BudgetDisplay-head');
  head.appendChild(element(doc, 'strong', 'lomas-BudgetDisplay-dataset', display.dataset));
  head.appendChild(doc.createTextNode(`: ${headline(display)}`));
  const asOf = element(doc, 'span', 'lomas-BudgetDisplay-asOf');
  asOf.hidden = true;
  head.appendChild(asOf);
  root.appendChild(head);
  root.appendChild(budgetRows(doc, display));
  const left = queriesLeftText(display);
  if (left) {
    root.appendChild(element(doc, 'div', 'lomas-BudgetDisplay-extra', left));
  }
  if (display.note) {
    root.appendChild(element(doc, 'div', 'lomas-BudgetDisplay-extra', display.note));
  }
  return root;
}

/**
 * Marks a rendered display as current, or as superseded by a newer display for its dataset
 * (then it says as of when its numbers are).
 */
export function markCurrent(root: HTMLElement, display: BudgetDisplay, current: boolean): void {
  root.classList.toggle('lomas-mod-superseded', !current);
  const asOf = root.querySelector<HTMLElement>('.lomas-BudgetDisplay-asOf');
  if (!asOf) {
    return;
  }
  asOf.hidden = current;
  asOf.textContent = current ? '' : asOfLabel(display);
  if (current) {
    asOf.removeAttribute('title');
  } else {
    asOf.title =
      `Newer numbers for ${display.dataset} have been seen since: ` +
      'these are from when this output was made.';
  }
}
