/**
 * The budget display the kernel sends (lomas_jupyter/_display.py, `BudgetDisplay.data()`),
 * read defensively, and the words and numbers every view of it shares.
 *
 * The numbers are the server's: they are shown as they came. Only the bars' geometry is
 * derived from them.
 */

export const MIME_TYPE = 'application/vnd.lomas.budget+json';

export interface Amount {
  epsilon: number;
  delta: number;
}

export type DisplayKind = 'query' | 'replay' | 'estimate' | 'budget';

export interface BudgetDisplay {
  dataset: string;
  kind: DisplayKind;
  initial: Amount;
  spent: Amount;
  remaining: Amount;
  cost: Amount | null;
  query_id: string | null;
  replay_of: string | null;
  queries_left: number | null;
  note: string | null;
  /**
   * Whose budget on which server: the DP server's URL and a hash naming the analyst's account
   * (never the token). Outputs of older kernels have neither; they form a budget of their own.
   */
  server: string | null;
  account: string | null;
  /** When the kernel made it (ISO 8601); displays from older kernels have none. */
  at: string | null;
}

export type BudgetName = keyof Amount;

const KINDS: DisplayKind[] = ['query', 'replay', 'estimate', 'budget'];

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function readAmount(value: unknown): Amount | null {
  if (!isRecord(value)) {
    return null;
  }
  const { epsilon, delta } = value;
  if (typeof epsilon !== 'number' || !Number.isFinite(epsilon)) {
    return null;
  }
  // A missing delta is zero: pure-DP budgets have nothing else to say.
  const d = delta === undefined || delta === null ? 0 : delta;
  if (typeof d !== 'number' || !Number.isFinite(d)) {
    return null;
  }
  return { epsilon, delta: d };
}

function readText(value: unknown): string | null {
  return typeof value === 'string' && value !== '' ? value : null;
}

/**
 * The display in `data`, or null when it is not one: an output is the notebook's content,
 * and a malformed one must show a line, not break the page.
 */
export function readDisplay(data: unknown): BudgetDisplay | null {
  if (!isRecord(data) || typeof data.dataset !== 'string') {
    return null;
  }
  const initial = readAmount(data.initial);
  const spent = readAmount(data.spent);
  const remaining = readAmount(data.remaining);
  if (!initial || !spent || !remaining) {
    return null;
  }
  const kind = KINDS.includes(data.kind as DisplayKind) ? (data.kind as DisplayKind) : 'budget';
  const left = data.queries_left;
  return {
    dataset: data.dataset,
    kind,
    initial,
    spent,
    remaining,
    cost: readAmount(data.cost),
    query_id: readText(data.query_id),
    replay_of: readText(data.replay_of),
    queries_left:
      typeof left === 'number' && Number.isInteger(left) && left >= 0 ? left : null,
    note: readText(data.note),
    server: readText(data.server),
    account: readText(data.account),
    at: readText(data.at)
  };
}

/**
 * A number as the kernel's text display writes it (Python's `{:.6g}`), so that the bars, the
 * text fallback and the status bar agree to the digit.
 */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) {
    return String(value);
  }
  if (value === 0) {
    return '0';
  }
  const [mantissa, exponentText] = value.toExponential(5).split('e');
  const exponent = Number(exponentText);
  if (exponent < -4 || exponent >= 6) {
    const digits = mantissa.replace(/\.?0+$/, '');
    const sign = exponent < 0 ? '-' : '+';
    return `${digits}e${sign}${String(Math.abs(exponent)).padStart(2, '0')}`;
  }
  return value.toFixed(Math.max(0, 5 - exponent)).replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '');
}

export function shortId(id: string | null): string {
  return (id ?? '?').slice(0, 8);
}

/** "epsilon=0.5", with the delta only when there is one. */
export function costText(cost: Amount | null): string {
  const c = cost ?? { epsilon: 0, delta: 0 };
  const text = `epsilon=${formatNumber(c.epsilon)}`;
  return c.delta > 0 ? `${text}, delta=${formatNumber(c.delta)}` : text;
}

export function headline(display: BudgetDisplay): string {
  switch (display.kind) {
    case 'replay':
      return `replay of query ${shortId(display.replay_of)}: nothing spent`;
    case 'estimate':
      return `would cost ${costText(display.cost)}`;
    case 'query':
      return `query ${shortId(display.query_id)} cost ${costText(display.cost)}`;
    default:
      return 'privacy budget';
  }
}

/** "3 more queries like this fit"; null when the kernel did not say. */
export function queriesLeftText(display: BudgetDisplay): string | null {
  const n = display.queries_left;
  if (n === null) {
    return null;
  }
  const like = display.kind === 'budget' ? 'like the last one' : 'like this';
  if (n === 0) {
    return `no more queries ${like} fit`;
  }
  return n === 1 ? `1 more query ${like} fits` : `${n} more queries ${like} fit`;
}

/** The budgets a display draws: epsilon always, delta only where some was granted. */
export function shownBudgets(initial: Amount): BudgetName[] {
  return initial.delta > 0 ? ['epsilon', 'delta'] : ['epsilon'];
}

