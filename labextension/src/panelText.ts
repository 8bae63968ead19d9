/** The words of the side panel, apart from its DOM. */

import { ColumnInfo, DatasetsReply, DatasetSummary, QueryInfo } from './api';
import { BudgetDisplay, costText, formatNumber, formatTime, shortId, shortTime, shownBudgets } from './budget';
import type { RefreshProblem } from './sync';

export const PUBLIC_KEYS_EXPLAINED = 'you may group by these: every declared value is shown';

/** A dataset's budget as a display, so that the panel draws the bars the outputs draw. */
export function summaryDisplay(dataset: DatasetSummary): BudgetDisplay {
  return {
    dataset: dataset.name,
    kind: 'budget',
    initial: dataset.initial,
    spent: dataset.spent,
    remaining: dataset.remaining,
    cost: null,
    query_id: null,
    replay_of: null,
    queries_left: null,
    note: null,
    server: null,
    account: null,
    at: null
  };
}

function value(v: number | string): string {
  return typeof v === 'number' ? formatNumber(v) : v;
}

/** "0 to 100", "at least 0", "at most 100", or "" when the column has no bounds. */
export function boundsText(column: ColumnInfo): string {
  const { lower, upper } = column;
  const hasLower = lower !== null && lower !== undefined;
  const hasUpper = upper !== null && upper !== undefined;
  if (hasLower && hasUpper) {
    return `${value(lower)} to ${value(upper)}`;
  }
  if (hasLower) {
    return `at least ${value(lower)}`;
  }
  if (hasUpper) {
    return `at most ${value(upper)}`;
  }
  return '';
}

/** The declared categories, the first `max` of them, saying how many more there are. */
export function categoriesText(column: ColumnInfo, max = 12): string {
  const categories = column.categories ?? [];
  if (categories.length === 0) {
    return '';
  }
  const shown = categories.slice(0, max).map(String).join(', ');
  const more = categories.length - max;
  return more > 0 ? `${shown} and ${more} more` : shown;
}

/** "string", "float, may be missing". */
export function typeText(column: ColumnInfo): string {
  return column.nullable ? `${column.type}, may be missing` : column.type;
}

/**
 * The most one query may spend: the per-query cap, or what is left when that is less (a cap
 * of delta 0.01 means nothing on a budget of delta 0.001). Null without a cap: the bars say
 * what is left.
 */
export function maxQueryText(dataset: DatasetSummary): string | null {
  const max = dataset.max_query;
  if (!max) {
    return null;
  }
  const left = dataset.remaining;
  const most = {
    epsilon: Math.max(0, Math.min(max.epsilon, left.epsilon)),
    delta: Math.max(0, Math.min(max.delta, left.delta))
  };
  const capped = most.epsilon < max.epsilon || most.delta < max.delta;
  const text = `at most ${costText(most).replace(/=/g, ' ')} per query`;
  return capped ? `${text} (what is left)` : text;
}

const ENGINES: Record<string, string> = {
  'smartnoise-sql': 'SQL',
  smartnoise_sql: 'SQL',
  opendp: 'OpenDP'
};

export function engineText(engine: string): string {
  return ENGINES[engine] ?? engine;
}

/** The marks after a query: whether running it again is free, whether it repeated one. */
export function queryMarks(query: QueryInfo): string[] {
  const marks: string[] = [];
  if (query.status !== 'done') {
    marks.push(query.status);
  }
  if (query.replayable) {
    marks.push('free to rerun');
  }
  if (query.repeats) {
    marks.push(`fresh repeat of ${shortId(query.repeats)}`);
  }
  return marks;
}

/** "3f2ff423 · SQL · epsilon=0.5 · 14:03:12". */
export function queryLine(query: QueryInfo, now: Date = new Date()): string {
  const cost = query.cost ? costText(query.cost) : 'nothing spent';
  const parts = [shortId(query.query_id), engineText(query.engine), cost];
  const time = formatTime(query.created_at, now);
  if (time) {
    parts.push(time);
  }
  return parts.join(' · ');
}

export function connectionText(url: string, user: string | null): string {
  return user ? `${user} on ${url}` : url;
}

/** "could not refresh at 14:30: cannot reach the server": what keeps shown numbers from passing for current. */
export function staleText(message: string, at: number, now: Date = new Date()): string {
  return `Could not refresh at ${shortTime(at, now)}: ${message}`;
}

/**
 * The panel's live line, what a screen reader says after a refresh: "PENGUIN: epsilon 6 left"
 * for the dataset in view (the first when none is), or why nothing could be read.
 */
export function liveText(
  reply: Extract<DatasetsReply, { connected: true }> | null,
  problem: RefreshProblem | null,
  dataset: string | null,
  now: Date = new Date()
): string {
  if (problem) {
    return problem.kind === 'error' ? staleText(problem.message, problem.at, now) : problem.message;
  }
  if (!reply) {
    return '';
  }
  const shown = reply.datasets.find(d => d.name === dataset) ?? reply.datasets[0];
  if (!shown) {
    return 'No dataset has been granted to you yet.';
  }
  const left = shownBudgets(shown.initial)
    .map(name => `${name} ${formatNumber(shown.remaining[name])}`)
    .join(', ');
  return `${shown.name}: ${left} left`;
}

/** The datasets whose name contains `filter` (ignoring case); all of them for an empty filter. */
export function filterDatasets<T extends { name: string }>(datasets: T[], filter: string): T[] {
  const wanted = filter.trim().toLowerCase();
  return wanted ? datasets.filter(d => d.name.toLowerCase().includes(wanted)) : datasets;
}
