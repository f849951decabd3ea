/* chat.h — how a list of chat messages becomes tokens: the one rendering the server uses for a
 * chat completion's prompt and `parity finetune` (CLI and server jobs) uses for training
 * conversations, so that a model fine-tuned on chats sees at serving time exactly the tokens it
 * was trained on: each assistant message is the generation prompt as served (the prompt ends
 * there) followed by the reply the model must produce, tokenized as the model would generate it.
 *
 * A model with its own chat template gets it, rendered by the Jinja interpreter (engine/jinja.h;
 * pt_chat_render_template below). The built-in templates are the fallback: recognised by their
 * markers (Llama 3, ChatML, Llama 2) when the model's template does not parse, else — and for a
 * model without one — the plain template:
 *
 *   System: <text>\n\nUser: <text>\n\nAssistant: <text>\n\n ... Assistant:
 *
 * where a user or system message is its prefix, its text and PT_CHAT_PLAIN_SEP, each tokenized
 * on its own, and an assistant message is PT_CHAT_PLAIN_GEN (the generation prompt) then
 * " " + text + PT_CHAT_PLAIN_SEP as one piece (so the reply's first word keeps its space:
 * "ĠI", not "Ġ" then "I"). Generation stops at PT_CHAT_PLAIN_STOP. Template markers are
 * encoded as special tokens; message contents never are, so a user cannot smuggle control
 * tokens into a prompt. */
#ifndef PARITY_ENGINE_CHAT_H
#define PARITY_ENGINE_CHAT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "engine/jinja.h"

struct pt_tokenizer;

#define PT_CHAT_PLAIN_SEP "\n\n"
#define PT_CHAT_PLAIN_GEN "Assistant:"
#define PT_CHAT_PLAIN_STOP "\n\nUser:"

typedef enum { PT_CHAT_PLAIN = 0, PT_CHAT_LLAMA3, PT_CHAT_CHATML, PT_CHAT_LLAMA2, PT_CHAT_TEMPLATE } pt_chat_kind;

/* The template of a tokenizer's chat_template (by its markers; PT_CHAT_TEMPLATE for another
 * template, rendered by the Jinja interpreter); PT_CHAT_PLAIN when none. */
pt_chat_kind pt_chat_kind_of(const struct pt_tokenizer *tok);

/* The prefix of a message of role "system" (or "developer"), "user" or "assistant" in the
 * plain template: "System: ", "User: ", "Assistant: ". NULL for any other role. */
const char *pt_chat_plain_prefix(const char *role);

/* Rendered tokens; reply[i] is 1 for the tokens an assistant message's reply consists of (its
 * text and its end-of-turn marker: what a model generates after the generation prompt). */
typedef struct {
    int32_t *ids;
    uint8_t *reply;
    size_t n, cap, max; /* max: PT_ELIMIT beyond it (0: no limit) */
} pt_chat_tokens;

/* Renders messages (a JSON array of {"role", "content": a string or text parts}) with
 * tok's template: the BOS when the tokenizer adds one, every message, and with gen the
 * generation prompt. Appends to out (zeroed by the caller; pt_chat_tokens_free). A bad message
 * is PT_EINVAL with *bad saying why (and *bad_index which message). */
int pt_chat_render(const struct pt_tokenizer *tok, json_t *messages, int gen, pt_chat_tokens *out, const char **bad,
                   size_t *bad_index, pt_err *err);
void pt_chat_tokens_free(pt_chat_tokens *t);

/* For generation after pt_chat_render(gen = 1): the end-of-turn token of the template (-1: none
 * beyond the tokenizer's EOS) and its stop string (NULL: none). */
int32_t pt_chat_end_token(const struct pt_tokenizer *tok, pt_chat_kind kind);
const char *pt_chat_stop(pt_chat_kind kind);

/* pt_chat_render's rendering with the model's own template: the text pt_chat_template_render
 * gives for {messages, add_generation_prompt: gen}, tokenized as Hugging Face tokenizes it
 * (special tokens split out, the text between them encoded), except that a special token is
 * taken only from the template's own text: message contents are never parsed for special
 * tokens. reply marks the tokens of assistant messages' contents and the template's text after
 * each up to and including an end-of-turn token. PT_EUNSUPPORTED (nothing appended) when the
 * model has no template or it does not parse: pt_chat_render then uses the built-in ones. */
int pt_chat_render_template(const struct pt_tokenizer *tok, json_t *messages, int gen, pt_chat_tokens *out,
                            const char **bad, size_t *bad_index, pt_err *err);

/* The variables a model's chat template is rendered with, as transformers.js passes them:
 * add_generation_prompt (false), tools (null), documents (null), the tokenizer's special tokens
 * (pt_tokenizer_chat_vars, or its BOS/EOS strings), then vars' members over those. New reference. */
json_t *pt_chat_context(const struct pt_tokenizer *tok, json_t *vars);

/* The template to render for a context: the list form's "tool_use" when the context has tools
 * and the model has one, else the default; NULL when the model has none. */
const char *pt_chat_template_for(const struct pt_tokenizer *tok, json_t *ctx);

/* Renders tok's own chat template with pt_chat_context(tok, vars) (o may be NULL). Errors as
 * pt_jinja_parse and pt_jinja_render; PT_ENOTFOUND when the model has no template. */
int pt_chat_template_render(const struct pt_tokenizer *tok, json_t *vars, const pt_jinja_opts *o, pt_jinja_out *out,
                            pt_err *err);

#endif
