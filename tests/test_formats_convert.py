"""parity convert and the model loaders against an outside reference: torch tensors written by
Python, GGUF read by a reader written here from the spec, and GGUF written here the way
llama.cpp's convert_hf_to_gguf.py writes it. One behaviour per function."""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import formats_ref as R  # noqa: E402

PARITY = os.environ.get("PARITY_BIN", "build/parity")
TMP = tempfile.mkdtemp(prefix="parity-formats-")
FAILED = []


def run(*args, ok=True):
    p = subprocess.run([PARITY, *args], capture_output=True, text=True)
    if ok and p.returncode != 0:
        raise AssertionError(f"parity {' '.join(args)} failed ({p.returncode}): {p.stderr}")
    return p


def check(cond, what):
    if not cond:
        FAILED.append(what)
        print("FAIL:", what, file=sys.stderr)


def llama_dir(name="llama", **kw):
    d = os.path.join(TMP, name)
    cfg, sd = R.tiny_llama(d, **kw)
    return d, cfg, sd


def test_llama_to_gguf_f32_matches_llamacpp_layout():
    d, cfg, sd = llama_dir()
    out = os.path.join(TMP, "llama-f32.gguf")
    run("convert", d, out, "--dtype", "f32", "--quiet", "--name", "tiny")
    g = R.read_gguf(out)
    kv, tensors = g[0], g[1]
    want = {"general.architecture": "llama", "general.name": "tiny", "llama.context_length": 128,
            "llama.embedding_length": 64, "llama.block_count": 2, "llama.feed_forward_length": 96,
            "llama.rope.dimension_count": 16, "llama.attention.head_count": 4, "llama.attention.head_count_kv": 2,
            "llama.vocab_size": 96, "general.file_type": 0, "tokenizer.ggml.bos_token_id": 1,
            "tokenizer.ggml.eos_token_id": 2}
    for k, v in want.items():
        check(k in kv and kv[k][1] == v, f"key {k} = {kv.get(k)} (want {v})")
    check(kv["llama.context_length"][0] == R.T_U32, "context_length is UINT32")
    check(kv["llama.rope.freq_base"] == (R.T_F32, 10000.0, None), "rope.freq_base FLOAT32 10000")
    check(abs(kv["llama.attention.layer_norm_rms_epsilon"][1] - 1e-5) < 1e-9, "rms eps")
    names = {"token_embd.weight", "output_norm.weight", "output.weight"} | {
        f"blk.{i}.{n}.weight" for i in range(2)
        for n in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")}
    check(set(tensors) == names, f"tensor names {sorted(set(tensors) ^ names)}")
    check(tensors["token_embd.weight"]["ne"] == [64, 96], "GGUF dims reversed (ne[0] contiguous)")
    q = R.gguf_tensor(g, "blk.1.attn_q.weight")
    k = R.gguf_tensor(g, "blk.1.attn_k.weight")
    check(torch.equal(q, R.permute(sd["model.layers.1.self_attn.q_proj.weight"], 4, 4)), "attn_q permuted as llama.cpp")
    check(torch.equal(k, R.permute(sd["model.layers.1.self_attn.k_proj.weight"], 4, 2)), "attn_k permuted (GQA)")
    check(torch.equal(R.gguf_tensor(g, "blk.0.ffn_down.weight"), sd["model.layers.0.mlp.down_proj.weight"]), "ffn_down")
    for t in tensors.values():
        check(t["offset"] % 32 == 0, "tensor offsets aligned to 32")


def test_f16_and_q8_0_match_the_reference_quantiser():
    d, cfg, sd = llama_dir("llama16")
    f16 = os.path.join(TMP, "l16.gguf")
    q8 = os.path.join(TMP, "lq8.gguf")
    run("convert", d, f16, "--dtype", "f16", "--quiet")
    run("convert", d, q8, "--dtype", "q8_0", "--quiet")
    g16, g8 = R.read_gguf(f16), R.read_gguf(q8)
    check(g16[0]["general.file_type"][1] == 1 and g8[0]["general.file_type"][1] == 7, "file_type 1 / 7")
    check(g16[1]["blk.0.attn_norm.weight"]["type"] == R.GGML_F32, "1-D tensors stay F32 (f16)")
    check(g8[1]["output_norm.weight"]["type"] == R.GGML_F32, "1-D tensors stay F32 (q8_0)")
    w = sd["model.layers.0.mlp.gate_proj.weight"]
    check(torch.equal(R.gguf_tensor(g16, "blk.0.ffn_gate.weight"), w.half()), "F16 = torch .half()")
    check(g8[1]["blk.0.ffn_gate.weight"]["type"] == R.GGML_Q8_0, "2-D tensors Q8_0")
    for name, hf in (("blk.0.ffn_gate.weight", "model.layers.0.mlp.gate_proj.weight"),
                     ("blk.1.attn_k.weight", "model.layers.1.self_attn.k_proj.weight"),
                     ("token_embd.weight", "model.embed_tokens.weight")):
        ref = sd[hf]
        if "attn_k" in name:
            ref = R.permute(ref, 4, 2)
        check(R.gguf_tensor(g8, name) == R.q8_0_quantize(ref), f"{name}: Q8_0 bytes = ggml reference quantiser")


def test_gguf_back_to_hf_is_exact():
    d, cfg, sd = llama_dir("llama-rt", tied=True)
    g = os.path.join(TMP, "rt.gguf")
    back = os.path.join(TMP, "rt-hf")
    run("convert", d, g, "--quiet")
    check("output.weight" not in R.read_gguf(g)[1], "tied model has no output.weight")
    run("convert", g, back, "--to", "hf", "--quiet")
    got = R.read_safetensors(os.path.join(back, "model.safetensors"))
    check(set(got) == set(sd), "same tensor names after GGUF → HF")
    check(all(torch.equal(got[k], sd[k]) for k in sd), "same values after GGUF → HF (Q/K un-permuted)")
    c2 = json.load(open(os.path.join(back, "config.json")))
    for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "intermediate_size", "tie_word_embeddings", "bos_token_id", "eos_token_id"):
        check(c2[k] == cfg[k], f"config {k}: {c2[k]} vs {cfg[k]}")


