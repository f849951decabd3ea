// Test-only reference: encodes a JSON array of strings (stdin) with @lenml/tokenizers, an
// independent JavaScript port of Hugging Face tokenizers (transformers.js), from the real
// tokenizer.json / tokenizer_config.json the named @lenml/tokenizer-NAME package ships.
// Usage: node encode.mjs NAME < strings.json   → prints a JSON array of id arrays (with the
// tokenizer's special tokens added, as `parity tokenizer encode` does by default).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const name = process.argv[2];
const require = createRequire(import.meta.url);
const pkg = require(`@lenml/tokenizer-${name}`);
const tok = pkg.fromPreTrained();
const texts = JSON.parse(readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(texts.map((t) => tok.encode(t, { add_special_tokens: true }))));
