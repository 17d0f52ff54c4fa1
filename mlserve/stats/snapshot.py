"""The ``mlserve.snapshot/v1`` format: the only input of a statistical decision.

A snapshot holds, for each look, cumulative per-variant counts (requests, errors, a
Prometheus-style latency histogram, optional custom ratio metrics) and the traffic
weights in force during the interval that ends at that look. Everything is checked
here, once, so that the statistics can trust their inputs: a snapshot that breaks a
rule is rejected with a message naming the file, the look (1-based) and the field.
"""

from __future__ import annotations

import functools
import json
import math
import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlserve.errors import UsageError

FORMAT = "mlserve.snapshot/v1"
# Counts above this are almost certainly corrupt (and lose precision as floats).
MAX_COUNT = 2**53
MAX_LOOKS = 100_000
MAX_BUCKETS = 1_000
MAX_CUSTOM = 64
MAX_BYTES = 256 * 1024 * 1024
_STRATEGIES = ("canary", "ab", "shadow", "shadow+canary")


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts (Prometheus ``le`` semantics); the last bound is +Inf."""

    le: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "le": [("+Inf" if math.isinf(b) else b) for b in self.le],
            "counts": list(self.counts),
            "sum": self.sum,
        }


@dataclass(frozen=True)
class Ratio:
    """A custom ratio metric: cumulative numerator events over cumulative denominator exposure."""

    numerator: float
    denominator: float

    def to_dict(self) -> dict[str, Any]:
        return {"numerator": _num_out(self.numerator), "denominator": _num_out(self.denominator)}


LLM_HISTOGRAMS = ("ttft_seconds", "time_per_output_token_seconds", "tokens_per_second")
LLM_COUNTS = ("streams", "streams_failed", "prompt_tokens", "generation_tokens")


@dataclass(frozen=True)
class LlmStats:
    """Token-stream statistics of an LLM endpoint's variant (the optional ``llm`` field).

    Histograms, each with its own total (not every request has a first token or two tokens):
    ``ttft_seconds`` and ``time_per_output_token_seconds`` (per request, seconds) and
    ``tokens_per_second`` (per request, tokens per second, ``le`` in tokens/s). Counts:
    ``streams`` and ``streams_failed`` (streams that broke off mid-way), prompt and generated
    tokens.
    """

    histograms: Mapping[str, Histogram] = field(default_factory=dict)
    counts: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: v.to_dict() for k, v in self.histograms.items()}
        out.update(self.counts)
        return out


@dataclass(frozen=True)
class VariantStats:
    requests: int
    errors: int
    latency: Histogram | None = None
    custom: Mapping[str, Ratio] = field(default_factory=dict)
    llm: LlmStats | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"requests": self.requests, "errors": self.errors}
        if self.latency is not None:
            out["latency_seconds"] = self.latency.to_dict()
        if self.custom:
            out["custom"] = {k: v.to_dict() for k, v in self.custom.items()}
        if self.llm is not None:
            out["llm"] = self.llm.to_dict()
        return out


@dataclass(frozen=True)
class Look:
    at: str
    weights: Mapping[str, float]
    variants: Mapping[str, VariantStats]

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "weights": {k: _num_out(v) for k, v in self.weights.items()},
            "variants": {k: v.to_dict() for k, v in self.variants.items()},
        }


@dataclass(frozen=True)
class Snapshot:
    """``baseline`` and ``candidate`` name the two versions under test (and their arms: the
    primary is the arm named after the baseline version). ``control``, when set, names a third
    arm, a concurrent control (a fresh instance of the baseline version with the candidate's
    share of traffic): the candidate is then compared with it, and the primary is only
    watched for health. A snapshot without ``control`` compares the candidate with the
    primary, as every snapshot written before the control arm existed does."""

    endpoint: str
    baseline: str
    candidate: str
    strategy: str
    looks: tuple[Look, ...]
    source: str = "<snapshot>"
    control: str | None = None

    @property
    def reference(self) -> str:
        """The arm the candidate is compared with: the control when there is one, else the primary."""
        return self.control or self.baseline

    @property
    def arms(self) -> tuple[str, ...]:
        """The arms whose split is checked: the primary, the control (if any), the candidate."""
        return (self.baseline, self.control, self.candidate) if self.control else (self.baseline, self.candidate)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT,
            "endpoint": self.endpoint,
            "baseline": self.baseline,
            "candidate": self.candidate,
        }
        if self.control:
            out["control"] = self.control
        out["strategy"] = self.strategy
        out["looks"] = [look.to_dict() for look in self.looks]
        return out

    def write(self, path: Path) -> None:
        """Write the snapshot as JSON (used by live rollouts to save what they decided on)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n", encoding="utf-8")