def test_gguf_rewrite_is_bit_identical():
    d, cfg, sd = llama_dir("llama-bit")
    for dt in ("f16", "q8_0"):
        a = os.path.join(TMP, f"a-{dt}.gguf")
        b = os.path.join(TMP, f"b-{dt}.gguf")
        run("convert", d, a, "--dtype", dt, "--quiet", "--name", "x")
        run("convert", a, b, "--quiet", "--name", "x")
        check(open(a, "rb").read() == open(b, "rb").read(), f"GGUF → GGUF ({dt}) is bit-identical")
    s = os.path.join(TMP, "st-back")
    run("convert", d, s, "--to", "hf", "--quiet")
    got = R.read_safetensors(os.path.join(s, "model.safetensors"))
    check(all(torch.equal(got[k], sd[k]) for k in sd), "HF → HF keeps every bit")


def test_llamacpp_style_gguf_loads_with_original_weights():
    d, cfg, sd = llama_dir("llama-ref")
    for outtype in ("f16", "q8_0"):
        path = os.path.join(TMP, f"ref-{outtype}.gguf")
        toks = ["<unk>", "<s>", "</s>"] + [f"t{i}" for i in range(cfg["vocab_size"] - 3)]
        R.write_llamacpp_llama(path, cfg, sd, outtype, toks)
        back = os.path.join(TMP, f"ref-{outtype}-hf")
        run("convert", path, back, "--to", "hf", "--dtype", "f32", "--quiet")
        got = R.read_safetensors(os.path.join(back, "model.safetensors"))
        check(set(got) == set(sd), f"{outtype}: HF names from llama.cpp names")
        for k, v in sd.items():
            if v.dim() == 1:
                want = v
            elif outtype == "f16":
                want = v.half().float()
            else:
                want = R.q8_0_dequantize(R.q8_0_quantize(v), v.shape)
            if not torch.equal(got[k], want):
                check(False, f"{outtype}: {k} differs from the original torch tensor")
                break
        if outtype == "q8_0":
            err = max((got[k] - v).abs().max().item() for k, v in sd.items())
            check(err < 0.02, f"q8_0 error {err} small")


