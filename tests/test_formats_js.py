"""An independent GGUF parser (the npm package @huggingface/gguf) reads a parity-written GGUF
and must report the same metadata (values and GGUF types), tensor names, ggml types, shapes
and offsets as the file parity meant to write (checked against formats_ref's reader)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import formats_ref as R  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PARITY = os.environ.get("PARITY_BIN", "build/parity")


def main():
    if not shutil.which("node") or not shutil.which("npm"):
        print("node/npm missing: install Debian's nodejs and npm", file=sys.stderr)
        return 1
    subprocess.run(["bash", os.path.join(HERE, "npm-install.sh"), "js-gguf"], check=True)
    tmp = tempfile.mkdtemp(prefix="parity-js-")
    failed = []
    try:
        d = os.path.join(tmp, "m")
        R.tiny_llama(d)
        json.dump({"model": {"type": "BPE", "vocab": {f"t{i}": i for i in range(96)}, "merges": ["t1 t2"]},
                   "pre_tokenizer": {"type": "ByteLevel"}, "added_tokens": []},
                  open(os.path.join(d, "tokenizer.json"), "w"))
        for dt in ("f32", "f16", "q8_0", "bf16"):
            g = os.path.join(tmp, f"m-{dt}.gguf")
            subprocess.run([PARITY, "convert", d, g, "--dtype", dt, "--quiet"], check=True)
            js = json.loads(subprocess.run(["node", os.path.join(HERE, "js-gguf", "dump_gguf.mjs"), g], check=True,
                                           capture_output=True, text=True).stdout)
            kv, tensors, data_off, _ = R.read_gguf(g)
            if set(js["metadata"]) - {"version", "tensor_count", "kv_count"} != set(kv):
                failed.append(f"{dt}: key sets differ")
            for k, (t, v, et) in kv.items():
                m = js["metadata"][k]
                same = m["type"] == t and (et is None or m["subType"] == et)
                if t == R.T_F32:
                    same = same and abs(m["value"] - v) <= 1e-6 * abs(v)
                elif t == R.T_ARR and et == R.T_F32:
                    same = same and all(abs(a - b) < 1e-6 for a, b in zip(m["value"], v))
                else:
                    same = same and m["value"] == v
                if not same:
                    failed.append(f"{dt}: key {k}: js {m} vs {(t, v if t != R.T_ARR else '...', et)}")
            # what llama.cpp reads: its pre-tokenizer name and the file type of the tensors written
            ft = {"f32": 0, "f16": 1, "q8_0": 7, "bf16": 32}[dt]
            if js["metadata"]["tokenizer.ggml.pre"]["value"] != "gpt-2":
                failed.append(f"{dt}: tokenizer.ggml.pre {js['metadata']['tokenizer.ggml.pre']['value']!r}, llama.cpp's is 'gpt-2'")
            if js["metadata"]["general.file_type"]["value"] != ft:
                failed.append(f"{dt}: general.file_type {js['metadata']['general.file_type']['value']} (want {ft})")
            if js["tensorDataOffset"] != data_off:
                failed.append(f"{dt}: data offset {js['tensorDataOffset']} vs {data_off}")
            if len(js["tensors"]) != len(tensors):
                failed.append(f"{dt}: tensor count")
            for t in js["tensors"]:
                r = tensors.get(t["name"])
                if not r or r["ne"] != t["shape"] or r["type"] != t["dtype"] or r["offset"] != t["offset"]:
                    failed.append(f"{dt}: tensor {t['name']}: js {t} vs {r}")
            print(f"{dt}: @huggingface/gguf read {len(js['metadata'])} keys, {len(js['tensors'])} tensors")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for f in failed[:20]:
        print("FAIL:", f, file=sys.stderr)
    print(f"test_formats_js: {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
