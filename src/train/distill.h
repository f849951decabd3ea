/* distill.h — knowledge distillation: the loss, the teacher's top-k cache file, and the run.
 *
 * The loss of one position (Hinton et al. 2015, "Distilling the knowledge in a neural
 * network"), student logits z, teacher log-probabilities l, temperature T, weight alpha:
 *
 *   p_T = softmax(z / T)            q_T = softmax(l / T)
 *   loss = alpha·CE(target, softmax(z)) + (1 − alpha)·T²·KL
 *   KL   = Σ q_T (log q_T − log p_T)   forward (default): mass-covering
 *        = Σ p_T (log p_T − log q_T)   reverse: mode-seeking
 *
 * Gradients with respect to z (the T² keeps the soft term's gradient scale independent of T):
 *   CE:          softmax(z) − onehot(target)
 *   forward KL:  T·(p_T − q_T)
 *   reverse KL:  T·p_T ⊙ (log p_T − log q_T − KL)
 *
 * The teacher's distribution comes either from running the teacher through the engine on
 * the same windows (on the fly), or from a cache of its top-k log-probabilities per position
 * written once by `parity distill cache` next to the token files (DATA/train.topk.bin).
 * A cached row gives the full distribution in one of two ways (topk_fill):
 *   uniform (default): the k cached probabilities as they are; the rest of the mass,
 *                      1 − Σ top-k, spread evenly over the V − k other tokens;
 *   renorm:            the k cached probabilities scaled to sum to 1; the others get 0
 *                      (log −∞), so reverse KL cannot use it (it would be infinite).
 * With k = V both give the teacher's exact distribution, as on the fly does.
 *
 * Windows: distillation draws windows of seq_len + 1 tokens starting at multiples of seq_len
 * (window w: inputs tokens[w·T .. w·T+T−1], targets one further), so that the cache can hold
 * the teacher's prediction for each window position from exactly the context the student
 * sees. On the fly uses the same windows, so the two give the same run when k = V.
 */
#ifndef PARITY_TRAIN_DISTILL_H
#define PARITY_TRAIN_DISTILL_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/fileio.h"
#include "train/loop.h"
#include "train/train.h"

/* ---- the loss ---------------------------------------------------------------------------- */

/* The loss of one row (see above): z the student logits (V), target the hard label (used
 * when alpha > 0), lq the teacher's log q_T. With backward, z is replaced by the gradient of
 * the loss times scale. Returns the row's loss (may be +inf for reverse KL against a zero
 * teacher probability). Used by pt_trainer_forward_backward_distill. */
double pt_distill_row(float *z, int V, int32_t target, const float *lq, const pt_distill_loss *dl, float scale,
                      int backward);

/* out = log_softmax(lp / T) over V entries (in place allowed; −∞ entries stay −∞). */
void pt_distill_temper(const float *lp, int V, float T, float *out);

/* ---- the top-k cache file ---------------------------------------------------------------- */

/* DATA/train.topk.bin. All little-endian, a 64-byte header then the records:
 *   0  8  magic "PTTOPK\0\0"
 *   8  4  u32 version = 1
 *  12  4  u32 header size = 64
 *  16  8  u64 n_tokens of the token file it was computed from
 *  24  8  u64 FNV-1a 64 of that file's ids (each as 4 little-endian bytes)
 *  32  4  u32 seq_len T (window length)
 *  36  4  u32 k
 *  40  4  u32 vocab_size
 *  44  4  u32 flags = 0
 *  48  8  u64 n_windows = (n_tokens − 1) / T
 *  56  8  u64 reserved = 0
 *  64     n_windows·T records, window-major; record (w, i) is the teacher's prediction after
 *         inputs tokens[w·T .. w·T+i]: k u32 token ids, then k f32 log-probabilities (T = 1),
 *         by decreasing log-probability (ties: lower id first).
 * The reader checks every field and record: ids below vocab_size and distinct within a
 * record, log-probabilities finite, ≤ 1e-3, non-increasing, total probability ≤ 1 + 1e-3. */
#define PT_TOPK_MAGIC "PTTOPK\0\0"
#define PT_TOPK_HEADER 64
#define PT_TOPK_MAX_VOCAB (1u << 22)

typedef struct pt_topk {
    pt_map map;               /* owned when opened from a file */
    const uint8_t *records;   /* borrowed from the mapping / buffer */
    uint64_t n_tokens, tokens_hash, n_windows;
    uint32_t seq_len, k, vocab_size;
} pt_topk;

/* FNV-1a 64 of n ids, each as 4 little-endian bytes. */
uint64_t pt_topk_hash(const uint32_t *ids, uint64_t n);
/* Checks a whole file image (see above); errors name `what` and the byte offset. */
int pt_topk_parse(const uint8_t *data, size_t len, const char *what, pt_topk *c, pt_err *err);
int pt_topk_open(const char *path, pt_topk *c, pt_err *err);
void pt_topk_close(pt_topk *c); /* NULL-initialised: no-op */
/* The full log-probability row (V = vocab_size entries, T = 1) of record (w, i), filled per
 * `renorm` (0: uniform remainder, 1: renormalised top-k; see above). */
void pt_topk_row(const pt_topk *c, uint64_t w, uint32_t i, int renorm, float *out);

/* Runs the teacher (an engine model directory or GGUF) over every window of seq_len tokens
 * of the token file `data_bin` and writes its top-k to `out` (temp file, fsync, rename).
 * quiet = 0: a progress bar on stderr. */
int pt_topk_write(const char *teacher, const char *data_bin, const char *out, uint32_t seq_len, uint32_t k,
                  int threads, int quiet, pt_err *err);

/* ---- the run ----------------------------------------------------------------------------- */

/* Trains tc->model on tc->data against the teacher tc->distill (pt_train_run's loop,
 * checkpoints and resume, with the distillation loss and aligned windows). */
int pt_distill_run(const pt_train_conf *tc, int resume, int quiet, pt_train_result *res, pt_err *err);

#endif
