/**
 * Which language a code cell's body is in, from its cell magic: `%%lomas_sql` cells are SQL,
 * `%%lomas_opendp`, `%%lomas_synth` and `%%lomas_diffprivlib` cells YAML.
 */

export type MagicLanguage = 'sql' | 'yaml';

const MAGICS: Record<string, MagicLanguage> = {
  lomas_sql: 'sql',
  lomas_opendp: 'yaml',
  lomas_synth: 'yaml',
  lomas_diffprivlib: 'yaml'
};

// IPython drops leading blank lines and indentation before it looks for a cell magic, so a
// cell that IPython runs as %%lomas_sql is highlighted as one.
const CELL_MAGIC = /^\s*%%([A-Za-z_]\w*)(?:[ \t]|\r?\n|$)/;

/** How much of a cell to read: the magic line is at its start. */
export const HEAD_LENGTH = 512;

export function cellMagicLanguage(source: string): MagicLanguage | null {
  const match = CELL_MAGIC.exec(source.slice(0, HEAD_LENGTH));
  return match ? (MAGICS[match[1]] ?? null) : null;
}

/** The editors whose text IPython runs: only there does a cell magic mean anything. */
export function isIPythonMimeType(mimeType: string): boolean {
  return mimeType === 'text/x-ipython' || mimeType === 'text/x-python';
}
