"""An nnsight-like tracing context that compiles to ONE declarative /v1/internals/trace request.

    model = client.model("parity-demo")
    with model.trace("And God said") as t:
        h = model.blocks[1].hook_resid_post.save()
        model.blocks[1].hook_resid_pre.add(vec, scale=4)
    h.value            # numpy array [batch, pos, d_model] (nested lists without numpy)

Nothing runs inside the `with` block: attribute paths name hooks (model.blocks[1].attn.hook_z is
"blocks.1.attn.hook_z"), .save() asks to read one, .add/.set/.ablate/.patch add interventions.
On exit the whole trace goes to the server as one request (reads, interventions, inputs,
generation), and the saved proxies resolve. Several inputs: `model.trace(["a", "b"])` (every
edit on every input), or t.invoke("text") blocks, whose edits and saves are that input's own;
`.patch(source)` copies the hook's activation from another invoke (activation patching)."""
import base64
import json
import struct

try:
    import numpy as _np
except ImportError:  # the client works without numpy: values are nested lists then
    _np = None


class TraceError(Exception):
    pass


def _encode(value):
    """{"data": base64 little-endian F32, "shape": [...]} of an array, nested list or number."""
    if _np is not None and not isinstance(value, dict):
        a = _np.asarray(value, dtype="<f4")
        if a.ndim == 0:
            a = a.reshape(1)
        return {"data": base64.b64encode(a.tobytes()).decode(), "shape": list(a.shape)}
    shape, flat = [], []

    def walk(v, depth):
        if isinstance(v, (list, tuple)):
            if len(shape) <= depth:
                shape.append(len(v))
            elif shape[depth] != len(v):
                raise TraceError("a ragged value: rows of different lengths")
            for x in v:
                walk(x, depth + 1)
        else:
            flat.append(float(v))
    walk(value if isinstance(value, (list, tuple)) else [value], 0)
    return {"data": base64.b64encode(struct.pack("<%df" % len(flat), *flat)).decode(), "shape": shape}


def _decode(t):
    return _array(base64.b64decode(t["data"]), t["shape"])


