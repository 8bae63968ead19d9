/**
 * The panel's data: the read-only routes of the analyst's own Jupyter server
 * (lomas_jupyter/_lab.py). They hold the lomas connection, so no lomas token is ever in the page.
 */

import { Amount } from './budget';

export interface DatasetSummary {
  name: string;
  engines: string[];
  initial: Amount;
  spent: Amount;
  remaining: Amount;
  max_query: Amount | null;
}

export type DatasetsReply =
  | {
      connected: true;
      url: string;
      user: string | null;
      /** A hash naming the analyst's account, as budget displays carry it (older servers: none). */
      account?: string | null;
      datasets: DatasetSummary[];
    }
  | {
      connected: false;
      /** Older servers give no reason; they meant not configured, or could not reach it. */
      reason?: 'not_configured' | 'unreachable';
      message: string;
    };

export interface ColumnInfo {
  name: string;
  type: string;
  nullable: boolean;
  lower: number | string | null;
  upper: number | string | null;
  categories: Array<string | number | boolean> | null;
  public_keys: boolean;
}

export interface ColumnsReply {
  dataset: string;
  max_ids: number;
  columns: ColumnInfo[];
}

export interface QueryInfo {
  query_id: string;
  dataset: string;
  engine: string;
  query: string;
  cost: Amount | null;
  status: string;
  created_at: string;
  replayable: boolean;
  repeats: string | null;
}

export interface QueriesReply {
  queries: QueryInfo[];
}

/** A failure the panel shows as it is: one readable line, never a stack. */
export class PanelError extends Error {}

/** GET a path under the Jupyter server's base URL: its status and body. */
export type Fetch = (path: string) => Promise<{ status: number; text: string }>;

export const ROUTES = 'lomas-jupyter/api';

/** The reply's JSON, or a PanelError with the words the panel shows. */
export function readReply<T>(status: number, text: string): T {
  let body: unknown = undefined;
  try {
    body = JSON.parse(text);
  } catch {
    // An HTML error page, or nothing: handled below by status.
  }
  const isObject = typeof body === 'object' && body !== null && !Array.isArray(body);
  if (status >= 200 && status < 300) {
    if (!isObject) {
      throw new PanelError("The Jupyter server's reply could not be read.");
    }
    return body as T;
  }
  const message = isObject ? (body as Record<string, unknown>).message : undefined;
  if (typeof message === 'string' && message.trim()) {
    throw new PanelError(message.trim());
  }
  if (status === 404) {
    throw new PanelError(
      'This Jupyter server does not serve the panel: is the lomas_jupyter server ' +
        'extension enabled? (jupyter server extension list)'
    );
  }
  if (status === 403 || status === 401) {
    throw new PanelError('Jupyter refused the request: reload the page to log in again.');
  }
  throw new PanelError(`The Jupyter server answered with an error (HTTP ${status}).`);
}

export class PanelApi {
  constructor(fetch: Fetch) {
    this._fetch = fetch;
  }

  datasets(): Promise<DatasetsReply> {
    return this._get<DatasetsReply>(`${ROUTES}/datasets`);
  }

  columns(dataset: string): Promise<ColumnsReply> {
    return this._get<ColumnsReply>(`${ROUTES}/datasets/${encodeURIComponent(dataset)}/columns`);
  }

  queries(dataset: string, limit = 20): Promise<QueriesReply> {
    const query = `dataset=${encodeURIComponent(dataset)}&limit=${limit}`;
    return this._get<QueriesReply>(`${ROUTES}/queries?${query}`);
  }

  private async _get<T>(path: string): Promise<T> {
    const { status, text } = await this._fetch(path);
    return readReply<T>(status, text);
  }

  private _fetch: Fetch;
}
