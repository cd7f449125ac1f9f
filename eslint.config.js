// Lint rules: the recommended TypeScript set, with `any` banned so that seams stay typed.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', '.muster/', '.muster-agent/', '.scratch/', 'dist/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  // The visualizer's page scripts (web/) run in the browser, as plain ES modules; these are the
  // browser globals they use (listed, since \`globals\` is not a dependency of ours).
  {
    files: ['web/**/*.js'],
    languageOptions: {
      globals: Object.fromEntries(
        ['window', 'document', 'location', 'history', 'sessionStorage', 'fetch', 'EventSource', 'Event', 'TextDecoderStream', 'AbortController', 'console'].map(
          (name) => [name, 'readonly'],
        ),
      ),
    },
  },
);