def _safetensors(body):
    """{name: array} and the metadata of a safetensors body of F32 tensors."""
    if len(body) < 8:
        raise TraceError("a safetensors answer of %d bytes" % len(body))
    n = int.from_bytes(body[:8], "little")
    if 8 + n > len(body):
        raise TraceError("a safetensors header of %d bytes in a body of %d" % (n, len(body)))
    header = json.loads(body[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        if t["dtype"] != "F32" or not 0 <= b <= e <= len(body) - 8 - n:
            raise TraceError("safetensors tensor %s: dtype %s, offsets %s" % (name, t["dtype"], t["data_offsets"]))
        out[name] = _array(body[8 + n + b:8 + n + e], t["shape"])
    return out, meta


def _array(raw, shape):
    if _np is not None:
        return _np.frombuffer(raw, dtype="<f4").reshape(shape).copy()
    flat = list(struct.unpack("<%df" % (len(raw) // 4), raw))

    def build(off, dims):
        if not dims:
            return flat[off]
        step = 1
        for d in dims[1:]:
            step *= d
        return [build(off + i * step, dims[1:]) for i in range(dims[0])]
    return build(0, shape)


def _take(value, batch_index, length, pattern):
    """One input's slice of a batched read, trimmed to its real positions."""
    if _np is not None:
        v = value[batch_index]
        if length is not None:
            v = v[:, :length, :length] if pattern else v[:length]
        return v
    v = value[batch_index]
    if length is not None:
        v = [[row[:length] for row in head[:length]] for head in v] if pattern else v[:length]
    return v


class Saved:
    """A read that resolves after the trace: .value (also available as the proxy itself through
    numpy's __array__)."""

    def __init__(self, trace, hook, invoke, positions):
        self._trace, self.hook, self._invoke, self._positions = trace, hook, invoke, positions
        self._value, self._set = None, False

    @property
    def value(self):
        if not self._set:
            raise TraceError("%s has no value yet: it resolves when the `with` block of its trace exits" % self.hook)
        return self._value

    def _resolve(self, batched, inputs):
        if self._invoke is None:
            self._value = batched
        else:
            length = None if self._positions else inputs[self._invoke]["length"]
            self._value = _take(batched, self._invoke, length, "hook_pattern" in self.hook)
        self._set = True

    def __array__(self, dtype=None):
        return _np.asarray(self.value, dtype=dtype)

    def __repr__(self):
        return "Saved(%s%s)" % (self.hook, "" if self._set else ", pending")


class Node:
    """A path in the model (model.blocks[3].hook_resid_post): hooks are read and written here."""

    def __init__(self, model, path):
        self._model, self._path = model, path

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return Node(self._model, self._path + "." + name)

    def __getitem__(self, i):
        return Node(self._model, "%s.%d" % (self._path, i))

    def __repr__(self):
        return "Node(%s)" % self._path

    @property
    def name(self):
        return self._path

    def save(self, positions=None):
        """Read this hook: the returned proxy holds [batch, pos, ...] (one invoke's own slice
        inside t.invoke) once the trace has run. positions: only these absolute positions."""
        return self._model._trace()._read(self._path, positions)

    def add(self, value, scale=1.0, positions=None):
        """Add scale * value (one row, broadcast to every position, or [rows, width])."""
        self._model._trace()._op(self._path, "add", value=_encode(value), scale=scale, positions=positions)

    def set(self, value, positions=None):
        """Replace the activation by value (one row, or [rows, width])."""
        self._model._trace()._op(self._path, "set", value=_encode(value), positions=positions)

    def ablate(self, mode="zero", positions=None):
        """Zero the activation, or (mode="mean") replace it by its mean over positions."""
        self._model._trace()._op(self._path, "ablate", mode=mode, positions=positions)

    def patch(self, source, positions=None):
        """Copy this hook's activation from another input (an Invoke or its index)."""
        src = source.index if isinstance(source, Invoke) else int(source)
        self._model._trace()._op(self._path, "patch", source=src, positions=positions)

    @property
    def grad(self):
        raise NotImplementedError("gradients are not granted by this server: /v1/internals/trace has no backward pass "
                                  "yet (reads, interventions, patching and generation only)")


class Invoke:
    """One input of a multi-input trace (t.invoke(text)): edits and saves inside its block
    apply to this input only."""

    def __init__(self, trace, index):
        self._trace, self.index = trace, index

    def __enter__(self):
        if self._trace._invoke is not None:
            raise TraceError("invokes do not nest")
        self._trace._invoke = self.index
        return self

    def __exit__(self, *exc):
        self._trace._invoke = None
        return False

    @property
    def output(self):
        """This input's {tokens, length, generated[, text]} after the trace."""
        return self._trace._need_result()["inputs"][self.index]


class Trace:
    def __init__(self, model, inputs, generate, binary=False):
        self.model, self._generate, self.binary = model, generate, binary
        self._batched = isinstance(inputs, list) and inputs and not all(isinstance(x, int) for x in inputs)
        self._inputs = list(inputs) if self._batched else ([] if inputs is None else [inputs])
        self._reads, self._ops, self._saved = [], [], []
        self._invoke = None
        self.result = None
        self.receipt = None

    def invoke(self, input):
        """Adds an input; use `with t.invoke(text) as inv:` to scope edits and saves to it."""
        self._inputs.append(input)
        return Invoke(self, len(self._inputs) - 1)

    def _read(self, hook, positions):
        known = next((r for r in self._reads if (r if isinstance(r, str) else r["hook"]) == hook), None)
        entry = {"hook": hook, "positions": list(positions)} if positions else hook
        if known is None:
            self._reads.append(entry)
        elif known != entry:
            raise TraceError("%s is read twice with different positions in one trace" % hook)
        s = Saved(self, hook, self._invoke, positions)
        self._saved.append(s)
        return s

    def _op(self, hook, op, **kw):
        o = {"hook": hook, "op": op}
        o.update({k: v for k, v in kw.items() if v is not None})
        if "positions" in o:
            o["positions"] = list(o["positions"])
        if self._invoke is not None:
            if op == "patch" and o["source"] == self._invoke:
                raise TraceError("patch: the source is the input being patched")
            o["inputs"] = [self._invoke]
        self._ops.append(o)

    def request(self):
        """The one request body this trace compiles to."""
        if not self._inputs:
            raise TraceError("a trace needs an input: model.trace(text) or t.invoke(text)")
        m = self.model
        body = {"model": m.id, "input": self._inputs if len(self._inputs) > 1 or self._batched else self._inputs[0]}
        if m.variant:
            body["variant"] = m.variant
        if self._reads:
            body["reads"] = self._reads
        if self._ops:
            body["interventions"] = self._ops
        if self._generate is not None:
            body["generate"] = self._generate
        return body

    def __enter__(self):
        if self.model._active is not None:
            raise TraceError("a trace is already open on this model")
        self.model._active = self
        return self

    def __exit__(self, exc_type, exc, tb):
        self.model._active = None
        if exc_type is not None:
            return False
        self.run()
        return False

    def run(self):
        c = self.model.client
        if self.binary:  # the same tensors as a safetensors body: 3/4 of the bytes, no base64
            body = c.request("POST", "/v1/internals/trace", self.request(), raw_response=True,
                             headers={"Accept": "application/x-safetensors"})
            tensors, meta = _safetensors(body)
            self.result = {"object": "trace", "model": meta.get("model"), "inputs": json.loads(meta.get("inputs", "[]"))}
        else:
            self.result = c.trace_request(self.request())
            tensors = {t["name"]: _decode(t) for t in self.result["tensors"]}
        self.receipt = c.last_receipt
        for s in self._saved:
            s._resolve(tensors[s.hook], self.result["inputs"])
        return self.result

    def _need_result(self):
        if self.result is None:
            raise TraceError("the trace has not run yet (its `with` block has not exited)")
        return self.result

    @property
    def output(self):
        """Per input: {tokens, length, generated[, text]}."""
        return self._need_result()["inputs"]

    @property
    def text(self):
        """The generated text of the first input ("" if none)."""
        return self._need_result()["inputs"][0].get("text", "")


class Model:
    """client.model(id): hooks by attribute (model.blocks[0].hook_resid_post, model.logits,
    model.hook_embed, model.ln_final.hook_normalized) and the tracing contexts."""

    def __init__(self, client, model_id, variant=None):
        self.client, self.id, self.variant = client, model_id, variant
        self._active = None

    def _trace(self):
        if self._active is None:
            raise TraceError("hooks are read and edited inside `with model.trace(...)`")
        return self._active

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return Node(self, name)

    def trace(self, input=None, generate=None, binary=False):
        """A trace of input (text, token ids, or a list of either; None: add inputs with
        t.invoke). generate: {"max_tokens", "temperature", "seed"} to sample with the edits on.
        binary: receive the tensors as safetensors rather than base64 in JSON."""
        return Trace(self, input, generate, binary)

    def generate(self, input=None, max_tokens=16, temperature=0.0, seed=None, binary=False):
        """A trace that also samples max_tokens tokens with the edits in place (t.text)."""
        g = {"max_tokens": max_tokens, "temperature": temperature}
        if seed is not None:
            g["seed"] = seed
        return Trace(self, input, g, binary)

    def hooks(self):
        """The hooks of this model: [{name, shape, writable}]."""
        return self.client.hooks(self.id)
