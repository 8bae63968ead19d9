// jsdom has no DragEvent; Lumino's drag and drop (loaded with its widgets) subclasses it.
if (typeof (globalThis as any).DragEvent === 'undefined') {
  (globalThis as any).DragEvent = class DragEvent extends MouseEvent {};
}
