"""Reference helpers for the format tests, written from the public specs (safetensors; ggml's
docs/gguf.md; llama.cpp's convert_hf_to_gguf.py conventions), independent of parity's C code.

- safetensors read/write with struct + json (Debian has no safetensors package);
- a plain GGUF v3 reader and writer;
- llama.cpp's Q/K permutation and ggml's Q8_0 reference quantiser (quantize_row_q8_0_ref:
  d = max|x| / 127, q = round-half-away-from-zero(x / d), d stored as F16);
- write_llamacpp_llama(): a GGUF laid out as convert_hf_to_gguf.py lays out a Llama model.
"""
import json
import os
import struct

import torch

ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
ST_BACK = {v: k for k, v in ST_DTYPES.items()}


def write_safetensors(path, tensors, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        t = t.contiguous()
        b = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b0, b1 = e["data_offsets"]
        raw = bytearray(data[8 + n + b0:8 + n + b1])
        t = torch.frombuffer(raw, dtype=ST_BACK[e["dtype"]]) if raw else torch.empty(0, dtype=ST_BACK[e["dtype"]])
        out[name] = t.reshape(e["shape"])
    return out


# GGUF ------------------------------------------------------------------------------------

T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = range(13)
SCALAR = {T_U8: "<B", T_I8: "<b", T_U16: "<H", T_I16: "<h", T_U32: "<I", T_I32: "<i", T_F32: "<f",
          T_BOOL: "<?", T_U64: "<Q", T_I64: "<q", T_F64: "<d"}
GGML_F32, GGML_F16, GGML_Q8_0, GGML_BF16 = 0, 1, 8, 30


def read_gguf(path):
    """Returns (kv {key: (type, value, elem_type)}, tensors {name: dict}, data_offset, raw bytes)."""
    with open(path, "rb") as f:
        d = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, d, pos)
        pos += struct.calcsize(fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("<Q")
        s = d[pos:pos + n].decode("utf-8")
        pos += n
        return s

    def value(t):
        return string() if t == T_STR else take(SCALAR[t])

    assert take("<I") == 0x46554747
    assert take("<I") == 3
    n_t, n_kv = take("<Q"), take("<Q")
    kv = {}
    for _ in range(n_kv):
        k = string()
        t = take("<I")
        if t == T_ARR:
            et, n = take("<I"), take("<Q")
            kv[k] = (t, [value(et) for _ in range(n)], et)
        else:
            kv[k] = (t, value(t), None)
    tensors = {}
    for _ in range(n_t):
        name = string()
        nd = take("<I")
        ne = [take("<Q") for _ in range(nd)]
        tensors[name] = {"ne": ne, "type": take("<I"), "offset": take("<Q")}
    align = kv.get("general.alignment", (0, 32))[1]
    data_offset = (pos + align - 1) // align * align
    return kv, tensors, data_offset, d


def gguf_tensor(kv_t_off_raw, name):
    """Tensor as torch (PyTorch order). Q8_0 is returned as raw (d f16, q int8) blocks bytes."""
    _, tensors, off, raw = kv_t_off_raw
    t = tensors[name]
    shape = list(reversed(t["ne"]))
    n = 1
    for s in shape:
        n *= s
    start = off + t["offset"]
    if t["type"] == GGML_Q8_0:
        return bytes(raw[start:start + n // 32 * 34])
    dt = {GGML_F32: torch.float32, GGML_F16: torch.float16, GGML_BF16: torch.bfloat16}[t["type"]]
    size = n * (4 if dt == torch.float32 else 2)
    return torch.frombuffer(bytearray(raw[start:start + size]), dtype=dt).reshape(shape)


def q8_0_quantize(x):
    """ggml's quantize_row_q8_0_ref on a float32 tensor whose last dim is a multiple of 32."""
    b = x.detach().float().reshape(-1, 32)
    amax = b.abs().max(dim=1, keepdim=True).values
    d = amax / 127.0
    inv = torch.where(d == 0, torch.zeros_like(d), 1.0 / d)
    v = b * inv
    q = (torch.sign(v) * torch.floor(v.abs() + 0.5)).to(torch.int8)  # roundf: half away from zero
    out = bytearray()
    dh = d.half()
    for i in range(b.shape[0]):
        out += dh[i].view(torch.int16).numpy().tobytes() + q[i].numpy().tobytes()
    return bytes(out)


def q8_0_dequantize(raw, shape):
    n = len(raw) // 34
    vals = []
    for i in range(n):
        blk = raw[34 * i:34 * i + 34]
        d = torch.frombuffer(bytearray(blk[:2]), dtype=torch.float16).float()
        q = torch.frombuffer(bytearray(blk[2:]), dtype=torch.int8).float()
        vals.append(d * q)
    return torch.cat(vals).reshape(shape)


def permute(w, n_head, n_head_kv=None):
    """llama.cpp's LlamaModel.permute: HF rotate-half rows → adjacent-pair rows."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


class GGUFWriter:
    def __init__(self):
        self.kv, self.tensors = [], []

    def add(self, key, t, v, et=None):
        self.kv.append((key, t, v, et))

    def tensor(self, name, data, ggml_type, shape):
        self.tensors.append((name, data, ggml_type, shape))

    def write(self, path, align=32):
        def s(x):
            b = x.encode()
            return struct.pack("<Q", len(b)) + b

        def val(t, v):
            return s(v) if t == T_STR else struct.pack(SCALAR[t], v)

        out = bytearray(struct.pack("<IIQQ", 0x46554747, 3, len(self.tensors), len(self.kv)))
        for k, t, v, et in self.kv:
            out += s(k) + struct.pack("<I", t)
            if t == T_ARR:
                out += struct.pack("<IQ", et, len(v)) + b"".join(val(et, x) for x in v)
            else:
                out += val(t, v)
        off, blobs = 0, []
        for name, data, gt, shape in self.tensors:
            out += s(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", x) for x in reversed(shape))
            out += struct.pack("<IQ", gt, off)
            pad = (align - len(data) % align) % align
            blobs.append(data + b"\0" * pad)
            off += len(data) + pad
        out += b"\0" * ((align - len(out) % align) % align)
        with open(path, "wb") as f:
            f.write(bytes(out) + b"".join(blobs))


def tensor_bytes(t):
    return t.contiguous().view(torch.uint8).numpy().tobytes()


def write_llamacpp_llama(path, cfg, sd, outtype, tokens=None):
    """What convert_hf_to_gguf.py writes for a Llama model: its keys, names, Q/K permutation,
    1-D tensors in F32, 2-D tensors in outtype ('f16' or 'q8_0')."""
    w = GGUFWriter()
    w.add("general.architecture", T_STR, "llama")
    w.add("general.name", T_STR, "ref")
    w.add("llama.block_count", T_U32, cfg["num_hidden_layers"])
    w.add("llama.context_length", T_U32, cfg["max_position_embeddings"])
    w.add("llama.embedding_length", T_U32, cfg["hidden_size"])
    w.add("llama.feed_forward_length", T_U32, cfg["intermediate_size"])
    w.add("llama.attention.head_count", T_U32, cfg["num_attention_heads"])
    w.add("llama.attention.head_count_kv", T_U32, cfg["num_key_value_heads"])
    w.add("llama.rope.freq_base", T_F32, cfg["rope_theta"])
    w.add("llama.attention.layer_norm_rms_epsilon", T_F32, cfg["rms_norm_eps"])
    w.add("general.file_type", T_U32, 1 if outtype == "f16" else 7)
    w.add("llama.vocab_size", T_U32, cfg["vocab_size"])
    w.add("llama.rope.dimension_count", T_U32, cfg["hidden_size"] // cfg["num_attention_heads"])
    if tokens:
        w.add("tokenizer.ggml.model", T_STR, "llama")
        w.add("tokenizer.ggml.pre", T_STR, "default")
        w.add("tokenizer.ggml.tokens", T_ARR, tokens, T_STR)
        w.add("tokenizer.ggml.scores", T_ARR, [-float(i) for i in range(len(tokens))], T_F32)
        w.add("tokenizer.ggml.token_type", T_ARR, [1] * len(tokens), T_I32)
        w.add("tokenizer.ggml.bos_token_id", T_U32, 1)
        w.add("tokenizer.ggml.eos_token_id", T_U32, 2)
    w.add("general.quantization_version", T_U32, 2)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    per = {"input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
           "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
           "self_attn.o_proj.weight": "attn_output.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
           "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
           "mlp.down_proj.weight": "ffn_down.weight"}
    for name, t in sd.items():
        if name in names:
            new = names[name]
        else:
            parts = name.split(".")
            new = f"blk.{parts[2]}." + per[".".join(parts[3:])]
        if name.endswith("q_proj.weight"):
            t = permute(t, cfg["num_attention_heads"], cfg["num_attention_heads"])
        if name.endswith("k_proj.weight"):
            t = permute(t, cfg["num_attention_heads"], cfg["num_key_value_heads"])
        if t.dim() <= 1 or new.endswith("_norm.weight"):
            w.tensor(new, tensor_bytes(t.float()), GGML_F32, list(t.shape))
        elif outtype == "q8_0":
            w.tensor(new, q8_0_quantize(t), GGML_Q8_0, list(t.shape))
        else:
            w.tensor(new, tensor_bytes(t.half()), GGML_F16, list(t.shape))
    w.write(path)


def tiny_llama(d, seed=0, V=96, D=64, L=2, H=4, KV=2, FF=96, tied=False, dtype=torch.float32):
    """Writes a tiny random Llama HF directory; returns (config, state dict in float32)."""
    g = torch.Generator().manual_seed(seed)
    hd = D // H
    cfg = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": V, "hidden_size": D,
           "intermediate_size": FF, "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": KV,
           "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
           "tie_word_embeddings": tied, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu"}
    r = lambda *s: torch.randn(*s, generator=g) * 0.5
    sd = {"model.embed_tokens.weight": r(V, D)}
    for i in range(L):
        p = f"model.layers.{i}."
        sd[p + "input_layernorm.weight"] = 1 + r(D) * 0.1
        sd[p + "self_attn.q_proj.weight"] = r(H * hd, D)
        sd[p + "self_attn.k_proj.weight"] = r(KV * hd, D)
        sd[p + "self_attn.v_proj.weight"] = r(KV * hd, D)
        sd[p + "self_attn.o_proj.weight"] = r(D, H * hd)
        sd[p + "post_attention_layernorm.weight"] = 1 + r(D) * 0.1
        sd[p + "mlp.gate_proj.weight"] = r(FF, D)
        sd[p + "mlp.up_proj.weight"] = r(FF, D)
        sd[p + "mlp.down_proj.weight"] = r(D, FF)
    sd["model.norm.weight"] = 1 + r(D) * 0.1
    if not tied:
        sd["lm_head.weight"] = r(V, D)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    write_safetensors(os.path.join(d, "model.safetensors"), {k: v.to(dtype) for k, v in sd.items()},
                      {"format": "pt"})
    return cfg, {k: v.to(dtype).float() for k, v in sd.items()}


def tiny_gpt2(d, seed=1, V=80, D=64, L=2, H=4, P=32, prefix="transformer."):
    g = torch.Generator().manual_seed(seed)
    cfg = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": V, "n_embd": D, "n_layer": L,
           "n_head": H, "n_positions": P, "n_ctx": P, "layer_norm_epsilon": 1e-5,
           "activation_function": "gelu_new", "bos_token_id": 0, "eos_token_id": 0}
    r = lambda *s: torch.randn(*s, generator=g) * 0.5
    sd = {"wte.weight": r(V, D), "wpe.weight": r(P, D)}
    for i in range(L):
        p = f"h.{i}."
        sd[p + "ln_1.weight"], sd[p + "ln_1.bias"] = 1 + r(D) * 0.1, r(D) * 0.1
        sd[p + "attn.c_attn.weight"], sd[p + "attn.c_attn.bias"] = r(D, 3 * D), r(3 * D)
        sd[p + "attn.c_proj.weight"], sd[p + "attn.c_proj.bias"] = r(D, D), r(D)
        sd[p + "ln_2.weight"], sd[p + "ln_2.bias"] = 1 + r(D) * 0.1, r(D) * 0.1
        sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"] = r(D, 4 * D), r(4 * D)
        sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"] = r(4 * D, D), r(D)
    sd["ln_f.weight"], sd["ln_f.bias"] = 1 + r(D) * 0.1, r(D) * 0.1
    disk = {prefix + k: v for k, v in sd.items()}
    for i in range(L):  # the causal-mask buffer old checkpoints carry
        disk[f"{prefix}h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, P, P))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    write_safetensors(os.path.join(d, "model.safetensors"), disk)
    return cfg, sd
