/* parity convert — between Hugging Face model directories and GGUF, and to Q8_0. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "engine/convert.h"

const char cmd_convert_summary[] = "convert a model between HF safetensors directories and GGUF (f32/f16/bf16/q8_0/q4_0/q4_k/q5_k/q6_k)";

static void usage(void) {
    printf("usage: parity convert IN OUT [--to gguf|hf] [--dtype D] [--name NAME] [--quiet]\n"
           "\n"
           "Converts the model IN (a Hugging Face directory with config.json and model.safetensors\n"
           "or a sharded model.safetensors.index.json, or a .gguf file) to OUT.\n"
           "\n"
           "  --to gguf|hf   output format (default: gguf when OUT ends in .gguf, else hf)\n"
           "  --dtype D      dtype of the 2-D weights: f32, f16, bf16, or (GGUF only) q8_0, q4_0,\n"
           "                 q4_k, q5_k, q6_k (ggml's blocks and reference quantisers), or\n"
           "                 llama.cpp's mixes q4_k_m, q5_k_m (Q6_K for output, and for attn_v\n"
           "                 and ffn_down in some layers, as llama-quantize chooses). 1-D\n"
           "                 tensors (norms, biases) are then written f32, as llama.cpp does;\n"
           "                 rows that are not whole blocks fall back to q8_0, else f16.\n"
           "                 Default: keep each tensor's dtype (block types become f32 in\n"
           "                 safetensors).\n"
           "  --name NAME    general.name in the GGUF (default: IN's base name)\n"
           "  --quiet        no progress bar\n"
           "\n"
           "GGUF output follows llama.cpp's convert_hf_to_gguf.py: llama/gpt2 keys, tensor names\n"
           "(token_embd, blk.N.attn_q, ...), Q/K rows permuted for adjacent-pair RoPE, GPT-2 Conv1D\n"
           "weights transposed, tokenizer.json converted to tokenizer.ggml.* keys.\n"
           "\n"
           "examples:\n"
           "  parity convert models/tiny-llama tiny.gguf --dtype f16\n"
           "  parity convert models/tiny-llama tiny-q8.gguf --dtype q8_0\n"
           "  parity convert models/tiny-llama tiny-q4k.gguf --dtype q4_k\n"
           "  parity convert tiny.gguf models/tiny-back --to hf --dtype f32\n");
}

int cmd_convert(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    const char *pos[2] = {NULL, NULL}, *to = NULL, *dtype = NULL;
    pt_convert_opts o = {.to = PT_FORMAT_GGUF, .dtype = -1, .name = NULL, .progress = 1};
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--to") && i + 1 < argc) to = argv[++i];
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) dtype = argv[++i];
        else if (!strcmp(argv[i], "--name") && i + 1 < argc) o.name = argv[++i];
        else if (!strcmp(argv[i], "--quiet")) o.progress = 0;
        else if (argv[i][0] == '-' && argv[i][1]) return cli_usage_error("convert", "unknown option '%s'", argv[i]);
        else if (npos < 2) pos[npos++] = argv[i];
        else return cli_usage_error("convert", "too many arguments");
    }
    if (npos != 2) return cli_usage_error("convert", "needs IN and OUT");
    if (!to) {
        size_t n = strlen(pos[1]);
        to = n > 5 && !strcmp(pos[1] + n - 5, ".gguf") ? "gguf" : "hf";
    }
    if (!strcmp(to, "gguf")) o.to = PT_FORMAT_GGUF;
    else if (!strcmp(to, "hf")) o.to = PT_FORMAT_HF_DIR;
    else return cli_usage_error("convert", "--to must be gguf or hf, not '%s'", to);
    if (dtype) {
        if (!strcmp(dtype, "f32")) o.dtype = PT_F32;
        else if (!strcmp(dtype, "f16")) o.dtype = PT_F16;
        else if (!strcmp(dtype, "bf16")) o.dtype = PT_BF16;
        else if (!strcmp(dtype, "q8_0")) o.dtype = PT_Q8_0;
        else if (!strcmp(dtype, "q4_0")) o.dtype = PT_Q4_0;
        else if (!strcmp(dtype, "q4_k")) o.dtype = PT_Q4_K;
        else if (!strcmp(dtype, "q5_k")) o.dtype = PT_Q5_K;
        else if (!strcmp(dtype, "q6_k")) o.dtype = PT_Q6_K;
        else if (!strcmp(dtype, "q4_k_m")) o.dtype = PT_Q4_K, o.mix = PT_MIX_Q4_K_M;
        else if (!strcmp(dtype, "q5_k_m")) o.dtype = PT_Q5_K, o.mix = PT_MIX_Q5_K_M;
        else
            return cli_usage_error("convert",
                                   "--dtype must be f32, f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k, q4_k_m or q5_k_m, "
                                   "not '%s'",
                                   dtype);
    }
    if (o.to == PT_FORMAT_HF_DIR && o.dtype >= 0 && pt_dtype_is_quant((pt_dtype)o.dtype))
        return cli_usage_error("convert", "safetensors has no %s dtype (use --to gguf)", dtype);
    pt_err err = {0};
    if (pt_convert(pos[0], pos[1], &o, &err)) return cli_fail(&err);
    fprintf(stderr, "parity convert: wrote %s\n", pos[1]);
    return 0;
}
