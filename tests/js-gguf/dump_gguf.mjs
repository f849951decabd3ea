// Prints what @huggingface/gguf (an independent GGUF parser) reads from a file, as JSON:
// typed metadata (value and GGUF type), tensor infos and the data section offset.
import { gguf } from "@huggingface/gguf";

const path = process.argv[2];
const out = await gguf(path, { allowLocalFile: true, typedMetadata: true });
const meta = {};
for (const [k, v] of Object.entries(out.typedMetadata)) {
  meta[k] = { type: v.type, subType: v.subType ?? null, value: v.value };
}
const big = (_k, v) => (typeof v === "bigint" ? Number(v) : v);
console.log(JSON.stringify({
  metadata: meta,
  tensorDataOffset: out.tensorDataOffset,
  tensors: out.tensorInfos.map((t) => ({ name: t.name, shape: t.shape, dtype: t.dtype, offset: t.offset })),
}, big));
