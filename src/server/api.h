/* api.h — the route tables of the endpoint files; server.c serves their concatenation. A
 * route's handler gets the request through the pipeline (pipeline.h). */
#ifndef PARITY_SERVER_API_H
#define PARITY_SERVER_API_H

#include "server/pipeline.h"

extern const route pt_parity_routes[];     /* api_parity.c: health, logs, receipts, access, queue, admin, report */
extern const size_t pt_n_parity_routes;
extern const route pt_openai_routes[];     /* api_openai.c: models, completions, chat */
extern const size_t pt_n_openai_routes;
extern const route pt_ft_routes[];         /* api_files.c: files, fine-tuning jobs */
extern const size_t pt_n_ft_routes;
extern const route pt_internals_routes[];  /* api_internals.c: the /v1/internals/ routes */
extern const size_t pt_n_internals_routes;

#endif
