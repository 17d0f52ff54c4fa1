"""A small synchronous client for the local gateway's admin API (deploy, status, the local target's router).

Admin API (separate listener on 127.0.0.1, every route needs ``Authorization: Bearer TOKEN``,
401 otherwise; errors are JSON ``{"error": "message"}``):

- ``GET  /admin/health``   -> ``{"status": "ok", "pid": N, "endpoints": [...]}``
- ``GET  /admin/state``    -> :class:`~mlserve.local.gateway_config.GatewayState` as JSON
  (per endpoint: baseline, mode, weights, shadow, sticky header/cookie, generation, and per
  version: url, weight, fault, healthy). ``?probe=0`` skips the upstream health probes.
- ``PUT  /admin/endpoints/{ep}/traffic`` body ``{"mode": "split"|"sticky", "weights": {v: int},
  "shadow": {"version": v, "percent": int} | null}``: a full replacement (mode defaults to
  ``split``, shadow to none); weights are integers over known versions summing to 100
  (missing versions get 0). 400 with a message naming the field otherwise, 404 for an unknown
  endpoint. Persisted atomically to the state file before the answer. Returns the endpoint's state.
- ``PUT  /admin/endpoints/{ep}/faults/{version}`` body ``{"latency_ms": x, "error_rate": x,
  "misroute_percent": x}`` (missing = 0; all zero clears). Not persisted. Returns the endpoint's state.
- ``POST /admin/reload``: re-read the config file and swap the new route tables in (live weights
  carried over, see ``Gateway.apply_config``) -> ``{"generation", "changes", "inflight", "pid"}``;
  400 for an invalid file, 409 for a change only a new process can make (its ports, its files).
- ``GET  /admin/upstreams`` -> ``{"routed": [url], "inflight": {url: n}, "config_generation": g,
  "draining": bool}``: a removed upstream is drained when ``inflight`` no longer names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlserve.errors import TargetError
from mlserve.local.gateway_config import (
    EndpointStatus,
    Fault,
    GatewayConfigError,
    GatewayState,
    Shadow,
    read_token_file,
)


class LocalGatewayClient:
    """Talks to one gateway's admin listener; every failure is a TargetError with a clear message."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 5.0) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            trust_env=False,  # never route loopback admin calls through a proxy
        )

    @classmethod
    def from_token_file(cls, base_url: str, token_file: Path, *, timeout: float = 5.0) -> LocalGatewayClient:
        try:
            token = read_token_file(token_file)
        except GatewayConfigError as exc:
            raise TargetError(str(exc), hint="run `mlserve deploy --env local` to create it") from None
        return cls(base_url, token, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> LocalGatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls -----------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/admin/health")

    def state(self, *, probe: bool = True) -> GatewayState:
        data = self._call("GET", "/admin/state", params={"probe": "1" if probe else "0"})
        return GatewayState.from_dict(data)

    def set_traffic(
        self,
        endpoint: str,
        weights: Mapping[str, int],
        *,
        mode: str = "split",
        shadow: Shadow | None = None,
    ) -> EndpointStatus:
        body = {"mode": mode, "weights": dict(weights), "shadow": shadow.to_dict() if shadow else None}
        return EndpointStatus.from_dict(self._call("PUT", f"/admin/endpoints/{endpoint}/traffic", json=body))

    def reload(self) -> dict[str, Any]:
        return dict(self._call("POST", "/admin/reload"))

    def upstreams(self) -> dict[str, Any]:
        return dict(self._call("GET", "/admin/upstreams"))

    def set_fault(self, endpoint: str, version: str, fault: Fault) -> EndpointStatus:
        data = self._call("PUT", f"/admin/endpoints/{endpoint}/faults/{version}", json=fault.to_dict())
        return EndpointStatus.from_dict(data)

    # -- plumbing --------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            resp = self._client.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise TargetError(
                f"the local gateway is not running (nothing answers at {self.base_url})",
                hint="start it with `mlserve deploy --env local`; `mlserve status` shows what runs",
            ) from None
        except httpx.TimeoutException:
            raise TargetError(f"the local gateway at {self.base_url} did not answer {method} {path} in time") from None
        except httpx.HTTPError as exc:
            raise TargetError(f"the local gateway at {self.base_url} failed on {method} {path}: {exc}") from None
        try:
            data = resp.json()
        except ValueError:
            data = None
        if resp.status_code == 401:
            raise TargetError(
                "the local gateway refused the admin token (401)",
                hint="the token file under .mlserve/ does not match the running gateway; redeploy",
            )
        if resp.status_code >= 400:
            message = data.get("error") if isinstance(data, dict) else resp.text[:500]
            raise TargetError(f"gateway admin {method} {path}: {resp.status_code}: {message}")
        if data is None:
            raise TargetError(f"gateway admin {method} {path}: answer is not JSON")
        return data
