/* cli_engine.h — what the engine's subcommands (generate, score, trace, info, bench) share:
 * token lists, loading the engine, and the --add/--set/--ablate/--spec options. */
#ifndef PARITY_CLI_ENGINE_H
#define PARITY_CLI_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

/* Parses "1,2,3" (ids, no spaces needed; spaces allowed) into a malloc'd array. */
int cli_parse_tokens(const char *s, int32_t **ids, size_t *n, pt_err *err);
/* Parses "0,3,5" positions (same syntax). */
#define cli_parse_positions cli_parse_tokens

/* The model's tokenizer (loaded once per process; see pt_model_files_tokenizer). Borrowed. */
struct pt_tokenizer;
int cli_tokenizer(const pt_engine *e, struct pt_tokenizer **out, pt_err *err);
/* Encodes a text prompt with the model's tokenizer (BOS as the tokenizer adds it; special-token
 * strings in the text stay plain text). *ids malloc'd. */
int cli_encode_prompt(const pt_engine *e, const char *text, int32_t **ids, size_t *n, pt_err *err);

/* One --add/--set/--ablate/--spec option onto a hook set:
 *   --add NAME=FILE.safetensors[:SCALE]   --set NAME=FILE.safetensors   --ablate NAME[:mean] */
int cli_hook_option(pt_hooks *h, const char *opt, const char *arg, pt_err *err);
/* 1 if opt is one of the options above. */
int cli_is_hook_option(const char *opt);

/* --lora DIR[:SCALE]: loads the adapter (PEFT directory or LoRA GGUF) for e's model and makes
 * it the adapter of every sequence created afterwards. *out is the caller's (pt_lora_free
 * after the engine's last forward). spec NULL: nothing. */
struct pt_lora;
int cli_lora_option(pt_engine *e, const char *spec, struct pt_lora **out, pt_err *err);
#define CLI_LORA_HELP "  --lora DIR[:SCALE]   apply a LoRA adapter (PEFT dir or LoRA GGUF), scale default 1\n"

#define CLI_HOOK_OPTIONS_HELP                                                                     \
    "  --add NAME=FILE.safetensors[:SCALE]  add a steering vector/tensor to hook NAME (scale 1)\n" \
    "  --set NAME=FILE.safetensors   replace hook NAME's activation (patching)\n"                  \
    "  --ablate NAME[:mean]          zero hook NAME (or replace it by its mean over positions)\n"   \
    "  --spec FILE.json              reads and interventions from an interventions document\n"     \
    "  (FILE.safetensors: the tensor named NAME, else its only tensor; a [width] row is\n"         \
    "   broadcast over positions, a [pos, ...] tensor applies row p to position p)\n"

#endif
