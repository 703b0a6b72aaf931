// static/loader.min.js, what the Worker serves, is static/loader.js minified
// with the pinned esbuild (the readable file is the source; both are committed
// so that the Rust crate embeds the script without Node).
//   node scripts/loader.mjs          rewrite static/loader.min.js
//   node scripts/loader.mjs --check  fail if it is not static/loader.js minified
import { transformSync } from "esbuild";
import { readFileSync, writeFileSync } from "node:fs";

const source = new URL("../static/loader.js", import.meta.url);
const target = new URL("../static/loader.min.js", import.meta.url);
const { code } = transformSync(readFileSync(source, "utf8"), {
  minify: true,
  // The browsers analytics.js itself supports.
  target: "es2017",
  // Keeps the /*! header: what this script is.
  legalComments: "inline",
});
// The Worker splits the script at its one marker.
if (code.split("EDGE_DATA").length !== 2 || !code.includes("(EDGE_DATA)")) throw new Error("the loader must name EDGE_DATA once, as its argument");

if (process.argv.includes("--check")) {
  if (readFileSync(target, "utf8") !== code) {
    console.error("static/loader.min.js is not static/loader.js minified: run `node scripts/loader.mjs`");
    process.exit(1);
  }
} else {
  writeFileSync(target, code);
}
