"""A served model with its own chat template (Jinja, here Gemma-style markers parity has no
built-in template for) answers chat completions with the prompt that template renders — the
same tokens `parity tokenizer chat-render --tokens` gives (and fine-tuning trains on) — and a
template that raises (roles must alternate) is a 400 naming the template's complaint, not a
500. Special-token text in a message stays text. Over HTTP against the real `parity serve` on
the tiny world. Debian's python3."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
from tiny_world import PARITY, World  # noqa: E402

TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
            "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
            "{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else m['role']) + '\\n' + m['content'] | trim }}"
            "<|endoftext|>\n{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}")

W = World("parity-chattpl-", ["lab"])
check, req = W.check, W.req
with open(os.path.join(W.model_dir, "tokenizer_config.json"), "w") as f:
    json.dump({"chat_template": TEMPLATE, "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}, f)
W.start()


def cli_tokens(messages):
    p = subprocess.run([PARITY, "tokenizer", "chat-render", "-m", W.model_dir, "--tokens"],
                       input=json.dumps([{"messages": messages, "add_generation_prompt": True}]),
                       capture_output=True, text=True, check=True)
    return json.loads(p.stdout)[0]


for name, msgs in (("one turn", [{"role": "user", "content": "  hello there  "}]),
                   ("multi-turn", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "the the"},
                                   {"role": "user", "content": "<|endoftext|> again"}])):
    r = cli_tokens(msgs)
    st, _, j, _ = req("POST", "/v1/chat/completions", {"model": "tiny", "messages": msgs, "max_tokens": 2,
                                                       "temperature": 0}, key="lab")
    check(st == 200 and j["usage"]["prompt_tokens"] == len(r["ids"]),
          f"{name}: served with the model's template ({j.get('usage') if st == 200 else j}, "
          f"chat-render: {len(r['ids'])} tokens of {r['text']!r})")
    check(r["text"].startswith("<|endoftext|><start_of_turn>user\n") and r["text"].endswith("<start_of_turn>model\n"),
          f"{name}: the template's text {r['text']!r}")
    n_special = r["ids"].count(r["ids"][0])
    check(n_special == 1 + len(msgs), f"{name}: {n_special} <|endoftext|> ids: the BOS and one per turn, none from a message")
st, _, j, _ = req("POST", "/v1/chat/completions", {"model": "tiny", "max_tokens": 2, "messages": [
    {"role": "assistant", "content": "first"}, {"role": "user", "content": "second"}]}, key="lab")
msg = json.dumps(j)
check(st == 400 and "Conversation roles must alternate" in msg and "line 1, column" in msg,
      f"a template that raises is a 400 with its message: {st} {msg[:300]}")
sys.exit(W.summary("test_chat_template_serve"))
