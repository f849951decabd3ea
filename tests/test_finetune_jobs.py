"""Fine-tuning jobs in OpenAI's shape, driven over HTTP against the real `parity serve` on the
tiny world: POST /v1/files (multipart, validated JSONL), jobs create/list/retrieve/cancel/
events/checkpoints, a job trained to `succeeded`, the `ft:` model in completions and chat
(checked against `parity generate --lora` on the job's adapter), 404 for another
organisation, denial without `finetune`, the concurrent-jobs limit, cancel freeing the worker,
and restart persistence (SIGKILL mid-run: the running job fails, a queued one runs).
Debian's python3."""
import json
import urllib.parse
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
from tiny_world import World, err_code, run  # noqa: E402

POLICY = """version: 1
lab: {id: test-lab, name: Test Lab}
models:
  - {id: tiny, weights: MODEL_DIR, insider_since: 2026-01-01}
  - {id: ghost, insider_since: 2026-01-01}
organisations:
  - {id: lab, name: Test Lab, kind: insider}
  - {id: eval, name: Evaluator, kind: evaluator}
  - {id: al1, name: Black-box org, kind: researcher}
grants:
  - {id: g-lab, organisation: lab, model: "*", tier: AL3, window: {from: 2026-01-01}, limits: {concurrent_finetune_jobs: 2}}
  - {id: g-eval, organisation: eval, model: tiny, tier: AL3, window: {from: 2026-01-01}, limits: {concurrent_finetune_jobs: 1}}
  - {id: g-al1, organisation: al1, model: tiny, tier: AL1, window: {from: 2026-01-01}}
"""
W = World("parity-ftjobs-", ["lab", "eval", "al1"], policy=POLICY)
tmp, data, model_dir, keys = W.tmp, W.data, W.model_dir, W.keys
check, req, start = W.check, W.req, W.start
upload, wait_job = W.upload, W.wait_job

start()


small = b"".join(json.dumps({"prompt": "the cat %d" % i, "completion": " sat on the mat"}).encode() + b"\n"
                 for i in range(4))
big = b"".join(json.dumps({"messages": [{"role": "user", "content": "hello %d" % i},
                                         {"role": "assistant", "content": "the answer is %d" % (i * 7)}]}).encode() + b"\n"
               for i in range(100))

# --- files --------------------------------------------------------------------------------------
st, h, f, _ = upload("lab", small)
check(st == 200 and f["object"] == "file" and f["id"].startswith("file-") and f["bytes"] == len(small) and
      f["purpose"] == "fine-tune" and f["filename"] == "train.jsonl" and "_parity" not in f, "upload: %s" % (f,))
check("parity-receipt" in h, "an upload is receipted")
fid = f["id"]
st, _, g, _ = req("GET", "/v1/files/" + fid, key="lab")
check(st == 200 and g == f, "files.retrieve")
st, _, g, _ = req("GET", "/v1/files/" + fid, key="eval")
check(st == 404, "another organisation's file is not found")
st, _, _, body = req("GET", "/v1/files/%s/content" % fid, key="lab")
check(st == 200 and body == small, "file content round-trips")
bad = small + b'{"prompt": "x"}\n' + small
st, _, j, _ = upload("lab", bad, filename="bad.jsonl")
check(st == 400 and err_code(j) == "invalid_file" and "bad.jsonl:5:" in j["error"]["message"],
      "a bad line is refused with its line number: %s" % (j,))
st, _, j, _ = upload("lab", b"{not json\n", filename="x.jsonl")
check(st == 400 and "x.jsonl:1:" in j["error"]["message"], "not JSON: line 1")
st, _, j, _ = upload("lab", small, purpose="assistants")
check(st == 400 and j["error"]["param"] == "purpose", "only purpose fine-tune")
st, _, j, _ = req("POST", "/v1/files", key="lab", raw=b"--x\r\nno", headers={"Content-Type": "multipart/form-data; boundary=x"})
check(st == 400 and err_code(j) == "invalid_multipart", "truncated multipart: %s" % (j,))
st, _, j, _ = req("POST", "/v1/files", key="lab", raw=b"{}", headers={"Content-Type": "application/json"})
check(st == 400 and err_code(j) == "invalid_multipart", "not multipart")
st, _, j, _ = upload("al1", small)
check(st == 403 and err_code(j) == "capability_not_in_tier", "upload without finetune: %s" % (j,))
st, _, _, _ = req("POST", "/v1/files", raw=b"x")
check(st == 401, "uploads need a key")
st, _, fb, _ = upload("lab", big, filename="big.jsonl")
check(st == 200, "upload the long file")
st, _, fe, _ = upload("eval", big, filename="big.jsonl")
check(st == 200, "eval uploads")

