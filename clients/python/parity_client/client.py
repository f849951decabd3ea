"""The HTTP client: OpenAI's shapes for sampling, files and fine-tuning, and parity's own
endpoints (access, the parity report, receipts, internals). Standard library only."""
import hashlib
import http.client
import json
import os
import time
import urllib.parse
import uuid


class Obj(dict):
    """A JSON object whose members are also attributes (r.choices[0].message.content)."""

    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError:
            raise AttributeError(k)


def _loads(data):
    return json.loads(data, object_hook=Obj)


class APIError(Exception):
    """An error answer in OpenAI's shape: status, message, type, code, param, headers."""

    def __init__(self, status, body, headers):
        err = (body or {}).get("error", {}) if isinstance(body, dict) else {}
        self.status, self.headers, self.body = status, headers, body
        self.message = err.get("message") or "HTTP %d" % status
        self.type, self.code, self.param = err.get("type"), err.get("code"), err.get("param")
        super().__init__("%d %s: %s" % (status, self.code or self.type or "error", self.message))


class BadRequestError(APIError):
    pass


class AuthenticationError(APIError):
    pass


class PermissionDeniedError(APIError):
    """403: a policy denial; code is the reason (no_grant, capability_not_in_tier, ...)."""


class NotFoundError(APIError):
    pass


class RateLimitError(APIError):
    pass


_ERRORS = {400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
           429: RateLimitError}


class Receipt:
    """What the caller keeps of one request to prove later what it sent and got: the audit log
    index, the secret salt, and the exact request and response bytes."""

    def __init__(self, index, salt, request, response):
        self.index, self.salt, self.request, self.response = index, salt, request, response

    def commitments(self):
        """(request, response) commitments as the public audit entry holds them (hex)."""
        def c(tag, body):
            return hashlib.sha256(tag + bytes.fromhex(self.salt) + hashlib.sha256(body).digest()).hexdigest()
        return c(b"parity-receipt-v1 request", self.request), c(b"parity-receipt-v1 response", self.response)

    def __repr__(self):
        return "Receipt(index=%r)" % self.index


class Stream:
    """An SSE stream of chunks (iterate it). After the end, .receipt is the request's Receipt
    (the server's final ": parity-receipt N" comment) and .chunks everything received."""

    def __init__(self, conn, resp, request):
        self._conn, self._resp, self._request = conn, resp, request
        self._raw = b""
        self.chunks, self.receipt, self.done = [], None, False

    def __iter__(self):
        while True:
            line = self._resp.readline()
            if not line:
                break
            if line.startswith(b": parity-receipt "):
                idx = int(line.split()[-1])
                salt = self._resp.getheader("Parity-Receipt-Salt")
                self.receipt = Receipt(idx, salt, self._request, self._raw)
                continue
            self._raw += line
            if not line.startswith(b"data: "):
                continue
            data = line[6:].strip()
            if data == b"[DONE]":
                self.done = True
                continue
            chunk = _loads(data)
            if "error" in chunk:
                raise APIError(500, chunk, {})
            self.chunks.append(chunk)
            yield chunk
        self._conn.close()

    def text(self):
        """Reads the rest of the stream; the concatenated text of choice 0."""
        out = []
        for c in self:
            ch = c.get("choices") or [{}]
            out.append(ch[0].get("delta", {}).get("content") or ch[0].get("text") or "")
        return "".join(out)


class _Section:
    def __init__(self, client):
        self._c = client


class _Completions(_Section):
    path = "/v1/completions"

    def create(self, **body):
        """OpenAI's create: returns the completion (an Obj); with stream=True a Stream."""
        return self._c.request("POST", self.path, body, stream=bool(body.get("stream")))


class _ChatCompletions(_Completions):
    path = "/v1/chat/completions"


class _Chat(_Section):
    def __init__(self, client):
        super().__init__(client)
        self.completions = _ChatCompletions(client)


class _Models(_Section):
    def list(self):
        return self._c.request("GET", "/v1/models").data

    def retrieve(self, model):
        return self._c.request("GET", "/v1/models/" + urllib.parse.quote(model, safe=":@"))


class _Files(_Section):
    def create(self, file, purpose="fine-tune", filename=None):
        """Uploads bytes, or the file at a path, as multipart/form-data."""
        if isinstance(file, (str, os.PathLike)):
            filename = filename or os.path.basename(file)
            with open(file, "rb") as f:
                file = f.read()
        b = "----parity-client-" + uuid.uuid4().hex
        body = ("--%s\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n%s\r\n--%s\r\n"
                "Content-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n" % (b, purpose, b, filename or "train.jsonl")).encode() + \
            file + ("\r\n--%s--\r\n" % b).encode()
        return self._c.request("POST", "/v1/files", raw=body, content_type="multipart/form-data; boundary=" + b)

    def list(self, **query):
        return self._c.request("GET", "/v1/files", query=query)

    def retrieve(self, file_id):
        return self._c.request("GET", "/v1/files/" + file_id)

    def content(self, file_id):
        return self._c.request("GET", "/v1/files/%s/content" % file_id, raw_response=True)

    def delete(self, file_id):
        return self._c.request("DELETE", "/v1/files/" + file_id)