def test_gpt2_prefix_normalised_and_conv1d_transposed():
    d = os.path.join(TMP, "gpt2")
    cfg, sd = R.tiny_gpt2(d)
    g = os.path.join(TMP, "gpt2.gguf")
    run("convert", d, g, "--quiet")
    gg = R.read_gguf(g)
    kv, tensors = gg[0], gg[1]
    for k, v in {"general.architecture": "gpt2", "gpt2.context_length": 32, "gpt2.embedding_length": 64,
                 "gpt2.feed_forward_length": 256, "gpt2.block_count": 2, "gpt2.attention.head_count": 4}.items():
        check(kv.get(k, (0, None))[1] == v, f"gpt2 key {k}")
    check("gpt2.attention.layer_norm_epsilon" in kv, "gpt2 eps key")
    for n in ("token_embd.weight", "position_embd.weight", "output.weight", "output_norm.bias",
              "blk.0.attn_qkv.weight", "blk.0.attn_qkv.bias", "blk.1.ffn_up.weight", "blk.1.ffn_down.bias"):
        check(n in tensors, f"gpt2 tensor {n}")
    check(torch.equal(R.gguf_tensor(gg, "blk.0.attn_qkv.weight"), sd["h.0.attn.c_attn.weight"].t()),
          "c_attn transposed to [out, in] as llama.cpp")
    check(torch.equal(R.gguf_tensor(gg, "output.weight"), sd["wte.weight"]), "output.weight = wte (tied copy)")
    back = os.path.join(TMP, "gpt2-back")
    run("convert", g, back, "--to", "hf", "--quiet")
    got = R.read_safetensors(os.path.join(back, "model.safetensors"))
    check(set(got) == set(sd), f"internal GPT-2 names have no transformer. prefix: {sorted(set(got) ^ set(sd))[:4]}")
    check(all(torch.equal(got[k], sd[k]) for k in sd), "GPT-2 weights back in HF Conv1D layout")


def test_sharded_bf16_directory():
    d = os.path.join(TMP, "sharded")
    cfg, sd = R.tiny_llama(os.path.join(TMP, "tmp-single"), dtype=torch.bfloat16)
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(TMP, "tmp-single", "config.json"), d)
    names = sorted(sd)
    half = len(names) // 2
    wm = {}
    for i, part in enumerate((names[:half], names[half:])):
        fn = f"model-0000{i + 1}-of-00002.safetensors"
        R.write_safetensors(os.path.join(d, fn), {k: sd[k].bfloat16() for k in part})
        wm.update({k: fn for k in part})
    json.dump({"metadata": {}, "weight_map": wm}, open(os.path.join(d, "model.safetensors.index.json"), "w"))
    g = os.path.join(TMP, "sharded.gguf")
    run("convert", d, g, "--quiet")
    gg = R.read_gguf(g)
    check(gg[1]["blk.0.ffn_up.weight"]["type"] == R.GGML_BF16, "BF16 kept in GGUF")
    check(torch.equal(R.gguf_tensor(gg, "blk.0.ffn_up.weight").float(), sd["model.layers.0.mlp.up_proj.weight"]),
          "BF16 values kept")


