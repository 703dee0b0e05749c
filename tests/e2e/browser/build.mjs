// Bundles page.mjs (with connect-web and protobuf-es) into OUT/bundle.js for the browser.
// Usage: node build.mjs OUT
import { build } from "esbuild";

const out = process.argv[2];
if (!out) throw new Error("usage: node build.mjs OUT_DIRECTORY");
await build({
  entryPoints: [new URL("page.mjs", import.meta.url).pathname],
  bundle: true,
  format: "iife",
  target: "es2022",
  outfile: `${out}/bundle.js`,
  logLevel: "warning",
});