class _Jobs(_Section):
    def create(self, **body):
        return self._c.request("POST", "/v1/fine_tuning/jobs", body)

    def retrieve(self, job_id):
        return self._c.request("GET", "/v1/fine_tuning/jobs/" + job_id)

    def list(self, **query):
        return self._c.request("GET", "/v1/fine_tuning/jobs", query=query)

    def cancel(self, job_id):
        return self._c.request("POST", "/v1/fine_tuning/jobs/%s/cancel" % job_id)

    def list_events(self, job_id, **query):
        return self._c.request("GET", "/v1/fine_tuning/jobs/%s/events" % job_id, query=query)

    def checkpoints(self, job_id):
        return self._c.request("GET", "/v1/fine_tuning/jobs/%s/checkpoints" % job_id)

    def wait(self, job_id, timeout=600, poll=0.2):
        """Polls until the job is succeeded, failed or cancelled; returns it (TimeoutError after
        timeout seconds)."""
        t0 = time.monotonic()
        while True:
            j = self.retrieve(job_id)
            if j.status in ("succeeded", "failed", "cancelled"):
                return j
            if time.monotonic() - t0 > timeout:
                raise TimeoutError("fine-tuning job %s still %s after %d s" % (job_id, j.status, timeout))
            time.sleep(poll)


class _FineTuning(_Section):
    def __init__(self, client):
        super().__init__(client)
        self.jobs = _Jobs(client)