def test_tokenizer_json_becomes_gguf_keys():
    d, cfg, sd = llama_dir("llama-tok")
    # A byte-level BPE tokenizer.json (GPT-2 style): tokens by id, merges, added special token.
    vocab = {f"t{i}": i for i in range(90)}
    vocab.update({"a": 90, "b": 91, "ab": 92})
    tok = {"version": "1.0", "model": {"type": "BPE", "vocab": vocab, "merges": ["a b"]},
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False},
           "decoder": {"type": "ByteLevel"},
           "added_tokens": [{"id": 93, "content": "<|endoftext|>", "special": True}]}
    json.dump(tok, open(os.path.join(d, "tokenizer.json"), "w"))
    json.dump({"chat_template": "{{ messages }}", "add_bos_token": False},
              open(os.path.join(d, "tokenizer_config.json"), "w"))
    g = os.path.join(TMP, "tok.gguf")
    run("convert", d, g, "--quiet")
    kv = R.read_gguf(g)[0]
    toks = kv["tokenizer.ggml.tokens"][1]
    # llama.cpp's name of GPT-2's pre-tokenizer is "gpt-2" ("gpt2" is refused: unknown pre-tokenizer type)
    check(kv["tokenizer.ggml.model"][1] == "gpt2" and kv["tokenizer.ggml.pre"][1] == "gpt-2", "byte-level → gpt-2")
    check(len(toks) == 96 and toks[92] == "ab" and toks[93] == "<|endoftext|>", "tokens by id")
    check(toks[94] == "[PAD94]" and kv["tokenizer.ggml.token_type"][1][94] == 5, "padding tokens UNUSED")
    check(kv["tokenizer.ggml.token_type"][1][93] == 3, "special added token is CONTROL")
    check(kv["tokenizer.ggml.merges"][1] == ["a b"], "merges")
    check(kv["tokenizer.chat_template"][1] == "{{ messages }}", "chat template")
    check(kv["tokenizer.ggml.add_bos_token"] == (R.T_BOOL, False, None), "add_bos_token")
    # SentencePiece-style (byte fallback) → "llama" with scores and byte types.
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x41>": 3, "▁": 4, "a": 5, "▁a": 6}
    tok = {"model": {"type": "BPE", "vocab": vocab, "merges": [["▁", "a"]], "byte_fallback": True,
                     "unk_token": "<unk>"},
           "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}]},
           "added_tokens": [{"id": 1, "content": "<s>", "special": True}, {"id": 2, "content": "</s>", "special": True}]}
    json.dump(tok, open(os.path.join(d, "tokenizer.json"), "w"))
    run("convert", d, g, "--quiet")
    kv = R.read_gguf(g)[0]
    tt = kv["tokenizer.ggml.token_type"][1]
    check(kv["tokenizer.ggml.model"][1] == "llama", "byte_fallback → llama")
    check(tt[0] == 2 and tt[1] == 3 and tt[3] == 6 and tt[5] == 1, f"SPM token types {tt[:7]}")
    check(kv["tokenizer.ggml.scores"][1][6] == 0.0 and kv["tokenizer.ggml.scores"][1][5] == -5.0,
          "scores: merge results by rank, others -id")
    check(kv["tokenizer.ggml.unknown_token_id"][1] == 0, "unknown_token_id")


LLAMA3_RE = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
             "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
QWEN2_RE = LLAMA3_RE.replace("\\p{N}{1,3}", "\\p{N}")


def test_pre_tokenizer_names_are_llamacpps():
    """Every tokenizer.ggml.pre parity writes is one llama.cpp's llama-vocab.cpp knows, for the
    regex the tokenizer.json really has; a byte-level regex llama.cpp has no name for is an error
    (llama.cpp would fall back to its default regex and tokenize differently)."""
    d, cfg, sd = llama_dir("llama-pre")
    vocab = {f"t{i}": i for i in range(96)}
    g = os.path.join(TMP, "pre.gguf")

    def pre_of(pre_tokenizer):
        json.dump({"model": {"type": "BPE", "vocab": vocab, "merges": []}, "pre_tokenizer": pre_tokenizer,
                   "decoder": {"type": "ByteLevel"}, "added_tokens": []}, open(os.path.join(d, "tokenizer.json"), "w"))
        p = run("convert", d, g, "--quiet", ok=False)
        return R.read_gguf(g)[0]["tokenizer.ggml.pre"][1] if p.returncode == 0 else p.stderr

    def split(rx):
        return {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": rx}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    check(pre_of({"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}) == "gpt-2", "GPT-2 → gpt-2")
    check(pre_of(split(LLAMA3_RE)) == "llama-bpe", "Llama 3's regex → llama-bpe")
    got = pre_of(split(QWEN2_RE))
    check(got == "qwen2", f"Qwen2's regex (\\p{{N}} one digit at a time) → qwen2, not {got!r}")
    got = pre_of(split("\\w+|[^\\w\\s]+"))
    check("pre_tokenizer" in got and "llama.cpp" in got, f"an unknown regex is an error naming the field: {got!r}")
    # and parity reads back what it writes (and llama.cpp's aliases)
    for name in ("gpt-2", "llama-bpe", "qwen2", "llama3", "default", "deepseek-r1-qwen", "phi-2"):
        meta = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": name, "tokenizer.ggml.tokens": ["t", "1", "t1"],
                "tokenizer.ggml.merges": ["t 1"]}
        mp = os.path.join(TMP, "meta.json")
        json.dump(meta, open(mp, "w"))
        p = run("tokenizer", "encode", "-m", mp, "--text", "t1", ok=False)
        check(p.returncode == 0 and p.stdout.split() in (["2"], ["0", "1"]),
              f"tokenizer.ggml.pre {name!r} loads: {p.stdout.strip()} {p.stderr.strip()}")