# --- create, validation errors, denials -------------------------------------------------------
def create(key, body):
    return req("POST", "/v1/fine_tuning/jobs", body, key=key)


st, _, j, _ = create("al1", {"model": "tiny", "training_file": fid})
check(st == 403 and err_code(j) == "capability_not_in_tier", "create without finetune: %s" % (j,))
st, _, j, _ = create("lab", {"model": "nope", "training_file": fid})
check(st == 404 and err_code(j) == "model_not_found", "unknown base model")
st, _, j, _ = create("lab", {"model": "ghost", "training_file": fid})
check(st == 400 and err_code(j) == "model_not_available", "a base model not served here: %s" % (j,))
st, _, j, _ = create("eval", {"model": "tiny", "training_file": fid})
check(st == 400 and j["error"]["param"] == "training_file", "another organisation's file: %s" % (j,))
st, _, j, _ = create("lab", {"model": "tiny", "training_file": fid, "hyperparameters": {"n_epochs": 0}})
check(st == 400 and j["error"]["param"] == "n_epochs", "n_epochs range")
st, _, j, _ = create("lab", {"model": "tiny", "training_file": fid, "hyperparameters": {"lr": 1}})
check(st == 400, "unknown hyperparameter")
st, _, j, _ = create("lab", {"model": "tiny", "training_file": fid, "method": {"type": "dpo"}})
check(st == 400 and j["error"]["param"] == "method.type", "only supervised")
st, _, j, _ = create("lab", {"model": "tiny", "training_file": fid, "suffix": "a b"})
check(st == 400 and j["error"]["param"] == "suffix", "suffix characters")

# --- a job to succeeded -------------------------------------------------------------------------
# (GET /v1/models now, before the job: its body is cached per organisation, and the job's model
# must still appear below once the job has succeeded.)
st, _, ml, _ = req("GET", "/v1/models", key="lab")
check(st == 200 and not any(m["id"].startswith("ft:") for m in ml["data"]), "no fine-tuned model yet: %s" % (ml,))
st, h, job, _ = create("lab", {"model": "tiny", "training_file": fid, "validation_file": fid, "suffix": "t1",
                               "seed": 7, "hyperparameters": {"n_epochs": 2, "batch_size": 2},
                               "metadata": {"k": "v"}})
check(st == 200 and job["object"] == "fine_tuning.job" and job["id"].startswith("ftjob-") and
      job["status"] == "validating_files" and job["organization_id"] == "lab" and job["seed"] == 7 and
      job["fine_tuned_model"] is None and job["metadata"] == {"k": "v"} and "_parity" not in job and
      job["hyperparameters"]["learning_rate_multiplier"] == "auto" and "parity-receipt" in h, "create: %s" % (job,))
jid = job["id"]
done = wait_job(jid, "lab", ("succeeded", "failed", "cancelled"))
check(done["status"] == "succeeded", "the job succeeds: %s" % (done,))
ftm = done.get("fine_tuned_model") or ""
check(ftm == "ft:tiny:lab:t1:" + jid, "fine_tuned_model name: %s" % ftm)
check(done["hyperparameters"] == {"n_epochs": 2, "batch_size": 2, "learning_rate_multiplier": 1.0} and
      done["trained_tokens"] > 0 and done["finished_at"] >= done["created_at"] and len(done["result_files"]) == 1 and
      done["error"] is None, "the finished job's fields: %s" % (done,))
st, _, ev, _ = req("GET", "/v1/fine_tuning/jobs/%s/events?limit=100" % jid, key="lab")
msgs = [e["message"] for e in ev["data"]] if st == 200 else []
check(st == 200 and ev["object"] == "list" and all(e["object"] == "fine_tuning.job.event" for e in ev["data"]),
      "events list")
check(msgs and msgs[0].startswith("The job has successfully completed") and msgs[-1].startswith("Created fine-tuning job")
      and "Fine-tuning job started" in msgs, "events newest first: %s" % msgs)
metrics = [e for e in ev["data"] if e["type"] == "metrics"]
check(len(metrics) == 4 and metrics[0]["data"]["step"] == 4 and metrics[0]["data"]["total_steps"] == 4,
      "a metrics event per step (4 examples x 2 epochs / 2): %s" % metrics)
st, _, ev2, _ = req("GET", "/v1/fine_tuning/jobs/%s/events?limit=2" % jid, key="lab")
check(st == 200 and len(ev2["data"]) == 2 and ev2["has_more"], "events limit/has_more")
st, _, ev3, _ = req("GET", "/v1/fine_tuning/jobs/%s/events?limit=2&after=%s" % (jid, ev2["data"][1]["id"]), key="lab")
check(st == 200 and ev3["data"][0]["id"] == ev["data"][2]["id"], "events pagination with after")
st, _, ck, _ = req("GET", "/v1/fine_tuning/jobs/%s/checkpoints" % jid, key="lab")
check(st == 200 and len(ck["data"]) == 1 and ck["data"][0]["object"] == "fine_tuning.job.checkpoint" and
      ck["data"][0]["step_number"] == 4 and ck["data"][0]["fine_tuned_model_checkpoint"] == ftm + ":ckpt-step-4" and
      ck["first_id"] == ck["data"][0]["id"], "checkpoints: %s" % (ck,))
