"""The measured section of the parity report, recomputed from the verified public audit log: a
transcription of the server's meter (src/gap/measure.c; docs/policy.md, "The measured section"
and "Uplift").

Meter.add() is fed the audit log's entries in index order (their bytes, as the entry bundles
hold them); summary() groups them per model and class (the entry's org_class: insider,
outsider) into counts, nearest-rank p50/p99 latency and queue wait of served requests, tokens
per UTC day, the first served minute and the capabilities used, and keeps the latest
models_served entry's list. measured_json() is pt_gap_measured_json; speed() and uplift_json()
are pt_gap_speed and pt_gap_uplift_json."""
import json
import math
import re

DAY = 86400
TMAX = 2 ** 63 - 1
INT64 = (-2 ** 63, 2 ** 63 - 1)
INSIDERS, OUTSIDERS = 0, 1
PARITY_UPLIFT = 1.2
CAPS = ["sample", "logprobs", "prefill", "activations", "interventions", "finetune", "unmitigated", "model_info", "weights"]
MAX_CAPS = 16
# The string fields the meter reads and the size of the C buffer each goes into: a longer value
# (in UTF-8 bytes, with its terminating NUL) counts as absent, as in measure.c.
STR_FIELDS = {"type": 32, "time": 32, "org_class": 16, "decision": 16, "reason": 64, "model": 256}
INT_FIELDS = ("status", "prompt_tokens", "completion_tokens", "latency_ms", "queue_ms")
_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.[0-9]+)?)?"
                   r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2})))?\Z")
_MDAYS = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def _days_from_civil(y, m, d):
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_time(s):
    """pt_parse_time: YYYY-MM-DD[THH:MM[:SS[.frac]](Z|+HH:MM)] to seconds, or None."""
    m = _TIME.match(s)
    if not m:
        return None
    y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
    if not 1 <= mo <= 12 or not 1 <= d <= _MDAYS[mo - 1] or (mo == 2 and d == 29 and not leap):
        return None
    h, mi, sec, off = 0, 0, 0, 0
    if m.group(4) is not None:
        if m.group(7) is None and m.group(8) is None:
            return None
        h, mi, sec = int(m.group(4)), int(m.group(5)), int(m.group(6) or 0)
        if h > 23 or mi > 59 or sec > 60:
            return None
        if m.group(8):
            oh, om = int(m.group(9)), int(m.group(10))
            if oh > 23 or om > 59:
                return None
            off = (-1 if m.group(8) == "-" else 1) * (oh * 3600 + om * 60)
    return _days_from_civil(y, mo, d) * DAY + h * 3600 + mi * 60 + sec - off


def _reject_constant(name):
    raise ValueError(name)


def _str_ok(s):
    try:
        s.encode("utf-8")  # a lone surrogate escape (\ud800) does not encode
    except UnicodeEncodeError:
        return False
    return "\0" not in s


def _jansson_ok(v, depth=0):
    """What jansson (flags 0) refuses and Python's json accepts: NUL in strings (keys too), lone
    surrogate escapes, integers outside int64, reals that overflow (1e400)."""
    if isinstance(v, str):
        return _str_ok(v)
    if isinstance(v, float):
        return not math.isinf(v)
    if isinstance(v, bool) or v is None:
        return True
    if isinstance(v, int):
        return INT64[0] <= v <= INT64[1]
    if isinstance(v, list):
        return all(_jansson_ok(x, depth + 1) for x in v)
    return all(_str_ok(k) and _jansson_ok(x, depth + 1) for k, x in v.items())


def load_entry(data):
    """The entry as jansson reads it, or None when jansson would not read it."""
    try:
        v = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return v if _jansson_ok(v) else None


def _fields(e):
    """measure.c's `fields` of an entry (a JSON value)."""
    f = {k: "" for k in STR_FIELDS}
    f.update({k: -1 for k in INT_FIELDS})
    f["caps"] = []
    if not isinstance(e, dict):
        return f
    for k, v in e.items():
        if k in STR_FIELDS and isinstance(v, str):
            f[k] = v if len(v.encode("utf-8")) < STR_FIELDS[k] else ""
        elif k in INT_FIELDS and isinstance(v, int) and not isinstance(v, bool):
            f[k] = v
        elif k == "capabilities" and isinstance(v, list):
            caps = []
            for x in v:
                if len(caps) == MAX_CAPS:
                    break
                if isinstance(x, str):
                    caps.append(CAPS.index(x) if x in CAPS and len(x.encode("utf-8")) < 32 else -1)
            f["caps"] = caps
    return f