def test_bos_eos_from_tokenizer_and_generation_config():
    """config.json without bos/eos (parity-demo's): the ids come from generation_config.json, else
    from tokenizer_config.json's bos_token / eos_token (strings or AddedToken objects)."""
    d, cfg, sd = llama_dir("llama-bos")
    c = json.load(open(os.path.join(d, "config.json")))
    del c["bos_token_id"], c["eos_token_id"]
    c["transformers_extra"] = {"max_length": 1000000000000000019884624838656}  # beyond int64, not needed: loads
    vocab = {f"t{i}": i for i in range(93)}
    json.dump({"model": {"type": "BPE", "vocab": vocab, "merges": []},
               "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False}, "decoder": {"type": "ByteLevel"},
               "added_tokens": [{"id": 93, "content": "<|endoftext|>", "special": True},
                                {"id": 94, "content": "<|im_end|>", "special": True}]},
              open(os.path.join(d, "tokenizer.json"), "w"))
    json.dump({"bos_token": "<|endoftext|>", "eos_token": {"__type": "AddedToken", "content": "<|im_end|>"},
               "model_max_length": 1000000000000000019884624838656},
              open(os.path.join(d, "tokenizer_config.json"), "w"), indent=1)
    json.dump(c, open(os.path.join(d, "config.json"), "w"))
    g = os.path.join(TMP, "bos.gguf")
    run("convert", d, g, "--quiet")
    kv = R.read_gguf(g)[0]
    check(kv.get("tokenizer.ggml.bos_token_id", (0, None))[1] == 93, f"bos from tokenizer_config.json: {kv.get('tokenizer.ggml.bos_token_id')}")
    check(kv.get("tokenizer.ggml.eos_token_id", (0, None))[1] == 94, f"eos from tokenizer_config.json: {kv.get('tokenizer.ggml.eos_token_id')}")
    json.dump({"bos_token_id": 95, "eos_token_id": [93, 94]}, open(os.path.join(d, "generation_config.json"), "w"))
    run("convert", d, g, "--quiet")
    kv = R.read_gguf(g)[0]
    check(kv.get("tokenizer.ggml.bos_token_id", (0, None))[1] == 95 and kv.get("tokenizer.ggml.eos_token_id", (0, None))[1] == 93,
          "generation_config.json wins over tokenizer_config.json (first eos of a list)")
    os.remove(os.path.join(d, "tokenizer.json"))  # weights only: the ids are still written
    run("convert", d, g, "--quiet")
    kv = R.read_gguf(g)[0]
    check(kv.get("tokenizer.ggml.bos_token_id", (0, None))[1] == 95, "bos without tokenizer.json")


def test_file_type_describes_the_file():
    """general.file_type is llama.cpp's LLAMA_FTYPE of the tensors written: ALL_F32 (0) only when
    every tensor is F32, else MOSTLY_<the type of most matrix elements that are not F32>."""
    d = os.path.join(TMP, "gpt2-ft")
    R.tiny_gpt2(d)
    g8, g8r, g8b = (os.path.join(TMP, f"gpt2-q8{x}.gguf") for x in ("", "-reordered", "-again"))
    run("convert", d, g8, "--dtype", "q8_0", "--quiet")
    # the same file with the blocks before the embeddings (a converter that follows the
    # checkpoint's order): the first matrix read is a transposed one, held as F32
    kv, tensors, off, raw = R.read_gguf(g8)
    w = R.GGUFWriter()
    for k, (t, v, et) in kv.items():
        w.add(k, t, v, et)
    for name in sorted(tensors, key=lambda n: (not n.startswith("blk."), n)):
        t = tensors[name]
        n = 1
        for x in t["ne"]:
            n *= x
        size = n // 32 * 34 if t["type"] == R.GGML_Q8_0 else 4 * n
        w.tensor(name, bytes(raw[off + t["offset"]:off + t["offset"] + size]), t["type"], list(reversed(t["ne"])))
    w.write(g8r)
    run("convert", g8r, g8b, "--quiet")
    for path in (g8, g8b):
        kv, tensors = R.read_gguf(path)[:2]
        types = {t["type"] for t in tensors.values()}
        ft = kv["general.file_type"][1]
        check(R.GGML_Q8_0 in types and ft == 7, f"{os.path.basename(path)}: Q8_0 tensors {sorted(types)}, file_type {ft} (want 7)")
    gf = os.path.join(TMP, "gpt2-f32.gguf")
    run("convert", d, gf, "--quiet")
    kv, tensors = R.read_gguf(gf)[:2]
    check(kv["general.file_type"][1] == 0 and all(t["type"] == 0 for t in tensors.values()), "all F32 → 0")


