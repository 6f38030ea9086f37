"""Code shared by the benchmarks: result files (:mod:`.results`), statistics (:mod:`.stats`),
README tables between markers (:mod:`.readme`), peers in their own processes (:mod:`.peers`,
the d3rlpy and Tianshou workers), compute floors (:mod:`.floor`).

Nothing here is imported at package level: the d3rlpy worker runs in d3rlpy's own virtual
environment, which has neither this package's dependencies nor tianshou-offline."""