def empty_class():
    return {"requests": 0, "served": 0, "denied": 0, "rate_limited": 0, "unavailable": 0, "other": 0,
            "latency_n": 0, "latency_p50": -1, "latency_p99": -1, "queue_n": 0, "queue_p50": -1, "queue_p99": -1,
            "tokens": 0, "days": 0, "max_day_tokens": 0, "first_served": TMAX, "caps_used": [0] * len(CAPS)}


def _percentile(v, q):
    if not v:
        return -1
    k = math.ceil(q * len(v))
    return v[k - 1 if k else 0]


class Meter:
    """pt_gap_meter: fed every entry of the audit log in index order."""

    def __init__(self):
        self.entries = 0
        self.groups = {}  # (model, class) -> [class dict, latencies, queue waits, {day: tokens}]
        self.served = None

    def add(self, data):
        self.entries += 1
        e = load_entry(data)
        if e is None:
            return
        f = _fields(e)
        if f["type"] == "request":
            self._request(f)
        elif f["type"] == "models_served" and isinstance(e.get("models"), list):
            self.served = [x for x in e["models"] if isinstance(x, str)]

    def _request(self, f):
        if not f["model"] or f["org_class"] not in ("insider", "outsider"):
            return
        key = (f["model"], INSIDERS if f["org_class"] == "insider" else OUTSIDERS)
        if key not in self.groups:
            self.groups[key] = [empty_class(), [], [], {}]
        c, lat, queue, days = self.groups[key]
        status = max(f["status"], 0)
        c["requests"] += 1
        if status == 429 or f["reason"] == "limit_exceeded":
            c["rate_limited"] += 1
        elif f["decision"] != "allow":
            c["denied"] += 1
        elif status == 503:
            c["unavailable"] += 1
        elif not 200 <= status <= 299:
            c["other"] += 1
        else:
            c["served"] += 1
            tok = max(f["prompt_tokens"], 0) + max(f["completion_tokens"], 0)
            if f["latency_ms"] >= 0:
                lat.append(min(f["latency_ms"], 2 ** 31 - 1))
            if f["queue_ms"] >= 0:
                queue.append(min(f["queue_ms"], 2 ** 31 - 1))
            t = parse_time(f["time"]) if f["time"] else None
            if t is not None:
                c["first_served"] = min(c["first_served"], t)
                if tok > 0:
                    days[t // DAY] = days.get(t // DAY, 0) + tok
            c["tokens"] += tok
            for i in f["caps"]:
                if i >= 0:
                    c["caps_used"][i] += 1

    def summary(self):
        return Summary(self)


class Summary:
    """pt_gap_summary: per model and class, percentiles filled; and the declared served models."""

    def __init__(self, meter):
        self.classes = {}
        for key, (c, lat, queue, days) in meter.groups.items():
            c = dict(c, caps_used=list(c["caps_used"]))
            lat, queue = sorted(lat), sorted(queue)
            c.update(latency_n=len(lat), latency_p50=_percentile(lat, 0.5), latency_p99=_percentile(lat, 0.99),
                     queue_n=len(queue), queue_p50=_percentile(queue, 0.5), queue_p99=_percentile(queue, 0.99),
                     days=len(days), max_day_tokens=max([0] + list(days.values())))
            self.classes[key] = c
        self.served_list = list(meter.served) if meter.served is not None else None

    def cls(self, model, k):
        return self.classes.get((model, k)) or empty_class()

    def served(self, model):
        """1 served, 0 not listed by the latest models_served entry, -1 no such entry."""
        if self.served_list is None:
            return -1
        return 1 if model in self.served_list else 0

    def tokens_per_request(self, model):
        a, b = self.cls(model, INSIDERS), self.cls(model, OUTSIDERS)
        n = a["served"] + b["served"]
        return (a["tokens"] + b["tokens"]) / n if n else 0.0


def served_of(summary, model):
    return -1 if summary is None else summary.served(model)


def class_of(summary, model, k):
    return empty_class() if summary is None else summary.cls(model, k)


def tpr_of(summary, model):
    return 0.0 if summary is None else summary.tokens_per_request(model)


def speed(access, lim, c, tpr):
    """pt_gap_speed: served requests per minute of one serial client (math.inf: unbounded)."""
    if not access:
        return 0.0
    v = math.inf
    if c["latency_p50"] >= 0:
        v = 60000.0 / float(max(c["latency_p50"], 1))
    rpm, tpd = lim["requests_per_minute"], lim["tokens_per_day"]
    if rpm is not None and float(rpm) < v:
        v = float(rpm)
    if tpd is not None and tpr > 0:
        v = min(v, float(tpd) / 1440.0 / tpr)
    asked = c["served"] + c["denied"] + c["rate_limited"]
    if asked > 0:
        v *= c["served"] / asked
    return v


def _speed_json(v):
    return "unbounded" if math.isinf(v) else v


def uplift_json(i, o):
    """pt_gap_uplift_json: insiders' speed over outsiders'."""
    if i == 0:
        verdict, r = "n/a", None
    elif o == 0:
        verdict, r = "gap", math.inf
    elif math.isinf(i) and math.isinf(o):
        verdict, r = "parity", 1.0
    else:
        r = i / o
        verdict = "parity" if r < PARITY_UPLIFT else "gap"
    return {"insiders_speed": _speed_json(i), "outsiders_speed": _speed_json(o),
            "ratio": None if r is None else _speed_json(r), "verdict": verdict}


def _pct(v):
    return None if v < 0 else v


def class_json(c, insider_since, access, lim, format_time):
    limited = access and lim["tokens_per_day"] is not None
    fs = c["first_served"]
    d = fs - insider_since
    return {"requests": c["requests"], "served": c["served"], "denied": c["denied"], "rate_limited": c["rate_limited"],
            "unavailable": c["unavailable"], "other": c["other"],
            "latency_ms": {"n": c["latency_n"], "p50": _pct(c["latency_p50"]), "p99": _pct(c["latency_p99"])},
            "queue_ms": {"n": c["queue_n"], "p50": _pct(c["queue_p50"]), "p99": _pct(c["queue_p99"])},
            "tokens_per_day": {"days": c["days"], "max": c["max_day_tokens"],
                               "mean": c["tokens"] / c["days"] if c["days"] else None,
                               "limit": lim["tokens_per_day"] if limited else None,
                               "max_to_limit": c["max_day_tokens"] / lim["tokens_per_day"]
                               if limited and lim["tokens_per_day"] > 0 else None},
            "first_served": None if fs == TMAX else format_time(fs),
            "days_from_insider_since": None if fs == TMAX else (abs(d) // DAY if d >= 0 else -(abs(d) // DAY)),
            "capabilities_used": {CAPS[i]: n for i, n in enumerate(c["caps_used"]) if n}}


def measured_json(summary, entries, policy, at, class_access, format_time, parse):
    """pt_gap_measured_json: the measured section for the models of the revision in force."""
    models = []
    for m in policy.models:
        served = summary.served(m["id"])
        tpr = summary.tokens_per_request(m["id"])
        mo = {"id": m["id"], "served": None if served < 0 else bool(served)}
        speeds = []
        for k, name in ((INSIDERS, "insiders"), (OUTSIDERS, "outsiders")):
            any_, caps, lim = class_access(policy, m["id"], at, k)
            access = any_ and bool(caps) and served != 0
            c = summary.cls(m["id"], k)
            speeds.append(speed(access, lim, c, tpr))
            mo[name] = class_json(c, parse(m["insider_since"]), access, lim, format_time)
        mo["tokens_per_request"] = tpr
        mo["uplift"] = uplift_json(speeds[0], speeds[1])
        models.append(mo)
    return {"entries": entries, "served_models": summary.served_list, "models": models}
