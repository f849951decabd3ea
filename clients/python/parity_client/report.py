"""The parity report recomputed on the client from the verified policy log.

load_history() verifies the policy log (checkpoint signature, every entry bundle against the
signed root, optionally consistency with a checkpoint kept from before), reads each
`policy_revision` entry, fetches its canonical revision file and checks its SHA-256 and the
chain (seq 1, 2, ...; prev; times not decreasing). gap_report() is a transcription of the
server's pure report function (src/gap/gap.c, pt_gap_report) over those revisions: every
dimension, verdict, detail string, the per-model scope and timeliness, and the history of
verdicts, so the whole JSON of /v1/parity can be compared with the one computed here."""
import calendar
import fnmatch
import hashlib
import json
import time

from . import measure as ms_
from .note import Checkpoint, VerificationError
from .tlog import NotFound

DAY = 86400
TMIN, TMAX = -2 ** 63, 2 ** 63 - 1
MAX_LAG_DAYS = 90
PARITY_UPLIFT = 1.2
EVAL_WINDOW_BUSINESS_DAYS = 20
CAPS = ["sample", "logprobs", "prefill", "activations", "interventions", "finetune", "unmitigated", "model_info", "weights"]
ELICITATION = ("finetune", "activations", "interventions", "weights")
DIMS = ["non_release", "deployment_lag", "safeguards", "rate_limits", "logprobs", "prefill", "elicitation", "information",
        "window", "uplift"]
LIMITS = ["requests_per_minute", "tokens_per_day", "concurrent_finetune_jobs", "logprobs_top_k"]
RANK = {"n/a": 0, "parity": 1, "partial": 2, "gap": 3}


def parse_time(s):
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


