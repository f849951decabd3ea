/* convert.h — what GGUF's names and keys mean for a model, and conversion between formats.
 *
 * parity's internal convention (what pt_model_files hands the engine, whatever the file):
 *   - Llama: Hugging Face names (model.embed_tokens.weight, model.layers.N.self_attn.q_proj.weight,
 *     ..., lm_head.weight) in HF layout: nn.Linear weights [out, in], Q/K rows in HF's
 *     rotate-half order (pairs i and i + head_dim/2).
 *   - GPT-2: HF names WITHOUT the "transformer." prefix (wte.weight, wpe.weight, h.N.ln_1.weight,
 *     h.N.attn.c_attn.weight, ..., ln_f.bias), Conv1D weights in HF layout [in, out]; the causal
 *     mask buffers (h.N.attn.bias, h.N.attn.masked_bias) and lm_head.weight (tied to wte) are
 *     dropped.
 * GGUF uses llama.cpp's names (token_embd, blk.N.attn_q, ...; gpt2: position_embd, blk.N.attn_qkv,
 * ...), its hyper-parameter keys (llama.*, gpt2.*), Q/K rows permuted to adjacent-pair RoPE, and
 * GPT-2 Conv1D weights transposed to [out, in], as llama.cpp's convert_hf_to_gguf.py writes them.
 */
#ifndef PARITY_ENGINE_CONVERT_H
#define PARITY_ENGINE_CONVERT_H

#include "common/util.h"
#include "engine/gguf.h"
#include "engine/modelfile.h"

/* Maps a tensor name between parity's internal (HF) names and GGUF names for arch. Returns 0
 * and writes a NUL-terminated name into out, or -1 if the name has no counterpart. */
int pt_name_hf_to_gguf(const pt_config *c, const char *hf, char *out, size_t cap);
int pt_name_gguf_to_hf(const pt_config *c, const char *gguf, char *out, size_t cap);

/* Builds a config from llama.cpp's keys (general.architecture llama or gpt2) and the tensor
 * shapes, then validates it. Errors name the file and the key. */
int pt_gguf_config(const pt_gguf *g, pt_config *c, pt_err *err);

/* Loads a parsed GGUF as a config plus tensors with internal names in internal layout: Q/K
 * un-permuted (rows copied, Q8_0 stays Q8_0), GPT-2 Conv1D weights transposed back (a Q8_0
 * one is dequantised to F32 first: Q8_0 blocks run along rows and cannot be transposed).
 * Other tensors borrow from g's mapping (g must outlive ts). */
int pt_gguf_load_model(const pt_gguf *g, pt_config *c, pt_tensors *ts, pt_err *err);

/* Writes a Hugging Face tokenizer.json found in dir (with tokenizer_config.json, if any) as
 * tokenizer.ggml.* keys: byte-level BPE → model "gpt2" (tokens, token_type, merges, pre);
 * SentencePiece-style BPE (byte_fallback / Metaspace) → model "llama" (tokens, scores,
 * token_type, merges). Ids missing below config's vocab_size become "[PADn]" UNUSED tokens,
 * as llama.cpp's converter does. Returns PT_ENOTFOUND when dir has no tokenizer.json. */
int pt_tokenizer_json_to_gguf(const char *dir, const pt_config *c, pt_gguf_writer *w, pt_err *err);

/* Conversion -------------------------------------------------------------------------- */

typedef struct pt_convert_opts {
    pt_model_format to;   /* output format */
    int dtype;            /* target dtype for 2-D weights (PT_F32, PT_F16, PT_BF16, a block type), -1 keeps them */
    int mix;              /* GGUF: 0, or PT_MIX_Q4_K_M / PT_MIX_Q5_K_M (dtype is then Q4_K / Q5_K) */
    const char *name;     /* general.name (GGUF); NULL: the input's base name */
    int progress;         /* draw a progress bar on stderr */
} pt_convert_opts;

/* llama.cpp's Q4_K_M and Q5_K_M: Q4_K (Q5_K) weights, but Q6_K for output.weight (and a tied
 * token_embd) and for attn_v and ffn_down in the first and last eighth of the layers and every
 * third layer between (llama-quant.cpp's use_more_bits); a GPT-2 attn_qkv Q5_K (Q6_K). */
enum { PT_MIX_NONE = 0, PT_MIX_Q4_K_M, PT_MIX_Q5_K_M };

/* Converts the model at in (HF directory or .gguf) to out (a directory for HF, a file for GGUF).
 * 1-D tensors (norms, biases) are written F32 when a dtype is asked for, as llama.cpp does;
 * a Q8_0 target falls back to F16 for rows that are not a multiple of 32. HF output: config.json,
 * model.safetensors, and tokenizer.json/tokenizer_config.json copied when the input is an HF
 * directory. GGUF output from GGUF input keeps its tokenizer.* keys. */
int pt_convert(const char *in, const char *out, const pt_convert_opts *o, pt_err *err);

/* Writes an opened model as GGUF / as an HF directory (see pt_convert). */
int pt_gguf_write_model(const pt_model_files *mf, const char *path, const pt_convert_opts *o, pt_err *err);
int pt_hf_write_model(const pt_model_files *mf, const char *dir, const pt_convert_opts *o, pt_err *err);

#endif