def expect_fail(args, *needles):
    p = run(*args, ok=False)
    check(p.returncode == 1, f"{args}: exit {p.returncode} (want 1)")
    for n in needles:
        check(n in p.stderr, f"{args}: '{n}' not in error: {p.stderr.strip()}")


def test_bad_inputs_fail_with_clear_errors():
    d, cfg, sd = llama_dir("bad-src")
    g = os.path.join(TMP, "bad-src.gguf")
    run("convert", d, g, "--quiet")
    data = open(g, "rb").read()
    t = os.path.join(TMP, "trunc.gguf")
    open(t, "wb").write(data[:len(data) // 2])
    expect_fail(("convert", t, os.path.join(TMP, "o1"), "--to", "hf"), "trunc.gguf", "tensor")
    open(t, "wb").write(data[:200])
    expect_fail(("convert", t, os.path.join(TMP, "o1"), "--to", "hf"), "trunc.gguf", "byte ")
    # An absurd array length must be refused before any allocation.
    bad = bytearray(data)
    key = b"tokenizer.ggml.bos_token_id"
    i = bad.find(b"general.name")
    struct.pack_into("<I", bad, i + len("general.name"), 9)  # STRING -> ARRAY
    open(t, "wb").write(bytes(bad))
    expect_fail(("convert", t, os.path.join(TMP, "o1"), "--to", "hf"), "trunc.gguf", "general.name")
    # Missing and mis-shaped tensors, corrupt config, truncated safetensors.
    m = os.path.join(TMP, "missing")
    R.tiny_llama(m)
    full = R.read_safetensors(os.path.join(m, "model.safetensors"))
    del full["model.layers.1.mlp.up_proj.weight"]
    R.write_safetensors(os.path.join(m, "model.safetensors"), full)
    expect_fail(("convert", m, os.path.join(TMP, "o2.gguf")), "model.layers.1.mlp.up_proj.weight", "missing")
    full["model.layers.1.mlp.up_proj.weight"] = torch.zeros(95, 64)
    R.write_safetensors(os.path.join(m, "model.safetensors"), full)
    expect_fail(("convert", m, os.path.join(TMP, "o2.gguf")), "model.layers.1.mlp.up_proj.weight", "[95, 64]")
    st = open(os.path.join(d, "model.safetensors"), "rb").read()
    open(os.path.join(m, "model.safetensors"), "wb").write(st[:-100])
    expect_fail(("convert", m, os.path.join(TMP, "o2.gguf")), "model.safetensors", "data_offsets")
    open(os.path.join(m, "config.json"), "w").write('{"model_type": "llama", "vocab_size": 96, "hidden_size": -3}')
    expect_fail(("convert", m, os.path.join(TMP, "o2.gguf")), "config.json", "hidden_size")
    p = run("convert", d, os.path.join(TMP, "x"), "--to", "hf", "--dtype", "q8_0", ok=False)
    check(p.returncode == 2, "q8_0 into safetensors is a usage error")
    p = run("convert", "--help")
    check(p.returncode == 0 and "usage: parity convert" in p.stdout, "--help")


if __name__ == "__main__":
    try:
        for name, fn in list(globals().items()):
            if name.startswith("test_") and callable(fn):
                try:
                    fn()
                except Exception as e:  # a crash in one behaviour should not hide the others
                    FAILED.append(f"{name}: {e!r}")
                    print("ERROR:", name, repr(e), file=sys.stderr)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    print(f"test_formats_convert: {len(FAILED)} failed")
    sys.exit(1 if FAILED else 0)
