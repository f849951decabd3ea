/* finetune.h — files and fine-tuning jobs (server_finetune.c): the worker that trains
 * adapters, the fine-tuned models it makes, and the adapter cache completions use. */
#ifndef PARITY_SERVER_FINETUNE_H
#define PARITY_SERVER_FINETUNE_H

#include "server/pipeline.h"

struct pt_lora;

/* Files and fine-tuning jobs (server_finetune.c): start reads the jobs from the store (a job
 * that was running is failed, queued ones are queued again) and starts the worker; stop
 * interrupts the running job and joins the worker (before srv_models_stop); free frees the
 * adapter cache (after srv_models_stop). All NULL-state safe. */
int srv_ft_start(pt_server *s, pt_err *err);
/* The caller organisation's fine-tuned models whose base it may sample now, as OpenAI model
 * objects (with "parent": the base). From memory: no store query. */
json_t *srv_ft_models(pt_server *s, const pt_policy *p, const char *org, int64_t now, uint64_t *version);
/* Changes with every change to what srv_ft_models can list (a job's model added). The version
 * srv_ft_models returned its list at goes in *version (NULL: not wanted). */
uint64_t srv_ft_models_version(pt_server *s);
void srv_ft_stop(pt_server *s);
void srv_ft_free(pt_server *s);
/* Resolves a fine-tuned model id "ft:BASE:ORG:SUFFIX:JOBID" for the caller's organisation:
 * 1 with base (the model the policy decides on) and *lora (cached, valid until srv_ft_stop)
 * filled; 0 with a 404 in resp when there is no such model for this organisation. */
int srv_ft_resolve(pt_server *s, call *c, const char *name, char *base, size_t base_cap, const struct pt_lora **lora,
                   http_resp *resp);

#endif
