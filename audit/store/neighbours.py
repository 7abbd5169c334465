"""Each sample's nearest neighbours in a run's kNN graph (``run_neighbours``), and "more like
this": the samples nearest to one sample or to a selection, by the embedding the run used."""

from __future__ import annotations

import numpy as np

from audit.store.connection import Store

# Neighbours of the chosen samples first (by their rank in the lists), then the neighbours of
# those neighbours, each sample once at its best (hop, rank), the chosen samples left out.
_MORE_LIKE_THIS = """
WITH first_hop AS (
    SELECT unnest(neighbours) AS sample_id, generate_subscripts(neighbours, 1) AS rank
    FROM run_neighbours WHERE run_id = $run_id AND list_contains($chosen, sample_id)
), second_hop AS (
    SELECT unnest(n.neighbours) AS sample_id, f.rank * 100 + generate_subscripts(n.neighbours, 1)
        AS rank
    FROM run_neighbours n JOIN first_hop f USING (sample_id) WHERE n.run_id = $run_id
), ranked AS (
    SELECT sample_id, 1 AS hop, rank FROM first_hop
    UNION ALL SELECT sample_id, 2 AS hop, rank FROM second_hop
)
SELECT sample_id FROM ranked WHERE NOT list_contains($chosen, sample_id)
GROUP BY sample_id ORDER BY min(hop * 1000000 + rank), sample_id LIMIT $limit
"""


def write_neighbours(store: Store, run_id: int, sample_ids: list[str], indices: np.ndarray,
                     distances: np.ndarray) -> None:
    """Store the kNN graph of a run (``indices`` rows into ``sample_ids``) in one transaction.
    The lists go to DuckDB as Arrow arrays: the neighbours as a dictionary (row numbers into
    the ids, no string per neighbour built in Python), the distances as fixed-size lists
    (at 1M samples x 10 neighbours, 4.3 s as pandas lists of arrays)."""
    import pyarrow as pa

    ids = pa.array(sample_ids, type=pa.string())
    width = indices.shape[1]
    offsets = pa.array(np.arange(0, indices.size + 1, width, dtype=np.int64))
    neighbours = pa.LargeListArray.from_arrays(
        offsets, pa.DictionaryArray.from_arrays(pa.array(indices.ravel()), ids))
    graph = pa.table({"sample_id": ids, "neighbours": neighbours,
                      "distances": pa.FixedSizeListArray.from_arrays(
                          pa.array(np.asarray(distances, dtype=np.float32).ravel()), width)})
    with store.transaction() as con:
        con.register("incoming_neighbours", graph)
        con.execute("INSERT INTO run_neighbours SELECT ?, sample_id, neighbours, distances "
                    "FROM incoming_neighbours", [run_id])
        con.unregister("incoming_neighbours")


def more_like_this(store: Store, run_id: int, sample_ids: list[str], limit: int = 47) -> list[str]:
    """The samples most like ``sample_ids`` (their neighbours, then their neighbours'
    neighbours), nearest first, without the samples themselves; [] when the run stored no
    graph (it had no embeddings)."""
    with store.transaction() as con:
        rows = con.execute(_MORE_LIKE_THIS, {"run_id": run_id, "chosen": list(sample_ids),
                                             "limit": limit}).fetchall()
    return [row[0] for row in rows]
