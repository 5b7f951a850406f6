import { defineConfig } from 'vitest/config';

// The Rust server serves dist/ under a strict CSP (script-src 'self'; style-src 'self'):
// nothing may be inlined into index.html, so keep every asset a separate file.
export default defineConfig({
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
    target: 'es2022',
  },
  server: {
    // `npm run dev` talks to a running server (BEDSIDE_URL, default the mock: `npm run mock`).
    proxy: {
      '/api': { target: process.env.BEDSIDE_URL ?? 'http://127.0.0.1:8080', changeOrigin: false },
      // The live feed (WebSocket).
      '/ws': { target: process.env.BEDSIDE_URL ?? 'http://127.0.0.1:8080', changeOrigin: false, ws: true },
    },
  },
  test: {
    include: ['tests/**/*.test.ts'],
    environment: 'node',
  },
});
