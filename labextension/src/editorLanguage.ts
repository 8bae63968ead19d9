import { Language } from '@codemirror/language';
import { Compartment, EditorState, Extension, Prec } from '@codemirror/state';

import { cellMagicLanguage, HEAD_LENGTH, MagicLanguage } from './cellLanguage';

const NONE: Extension = [];

/**
 * A CodeMirror extension that highlights a cell's body in the language of its cell magic.
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
      content = Prec.highest(lang.extension);
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
