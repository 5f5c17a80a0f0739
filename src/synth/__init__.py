"""Generators of synthetic raw data in the real formats, with a known signal:
Census-Income files (:mod:`.census`), Criteo click logs (:mod:`.criteo`) and
MNIST IDX digits (:mod:`.mnist`). Tests, the quick start and the benchmark
use them; the data sets reach them through ``DataSet.synthetic``."""
