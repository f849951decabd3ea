/* modelfile.h — opens a model on disk, whatever its format, as a config plus a tensor set
 * with Hugging Face names in Hugging Face layout (the engine's one internal convention).
 *
 * Accepted paths:
 *   - a Hugging Face model directory: config.json + model.safetensors, or sharded
 *     model-0000N-of-0000M.safetensors listed in model.safetensors.index.json;
 *   - a GGUF file (see gguf.h): tensor names are mapped back to HF names and llama.cpp's Q/K
 *     permutation is undone, so the engine sees one layout.
 * Weights stay mmapped where the file allows (tensors borrow from the mapping).
 */
#ifndef PARITY_ENGINE_MODELFILE_H
#define PARITY_ENGINE_MODELFILE_H

#include "engine/config.h"
#include "engine/tensor.h"

struct pt_gguf;

typedef enum pt_model_format { PT_FORMAT_HF_DIR = 0, PT_FORMAT_GGUF = 1 } pt_model_format;

typedef struct pt_model_files {
    pt_model_format format;
    pt_config config;
    pt_tensors tensors;  /* HF names, HF layout */
    char *path;          /* what was opened (owned) */
    char *dir;           /* folder that holds it: tokenizer.json etc. are looked up here (owned) */
    struct pt_gguf *gguf; /* GGUF input: the parsed file, its metadata (tokenizer.ggml.*) and the
                           * mapping the tensors borrow from (owned); NULL for an HF directory */
} pt_model_files;

/* Opens path (directory or .gguf; a file is taken as GGUF when it starts with "GGUF").
 * Names are normalised to the internal convention (convert.h): GPT-2's "transformer." prefix
 * is stripped, its attention mask buffers and tied lm_head dropped, Llama's
 * rotary_emb.inv_freq dropped. Then pt_model_files_check() runs. On failure *mf is left
 * empty (safe to close). */
int pt_model_files_open(pt_model_files *mf, const char *path, pt_err *err);
void pt_model_files_close(pt_model_files *mf);

struct pt_tokenizer;
/* The model's tokenizer: DIR/tokenizer.json (with tokenizer_config.json beside it) for an HF
 * directory or a GGUF's folder, else the GGUF's own tokenizer.ggml.* metadata. PT_ENOTFOUND
 * when there is neither. *out is the caller's (pt_tokenizer_free). */
int pt_model_files_tokenizer(const pt_model_files *mf, struct pt_tokenizer **out, pt_err *err); /* NULL-safe, idempotent */

/* Checks that every tensor the architecture needs is present with the shape the config
 * implies, in a dtype the engine computes with (F32, F16, BF16, Q8_0), and that there is no
 * tensor it does not know. Errors name the file and the tensor (PT_ENOTFOUND for a missing
 * tensor, PT_EFORMAT for a wrong shape or an unexpected tensor, PT_EUNSUPPORTED for a dtype). */
int pt_model_files_check(const pt_model_files *mf, pt_err *err);

/* Reads the safetensors files of an HF directory (single or sharded) into ts. */
int pt_hf_read_weights(const char *dir, pt_tensors *ts, pt_err *err);

#endif