def _num_out(value: float) -> float | int:
    return int(value) if float(value).is_integer() and abs(value) < MAX_COUNT else value


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def read_snapshot(path: Path) -> Snapshot:
    """Read and check a snapshot file; raise UsageError (exit 2) naming what is wrong."""
    source = str(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise UsageError(f"{source}: file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{source}: file not found") from None
    except IsADirectoryError:
        raise UsageError(f"{source}: is a directory, not a snapshot file") from None
    except OSError as exc:
        raise UsageError(f"{source}: cannot read: {exc.strerror}") from None
    return loads_snapshot(raw, source)


def loads_snapshot(raw: bytes | str, source: str = "<snapshot>") -> Snapshot:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise UsageError(f"{source}: not valid UTF-8") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{source}:{exc.lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from None
    except ValueError as exc:  # NaN/Infinity, or an integer too long to convert
        raise UsageError(f"{source}: invalid JSON: {exc}") from None
    except RecursionError:
        raise UsageError(f"{source}: invalid JSON: nested too deeply") from None
    return parse_snapshot(data, source)


class _Bad(Exception):
    def __init__(self, where: str, message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


def parse_snapshot(data: Any, source: str = "<snapshot>") -> Snapshot:
    """Check a decoded JSON document against ``mlserve.snapshot/v1``."""
    try:
        return _parse(data, source)
    except _Bad as bad:
        where = f"{bad.where}: " if bad.where else ""
        raise UsageError(f"{source}: {where}{bad.message}") from None
    except RecursionError:
        raise UsageError(f"{source}: document nests too deeply") from None


def _short(value: Any) -> str:
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(where, f"must be an object (got {_type_name(value)})")
    return value


def _str(value: Any, where: str, *, max_len: int = 253) -> str:
    if not isinstance(value, str) or not value:
        raise _Bad(where, f"must be a non-empty string (got {_short(value)})")
    if len(value) > max_len:
        raise _Bad(where, f"must be at most {max_len} characters")
    if not value.isprintable():
        raise _Bad(where, "must not contain control characters")
    return value


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(where, f"must be a non-negative integer count (got {_short(value)})")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise _Bad(where, f"must be a non-negative integer count (got {_short(value)})")
        value = int(value)
    if value < 0:
        raise _Bad(where, f"must not be negative (got {value})")
    if value > MAX_COUNT:
        raise _Bad(where, f"is implausibly large (got {value}; at most 2**53)")
    return value


def _real(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(where, f"must be a number (got {_short(value)})")
    if isinstance(value, int) and abs(value) > MAX_COUNT:
        raise _Bad(where, f"is implausibly large (got {_short(value)})")
    out = float(value)
    if not math.isfinite(out):
        raise _Bad(where, f"must be finite (got {_short(value)})")
    if out < 0:
        raise _Bad(where, f"must not be negative (got {_short(value)})")
    return out


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_+-]+$")


def _at(where: str, key: str) -> str:
    """``where.key``, with a key that is not a plain name quoted: a variant called ``a.b`` or
    ``:`` must not make the field path in an error ambiguous."""
    return f"{where}.{key}" if _PLAIN_KEY.match(key) else f"{where}.{json.dumps(key)}"


@functools.lru_cache(maxsize=32)
def _allowed(required: tuple[str, ...], optional: tuple[str, ...]) -> tuple[frozenset[str], frozenset[str]]:
    return frozenset(required), frozenset(required) | frozenset(optional)


def _keys(obj: dict[str, Any], where: str, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    need, allowed = _allowed(required, optional)
    keys = obj.keys()
    if keys <= allowed and keys >= need:
        return  # the common case, checked at C speed
    for key in required:
        if key not in obj:
            raise _Bad(f"{where}.{key}" if where else key, "required field is missing")
    for key in obj:
        if key not in allowed:
            raise _Bad(where, f"unknown field {_short(key)} (allowed: {', '.join(sorted(allowed))})")


def _parse(data: Any, source: str) -> Snapshot:
    if not isinstance(data, dict):
        raise _Bad("", f"a snapshot must be a JSON object (got {_type_name(data)})")
    fmt = data.get("format")
    if fmt != FORMAT:
        raise _Bad("format", f"unknown format {_short(fmt)}; expected {FORMAT!r}")
    _keys(data, "", ("format", "baseline", "candidate", "looks"), ("endpoint", "strategy", "control"))
    endpoint = _str(data.get("endpoint", "unknown"), "endpoint")
    baseline = _str(data["baseline"], "baseline")
    candidate = _str(data["candidate"], "candidate")
    if baseline == candidate:
        raise _Bad("candidate", f"must differ from baseline (both are {baseline!r})")
    control = None
    if data.get("control") is not None:
        control = _str(data["control"], "control")
        if control in (baseline, candidate):
            raise _Bad(
                "control", f"must name a third arm, not the {'baseline' if control == baseline else 'candidate'}"
            )
    strategy = _str(data.get("strategy", "canary"), "strategy")
    if strategy not in _STRATEGIES:
        raise _Bad("strategy", f"must be one of {', '.join(_STRATEGIES)} (got {_short(strategy)})")
    raw_looks = data["looks"]
    if not isinstance(raw_looks, list):
        raise _Bad("looks", f"must be a list (got {_type_name(raw_looks)})")
    if not raw_looks:
        raise _Bad("looks", "is empty: a snapshot needs at least one look")
    if len(raw_looks) > MAX_LOOKS:
        raise _Bad("looks", f"has {len(raw_looks)} looks; at most {MAX_LOOKS}")
    looks: list[Look] = []
    prev: Look | None = None
    cache: dict[Any, Any] = {}
    names = (baseline, candidate, control) if control else (baseline, candidate)
    for i, raw in enumerate(raw_looks, start=1):
        look = _look(raw, f"looks[{i}]", names, prev, cache)
        looks.append(look)
        prev = look
    return Snapshot(endpoint, baseline, candidate, strategy, tuple(looks), source, control)


def _look(raw: Any, where: str, names: tuple[str, ...], prev: Look | None, cache: dict[Any, Any]) -> Look:
    """``names``: the baseline, the candidate and (optionally) the control."""
    obj = _obj(raw, where)
    _keys(obj, where, ("weights", "variants"), ("at",))
    at = _str(obj["at"], f"{where}.at", max_len=64) if "at" in obj else ""
    wobj = _obj(obj["weights"], f"{where}.weights")
    if len(wobj) > 64:
        raise _Bad(f"{where}.weights", "has more than 64 variants")
    weights = {_str(k, f"{where}.weights"): _real(v, _at(f"{where}.weights", k)) for k, v in wobj.items()}
    for name in names:
        if name not in weights:
            raise _Bad(_at(f"{where}.weights", name), "required field is missing (weight of a variant under test)")
    if weights[names[0]] + weights[names[1]] <= 0:
        raise _Bad(f"{where}.weights", "baseline and candidate weights are both zero")
    vobj = _obj(obj["variants"], f"{where}.variants")
    if len(vobj) > 64:
        raise _Bad(f"{where}.variants", "has more than 64 variants")
    variants: dict[str, VariantStats] = {}
    for name in names:
        if name not in vobj:
            raise _Bad(_at(f"{where}.variants", name), "variant is missing")
    for name, v in vobj.items():
        _str(name, f"{where}.variants")
        before = prev.variants.get(name) if prev is not None else None
        variants[name] = _variant(v, _at(f"{where}.variants", name), before, cache)
    base = variants[names[0]].latency
    for other in names[1:]:
        hist = variants[other].latency
        if base is not None and hist is not None and base.le != hist.le:
            raise _Bad(
                _at(f"{where}.variants", other) + ".latency_seconds.le",
                f"bucket bounds differ from the baseline's ({names[0]}); every arm must use the same buckets",
            )
    return Look(at, weights, variants)


def _not_less(now: float, before: float, where: str) -> None:
    if now < before:
        raise _Bad(where, f"decreased from {_num_out(before)} to {_num_out(now)} (counts are cumulative)")


def _variant(raw: Any, where: str, before: VariantStats | None, cache: dict[Any, Any]) -> VariantStats:
    obj = _obj(raw, where)
    _keys(obj, where, ("requests", "errors"), ("latency_seconds", "custom", "llm"))
    requests = _count(obj["requests"], f"{where}.requests")
    errors = _count(obj["errors"], f"{where}.errors")
    if errors > requests:
        raise _Bad(f"{where}.errors", f"is larger than requests ({errors} > {requests})")
    if before is not None:
        _not_less(requests, before.requests, f"{where}.requests")
        _not_less(errors, before.errors, f"{where}.errors")
    latency = None
    if obj.get("latency_seconds") is not None:
        latency = _histogram(
            obj["latency_seconds"],
            f"{where}.latency_seconds",
            requests,
            before.latency if before is not None else None,
            cache,
        )
    custom: dict[str, Ratio] = {}
    if obj.get("custom") is not None:
        cobj = _obj(obj["custom"], f"{where}.custom")
        if len(cobj) > MAX_CUSTOM:
            raise _Bad(f"{where}.custom", f"has more than {MAX_CUSTOM} metrics")
        for name, r in cobj.items():
            cw = _at(f"{where}.custom", _str(name, f"{where}.custom", max_len=64))
            robj = _obj(r, cw)
            _keys(robj, cw, ("numerator", "denominator"), ())
            ratio = Ratio(_real(robj["numerator"], f"{cw}.numerator"), _real(robj["denominator"], f"{cw}.denominator"))
            old = before.custom.get(name) if before is not None else None
            if old is not None:
                _not_less(ratio.numerator, old.numerator, f"{cw}.numerator")
                _not_less(ratio.denominator, old.denominator, f"{cw}.denominator")
            custom[name] = ratio
    llm = None
    if obj.get("llm") is not None:
        llm = _llm(obj["llm"], f"{where}.llm", before.llm if before is not None else None, cache)
    return VariantStats(requests, errors, latency, custom, llm)


def _llm(raw: Any, where: str, before: LlmStats | None, cache: dict[Any, Any]) -> LlmStats:
    obj = _obj(raw, where)
    _keys(obj, where, (), (*LLM_HISTOGRAMS, *LLM_COUNTS))
    hists: dict[str, Histogram] = {}
    for name in LLM_HISTOGRAMS:
        if obj.get(name) is None:
            continue
        hw = f"{where}.{name}"
        hobj = _obj(obj[name], hw)
        counts = hobj.get("counts")
        total = _count(counts[-1], f"{hw}.counts[{len(counts)}]") if isinstance(counts, list) and counts else 0
        old = before.histograms.get(name) if before is not None else None
        hists[name] = _histogram(hobj, hw, total, old, cache)
    counts_out: dict[str, int] = {}
    for name in LLM_COUNTS:
        if obj.get(name) is None:
            continue
        counts_out[name] = _count(obj[name], f"{where}.{name}")
        old_c = before.counts.get(name) if before is not None else None
        if old_c is not None:
            _not_less(counts_out[name], old_c, f"{where}.{name}")
    if counts_out.get("streams_failed", 0) > counts_out.get("streams", counts_out.get("streams_failed", 0)):
        raise _Bad(f"{where}.streams_failed", "is larger than streams")
    return LlmStats(hists, counts_out)


def _bound(value: Any, where: str) -> float:
    if value in ("+Inf", "Inf", "inf", "+inf"):
        return math.inf
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(where, f'must be a number or "+Inf" (got {_short(value)})')
    if isinstance(value, int) and abs(value) > MAX_COUNT:
        raise _Bad(where, f"is implausibly large (got {_short(value)})")
    out = float(value)
    if not math.isfinite(out) or out < 0:
        raise _Bad(where, f"must be a finite, non-negative number of seconds (got {_short(value)})")
    return out


def _fast_counts(raw: list[Any]) -> tuple[int, ...] | None:
    """The common case, checked cheaply: plain non-negative ints, cumulative over buckets."""
    if set(map(type, raw)) != {int}:
        return None
    counts = tuple(raw)
    if counts[0] < 0 or counts[-1] > MAX_COUNT:
        return None
    if not all(map(operator.le, counts, counts[1:])):
        return None
    return counts


def _histogram(raw: Any, where: str, requests: int, before: Histogram | None, cache: dict[Any, Any]) -> Histogram:
    obj = _obj(raw, where)
    _keys(obj, where, ("le", "counts"), ("sum",))
    le_raw, counts_raw = obj["le"], obj["counts"]
    if not isinstance(le_raw, list) or not le_raw:
        raise _Bad(f"{where}.le", "must be a non-empty list of bucket bounds")
    if not isinstance(counts_raw, list):
        raise _Bad(f"{where}.counts", "must be a list of cumulative counts")
    if len(le_raw) > MAX_BUCKETS:
        raise _Bad(f"{where}.le", f"has more than {MAX_BUCKETS} buckets")
    if len(counts_raw) != len(le_raw):
        raise _Bad(f"{where}.counts", f"has {len(counts_raw)} entries but le has {len(le_raw)}")
    try:
        key: Any = tuple(le_raw)
        hash(key)
    except TypeError:
        key = None
    le = cache.get(key) if key is not None else None
    if le is None:
        le = _bounds(le_raw, where)
        if key is not None:
            cache[key] = le
    counts = _fast_counts(counts_raw)
    if counts is None:
        counts = tuple(_count(c, f"{where}.counts[{j}]") for j, c in enumerate(counts_raw, start=1))
        for j in range(1, len(counts)):
            if counts[j] < counts[j - 1]:
                raise _Bad(
                    f"{where}.counts[{j + 1}]",
                    f"buckets are not cumulative ({counts[j]} after {counts[j - 1]})",
                )
    if counts[-1] != requests:
        raise _Bad(f"{where}.counts", f'the "+Inf" bucket ({counts[-1]}) must equal requests ({requests})')
    total = _real(obj.get("sum", 0.0), f"{where}.sum")
    if before is not None:
        if before.le != le:
            raise _Bad(f"{where}.le", "bucket bounds changed since the previous look")
        if not all(map(operator.ge, counts, before.counts)):
            for j, (now, old) in enumerate(zip(counts, before.counts, strict=True), start=1):
                _not_less(now, old, f"{where}.counts[{j}]")
        _not_less(total, before.sum, f"{where}.sum")
    return Histogram(le, counts, total)


def _bounds(le_raw: list[Any], where: str) -> tuple[float, ...]:
    le = tuple(_bound(b, f"{where}.le[{j}]") for j, b in enumerate(le_raw, start=1))
    if not math.isinf(le[-1]):
        raise _Bad(f"{where}.le", 'the last bound must be "+Inf"')
    for j in range(1, len(le)):
        if le[j] <= le[j - 1]:
            raise _Bad(f"{where}.le[{j + 1}]", f"bounds must increase ({_num_out(le[j])} after {_num_out(le[j - 1])})")
    return le


def parse_look(
    raw: Any,
    baseline: str,
    candidate: str,
    previous: Look | None = None,
    where: str = "look",
    control: str | None = None,
) -> Look:
    """Check one look (against the one before it, whose counts it must not undercut)."""
    names = (baseline, candidate, control) if control else (baseline, candidate)
    try:
        return _look(raw, where, names, previous, {})
    except _Bad as bad:
        raise UsageError(f"{bad.where}: {bad.message}") from None


# ---------------------------------------------------------------------------
# Arithmetic: looks of consecutive steps stacked into one cumulative snapshot
# ---------------------------------------------------------------------------

_ZERO = VariantStats(0, 0)


def stack(below: VariantStats, above: VariantStats) -> VariantStats:
    """Counts ``above`` (cumulative within their own step) on top of the totals ``below``.

    A histogram is carried only when ``above`` has one with the bounds of ``below`` (or
    ``below`` has none); custom ratios only those ``above`` reports. Token-stream statistics
    (``llm``) are carried when ``above`` has them: its histograms added to ``below``'s where
    the bounds agree (restarted from ``above``'s where they do not), its counts added."""
    custom = {
        name: Ratio(
            (below.custom[name].numerator if name in below.custom else 0) + r.numerator,
            (below.custom[name].denominator if name in below.custom else 0) + r.denominator,
        )
        for name, r in above.custom.items()
    }
    llm = None
    if above.llm is not None:
        lb = below.llm or LlmStats()
        hists = {}
        for name, h in above.llm.histograms.items():
            old = lb.histograms.get(name)
            hists[name] = _stack_histogram(old if old is not None and old.le == h.le else None, h)
        counts = {name: int(lb.counts.get(name, 0)) + int(n) for name, n in above.llm.counts.items()}
        llm = LlmStats(hists, counts)
    latency = None
    hb, ha = above.latency, below.latency
    if hb is not None and (ha is None or ha.le == hb.le):
        latency = _stack_histogram(ha, hb)
    return VariantStats(below.requests + above.requests, below.errors + above.errors, latency, custom, llm)


def _stack_histogram(below: Histogram | None, above: Histogram) -> Histogram:
    counts = below.counts if below is not None else (0,) * len(above.counts)
    return Histogram(
        above.le,
        tuple(int(x) + int(y) for x, y in zip(counts, above.counts, strict=True)),
        round((below.sum if below is not None else 0.0) + above.sum, 6),
    )


def cumulative(
    endpoint: str,
    baseline: str,
    candidate: str,
    steps: Sequence[tuple[str, Sequence[Look]]],
    control: str | None = None,
) -> Snapshot:
    """A run's steps (phase, looks) as one snapshot: each step's looks stacked on the totals of
    the steps before it, with the weights of each interval. Requests served between a traffic
    change and the step's first scrape belong to no step and are left out. A ``control`` arm
    that a step did not have counts zero requests at weight 0 there.

    Mirrored requests are not a split: a shadow phase before a canary stays out (it has its
    own step snapshot), or the sample-ratio check of a replay would read it as misrouting."""
    phases = {phase for phase, _ in steps}
    if phases - {"shadow"}:
        steps = [(phase, looks) for phase, looks in steps if phase != "shadow"]
        phases -= {"shadow"}
    arms = (baseline, candidate, control) if control else (baseline, candidate)
    offset = {v: _ZERO for v in arms}
    out: list[Look] = []
    for _phase, looks in steps:
        for look in looks:
            weights = {**look.weights, **{v: 0.0 for v in arms if v not in look.weights}}
            out.append(Look(look.at, weights, {v: stack(offset[v], look.variants.get(v, _ZERO)) for v in arms}))
        if looks:
            offset = {v: stack(offset[v], looks[-1].variants.get(v, _ZERO)) for v in arms}
    strategy = "shadow" if phases == {"shadow"} else "ab" if "ab" in phases else "canary"
    return Snapshot(endpoint, baseline, candidate, strategy, tuple(out), control=control)
