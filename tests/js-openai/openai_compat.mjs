// Drives `parity serve` with the official `openai` npm client, exactly as a researcher would:
// only baseURL and apiKey differ from talking to OpenAI. Prints one JSON object with what the
// client returned for each scenario (parsed objects, streamed chunks, error classes and fields);
// tests/test_openai_compat.py checks it and compares the numbers with parity's CLI.
//
// usage: node openai_compat.mjs CONFIG.json
//   CONFIG: {"baseURL": "http://127.0.0.1:PORT/v1", "keys": {"al1": ..., "al2": ..., ...},
//            "prompt_ids": [..], "model": "tiny"}
import fs from "node:fs";
import OpenAI from "openai";

const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const model = cfg.model;

// maxRetries 0: the client retries 408/409/429/5xx by default, which would hide our answers
// (and spend the rate limit under test).
function client(org) {
    return new OpenAI({ baseURL: cfg.baseURL, apiKey: cfg.keys[org] ?? org, maxRetries: 0, timeout: 60000 });
}

// What the client threw, reduced to what the test checks.
function describeError(e) {
    const out = { thrown: true, class: e?.constructor?.name ?? typeof e, message: String(e?.message ?? e) };
    for (const cls of ["APIError", "BadRequestError", "AuthenticationError", "PermissionDeniedError", "NotFoundError",
        "RateLimitError", "InternalServerError", "APIConnectionError"]) {
        out["is_" + cls] = e instanceof OpenAI[cls];
    }
    if (e instanceof OpenAI.APIError) {
        out.status = e.status;
        out.code = e.code ?? null;
        out.type = e.type ?? null;
        out.param = e.param ?? null;
        out.error = e.error ?? null;
        const h = e.headers;
        out.headers = {};
        if (h) for (const name of ["retry-after", "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "parity-receipt"]) {
            const v = typeof h.get === "function" ? h.get(name) : h[name];
            if (v != null) out.headers[name] = v;
        }
    }
    return out;
}

async function attempt(fn) {
    try {
        return await fn();
    } catch (e) {
        return describeError(e);
    }
}

const r = {};

// --- models -----------------------------------------------------------------------------------
r.models_list = await attempt(async () => {
    const ids = [];
    for await (const m of client("al1").models.list()) ids.push({ id: m.id, object: m.object, owned_by: m.owned_by });
    return ids;
});
r.models_list_none = await attempt(async () => {
    const ids = [];
    for await (const m of client("none").models.list()) ids.push(m.id);
    return ids;
});
r.models_retrieve = await attempt(() => client("al3").models.retrieve(model));
r.models_retrieve_denied = await attempt(() => client("none").models.retrieve(model));
r.models_list_receipt = await attempt(async () => {
    const { data, response } = await client("al1").models.list().withResponse();
    return { n: data.data.length, receipt: response.headers.get("parity-receipt") };
});

// --- completions ------------------------------------------------------------------------------
r.completion_logprobs = await attempt(() => client("al2").completions.create({
    model, prompt: cfg.prompt_ids, max_tokens: 6, temperature: 0, logprobs: 3,
}));
r.completion_echo = await attempt(() => client("al2").completions.create({
    model, prompt: cfg.prompt_ids, max_tokens: 0, echo: true, logprobs: 0,
}));
r.completion_text = await attempt(() => client("al2").completions.create({
    model, prompt: "the cat", max_tokens: 8, temperature: 0,
}));
r.completion_stream = await attempt(async () => {
    const stream = await client("al2").completions.create({
        model, prompt: "the cat", max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    return chunks;
});

// --- chat -------------------------------------------------------------------------------------
const messages = [{ role: "system", content: "Be brief." }, { role: "user", content: "hello there" }];
r.chat = await attempt(() => client("al1").chat.completions.create({ model, messages, max_tokens: 6, temperature: 0 }));
r.chat_receipt = await attempt(async () => {
    const { data, response } = await client("al1").chat.completions
        .create({ model, messages, max_tokens: 6, temperature: 0 }).withResponse();
    return { content: data.choices[0].message.content, receipt: response.headers.get("parity-receipt"),
        request_id: data.id };
});
r.chat_logprobs = await attempt(() => client("al2").chat.completions.create({
    model, messages, max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 3,
}));
r.chat_n_seed = await attempt(() => client("al2").chat.completions.create({
    model, messages, max_tokens: 5, temperature: 1, n: 2, seed: 11,
}));
r.chat_n_seed_again = await attempt(() => client("al2").chat.completions.create({
    model, messages, max_tokens: 5, temperature: 1, n: 2, seed: 11,
}));
r.chat_stream = await attempt(async () => {
    const stream = await client("al1").chat.completions.create({
        model, messages, max_tokens: 6, temperature: 0, stream: true, stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    return chunks;
});
r.chat_stream_logprobs = await attempt(async () => {
    const stream = await client("al2").chat.completions.create({
        model, messages, max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 2, stream: true,
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    return chunks;
});
// The SDK's higher-level streaming helper accumulates the deltas into a final completion.
r.chat_stream_helper = await attempt(async () => {
    const runner = client("al1").chat.completions.stream({ model, messages, max_tokens: 6, temperature: 0 });
    let deltas = "";
    runner.on("content", (delta) => { deltas += delta; });
    const final = await runner.finalChatCompletion();
    return { deltas, final };
});
// Breaking out of a stream early aborts the request; the server must keep serving.
r.chat_stream_abort = await attempt(async () => {
    const stream = await client("al1").chat.completions.create({ model, messages, max_tokens: 50, stream: true });
    let n = 0;
    for await (const chunk of stream) {
        void chunk;
        if (++n >= 2) break;
    }
    const after = await client("al1").chat.completions.create({ model, messages, max_tokens: 2, temperature: 0 });
    return { chunks_read: n, after_ok: after.object === "chat.completion" };
});

// --- errors -----------------------------------------------------------------------------------
r.err_capability = await attempt(() => client("al1").completions.create({ model, prompt: "the", max_tokens: 3 }));
r.err_variant = await attempt(() => client("al1").chat.completions.create({ model: model + "@unmitigated", messages, max_tokens: 2 }));
r.err_no_grant = await attempt(() => client("none").chat.completions.create({ model, messages, max_tokens: 2 }));
r.err_logprobs_cap = await attempt(() => client("al2").chat.completions.create({
    model, messages, max_tokens: 2, logprobs: true, top_logprobs: 10,
}));
r.err_unknown_model = await attempt(() => client("al3").chat.completions.create({ model: "nosuch", messages, max_tokens: 2 }));
r.err_bad_key = await attempt(() => client("pk_0123456789abcdef_AAAA").models.list());
r.err_bad_request = await attempt(() => client("al1").chat.completions.create({ model, messages, max_tokens: 1000000 }));
r.err_stream_denied = await attempt(async () => {
    const stream = await client("none").chat.completions.create({ model, messages, max_tokens: 2, stream: true });
    for await (const chunk of stream) void chunk;
    return "no error";
});
// "slow" may make 2 requests a minute: the third must surface as RateLimitError, not be retried.
r.err_rate_limit = [];
for (let i = 0; i < 3; i++) {
    r.err_rate_limit.push(await attempt(async () => {
        const c = await client("slow").chat.completions.create({ model, messages, max_tokens: 2, temperature: 0 });
        return { ok: c.object };
    }));
}


// Files and fine-tuning jobs: upload a JSONL file as the client does (multipart from a read
// stream), create a job, poll it to the end, list, events, checkpoints, cancel, and use the
// fine-tuned model.
r.ft = await attempt(async () => {
    const c = client("al3");
    const lines = [];
    for (let i = 0; i < 4; i++) lines.push(JSON.stringify({ prompt: "the cat " + i, completion: " sat on the mat" }));
    const path = `${process.env.TMPDIR ?? "/tmp"}/parity-ft-${process.pid}.jsonl`;
    fs.writeFileSync(path, lines.join("\n") + "\n");
    const out = {};
    out.file = await c.files.create({ file: fs.createReadStream(path), purpose: "fine-tune" });
    fs.unlinkSync(path);
    out.bad_file = await attempt(async () => {
        const bad = `${process.env.TMPDIR ?? "/tmp"}/parity-ft-bad-${process.pid}.jsonl`;
        fs.writeFileSync(bad, lines[0] + "\n{\"prompt\": 1}\n");
        try { return await c.files.create({ file: fs.createReadStream(bad), purpose: "fine-tune" }); }
        finally { fs.unlinkSync(bad); }
    });
    out.created = await c.fineTuning.jobs.create({ model, training_file: out.file.id, suffix: "js",
        hyperparameters: { n_epochs: 1 } });
    let job = out.created;
    for (let i = 0; i < 600 && !["succeeded", "failed", "cancelled"].includes(job.status); i++) {
        await new Promise((res) => setTimeout(res, 50));
        job = await c.fineTuning.jobs.retrieve(out.created.id);
    }
    out.done = job;
    const list = [];
    for await (const j of c.fineTuning.jobs.list({ limit: 10 })) list.push(j.id);
    out.list = list;
    const events = [];
    for await (const e of c.fineTuning.jobs.listEvents(out.created.id, { limit: 100 })) events.push(e);
    out.events = events;
    out.checkpoints = (await c.fineTuning.jobs.checkpoints.list(out.created.id)).data;
    out.chat = await c.chat.completions.create({ model: job.fine_tuned_model, messages, max_tokens: 4, temperature: 0 });
    out.other_org = await attempt(() => client("al2").chat.completions.create({ model: job.fine_tuned_model, messages, max_tokens: 2 }));
    const second = await c.fineTuning.jobs.create({ model, training_file: out.file.id, hyperparameters: { n_epochs: 50, batch_size: 1 } });
    out.cancelled = await c.fineTuning.jobs.cancel(second.id);
    out.denied = await attempt(() => client("al1").fineTuning.jobs.create({ model, training_file: out.file.id }));
    const files = [];
    for await (const f of c.files.list()) files.push(f.id);
    out.files_list = files;
    out.file_deleted = await c.files.delete(out.file.id);
    const left = [];
    for await (const f of c.files.list()) left.push(f.id);
    out.files_left = left;
    return out;
});

process.stdout.write(JSON.stringify(r) + "\n");
