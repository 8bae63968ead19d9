import { ensureSyntaxTree, Language, language, StreamLanguage } from '@codemirror/language';
import { sql, StandardSQL } from '@codemirror/lang-sql';
import { yaml } from '@codemirror/legacy-modes/mode/yaml';
import { classHighlighter, highlightTree } from '@lezer/highlight';
import { Compartment, EditorState, Extension } from '@codemirror/state';
import { describe, expect, it } from 'vitest';

import { cellMagicLanguage, isIPythonMimeType, MagicLanguage } from '../src/cellLanguage';
import { magicLanguage } from '../src/editorLanguage';

describe('cellMagicLanguage', () => {
  it.each([
    ['%%lomas_sql\nSELECT COUNT(*) FROM df', 'sql'],
    ['%%lomas_sql --epsilon 0.5 by_island <<\nSELECT 1', 'sql'],
    ['%%lomas_sql', 'sql'],
    ['%%lomas_sql\r\nSELECT 1', 'sql'],
    ['\n  %%lomas_sql -d PENGUIN\nSELECT 1', 'sql'],
    ['%%lomas_opendp --epsilon 0.5\ngroup_by: [sex]', 'yaml'],
    ['%%lomas_synth PENGUIN synthetic <<\nsynthesizer: mst', 'yaml'],
    ['%%lomas_diffprivlib --estimate PENGUIN\nmodel: pca', 'yaml']
  ])('%j is %s', (source, lang) => {
    expect(cellMagicLanguage(source)).toBe(lang);
  });

  it.each([
    ['SELECT 1'],
    ['%lomas_sql SELECT 1'],
    ['%%sql\nSELECT 1'],
    ['%%lomas_sqlite\nSELECT 1'],
    ['x = 1\n%%lomas_sql\nSELECT 1'],
    ['# %%lomas_sql'],
    ['']
  ])('%j is kernel code', source => {
    expect(cellMagicLanguage(source)).toBeNull();
  });

  it('knows which editors hold kernel code', () => {
    expect(isIPythonMimeType('text/x-ipython')).toBe(true);
    expect(isIPythonMimeType('text/x-python')).toBe(true);
    expect(isIPythonMimeType('text/x-ipythongfm')).toBe(false);
    expect(isIPythonMimeType('text/plain')).toBe(false);
  });
});

describe('magicLanguage', () => {
  const kernel = StreamLanguage.define({ name: 'kernel', token: s => (s.skipToEnd(), null) });
  const sqlish = StreamLanguage.define({ name: 'sql', token: s => (s.skipToEnd(), null) });
  const yamlish = StreamLanguage.define({ name: 'yaml', token: s => (s.skipToEnd(), null) });
  const languages = new Map<MagicLanguage, Language>([
    ['sql', sqlish],
    ['yaml', yamlish]
  ]);

  function editor(doc: string, applies = () => true, more: Extension = kernel): EditorState {
    // The kernel's language first, as JupyterLab configures it; ours must win over it.
    return EditorState.create({
      doc,
      extensions: [more, magicLanguage(languages, applies, doc)]
    });
  }

  it('highlights a %%lomas_sql cell as SQL, and others in the kernel language', () => {
    expect(editor('%%lomas_sql\nSELECT 1').facet(language)?.name).toBe('sql');
    expect(editor('%%lomas_opendp\ngroup_by: [sex]').facet(language)?.name).toBe('yaml');
    expect(editor('print(1)').facet(language)?.name).toBe('kernel');
  });

  it('follows the cell as it is edited', () => {
    let state = editor('SELECT 1');
    state = state.update({ changes: { from: 0, insert: '%%lomas_sql\n' } }).state;
    expect(state.facet(language)?.name).toBe('sql');
    state = state.update({ changes: { from: 0, to: 2 } }).state;
    expect(state.facet(language)?.name).toBe('kernel');
  });

  it('leaves editors that hold no kernel code alone (markdown cells, files)', () => {
    expect(editor('%%lomas_sql\nSELECT 1', () => false).facet(language)?.name).toBe('kernel');
  });

  it('looks again when the configuration changes (the notebook sets the mime type)', () => {
    let holdsCode = false;
    const compartment = new Compartment();
    let state = editor('%%lomas_sql\nSELECT 1', () => holdsCode, compartment.of(kernel));
    expect(state.facet(language)?.name).toBe('kernel');
    holdsCode = true;
    state = state.update({ effects: compartment.reconfigure(kernel) }).state;
    expect(state.facet(language)?.name).toBe('sql');
  });

  it('configures no language of its own before the kernel has one', () => {
    // JupyterLab loads the kernel's language after the editor exists: until then there is
    // none, and CodeMirror's parser must not be asked for one.
    const compartment = new Compartment();
    let state = editor('print(1)', () => true, compartment.of([]));
    expect(state.facet(language)).toBeNull();
    state = state.update({ changes: { from: 0, insert: '# ' } }).state;
    state = state.update({ effects: compartment.reconfigure(kernel) }).state;
    expect(state.facet(language)?.name).toBe('kernel');
    state = state.update({ changes: { from: 0, insert: '%%lomas_sql\n' } }).state;
    expect(state.facet(language)?.name).toBe('sql');
  });
});

describe('the magic line is not read as the body', () => {
  const languages = new Map<MagicLanguage, Language>([
    ['sql', sql({ dialect: StandardSQL }).language],
    ['yaml', StreamLanguage.define(yaml)]
  ]);

  /** The highlighted pieces of `doc`: [text, classes]. */
  function tokens(doc: string): Array<[string, string]> {
    const state = EditorState.create({ doc, extensions: magicLanguage(languages, () => true, doc) });
    const tree = ensureSyntaxTree(state, doc.length, 5000);
    const found: Array<[string, string]> = [];
    highlightTree(tree!, classHighlighter, (from, to, classes) => {
      found.push([doc.slice(from, to), classes]);
    });
    return found;
  }

  it('leaves the %%lomas_sql line plain and highlights the SQL under it', () => {
    const doc = '%%lomas_sql --epsilon 0.5 --fresh\nSELECT COUNT(*) AS n FROM df -- a comment';
    const found = tokens(doc);
    const firstLine = doc.indexOf('\n');
    expect(found.filter(([text]) => doc.indexOf(text) < firstLine)).toEqual([]);
    expect(found).toContainEqual(['SELECT', 'tok-keyword']);
    expect(found).toContainEqual(['-- a comment', 'tok-comment']);
  });

  it('leaves the %%lomas_opendp line plain and highlights the YAML under it', () => {
    const doc = '%%lomas_opendp --epsilon 0.5\ngroup_by: [sex]  # by sex';
    const found = tokens(doc);
    expect(found.some(([text]) => text.includes('%%') || text.includes('epsilon'))).toBe(false);
    expect(found.map(([, classes]) => classes)).toContain('tok-comment');
  });

  it('reads the body again when the magic line changes', () => {
    const doc = '%%lomas_sql\nSELECT 1';
    let state = EditorState.create({ doc, extensions: magicLanguage(languages, () => true, doc) });
    ensureSyntaxTree(state, state.doc.length, 5000);
    state = state.update({ changes: { from: 11, insert: ' --fresh' } }).state;
    const tree = ensureSyntaxTree(state, state.doc.length, 5000)!;
    const text = state.doc.toString();
    const comments: string[] = [];
    highlightTree(tree, classHighlighter, (from, to, classes) => {
      if (classes.includes('comment')) {
        comments.push(text.slice(from, to));
      }
    });
    expect(comments).toEqual([]);
  });
});
