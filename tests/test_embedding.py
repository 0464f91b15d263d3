import numpy as np
import torch

from workbench.models import load_embedder
from workbench.retrieval.embedding import bulk_embedders, embed, embed_corpus

EMBEDDER = "all-minilm-l6-v2"
TEXTS = [
    "The Skylark S3 Pro ships with a 30-day return window.",
    "Short.",
    (
        "A much longer passage about warranty claims, firmware versions and the service centre in the north harbour "
        "district, which opens at eight and closes at six on weekdays, and never on public holidays."
    ),
    "Battery replacement takes two working days.",
    "",
    "Kestrel K9 firmware 4.2 fixed the pairing fault.",
    "Returns need the original receipt or the order number.",
]


def test_bulk_vectors_keep_text_order_and_match_the_query_model():
    reference = embed(load_embedder(EMBEDDER), TEXTS, batch_size=4)
    threads = torch.get_num_threads()
    vectors, how = embed_corpus(EMBEDDER, TEXTS, batch_size=2)
    assert torch.get_num_threads() == threads  # worker threads do not leave the process on fewer cores
    assert vectors.shape == reference.shape and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosine = (vectors * reference).sum(axis=1)
    assert cosine.min() > 0.999, cosine  # row i is text i, whatever the length order and worker shares
    assert how["workers"] == len(bulk_embedders(EMBEDDER)) and how["dtype"] in {"float32", "bfloat16"}


def test_bulk_embedders_are_private_copies():
    shared = load_embedder(EMBEDDER)
    copies = bulk_embedders(EMBEDDER)
    if shared.device.type == "cpu":
        assert all(copy is not shared for copy in copies)
        assert len({id(copy) for copy in copies}) == len(copies)
    assert next(shared.parameters()).dtype == torch.float32  # the query model is never converted


def test_no_texts_gives_an_empty_matrix():
    vectors, _ = embed_corpus(EMBEDDER, [], batch_size=8)
    assert vectors.shape == (0, load_embedder(EMBEDDER).get_embedding_dimension())
