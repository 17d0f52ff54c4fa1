"""Names vulture cannot see used, reviewed one by one (``make lint`` runs
``vulture mlserve scripts benchmarks vulture_whitelist.py``). Add a name here only when
something outside Python's own calls uses it; otherwise delete the dead code."""
# ruff: noqa
# fmt: off

_ = object()

# typer registers commands and the global callback by decorator
loadtest  # mlserve/cli/commands/loadtest.py
compare  # mlserve/cli/commands/compare.py
validate  # mlserve/cli/commands/validate.py
_global  # mlserve/cli/main.py

# uvicorn calls these on its Server subclass
_.capture_signals  # mlserve/local/gateway.py
_.should_exit  # mlserve/local/gateway.py

# http.server calls the handler's methods and reads its class attributes
_.protocol_version  # mlserve/local/seldon_adapter.py
_.log_message
_.do_GET
_.do_POST
_.daemon_threads

# asyncio.Protocol and httptools callbacks
_.data_received  # mlserve/local/upstream.py
_.on_header
_.on_body
_.on_message_complete

# Ray Data reads the settings put on its DataContext
_.enable_progress_bars  # mlserve/batch/ray_engine.py
_.print_on_execution_start

# pydantic reads model_config and runs the validators it is given by decorator
_.model_config  # mlserve/manifest/models.py
_._target_fields
_._no_credentials
_._gpu
_._jwt
_._kind_fields
_._policy
_._baseline_exists
_._references

# fields of frozen results that reach users only through dataclasses.asdict / to_dict (--json)
_.prometheus_target  # mlserve/local/lifecycle.py StatusRow
_.supervisor_pid  # StatusResult, DownResult
_.supervisor_alive
_.operation  # mlserve/targets/kubernetes.py KubeResult
_.applied_at  # LayerStatus
_.cluster_reachable  # KubeStatus
_.null_ratio  # mlserve/stats/power.py MetricPlan
_.alt_ratio
_.candidate_requests
_.total_requests
_.fixed_horizon_requests
_.promote_total_requests
_.baseline_error_rate  # Plan
_.manifest_updated  # mlserve/rollout/record.py Transition (written through getattr in to_dict)
_.errors_file  # mlserve/batch/core.py BatchSummary (to_dict walks its fields; the CLI shows the dict)
_.chunks_resumed
_.engine_start_seconds
_.job_id
_.failures_sample
_.created  # mlserve/batch/compare.py CompareResult

# attributes of third-party objects that the library reads (tokenizers, transformers' save_pretrained)
_.pre_tokenizer  # mlserve/scaffold/llm.py
_.decoder
_.chat_template
_.generation_config

# numpy array flags
_.writeable  # mlserve/stats/sequential.py

# the control arm of a plan: the concurrent-control issue starts rollouts with it
_.CONTROL  # mlserve/targets/base.py Role

# the local arms API (a library, no CLI yet): the concurrent-control issue starts and stops a
# rollout's control server with it; tests/local/test_nodrop.py drives it end to end
start_arm  # mlserve/local/arms.py
stop_arm
list_arms

# where the kubernetes router last applied its render (tests and operators read it)
_.last_applied  # mlserve/targets/kubernetes.py KubernetesRouter

# target factories, named by string in mlserve.targets.FACTORIES (imported on first use)
open_local  # mlserve/targets/local.py
open_kubernetes  # mlserve/targets/cluster.py

# [environments.NAME.gateway] keys, read by the templates through model_dump()
_.create  # mlserve/manifest/models.py GatewayRef
_.class_name
_.domain
_.endpoint_picker
# GpuPlan fields reach rollout start's and analyze --plan's JSON through dataclasses.asdict
_.node_group  # mlserve/capacity.py GpuPlan

# rich reads a Table's caption when it renders it
_.caption  # mlserve/cli/commands/monitor.py
_.caption_justify

# pydantic runs the validator it is given by decorator
_._one_availability  # mlserve/manifest/models.py Slo

# prometheus-client calls a registered collector's collect() on every scrape
_.collect  # mlserve/monitoring/summaries.py DriftCollector, mlserve/metrics/buckets.py FineHistogram

# promtool through the one wrapper for external programs; the checks of every rendered rule
# (tests/monitoring/test_rules.py, test_dashboards_k8s.py) call them
check_rules  # mlserve/tools/promtool.py
run_rule_tests