st, _, _, csv = req("GET", "/v1/files/%s/content" % done["result_files"][0], key="lab")
rows = csv.decode().strip().split("\n")
check(st == 200 and rows[0] == "step,train_loss" and len(rows) == 5 and
      abs(float(rows[-1].split(",")[1]) - metrics[0]["data"]["train_loss"]) < 1e-4, "result file: %s" % rows)
st, _, j, _ = req("GET", "/v1/fine_tuning/jobs/" + jid, key="eval")
check(st == 404, "another organisation's job is not found")
st, _, j, _ = req("GET", "/v1/fine_tuning/jobs/%s/events" % jid, key="eval")
check(st == 404, "nor its events")
st, _, j, _ = req("POST", "/v1/fine_tuning/jobs/%s/cancel" % jid, key="lab")
check(st == 400 and err_code(j) == "job_not_cancellable", "a finished job cannot be cancelled")

# --- the fine-tuned model -----------------------------------------------------------------------
prompt = [5, 17, 42, 99, 3]
st, _, comp, _ = req("POST", "/v1/completions", {"model": ftm, "prompt": prompt, "max_tokens": 6, "temperature": 0,
                                                 "logprobs": 1}, key="lab")
check(st == 200 and comp["model"] == ftm, "completions with the ft model: %s" % (comp,))
adapter = os.path.join(data, "fine_tuning", jid)
gen = json.loads(run("generate", "-m", model_dir, "--lora", adapter, "--tokens", ",".join(map(str, prompt)),
                     "--max-tokens", "6", "--json").stdout)
base = json.loads(run("generate", "-m", model_dir, "--tokens", ",".join(map(str, prompt)), "--max-tokens", "6",
                      "--json").stdout)
if st == 200:
    lp = comp["choices"][0]["logprobs"]["token_logprobs"]
    check(all(abs(a - b) < 1e-4 for a, b in zip(lp, gen["logprobs"])) and len(lp) == len(gen["logprobs"]),
          "the ft model's log-probs equal parity generate --lora's: %s vs %s" % (lp, gen["logprobs"]))
    check(any(abs(a - b) > 1e-4 for a, b in zip(lp, base["logprobs"])), "and differ from the base model's")
st, _, j, _ = req("POST", "/v1/completions", {"model": ftm + ":ckpt-step-4", "prompt": prompt, "max_tokens": 6,
                                              "temperature": 0, "logprobs": 1}, key="lab")
check(st == 200 and j["choices"][0]["logprobs"]["token_logprobs"] == comp["choices"][0]["logprobs"]["token_logprobs"],
      "the checkpoint's name works too")
st, _, j, _ = req("POST", "/v1/chat/completions", {"model": ftm, "messages": [{"role": "user", "content": "hello 3"}],
                                                   "max_tokens": 5}, key="lab")
check(st == 200 and j["model"] == ftm, "chat with the ft model")
st, _, j, _ = req("POST", "/v1/chat/completions", {"model": ftm, "messages": [{"role": "user", "content": "hi"}],
                                                   "max_tokens": 5}, key="eval")
check(st == 404 and err_code(j) == "model_not_found", "the ft model is not found for another organisation: %s" % (j,))
st, _, j, _ = req("POST", "/v1/chat/completions", {"model": "ft:tiny:lab:t1:ftjob-000000000000000000000000",
                                                   "messages": [{"role": "user", "content": "hi"}]}, key="lab")
check(st == 404, "an unknown ft model")
st, _, ml, _ = req("GET", "/v1/models", key="lab")
check(st == 200 and any(m["id"] == ftm and m["parent"] == "tiny" and m["owned_by"] == "lab" for m in ml["data"]),
      "GET /v1/models lists the organisation's fine-tuned model: %s" % (ml,))
st, _, ml, _ = req("GET", "/v1/models", key="eval")
check(st == 200 and not any(m["id"].startswith("ft:") for m in ml["data"]), "but not to another organisation")
st, _, mo, _ = req("GET", "/v1/models/" + urllib.parse.quote(ftm, safe=""), key="lab")
check(st == 200 and mo["id"] == ftm and mo["object"] == "model", "GET /v1/models/{ft model}: %s" % (mo,))
st, _, mo, _ = req("GET", "/v1/models/" + urllib.parse.quote(ftm, safe=""), key="eval")
check(st == 404, "which another organisation cannot see")

