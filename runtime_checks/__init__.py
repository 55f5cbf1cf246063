"""Verification of artifacts on the runtimes that serve them.

    backends/   one module per runtime behind base.Backend; load_backend(name, path, threads)
    loglik      log-likelihood of continuations, tokenized as lm-evaluation-harness does
    accuracy    perplexity per text distribution, zero-shot acc/acc_norm, LAMBADA
    parity      top-1 agreement and KL between two runtimes on the same tokens
    speed       prefill/decode tok/s and TTFT in alternating candidate/baseline pairs
    memory      peak RSS of a fresh process (memory_probe) that loads and runs a model
    artifact    file size and parameter count from file headers
    compare     candidate figures as deltas/ratios to the baseline
    verify      all of the above for one artifact against its dense baseline -> report dict
    report      report.json, report.md, self-contained report.html
    gate        thresholds file -> failures (the CI exit code)
    cli         `gprune-edge verify`
"""
