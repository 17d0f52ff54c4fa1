"""Whether two answers to one request agree: the rule of every shadow comparison.

The local gateway compares a mirrored answer with the routed one in-process; on a cluster,
the comparator (:mod:`mlserve.targets.comparator`) compares the answers the serving layer's
payload logger sends it. Both use :func:`outputs_agree`, so "agreement" means the same on
every target. Standard library only: the cluster's comparator runs this file as it is.
"""

from __future__ import annotations

import math


def _flatten(value: object, out: list[object]) -> None:
    if isinstance(value, list | tuple):
        for item in value:
            _flatten(item, out)
    else:
        out.append(value)


def _same(a: object, b: object, rtol: float, atol: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        fa, fb = float(a), float(b)
        if math.isnan(fa) or math.isnan(fb):
            return math.isnan(fa) and math.isnan(fb)
        return abs(fa - fb) <= atol + rtol * abs(fb)
    return a == b


def outputs_agree(primary: object, shadow: object, rtol: float = 1e-5, atol: float = 1e-8) -> bool | None:
    """Compare two V2 inference responses by ``outputs[].data`` (matched by output name).

    True/False for comparable answers; None when either is not a V2 response with outputs
    (nothing to compare: counted as a shadow request, not as agreement or disagreement).
    """

    def data_by_name(resp: object) -> dict[str, list[object]] | None:
        if not isinstance(resp, dict) or not isinstance(resp.get("outputs"), list):
            return None
        result: dict[str, list[object]] = {}
        for i, out in enumerate(resp["outputs"]):
            if not isinstance(out, dict) or "data" not in out:
                return None
            flat: list[object] = []
            _flatten(out["data"], flat)
            result[str(out.get("name", i))] = flat
        return result

    a, b = data_by_name(primary), data_by_name(shadow)
    if a is None or b is None:
        return None
    if a.keys() != b.keys():
        return False
    for name, values in a.items():
        other = b[name]
        if len(values) != len(other):
            return False
        if not all(_same(x, y, rtol, atol) for x, y in zip(values, other, strict=True)):
            return False
    return True
