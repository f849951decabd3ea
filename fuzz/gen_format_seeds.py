"""Regenerates the small seed corpora of fuzz_gguf, fuzz_safetensors and fuzz_config from a
tiny model converted by parity. Usage: /usr/bin/python3 fuzz/gen_format_seeds.py build/parity"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import formats_ref as R  # noqa: E402

parity = sys.argv[1]
tmp = tempfile.mkdtemp()
corp = {n: os.path.join(HERE, "corpus", n) for n in ("gguf", "safetensors", "config")}
for d in corp.values():
    os.makedirs(d, exist_ok=True)
m = os.path.join(tmp, "m")
cfg, _ = R.tiny_llama(m, V=32, D=32, L=1, H=2, KV=1, FF=32)
json.dump({"model": {"type": "BPE", "vocab": {f"t{i}": i for i in range(32)}, "merges": ["t1 t2"]},
           "pre_tokenizer": {"type": "ByteLevel"}, "added_tokens": [{"id": 0, "content": "<s>", "special": True}]},
          open(os.path.join(m, "tokenizer.json"), "w"))
for dt in ("q8_0", "f16"):
    subprocess.run([parity, "convert", m, os.path.join(corp["gguf"], f"llama-{dt}.gguf"), "--dtype", dt, "--quiet"],
                   check=True)
g = os.path.join(tmp, "g")
R.tiny_gpt2(g, V=16, D=32, L=1, H=2, P=8)
subprocess.run([parity, "convert", g, os.path.join(corp["gguf"], "gpt2-q8_0.gguf"), "--dtype", "q8_0", "--quiet"],
               check=True)
w = R.GGUFWriter()
w.add("general.alignment", R.T_U32, 64)
w.add("a", R.T_ARR, [1, 2, 3], R.T_I64)
w.tensor("t", b"\0" * 8, R.GGML_F32, [2])
w.write(os.path.join(corp["gguf"], "minimal.gguf"), align=64)
R.write_safetensors(os.path.join(corp["safetensors"], "small.safetensors"),
                    {"a": R.torch.ones(2, 3), "b": R.torch.zeros(4, dtype=R.torch.bfloat16),
                     "c": R.torch.ones(1, dtype=R.torch.float16)}, {"format": "pt"})
shutil.copy(os.path.join(m, "config.json"), os.path.join(corp["config"], "llama.json"))
shutil.copy(os.path.join(g, "config.json"), os.path.join(corp["config"], "gpt2.json"))
json.dump(dict(cfg, num_key_value_heads=3, eos_token_id=[1, 2], rope_parameters={"rope_theta": 5e5}),
          open(os.path.join(corp["config"], "llama-gqa-bad.json"), "w"))
shutil.rmtree(tmp)