# --- cancel frees the worker; the concurrent-jobs limit -----------------------------------------
st, _, longj, _ = create("lab", {"model": "tiny", "training_file": fb["id"],
                                 "hyperparameters": {"n_epochs": 50, "batch_size": 1}})
check(st == 200, "create a long job")
r = wait_job(longj["id"], "lab", ("running",))
check(r["status"] == "running" and r["hyperparameters"]["n_epochs"] == 50, "the long job runs: %s" % (r,))
st, _, e1, _ = create("eval", {"model": "tiny", "training_file": fe["id"], "hyperparameters": {"n_epochs": 1}})
check(st == 200 and e1["status"] == "validating_files", "eval's first job")
st, _, j, _ = create("eval", {"model": "tiny", "training_file": fe["id"]})
check(st == 403 and err_code(j) == "limit_exceeded", "eval's second job exceeds concurrent_finetune_jobs 1: %s" % (j,))
q = wait_job(e1["id"], "eval", ("queued",))
check(q["status"] == "queued", "validated while the long job trains: %s" % q["status"])
st, _, j, _ = req("POST", "/v1/fine_tuning/jobs/%s/cancel" % e1["id"], key="eval")
check(st == 200 and j["status"] == "cancelled", "cancel a queued job")
st, _, j, _ = create("eval", {"model": "tiny", "training_file": fe["id"], "hyperparameters": {"n_epochs": 1}})
check(st == 200, "a cancelled job frees its slot")
e2 = j["id"]
t0 = time.time()
st, _, j, _ = req("POST", "/v1/fine_tuning/jobs/%s/cancel" % longj["id"], key="lab")
check(st == 200 and j["status"] == "cancelled" and j["finished_at"], "cancel the running job")
d2 = wait_job(e2, "eval", ("succeeded", "failed"), timeout=30)
check(d2["status"] == "succeeded", "the next job runs at once after a cancel: %s" % d2["status"])
c = wait_job(longj["id"], "lab", ("cancelled",))
check(c["status"] == "cancelled" and c["fine_tuned_model"] is None, "the cancelled job stays cancelled")
st, _, ck, _ = req("GET", "/v1/fine_tuning/jobs/%s/checkpoints" % longj["id"], key="lab")
check(st == 200 and ck["data"] == [], "a cancelled job has no checkpoint")
st, _, lst, _ = req("GET", "/v1/fine_tuning/jobs?limit=10", key="lab")
check(st == 200 and [x["id"] for x in lst["data"]] == [longj["id"], jid] and not lst["has_more"],
      "list shows only the organisation's jobs, newest first: %s" % [x["id"] for x in lst["data"]])
st, _, lst, _ = req("GET", "/v1/fine_tuning/jobs?limit=1&after=" + longj["id"], key="lab")
check(st == 200 and [x["id"] for x in lst["data"]] == [jid], "list after")
st, _, lst, _ = req("GET", "/v1/fine_tuning/jobs?limit=0", key="lab")
check(st == 400, "limit range")

# --- restart: the running job fails with a reason, a queued one runs ------------------------------
st, _, r1, _ = create("lab", {"model": "tiny", "training_file": fb["id"], "hyperparameters": {"n_epochs": 50, "batch_size": 1}})
st2, _, r2, _ = create("lab", {"model": "tiny", "training_file": fid, "suffix": "after", "hyperparameters": {"n_epochs": 1}})
check(st == 200 and st2 == 200, "two jobs for the restart")
wait_job(r1["id"], "lab", ("running",))
wait_job(r2["id"], "lab", ("queued",))
W.server.send_signal(signal.SIGKILL)
W.server.wait()
start()
x1 = wait_job(r1["id"], "lab", ("failed",), timeout=10)
check(x1["status"] == "failed" and x1["error"]["code"] == "server_restarted", "the interrupted job failed: %s" % (x1,))
x2 = wait_job(r2["id"], "lab", ("succeeded", "failed"), timeout=30)
check(x2["status"] == "succeeded", "the queued job ran after the restart: %s" % (x2,))
st, _, j, _ = req("POST", "/v1/completions", {"model": ftm, "prompt": prompt, "max_tokens": 6, "temperature": 0,
                                              "logprobs": 1}, key="lab")
check(st == 200 and j["choices"][0]["logprobs"]["token_logprobs"] == comp["choices"][0]["logprobs"]["token_logprobs"],
      "the ft model survives a restart")
st, _, ml, _ = req("GET", "/v1/models", key="lab")
ids = [m["id"] for m in ml["data"]] if st == 200 else []
check(ftm in ids and x2.get("fine_tuned_model") in ids, "and is listed after it, with the job finished since: %s" % ids)
check(W.stop() == 0, "clean shutdown")
sys.exit(W.summary("fine-tuning jobs"))
