"""bnlab: one module per DVC stage (fetch, normalize, train, evaluate, report, compare) + lib/."""
