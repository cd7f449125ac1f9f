// Test runner settings: real sockets and child processes need generous timeouts on a 2-core machine.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Compiles the checkout once per run, so that the `muster` processes tests start skip tsx.
    globalSetup: ['test/compile-checkout.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    maxWorkers: 5,
    isolate: false,
  },
});