export interface BarPart {
  /** What the segment is: its text label and its pattern. */
  role: 'spent' | 'this' | 'would' | 'left';
  label: string;
  value: number;
  /** Its width, as a share of the initial budget (0 to 1). */
  share: number;
  /**
   * Drawn inside the next part (at its start) rather than beside it: an estimate's cost is a
   * part of what is left, which its words ("10 left of 10") still count whole.
   */
  within?: boolean;
}

function clampShare(value: number, initial: number): number {
  if (!(initial > 0)) {
    return 0;
  }
  return Math.min(1, Math.max(0, value / initial));
}

/**
 * The segments of one budget's bar, in order, and their labels.
 *
 * After a query, the spent part includes the query: its cost is drawn as the end of the
 * spent part rather than subtracted into "spent before", because on a zCDP dataset costs
 * do not add up in epsilon (docs/accounting.md) and the difference would be a number the
 * server never said. An estimate's cost is drawn inside what is left, which keeps its
 * whole width: the words say "10 left of 10", and so does the bar.
 */
export function barParts(display: BudgetDisplay, name: BudgetName): BarPart[] {
  const initial = display.initial[name];
  const spent = display.spent[name];
  const remaining = display.remaining[name];
  const cost = display.cost ? display.cost[name] : 0;
  const spentShare = clampShare(spent, initial);
  if (display.kind === 'query' && cost > 0) {
    const thisShare = Math.min(spentShare, clampShare(cost, initial));
    return [
      { role: 'spent', label: 'spent', value: spent, share: spentShare - thisShare },
      { role: 'this', label: 'this query', value: cost, share: thisShare },
      { role: 'left', label: 'left', value: remaining, share: clampShare(remaining, initial) }
    ];
  }
  if (display.kind === 'estimate' && cost > 0) {
    const leftShare = Math.min(clampShare(remaining, initial), 1 - spentShare);
    const wouldShare = Math.min(leftShare, clampShare(cost, initial));
    return [
      { role: 'spent', label: 'spent', value: spent, share: spentShare },
      { role: 'would', label: 'would cost', value: cost, share: wouldShare, within: true },
      { role: 'left', label: 'left', value: remaining, share: leftShare }
    ];
  }
  return [
    { role: 'spent', label: 'spent', value: spent, share: spentShare },
    { role: 'left', label: 'left', value: remaining, share: clampShare(remaining, initial) }
  ];
}

export interface BarWord {
  role: BarPart['role'];
  text: string;
}

/**
 * The numbers beside a bar, one phrase per segment, each named by the pattern it has in the
 * bar: "spent 2", "(0.5 by this query)", "8 left of 10".
 */
export function barWords(display: BudgetDisplay, name: BudgetName): BarWord[] {
  const of = formatNumber(display.initial[name]);
  return barParts(display, name).map(part => {
    const value = formatNumber(part.value);
    switch (part.role) {
      case 'spent':
        return { role: part.role, text: `spent ${value}` };
      case 'this':
        // Part of the spent total, not a third amount.
        return { role: part.role, text: `(${value} by this query)` };
      case 'would':
        return { role: part.role, text: `would cost ${value}` };
      default:
        return { role: part.role, text: `${value} left of ${of}` };
    }
  });
}

/** The same as one line: "spent 2 (0.5 by this query) · 8 left of 10". */
export function barText(display: BudgetDisplay, name: BudgetName): string {
  return barWords(display, name)
    .map((word, i) => (i === 0 ? '' : word.role === 'this' ? ' ' : ' · ') + word.text)
    .join('');
}

/** A time of day in the analyst's zone, with the date when it was not today. */
export function formatTime(iso: string, now: Date = new Date()): string | null {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) {
    return null;
  }
  const t = new Date(ms);
  const two = (n: number) => String(n).padStart(2, '0');
  const clock = `${two(t.getHours())}:${two(t.getMinutes())}:${two(t.getSeconds())}`;
  const sameDay =
    t.getFullYear() === now.getFullYear() &&
    t.getMonth() === now.getMonth() &&
    t.getDate() === now.getDate();
  if (sameDay) {
    return clock;
  }
  return `${t.getFullYear()}-${two(t.getMonth() + 1)}-${two(t.getDate())} ${clock.slice(0, 5)}`;
}

/** "14:30", with the date when it was not today. */
export function shortTime(ms: number, now: Date = new Date()): string {
  const full = formatTime(new Date(ms).toISOString(), now) ?? '';
  // formatTime gives seconds only for today ("14:30:13"); a glance needs minutes.
  return /^\d\d:\d\d:\d\d$/.test(full) ? full.slice(0, 5) : full;
}

/**
 * What an output that is no longer the newest for its dataset says instead of pretending
 * to be current: when it was made, and the query it came with.
 */
export function asOfLabel(display: BudgetDisplay, now: Date = new Date()): string {
  const time = display.at ? formatTime(display.at, now) : null;
  const query = display.kind === 'query' && display.query_id ? `query ${shortId(display.query_id)}` : null;
  if (time) {
    // The time says how old the numbers are; the query ties them to the result beside them.
    return query ? `as of ${time} (${query})` : `as of ${time}`;
  }
  if (query) {
    return `as of ${query}`;
  }
  if (display.kind === 'replay' && display.replay_of) {
    return `as of the replay of query ${shortId(display.replay_of)}`;
  }
  return 'as of an earlier output';
}
