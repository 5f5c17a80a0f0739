"""The interfaces a network may declare to the engine. The engine calls a
network only through these (and ``construct``), never by its model's name.

``SparseTable``: the network keeps its categorical embeddings in one table
that the engine trains row by row (:mod:`src.engine.sparse`):

- ``embedding``: an :class:`~src.layers.embedding.EmbeddingTable` (its
  ``weight`` Parameter and its ``scratch_row``, the padding row);
- ``table_ids(cat)``: NumPy, a batch's categorical input -> table rows;
- ``forward_rows(rows, inverse, *other_inputs)``: the logits from the
  gathered unique rows and each id's position among them.

Its first input is the categorical one that ``table_ids`` maps. When the
table is sharded (``embedding.sharded``, see :mod:`src.engine.sharded`) the
engine shifts ``table_ids``' ids into the shard plan's order and calls only
``forward_rows``.

``Regularised``: ``forward_with_reg(*inputs) -> (logits, regulariser)``; the
loss adds the regulariser times a weight scheduled over epochs.

No MindSpore import here: the registry checks declarations without it.
"""

MEMBERS = {
    "SparseTable": ("embedding", "table_ids", "forward_rows"),
    "Regularised": ("forward_with_reg",),
}


def missing(network, interface):
    """The members of ``interface`` that ``network`` lacks."""
    return [m for m in MEMBERS[interface] if not hasattr(network, m)]


def require(network, interface):
    """Raise TypeError unless ``network`` implements ``interface``."""
    lacks = missing(network, interface)
    if lacks:
        raise TypeError(f"{type(network).__name__} is declared {interface} but has no "
                        f"{', '.join(lacks)} (see src/engine/interfaces.py)")
    if interface == "SparseTable" and not hasattr(network.embedding, "scratch_row"):
        raise TypeError(f"{type(network).__name__}.embedding has no scratch_row: a SparseTable "
                        "keeps its rows in an src.layers.embedding.EmbeddingTable")
