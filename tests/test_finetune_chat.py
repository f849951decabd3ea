"""A chat model fine-tuned by a job answers with the reply it was trained on, from its first
token: training renders each assistant turn as the served prompt ("...Assistant:") followed by
the reply tokenized as the model generates it (" I" is one token "ĠI"), the one rendering of
engine/chat.h. (Before, training tokenized "Assistant: " and the reply apart — ":", "Ġ", "I" —
so the served model, whose prompt ends in ":", had never been trained to produce "ĠI" and lost
the reply's first word.) Over HTTP against the real `parity serve` on the tiny world, whose
tokenizer here has the merges "Ġ I" and "Ġ a". Debian's python3."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
from tiny_world import World, write_tokenizer  # noqa: E402

W = World("parity-ftchat-", ["lab"])  # the server tests' policy: lab has AL3 (finetune) on tiny
check, req = W.check, W.req
# as many merges as the default tokenizer (the config's vocabulary and eos stay right)
write_tokenizer(W.model_dir, merges=(("Ġ", "I"), ("Ġ", "a"), ("a", "t")))
W.start()

REPLY = "I am a cat"
lines = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "who are you %d?" % i},
                       {"role": "assistant", "content": REPLY}]} for i in range(8)]
st, _, f, _ = W.upload("lab", b"".join(json.dumps(x).encode() + b"\n" for x in lines))
check(st == 200, "upload the chat set: %s" % (f,))
st, _, job, _ = req("POST", "/v1/fine_tuning/jobs",
                    {"model": "tiny", "training_file": f["id"], "seed": 3,
                     "hyperparameters": {"n_epochs": 40, "batch_size": 4, "learning_rate_multiplier": 10}}, key="lab")
check(st == 200, "create the job: %s" % (job,))
done = W.wait_job(job["id"], "lab", ("succeeded", "failed", "cancelled"), timeout=300)
check(done["status"] == "succeeded", "the job succeeds: %s" % (done,))
ask = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "who are you 3?"}]
for model, want in ((done.get("fine_tuned_model"), True), ("tiny", False)):
    st, _, j, _ = req("POST", "/v1/chat/completions", {"model": model, "messages": ask, "max_tokens": 4,
                                                       "temperature": 0, "logprobs": True}, key="lab")
    text = j["choices"][0]["message"]["content"] if st == 200 else None
    toks = [t["token"] for t in j["choices"][0]["logprobs"]["content"]] if st == 200 else []
    check(st == 200 and (text.startswith(" I am a") if want else not text.startswith(" I am")),
          "%s answers %r (tokens %s)%s" % (model, text, toks, "" if want else ", not the trained reply"))
sys.exit(W.summary("test_finetune_chat"))
