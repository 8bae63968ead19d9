import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { Fetch, PanelError } from './api';

/**
 * GET through Jupyter's own connection settings, so that its login, base URL and XSRF
 * handling apply as to any of JupyterLab's requests.
 */
export function jupyterFetch(
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Fetch {
  return async (path: string) => {
    const url = URLExt.join(settings.baseUrl, path);
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, { method: 'GET' }, settings);
    } catch {
      throw new PanelError('The Jupyter server could not be reached.');
    }
    return { status: response.status, text: await response.text() };
  };
}
