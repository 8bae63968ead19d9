import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'jsdom',
    setupFiles: ['test/setup.ts'],
    // Times are shown in the analyst's local zone; the tests pin one so that they read the same anywhere.
    env: { TZ: 'UTC' }
  }
});