def format_time(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _opt_time(t):
    return None if t in (TMIN, TMAX) else format_time(t)


def _tdiv(a, b):
    """C's integer division (truncation toward zero)."""
    q = abs(a) // b
    return q if a >= 0 else -q


class Revision:
    """One verified revision: its seq, date (the lab's stated time, or the witnessed date after
    date_by_witnesses), digest, policy and index in the policy log."""

    def __init__(self, seq, t, digest, policy, index=None):
        self.seq, self.time, self.digest, self.policy = seq, t, digest, Policy(policy)
        self.index, self.stated_time, self.witnessed = index, t, False


class Policy:
    """The parts of a canonical policy revision the report reads."""

    def __init__(self, j):
        self.lab_id, self.lab_name = j["lab"]["id"], j["lab"].get("name")
        w = j.get("witnesses") or {}
        self.witnesses = [x["vkey"] for x in w.get("members") or []]
        self.witness_quorum = w.get("quorum", 0)
        self.tiers = {t["id"]: set(t.get("capabilities", [])) for t in j.get("tiers", [])}
        self.models = j.get("models", [])
        self.orgs = j.get("organisations", [])
        self.grants = []
        for g in j.get("grants", []):
            caps = set(self.tiers.get(g["tier"], ())) if g.get("tier") else set()
            caps |= set(g.get("capabilities", []))
            w = g.get("window", {})
            lim = g.get("limits", {})
            self.grants.append({"org": g["organisation"], "model": g["model"], "caps": caps,
                                "from": parse_time(w["from"]) if "from" in w else TMIN,
                                "until": parse_time(w["until"]) if "until" in w else TMAX,
                                "limits": {k: lim.get(k) for k in LIMITS}})
        self.forbids = []
        for f in j.get("forbids", []):
            w = f.get("window", {})
            self.forbids.append({"org": f.get("organisation"), "model": f.get("model"),
                                 "caps": set(f["capabilities"]) if "capabilities" in f else set(CAPS),
                                 "from": parse_time(w["from"]) if "from" in w else TMIN,
                                 "until": parse_time(w["until"]) if "until" in w else TMAX})

    def effective(self, org, model, at):
        """pt_policy_effective: (any grant in force, capabilities, most generous limits; every
        limit 0 when no grant is in force, None where unlimited)."""
        forbidden = set()
        for f in self.forbids:
            if _match(f["model"], model) and (not f["org"] or f["org"] == org) \
                    and f["from"] <= at < f["until"]:
                forbidden |= f["caps"]
        caps, lim, any_ = set(), {k: 0 for k in LIMITS}, False
        for g in self.grants:
            if g["org"] != org or not _match(g["model"], model):
                continue
            if not g["from"] <= at < g["until"] or not g["caps"] - forbidden:
                continue
            caps |= g["caps"] - forbidden
            if not any_:
                lim = dict(g["limits"])
            else:
                for k in LIMITS:
                    a, b = lim[k], g["limits"][k]
                    lim[k] = b if a is None else a if b is None else max(a, b)
            any_ = True
        return any_, caps, lim


def _match(pattern, model):
    """POSIX fnmatch(pattern, model, 0) as the policy uses it (None: every model). Python's
    fnmatchcase agrees on what a policy may hold: ids and patterns use letters, digits and
    ._:/@+- plus * ? [ ] !, so negation is [!...] in both, and there are no backslash escapes
    or [^...] (where the two differ)."""
    return pattern is None or fnmatch.fnmatchcase(model, pattern)


def _caps_list(caps):
    return [c for c in CAPS if c in caps]


def _dim(verdict, detail, **extra):
    d = {"verdict": verdict, "detail": detail}
    d.update(extra)
    return d


def business_days(frm, until):
    if until <= frm:
        return 0
    d0, d1 = frm // DAY, until // DAY
    if until % DAY:
        d1 += 1
    full = (d1 - d0) // 7
    n = full * 5
    for d in range(d0 + full * 7, d1):
        if (d + 3) % 7 < 5:
            n += 1
    return n


def _in_force(revs, at):
    k = 0
    while k < len(revs) and revs[k].time <= at:
        k += 1
    return k - 1 if k else None


def class_access(p, model, t, cls):
    """pt_gap_class_access: the union of a class's capabilities (insiders, or the outside
    organisations) and each limit the most generous any of them has (all 0 without access)."""
    any_, caps, lim = False, set(), {k: 0 for k in LIMITS}
    for o in p.orgs:
        if (o["kind"] == "insider") != (cls == ms_.INSIDERS):
            continue
        a, c, l = p.effective(o["id"], model, t)
        if not a:
            continue
        caps |= c
        for k in LIMITS:
            if not any_:
                lim[k] = l[k]
            elif lim[k] is not None and (l[k] is None or l[k] > lim[k]):
                lim[k] = l[k]
        any_ = True
    return any_, caps, lim


def _first_access(revs, org, model, at):
    for i, r in enumerate(revs):
        if r.time > at:
            break
        start = r.time
        end = revs[i + 1].time if i + 1 < len(revs) and revs[i + 1].time <= at else at + 1
        best = TMAX
        for g in r.policy.grants:
            if g["org"] != org or not _match(g["model"], model):
                continue
            s = max(g["from"], start)
            if s < end and s < g["until"] and s < best:
                best = s
        if best != TMAX:
            return best
    return TMAX


def _ratio(outsider, insider):
    if insider is None:
        return 1.0 if outsider is None else 0.0
    if outsider is None or insider == 0:
        return 1.0
    return outsider / insider


def _level(p, caps, icaps, any_):
    if not any_ or not caps:
        return "none"
    for lv in ("AL3", "AL2", "AL1"):
        if lv in p.tiers and not (p.tiers[lv] & icaps) - caps:
            return lv
    return "below_AL1"


def _logprobs_prefill(d, caps, lim, icaps, ilim):
    """gap.c logprobs_prefill: log-probs (and their top-k cap) and prefill against the insiders'."""
    if "logprobs" not in icaps:
        d["logprobs"] = _dim("n/a", "insiders have no log-probs")
    elif "logprobs" not in caps:
        d["logprobs"] = _dim("gap", "no log-probs; insiders have them")
    else:
        r = _ratio(lim["logprobs_top_k"], ilim["logprobs_top_k"])
        note = " (insiders have no cap)" if ilim["logprobs_top_k"] is None and lim["logprobs_top_k"] is not None else ""
        d["logprobs"] = _dim("parity" if r >= 1.0 / PARITY_UPLIFT - 1e-12 else "partial",
                             "log-probs, top-k cap %.2fx the insiders'%s" % (r, note), top_k_ratio=r)
    if "prefill" not in icaps:
        d["prefill"] = _dim("n/a", "insiders have no prefill")
    else:
        d["prefill"] = _dim("parity", "prefill (raw prompts, completions)") if "prefill" in caps else \
            _dim("gap", "no prefill; insiders have it")


def _uplift(ms, model, any_, lim, iany, ilim):
    """gap.c uplift_dim: insiders' effective serial speed over this organisation's."""
    tpr = ms_.tpr_of(ms, model)
    u = ms_.uplift_json(ms_.speed(iany, ilim, ms_.class_of(ms, model, ms_.INSIDERS), tpr),
                        ms_.speed(any_, lim, ms_.class_of(ms, model, ms_.OUTSIDERS), tpr))
    r = u["ratio"]
    if u["verdict"] == "n/a":
        u["detail"] = "insiders have no access either"
    elif isinstance(r, float):
        u["detail"] = "insiders %.2fx as fast in series (parity below %.1fx)%s" % (
            r, PARITY_UPLIFT, "" if ms is not None else "; from limits only: no audit log measured")
    else:
        u["detail"] = "insiders unbounded, this organisation bounded" if any_ else "no access"
    return u


def _pair(revs, p, o, m, at, icaps, ilim, ms):
    """One organisation x model at `at` (gap.c pair_report); returns (entry, lag days or -1)."""
    granted, caps, lim = p.effective(o["id"], m["id"], at)
    served = ms_.served_of(ms, m["id"])
    any_, iany = granted and served != 0, bool(icaps) and served != 0
    d = {}
    r = {"organisation": o["id"], "name": o["name"], "kind": o["kind"], "access": any_,
         "level": _level(p, caps, icaps, any_), "capabilities": _caps_list(caps), "limits": lim if any_ else None}
    d["non_release"] = _dim("parity", "has access; the server serves it" if served > 0 else "has access") if any_ else \
        _dim("gap", "granted, but the server does not serve it (its models_served)") if granted else \
        _dim("gap", "no grant in force")
    first = _first_access(revs, o["id"], m["id"], at)
    since = parse_time(m["insider_since"])
    if since > at:
        lag, lag_days = _dim("n/a", "the model is not yet in use inside"), -1
    elif first == TMAX:
        lag_days = _tdiv(at - since, DAY)
        lag = _dim("partial" if lag_days <= MAX_LAG_DAYS else "gap", "no access yet, %d days after insiders" % lag_days,
                   ongoing=True)
    else:
        lag_days = _tdiv(first - since, DAY) if first > since else 0
        lag = _dim("parity" if lag_days <= MAX_LAG_DAYS else "gap", "first access %d days after insiders" % lag_days,
                   ongoing=False, first_access=_opt_time(first))
    lag["days"] = lag_days if lag_days >= 0 else None
    d["deployment_lag"] = lag
    lag_out = -1 if first == TMAX else lag_days
    if "unmitigated" not in icaps:
        d["safeguards"] = _dim("n/a", "insiders do not use the unmitigated variant")
    elif "unmitigated" in caps:
        d["safeguards"] = _dim("parity", "unmitigated variant granted")
    else:
        d["safeguards"] = _dim("gap", "only the mitigated variant; insiders have the unmitigated one")
    if not any_:
        d["rate_limits"] = _dim("gap", "no access")
    else:
        rr = _ratio(lim["requests_per_minute"], ilim["requests_per_minute"])
        rt = _ratio(lim["tokens_per_day"], ilim["tokens_per_day"])
        rf = _ratio(lim["concurrent_finetune_jobs"], ilim["concurrent_finetune_jobs"]) \
            if "finetune" in caps & icaps else 1.0
        worst = min(rr, rt, rf)
        v = "parity" if worst >= 1.0 / PARITY_UPLIFT - 1e-12 else "partial" if worst > 0 else "gap"
        note = " (insiders have no limit)" if (ilim["requests_per_minute"] is None and lim["requests_per_minute"] is not None) or \
            (ilim["tokens_per_day"] is None and lim["tokens_per_day"] is not None) else ""
        d["rate_limits"] = _dim(v, "%.2fx the insiders' requests/minute, %.2fx their tokens/day%s" % (rr, rt, note),
                                requests_per_minute_ratio=rr, tokens_per_day_ratio=rt, concurrent_finetune_jobs_ratio=rf)
    _logprobs_prefill(d, caps, lim, icaps, ilim)
    want = icaps & set(ELICITATION)
    missing = want - caps
    if lim["concurrent_finetune_jobs"] == 0:  # fine-tuning with no concurrent job allowed is none
        missing |= want & {"finetune"}
    if not want:
        d["elicitation"] = _dim("n/a", "insiders use no elicitation technique")
    else:
        names = ", ".join(_caps_list(missing))
        x = _dim("parity", "all of the insiders' techniques") if not missing else \
            _dim("gap" if missing == want else "partial", "missing %s" % names)
        x["missing"] = _caps_list(missing)
        d["elicitation"] = x
    if "model_info" not in icaps:
        d["information"] = _dim("n/a", "insiders have no model information")
    else:
        d["information"] = _dim("parity", "model card and data description") if "model_info" in caps else \
            _dim("gap", "no model information")
    if o["kind"] != "evaluator":
        d["window"] = _dim("n/a", "only evaluators need a minimum window")
    else:
        best = -1
        for g in p.grants:
            if g["org"] != o["id"] or not _match(g["model"], m["id"]) or not g["from"] <= at < g["until"]:
                continue
            bd = TMAX if g["until"] == TMAX else business_days(at if g["from"] == TMIN else g["from"], g["until"])
            best = max(best, bd)
        if best < 0:
            x = _dim("gap", "no grant in force")
        elif best == TMAX:
            x = _dim("parity", "open-ended window")
        else:
            x = _dim("parity" if best >= EVAL_WINDOW_BUSINESS_DAYS else "gap",
                     "%d business days (at least %d needed)" % (best, EVAL_WINDOW_BUSINESS_DAYS))
        x["business_days"] = None if best < 0 or best == TMAX else best
        d["window"] = x
    d["uplift"] = _uplift(ms, m["id"], any_, lim, iany, ilim)
    overall = "parity"
    for k in DIMS:
        if RANK[d[k]["verdict"]] > RANK[overall]:
            overall = d[k]["verdict"]
    r["dimensions"] = d
    r["overall"] = overall
    return r, lag_out


def _snapshot(revs, t, ms):
    k = _in_force(revs, t)
    if k is None:
        return []
    p = revs[k].policy
    models = []
    for m in p.models:
        iany, icaps, ilim = class_access(p, m["id"], t, ms_.INSIDERS)
        mo = {"id": m["id"], "insider_since": _opt_time(parse_time(m["insider_since"])),
              "public_since": _opt_time(parse_time(m["public_since"])) if "public_since" in m else None,
              "analog_of": m.get("analog_of"),
              "insiders": {"access": iany, "capabilities": _caps_list(icaps), "limits": ilim if iany else None}}
        counts = {"AL3": 0, "AL2": 0, "AL1": 0, "below_AL1": 0, "none": 0}
        orgs, first_lag = [], -1
        for o in p.orgs:
            if o["kind"] == "insider":
                continue
            pr, lag = _pair(revs, p, o, m, t, icaps, ilim, ms)
            counts[pr["level"]] += 1
            if lag >= 0 and (first_lag < 0 or lag < first_lag):
                first_lag = lag
            orgs.append(pr)
        ilevel = _level(p, icaps, icaps, iany)
        reach = {"AL3": counts["AL3"], "AL2": counts["AL3"] + counts["AL2"],
                 "AL1": counts["AL3"] + counts["AL2"] + counts["AL1"]}.get(ilevel, 0)
        with_access = counts["AL3"] + counts["AL2"] + counts["AL1"] + counts["below_AL1"]
        v = "n/a" if not iany else "parity" if reach else "partial" if with_access else "gap"
        mo["scope"] = _dim(v, "%d outside organisations at the insiders' level (%s), %d with any access" % (reach, ilevel, with_access),
                           organisations_per_level=counts, insiders_level=ilevel)
        since = parse_time(m["insider_since"])
        if since > t:
            tl = _dim("n/a", "the model is not yet in use inside")
        elif first_lag < 0:
            days = _tdiv(t - since, DAY)
            tl = _dim("partial" if days <= MAX_LAG_DAYS else "gap", "no outside access yet, %d days after insiders" % days,
                      days=days)
        else:
            tl = _dim("parity" if first_lag <= MAX_LAG_DAYS else "gap",
                      "first outside access %d days after insiders (goal: at most %d)" % (first_lag, MAX_LAG_DAYS),
                      days=first_lag)
        mo["timeliness"] = tl
        mo["organisations"] = orgs
        models.append(mo)
    return models


def _push(hist, last, verdicts, t, rev):
    if last is not None and last == verdicts:
        return last
    changed = ["%s: %s -> %s" % (k, last[k] if last and k in last else "(none)", v)
               for k, v in verdicts.items() if not last or last.get(k) != v]
    hist.append({"time": format_time(t), "revision": rev.seq, "digest": rev.digest, "verdicts": verdicts, "changed": changed})
    return verdicts


# The report's words for its time source (gap.c).
LAB_TIME = "lab: the times the lab's own log entries state (not witnessed)"
WITNESS_TIME = "witnesses: each revision dated when a quorum of the policy's witnesses had cosigned a checkpoint holding it"


def _revision_json(r):
    j = {"seq": r.seq, "time": format_time(r.time), "time_source": "witnesses" if r.witnessed else "lab", "digest": r.digest}
    if r.witnessed and r.stated_time != r.time:
        j["stated_time"] = format_time(r.stated_time)
    return j


def gap_report(revs, at, meter=None):
    """The report at `at` (seconds) from revisions sorted by time (dated by date_by_witnesses when
    the policy names witnesses): gap.c's pt_gap_report_measured, with the measured section from
    `meter` (a measure.Meter fed the audit log; None: "measured" is null and only the limits
    enter the uplift)."""
    cur = _in_force(revs, at)
    if cur is None:
        raise VerificationError("no policy revision is in force at %s" % format_time(at))
    p = revs[cur].policy
    ms = meter.summary() if meter is not None else None
    rep = {"report": "parity-gap", "version": 1, "at": format_time(at), "lab": {"id": p.lab_id, "name": p.lab_name},
           "revisions": [_revision_json(r) for r in revs if r.time <= at],
           "time_source": WITNESS_TIME if revs and all(r.witnessed for r in revs) else LAB_TIME,
           "revision_in_force": revs[cur].seq,
           "thresholds": {"max_deployment_lag_days": MAX_LAG_DAYS, "parity_uplift": PARITY_UPLIFT,
                          "min_rate_limit_ratio": 1.0 / PARITY_UPLIFT,
                          "min_evaluator_window_business_days": EVAL_WINDOW_BUSINESS_DAYS}}
    models = _snapshot(revs, at, ms)
    nt = len([r for r in revs if r.time <= at])
    snaps = [_snapshot(revs, revs[s].time, ms) for s in range(nt)]
    counts = {"parity": 0, "partial": 0, "gap": 0, "n/a": 0}
    for mo in models:
        mh, mlast = [], None
        ohist = [[] for _ in mo["organisations"]]
        olast = [None] * len(mo["organisations"])
        for s in range(nt + 1):
            sm = next((x for x in snaps[s] if x["id"] == mo["id"]), None) if s < nt else mo
            t, rv = (revs[s].time, revs[s]) if s < nt else (at, revs[cur])
            if sm is None:
                continue
            mlast = _push(mh, mlast, {"scope": sm["scope"]["verdict"], "timeliness": sm["timeliness"]["verdict"]}, t, rv)
            for oi, o in enumerate(mo["organisations"]):
                pr = next((x for x in sm["organisations"] if x["organisation"] == o["organisation"]), None)
                if pr is not None:
                    v = {k: pr["dimensions"][k]["verdict"] for k in DIMS}
                    v["overall"] = pr["overall"]
                    olast[oi] = _push(ohist[oi], olast[oi], v, t, rv)
        for oi, o in enumerate(mo["organisations"]):
            o["history"] = ohist[oi]
            counts[o["overall"]] += 1
        mo["history"] = mh
    rep["models"] = models
    rep["summary"] = {"pairs": counts["parity"] + counts["partial"] + counts["gap"], "parity": counts["parity"],
                      "partial": counts["partial"], "gap": counts["gap"]}
    rep["measured"] = None if ms is None else ms_.measured_json(ms, meter.entries, p, at, class_access, format_time,
                                                                parse_time)
    return rep


# The definitions the report carries (the server's words; not recomputed, compared as text).
_TEXT_KEYS = ("dimensions", "verdicts")


def load_history(log, trusted=None):
    """Verifies the policy log (a tlog.Log) and returns (checkpoint, [Revision]): the latest
    signed checkpoint (consistent with the verified checkpoint `trusted`, when given), every
    entry checked against its root, every revision file against its logged digest, the chain."""
    cp = log.checkpoint()
    if trusted is not None:
        log.prove_consistent(trusted, cp)
    revs = []
    for i, raw in enumerate(log.entries(cp)):
        try:
            e = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(e, dict) or e.get("type") != "policy_revision":
            continue
        digest = e.get("digest", "")
        if not digest.startswith("sha256:") or len(digest) != 71:
            raise VerificationError("entry %d: malformed revision digest %r" % (i, digest))
        if e.get("seq") != len(revs) + 1:
            raise VerificationError("entry %d: policy revision seq %r, expected %d (revisions lost or repeated)" % (i, e.get("seq"), len(revs) + 1))
        if e.get("prev") != (revs[-1].digest if revs else None):
            raise VerificationError("entry %d: revision %d's prev is not revision %d's digest" % (i, len(revs) + 1, len(revs)))
        text = log.fetch("revisions/%s.json" % digest[7:])
        got = "sha256:" + hashlib.sha256(text).hexdigest()
        if got != digest:
            raise VerificationError("revisions/%s.json: its SHA-256 is %s, but log entry %d (revision %d) says %s" % (
                digest[7:], got[7:], i, e["seq"], digest))
        t = parse_time(e["time"])
        if revs and t < revs[-1].time:
            raise VerificationError("entry %d: revision %d is dated before revision %d" % (i, e["seq"], len(revs)))
        revs.append(Revision(e["seq"], t, digest, json.loads(text), i))
    return cp, revs


def quorum_time(cp, witnesses, quorum):
    """tlog_check_quorum: the quorum-th smallest cosignature timestamp of the checkpoint cp by the
    witnesses (vkeys); None when fewer than quorum cosigned. A listed witness's line that does
    not verify raises VerificationError."""
    times = sorted(cp.cosignatures(witnesses).values())
    return times[quorum - 1] if 0 < quorum <= len(times) else None


def _witnessed(log, cp, witnesses, quorum):
    """tlog_witnessed_load: [(size, quorum time)] of the cosigned checkpoints the log publishes
    (cosigned/index, cosigned/<size>) up to the verified cp, each signed by the log's key and
    holding the size it is filed under; those without a quorum are left out."""
    try:
        index = log.fetch("cosigned/index")
    except NotFound:
        return []
    out, last = [], 0
    for line in index.decode("ascii", "replace").split("\n")[:-1]:
        if not line.isdigit():
            raise VerificationError("cosigned/index: %r is not a size" % line)
        size = int(line)
        if size > cp.size or size <= last:
            continue
        try:
            c = Checkpoint(log.fetch("cosigned/%d" % size)).verify(log.vkey)
            if c.size != size:
                raise VerificationError("holds a checkpoint of size %d" % c.size)
            t = quorum_time(c, witnesses, quorum)
        except VerificationError as e:
            raise VerificationError("cosigned/%d: %s" % (size, e))
        if t is not None:
            out.append((size, t))
            last = size
    return out


def date_by_witnesses(log, cp, revs, witnesses=None, quorum=0):
    """pt_policy_history_date (not strict), as the server dates the report's revisions: by the
    witnesses (vkeys) with quorum, or by those the latest revision names. Each revision is dated
    at the later of its stated time and the earliest quorum time of a cosigned checkpoint
    (cosigned/ and the published checkpoint) holding it; revisions no such checkpoint holds yet
    are left out (not yet witnessed). Returns the revisions (unchanged when no witnesses)."""
    if not witnesses and revs:
        witnesses, quorum = revs[-1].policy.witnesses, revs[-1].policy.witness_quorum
    if not witnesses:
        return revs
    w = _witnessed(log, cp, witnesses, quorum)
    try:
        latest = Checkpoint(log.fetch("checkpoint"))
        t = quorum_time(latest, witnesses, quorum)
        if t is not None:
            w.append((latest.size, t))
    except VerificationError:
        pass  # the published checkpoint not (yet) cosigned: later revisions are not witnessed
    out = []
    for r in revs:
        ts = [t for size, t in w if size > r.index]
        if not ts:
            break
        d = Revision.__new__(Revision)
        d.__dict__.update(r.__dict__)
        d.witnessed, d.stated_time, d.time = True, r.time, max(r.time, min(ts))
        out.append(d)
    if revs and not out:
        raise VerificationError("no checkpoint holding policy revision 1 carries cosignatures by %d of the %d witnesses yet: "
                                "no revision is witnessed" % (quorum, len(witnesses)))
    return out


def load_audit(log, entries=None, trusted=None, wait=5.0):
    """Verifies the audit log (a tlog.Log: checkpoint signature, every entry bundle against the
    signed root, consistency with `trusted` when given) and feeds its first `entries` entries
    (default: all) to a measure.Meter, in index order. A checkpoint smaller than `entries` (the
    server measured entries it had not yet published) is fetched again for up to `wait` seconds.
    Returns (checkpoint, meter)."""
    deadline = time.time() + wait
    cp = log.checkpoint()
    while entries is not None and cp.size < entries and time.time() < deadline:
        time.sleep(0.2)
        cp = log.checkpoint()
    if entries is not None and cp.size < entries:
        raise VerificationError("the report measured %d audit entries, the audit log's checkpoint holds %d" % (entries, cp.size))
    if trusted is not None:
        log.prove_consistent(trusted, cp)
    meter = ms_.Meter()
    for raw in log.entries(cp)[:cp.size if entries is None else entries]:
        meter.add(raw)
    return cp, meter


def check_decided_under(entry, revs):
    """An audit entry's policy_revision and policy_digest must be a revision of the verified
    policy log (revision 0, digest "": the empty policy before any revision)."""
    n, d = entry.get("policy_revision"), entry.get("policy_digest")
    if n == 0 and not d:
        return
    if not isinstance(n, int) or not 1 <= n <= len(revs) or revs[n - 1].digest != d:
        raise VerificationError("the entry says it was decided under policy revision %r (%s), which the verified policy log "
                                "does not hold (%d revisions)" % (n, d, len(revs)))


def compare(mine, theirs, path="report"):
    """The paths where two reports differ (empty: equal). The definitions' texts are skipped."""
    out = []
    if isinstance(mine, dict) and isinstance(theirs, dict):
        for k in sorted(set(mine) | set(theirs)):
            if path == "report" and k in _TEXT_KEYS:
                continue
            if k not in mine or k not in theirs:
                out.append("%s.%s: %s" % (path, k, "only in the server's" if k in theirs else "only in the client's"))
            else:
                out += compare(mine[k], theirs[k], "%s.%s" % (path, k))
    elif isinstance(mine, list) and isinstance(theirs, list):
        if len(mine) != len(theirs):
            out.append("%s: %d items here, %d in the server's" % (path, len(mine), len(theirs)))
        for i, (a, b) in enumerate(zip(mine, theirs)):
            out += compare(a, b, "%s[%d]" % (path, i))
    elif isinstance(mine, float) or isinstance(theirs, float):
        if not isinstance(mine, (int, float)) or not isinstance(theirs, (int, float)) or abs(mine - theirs) > 1e-12:
            out.append("%s: %r here, %r in the server's" % (path, mine, theirs))
    elif mine != theirs or type(mine) is not type(theirs):
        out.append("%s: %r here, %r in the server's" % (path, mine, theirs))
    return out
