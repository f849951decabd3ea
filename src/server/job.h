/* job.h — the endpoint side of a model job (job.c): made from a request, submitted to its
 * backend (backend.h), answered through its sink (text, stop strings, streaming, the final
 * body, a streamed answer's receipt); and the request helpers the model endpoints share. */
#ifndef PARITY_SERVER_JOB_H
#define PARITY_SERVER_JOB_H

#include "server/backend.h"

/* A new job for the call (c->job; the request holds a reference, dropped when the call ends)
 * on the model info names, run by be. NULL when out of memory. */
gen_job *job_new(call *c, srv_backend *be, const srv_model_info *info, int kind, int api);
/* Submits j to its backend or answers 503 (queue full, shutting down); a streamed job's
 * response is opened first. HTTP_STREAM, HTTP_DEFER (answered at phase 1) or HTTP_DONE. */
int job_submit(pt_server *s, call *c, gen_job *j, http_resp *resp);

/* A 400 "invalid_value" naming param (fmt has one %s, for detail). Returns HTTP_DONE. */
int job_bad_request(http_resp *resp, const char *param, const char *fmt, const char *detail);
/* The body's "model", split at '@' into model and variant ("variant" in the body wins). */
void model_and_variant(json_t *b, char *model, size_t mcap, char *variant, size_t vcap);
/* The tokens of a completions "prompt" (or a trace's "input"): a string, an array of strings,
 * an array of token ids, or an array of arrays of ids, at most max_batch. */
int completion_prompts(gen_job *j, json_t *prompt, int max_batch, const char **bad, pt_err *err);

#endif