class Client:
    """A parity server at base_url ("http://127.0.0.1:8080"), with an API key.

    client.completions / client.chat.completions / client.models / client.files /
    client.fine_tuning.jobs follow the openai package's names; client.access(),
    client.parity(), client.receipt(i), client.model(id) (tracing) and the verification
    methods are parity's own. client.last_receipt is the Receipt of the last request."""

    def __init__(self, base_url="http://127.0.0.1:8080", key=None, timeout=300):
        u = urllib.parse.urlsplit(base_url if "//" in base_url else "http://" + base_url)
        if u.scheme != "http":
            raise ValueError("only http:// URLs (put TLS in a proxy and use its http side, or extend Client)")
        self.host, self.port = u.hostname, u.port or 80
        self.prefix = u.path.rstrip("/")
        self.base_url = "http://%s:%d%s" % (self.host, self.port, self.prefix)
        self.key, self.timeout = key, timeout
        self.last_receipt = None
        self.requests_sent = 0
        self.completions = _Completions(self)
        self.chat = _Chat(self)
        self.models = _Models(self)
        self.files = _Files(self)
        self.fine_tuning = _FineTuning(self)

    def request(self, method, path, body=None, query=None, raw=None, content_type=None, stream=False,
                raw_response=False, headers=None):
        """One HTTP exchange: the JSON answer as an Obj (raw bytes with raw_response, a Stream
        with stream); an error answer raises an APIError subclass."""
        if query:
            path += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        h = dict(headers or {})
        if self.key:
            h["Authorization"] = "Bearer " + self.key
        if body is not None:
            raw = json.dumps(body).encode()
            content_type = "application/json"
        if content_type:
            h["Content-Type"] = content_type
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        self.requests_sent += 1
        conn.request(method, self.prefix + path, body=raw, headers=h)
        resp = conn.getresponse()
        if stream and resp.status == 200:
            return Stream(conn, resp, raw or b"")
        data = resp.read()
        conn.close()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        if "parity-receipt" in hdrs:
            self.last_receipt = Receipt(int(hdrs["parity-receipt"]), hdrs.get("parity-receipt-salt"), raw or b"", data)
        if resp.status >= 400:
            try:
                b = _loads(data)
            except ValueError:
                b = None
            raise _ERRORS.get(resp.status, APIError)(resp.status, b, hdrs)
        if raw_response:
            return data
        return _loads(data)

    # -- parity's own endpoints --
    def access(self):
        """GET /v1/access: what the caller's key may do, per model, and its audit pseudonyms."""
        return self.request("GET", "/v1/access")

    def parity(self):
        """GET /v1/parity: the parity report as the server computed it (no key needed)."""
        return self.request("GET", "/v1/parity")

    def queue(self):
        return self.request("GET", "/v1/queue")

    def receipt(self, index):
        """GET /v1/receipts/{index}: the audit entry with its inclusion proof and checkpoint."""
        return self.request("GET", "/v1/receipts/%d" % index)

    def hooks(self, model):
        return self.request("GET", "/v1/internals/hooks", query={"model": model}).data

    def trace_request(self, body):
        """POST /v1/internals/trace with a body built by hand (model.trace() builds it for you)."""
        return self.request("POST", "/v1/internals/trace", body)

    def model(self, model_id, variant=None):
        """A Model handle for tracing: with client.model("m").trace("text") as t: ..."""
        from .trace import Model
        return Model(self, model_id, variant)

    # -- verification --
    def log(self, name, vkey, witnesses=(), quorum=0):
        """The server's published log `name` ("policy" or "audit"), verified with vkey (the
        log's verifier key, obtained out of band: `parity log vkey --log NAME`)."""
        from .tlog import Log
        return Log(self.base_url + "/log/" + name, vkey, witnesses, quorum)

    def verify_receipt(self, receipt, audit_vkey, trusted=None, witnesses=(), quorum=0, policy_vkey=None):
        """Checks receipt (an index, a Receipt, or the JSON of GET /v1/receipts/{i}):

        the returned checkpoint is signed by the audit log's key (and by a quorum of the witness
        set, when given); the entry's bytes, read from the public entry bundle, are what the
        receipt shows and hash to its leaf hash; its inclusion proof leads to the checkpoint's
        root; the checkpoint is consistent with `trusted` (an older or newer verified Checkpoint
        of the audit log); and, for a Receipt the caller kept, the salted commitments of the
        entry open to the bytes it sent and got. Returns the verified entry (an Obj);
        raises VerificationError otherwise."""
        from .note import VerificationError
        from . import tlog
        kept = receipt if isinstance(receipt, Receipt) else None
        if isinstance(receipt, Receipt):
            receipt = receipt.index
        if isinstance(receipt, int):
            receipt = self.receipt(receipt)
        log = self.log("audit", audit_vkey, witnesses, quorum)
        cp = log.checkpoint(receipt["checkpoint"])
        idx = receipt["index"]
        if receipt.get("tree_size") != cp.size:
            raise VerificationError("receipt %d: tree_size %r is not its checkpoint's size %d" % (idx, receipt.get("tree_size"), cp.size))
        raw = log.entry(idx, cp.size)
        leaf = tlog.leaf_hash(raw)
        if tlog.b64hashes([receipt["leaf_hash"]])[0] != leaf:
            raise VerificationError("receipt %d: the leaf hash is not the hash of entry %d in the public bundle" % (idx, idx))
        try:
            entry = _loads(raw)
        except ValueError:
            entry = raw.decode("utf-8", "replace")
        if entry != receipt["entry"]:
            raise VerificationError("receipt %d: the entry shown differs from entry %d of the log" % (idx, idx))
        tlog.verify_inclusion(idx, cp.size, leaf, tlog.b64hashes(receipt["inclusion_proof"]), cp.root)
        if trusted is not None:
            old, new = (trusted, cp) if trusted.size <= cp.size else (cp, trusted)
            self.log("audit", audit_vkey).prove_consistent(old, new)
        if kept is not None:
            if kept.index != idx:
                raise VerificationError("the kept receipt is %d, the log's %d" % (kept.index, idx))
            rq, rs = kept.commitments()
            if (rq, rs) != (entry.get("request_commitment"), entry.get("response_commitment")):
                raise VerificationError("receipt %d: the commitments do not open to the kept request and response bytes" % idx)
        if policy_vkey is not None:
            from . import report as rp
            rp.check_decided_under(entry, rp.load_history(self.log("policy", policy_vkey))[1])
        return entry

    def verify_report(self, policy_vkey, audit_vkey, trusted=None, report=None, audit_trusted=None, witnesses=(), quorum=0):
        """Recomputes the parity report on this machine from the verified policy log and the
        verified audit log (its models_served entries decide non-release; its request entries
        make the measured section and the uplift) and compares it with the server's (`report`,
        default GET /v1/parity), at the server's own `at` and over the audit entries it measured.
        `trusted`, `audit_trusted`: checkpoints of the two logs seen before, which the logs must
        extend. When the policy names witnesses (or `witnesses`, vkeys, and `quorum` are given)
        each revision is dated as the server dates it: the later of its stated time and the
        earliest quorum time of a cosigned checkpoint holding it (cosignatures verified here);
        revisions not yet witnessed are left out. Returns (server report, recomputed report, policy checkpoint); raises
        VerificationError listing every difference."""
        from .note import VerificationError
        from . import report as rp
        server = report if report is not None else self.parity()
        plog = self.log("policy", policy_vkey)
        cp, revs = rp.load_history(plog, trusted)
        revs = rp.date_by_witnesses(plog, cp, revs, witnesses, quorum)
        measured = server.get("measured")
        entries = measured.get("entries") if isinstance(measured, dict) else None
        if entries is not None and (not isinstance(entries, int) or isinstance(entries, bool) or entries < 0):
            raise VerificationError("the report's measured.entries is %r, not a count of audit entries" % (entries,))
        _, meter = rp.load_audit(self.log("audit", audit_vkey), entries, audit_trusted)
        mine = rp.gap_report(revs, rp.parse_time(server["at"]), meter)
        diff = rp.compare(mine, server)
        if diff:
            raise VerificationError("the server's report differs from the one recomputed from the logs: " + "; ".join(diff[:20]))
        return server, mine, cp
