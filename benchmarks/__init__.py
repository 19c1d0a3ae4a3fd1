"""Speed benchmarks of dcan_jax against named peers, run as `python -m benchmarks`.

Every figure is a ratio of two timings taken in the same process run on the
same machine, so the noise of a shared machine cancels in part. The modules:

- `training`: DCAN steps compiled in one `lax.scan` vs a Python loop of the
  jitted `train_step`, seed scaling under `jax.vmap`, floating-point work per
  step against a large matmul, and steps with running cluster statistics vs
  a fresh clustering sample.
- `clustering` (with `clustering_case`, one subprocess per case): the jitted
  k-means and GMM iterations vs scikit-learn and faiss.
- `peers` (with `clustpy_peer`, run in a separate PyTorch environment): ABC and
  DEC epochs vs ClustPy's AEC and DEC.
- `report`: writes the Markdown page.

Benchmarks are not tests: `make test` does not run them; `make bench` does.
"""
