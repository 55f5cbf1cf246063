"""Checking artifacts on the runtimes that serve them. Imports edgecore only (never
gprune, exporters or gprune_edge); `gprune-edge verify` is gprune_edge.cli.verify.

    backends/       one module per runtime behind base.Backend; load_backend(name, path, threads)
    loglik          log-likelihood of continuations, tokenized as lm-evaluation-harness does; log_softmax
    tasks           zero-shot evaluation sets, formatted as the harness formats them
    accuracy        perplexity per text distribution, zero-shot acc/acc_norm, LAMBADA
    parity          top-1 agreement and KL between two runtimes on the same tokens; vocabulary checks
    export_parity   check_export: an export reloaded in its runtime against its torch model; check_tolerance
    speed           prefill/decode tok/s and TTFT in alternating candidate/baseline pairs
    memory          peak RSS of a fresh process (memory_probe) that loads and runs a model
    footprint       file size and parameter count from file headers
    environment     machine, threads, package versions, date
    deltas          candidate figures as deltas/ratios to the baseline (Comparison)
    settings        VerifySettings and SpeedSettings: what verify measures and how
    report_schema   the report as types (Report, CandidateRun, Comparison, GateResult, ...) <-> report.json
    verify          all of the above for one artifact against its dense baseline -> Report
    report          report.json, report.md, self-contained report.html
    gate            thresholds file -> failures and GateResult (the CI exit code)
"""
