import { LabIcon } from '@jupyterlab/ui-components';

// A gauge: how much of the budget is left. Drawn with JupyterLab's icon classes, so it takes
// the theme's colours.
const svgstr = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M12 4a10 10 0 0 0-10 10c0 1.9.53 3.68 1.45 5.2l1.72-1A8 8 0 0 1 4 14a8 8 0 0 1 16 0c0 1.5-.41 2.9-1.13 4.1l1.7 1.05A9.94 9.94 0 0 0 22 14 10 10 0 0 0 12 4z"/>
    <path d="M13.4 15.4a2 2 0 1 1-2.83-2.83L17 8l-3.6 7.4z"/>
  </g>
</svg>`;

export const budgetIcon = new LabIcon({ name: 'lomas-jupyter:budget', svgstr });
