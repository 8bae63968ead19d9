import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  EditorExtensionRegistry,
  IEditorExtensionRegistry,
  IEditorLanguageRegistry
} from '@jupyterlab/codemirror';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { IStatusBar } from '@jupyterlab/statusbar';
import { refreshIcon } from '@jupyterlab/ui-components';
import type { Language } from '@codemirror/language';

import { PanelApi } from './api';
import { isIPythonMimeType, MagicLanguage } from './cellLanguage';
import { magicLanguage } from './editorLanguage';
import { budgetIcon } from './icon';
import { jupyterFetch } from './jupyterFetch';
import { ActiveNotebookBudget } from './notebookBudget';
import { BudgetPanel } from './panel';
import { budgetRendererFactory } from './renderer';
import { BudgetStatus } from './status';
import { BudgetStore } from './store';
import { ServerBudgets } from './sync';

const OPEN_PANEL = 'lomas-jupyter:open-budget-panel';
const PANEL_ID = 'lomas-jupyter-budget';

/** One store for the page: every renderer, the status bar and the panel read it. */
const store = new BudgetStore();

/**
 * The route's budgets, read by the panel and the status bar alike (set by the panel plugin,
 * which has the Jupyter server's settings).
 */
let serverBudgets: ServerBudgets | null = null;

function budgetsOf(app: JupyterFrontEnd): ServerBudgets {
  if (!serverBudgets) {
    serverBudgets = new ServerBudgets(
      new PanelApi(jupyterFetch(app.serviceManager.serverSettings)),
      store
    );
  }
  return serverBudgets;
}

const renderer: JupyterFrontEndPlugin<void> = {
  id: 'lomas-jupyter:renderer',
  description: 'Renders lomas budget displays (application/vnd.lomas.budget+json).',
  autoStart: true,
  requires: [IRenderMimeRegistry],
  activate: (_: JupyterFrontEnd, rendermime: IRenderMimeRegistry) => {
    // Notebooks copy this registry when they open, after every plugin has started.
    rendermime.addFactory(budgetRendererFactory(store), 0);
  }
};

const panel: JupyterFrontEndPlugin<void> = {
  id: 'lomas-jupyter:panel',
  description: 'The Privacy budget side panel: datasets, columns and recent queries.',
  autoStart: true,
  optional: [ILayoutRestorer],
  activate: (app: JupyterFrontEnd, restorer: ILayoutRestorer | null) => {
    const widget = new BudgetPanel({
      api: new PanelApi(jupyterFetch(app.serviceManager.serverSettings)),
      store,
      sync: budgetsOf(app),
      refreshIcon: () => refreshIcon.element({ tag: 'span', elementSize: 'normal' })
    });
    widget.id = PANEL_ID;
    widget.title.icon = budgetIcon;
    widget.title.label = '';
    app.shell.add(widget, 'right', { rank: 900 });
    restorer?.add(widget, PANEL_ID);

    // For the status bar item. Not in the command palette: JupyterLab already lists every side
    // panel there ("Show Privacy budget"), and two entries for one panel confuse.
    app.commands.addCommand(OPEN_PANEL, {
      label: 'Show the privacy budget panel',
      caption: 'Datasets, their budgets, columns and recent queries',
      icon: budgetIcon,
      execute: () => {
        app.shell.activateById(PANEL_ID);
      }
    });
  }
};

const status: JupyterFrontEndPlugin<void> = {
  id: 'lomas-jupyter:status',
  description: 'The budget left on the dataset the active notebook used last, in the status bar.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [IStatusBar],
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker, statusBar: IStatusBar | null) => {
    if (!statusBar) {
      // Notebook 7 has no status bar; the outputs and the panel say it all there.
      return;
    }
    const budget = new ActiveNotebookBudget(tracker, store);
    const item = new BudgetStatus(() => void app.commands.execute(OPEN_PANEL));
    const update = () => item.setBudget(budget.current, budget.freshness);
    budget.changed.connect(update);
    update();
    // Spending this page made no output for (a Python call, another browser) is in the route;
    // outputs schedule a read themselves (ServerBudgets follows the store).
    const sync = budgetsOf(app);
    tracker.currentChanged.connect(() => void sync.refresh());
    if (tracker.currentWidget) {
      void sync.refresh();
    }
    statusBar.registerStatusItem('lomas-jupyter:budget', {
      item,
      align: 'left',
      rank: 4,
      isActive: () => budget.current !== undefined,
      activeStateChanged: budget.changed
    });
  }
};

const cellLanguage: JupyterFrontEndPlugin<void> = {
  id: 'lomas-jupyter:cell-language',
  description:
    'Highlights %%lomas_sql cells as SQL, and %%lomas_opendp, %%lomas_synth and %%lomas_diffprivlib cells as YAML.',
  autoStart: true,
  requires: [IEditorExtensionRegistry, IEditorLanguageRegistry],
  activate: async (
    _: JupyterFrontEnd,
    extensions: IEditorExtensionRegistry,
    languages: IEditorLanguageRegistry
  ) => {
    // Loaded before the first editor opens, so that a cell is highlighted when it appears.
    const loaded = new Map<MagicLanguage, Language>();
    const wanted: Array<[MagicLanguage, string]> = [
      ['sql', 'text/x-sql'],
      ['yaml', 'text/x-yaml']
    ];
    await Promise.all(
      wanted.map(async ([name, mime]) => {
        try {
          const spec = await languages.getLanguage(mime);
          if (spec?.support) {
            loaded.set(name, spec.support.language);
          }
        } catch (reason) {
          console.warn(`lomas-jupyter: no ${name} highlighting`, reason);
        }
      })
    );
    extensions.addExtension({
      name: 'lomas-jupyter:cell-magic-language',
      factory: options =>
        EditorExtensionRegistry.createImmutableExtension(
          magicLanguage(
            loaded,
            () => isIPythonMimeType(options.model.mimeType),
            options.model.sharedModel.getSource()
          )
        )
    });
  }
};

export default [renderer, panel, status, cellLanguage];
