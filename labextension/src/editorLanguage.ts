import { Language } from '@codemirror/language';
import { Compartment, EditorState, Extension, Prec } from '@codemirror/state';
import type { Input, Parser, PartialParse, TreeFragment } from '@lezer/common';

import { cellMagicLanguage, HEAD_LENGTH, MagicLanguage } from './cellLanguage';

const NONE: Extension = [];

/** Where a cell's body starts: after the line of its cell magic (and any blank lines before it). */
export function bodyStart(input: Input): number {
  const head = input.read(0, Math.min(input.length, HEAD_LENGTH));
  const magic = /^\s*%%[^\n]*(\n|$)/.exec(head);
  return magic ? magic[0].length : 0;
}

/** `input` with its first `upTo` characters blanked (newlines kept), positions unchanged. */
function blanked(input: Input, upTo: number): Input {
  const head = input.read(0, upTo).replace(/[^\n]/g, ' ');
  return {
    length: input.length,
    lineChunks: false,
    chunk: (from: number) => (from < upTo ? head.slice(from) : input.chunk(from)),
    read: (from: number, to: number) =>
      from >= upTo
        ? input.read(from, to)
        : head.slice(from, Math.min(to, upTo)) + (to > upTo ? input.read(upTo, to) : '')
  };
}

function asInput(text: Input | string): Input {
  if (typeof text !== 'string') {
    return text;
  }
  return {
    length: text.length,
    lineChunks: false,
    chunk: (from: number) => text.slice(from),
    read: (from: number, to: number) => text.slice(from, to)
  };
}

const bodies = new WeakMap<Language, Language>();

/**
 * `lang` for a cell's body only: the magic line (`%%lomas_sql --epsilon 0.5`) is blanked
 * before the parser reads it, so SQL does not take its `--` for a comment (nor YAML its `%`
 * for a directive) and it shows plain. Positions are unchanged, so this works with whichever
 * SQL and YAML parsers JupyterLab provides, Lezer's or stream parsers. Nothing of Lezer is
 * imported at run time: the page's copy stays the only one.
 */
export function bodyLanguage(lang: Language): Language {
  let body = bodies.get(lang);
  if (!body) {
    const inner = lang.parser;
    const startParse = (
      input: Input | string,
      _fragments?: readonly TreeFragment[],
      ranges?: readonly { from: number; to: number }[]
    ): PartialParse => {
      const text = asInput(input);
      // Without the old trees: an edit of the magic line (joining it with the next) changes
      // what is blanked beyond the edit. A cell is small enough to read whole each time.
      return inner.startParse(blanked(text, bodyStart(text)), undefined, ranges);
    };
    const parser = Object.create(inner) as Parser;
    parser.startParse = startParse;
    parser.parse = (input, fragments, ranges) => {
      const parse = startParse(input, fragments, ranges);
      for (;;) {
        const done = parse.advance();
        if (done) {
          return done;
        }
      }
    };
    body = new Language(lang.data, parser, [], lang.name);
    bodies.set(lang, body);
  }
  return body;
}

/**
 * A CodeMirror extension that highlights a cell's body in the language of its cell magic
 * (the magic line itself stays plain: see `bodyLanguage`).
 *
 * While the cell starts with the magic, that language sits in a compartment of its own, ahead
 * of the editor's (the kernel's); when it no longer does, the compartment is emptied and the
 * kernel's language shows again. The editor's own configuration, the cell model and the
 * notebook are left as they are: the model's mime type (which the notebook resets when a kernel
 * starts) is never fought over, and completion, which JupyterLab asks of the kernel whatever
 * the highlighting, is untouched. The compartment is only ever filled, never left providing
 * an empty language: CodeMirror expects a language wherever one is configured.
 *
 * The switch rides on the transaction that changed the text or the configuration (a
 * transaction extender), so there is no extra update and no flicker.
 *
 * `languages` are JupyterLab's own, from its language registry, so nothing of CodeMirror is
 * bundled twice. `applies` says whether the editor holds kernel code at all; it is asked
 * again whenever the configuration changes (as when the notebook sets the cell's mime type),
 * so markdown cells and files are never touched. `source` is the text the editor starts with.
 */
export function magicLanguage(
  languages: ReadonlyMap<MagicLanguage, Language>,
  applies: () => boolean,
  source = ''
): Extension {
  const slot = new Compartment();
  const contents = new Map<Language, Extension>();

  function contentFor(head: string): Extension {
    const name = applies() ? cellMagicLanguage(head) : null;
    const lang = name ? languages.get(name) : undefined;
    if (!lang) {
      return NONE;
    }
    let content = contents.get(lang);
    if (!content) {
      content = Prec.highest(bodyLanguage(lang).extension);
      contents.set(lang, content);
    }
    return content;
  }

  return [
    slot.of(contentFor(source.slice(0, HEAD_LENGTH))),
    EditorState.transactionExtender.of(tr => {
      if (!tr.docChanged && tr.effects.length === 0) {
        return null;
      }
      const wanted = contentFor(tr.newDoc.sliceString(0, HEAD_LENGTH));
      return slot.get(tr.startState) === wanted ? null : { effects: slot.reconfigure(wanted) };
    })
  ];
}
