"""A trained run's rank lists: embed its test split with the saved weights, then rank the gallery.

The ranking itself (the Market-1501 removal, AP, INP, the hardest match) is
`fatviz.metrics.rank_lists`; this module only turns a run into the embeddings it ranks, and
keeps the test split's images and identities alongside, for the rank-list figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fatviz.data import Dataset
from fatviz.errors import FatvizError
from fatviz.evaluation import embed_split
from fatviz.metrics import RankLists, rank_lists
from fatviz.projection import project_frames
from fatviz.train import PreparedData, RunResult, prepare_data


@dataclass(frozen=True, eq=False)
class RunRankLists:
    """A run's rank lists with the test split they index (queries and gallery as test indices)."""

    lists: RankLists  # query / top / hardest index the query and gallery sets below
    dataset: Dataset
    embeddings: np.ndarray  # (N_test, D) test split in the run's anchor space
    query_idx: np.ndarray  # test-split index of each query
    gallery_idx: np.ndarray  # test-split index of each gallery entry

    @property
    def query_images(self) -> np.ndarray:
        """uint8 display images of the query set."""
        return self.dataset.images_test[self.query_idx]

    @property
    def gallery_images(self) -> np.ndarray:
        """uint8 display images of the gallery."""
        return self.dataset.images_test[self.gallery_idx]

    def projected(self) -> np.ndarray:
        """The test embeddings in 2-D (PCA, as the embedding panels draw them)."""
        (points,), _ = project_frames([self.embeddings], "pca")
        return points


def run_rank_lists(result: RunResult, data: PreparedData | None = None, k: int = 10) -> RunRankLists:
    """Rank lists of a run's test queries against its gallery (data: the run's settings' data by default)."""
    dataset = (data if data is not None else prepare_data(result.settings)).dataset
    if dataset.is_query_test is None and dataset.ids_test is None:
        raise FatvizError(f"{dataset.name} has no query/gallery split, so it has no rank lists; train on "
                          "reid-synth or market1501, or upload your own images.")
    emb = embed_split(result, dataset).numpy()  # the test split, in the run's anchor space
    if dataset.is_query_test is None:
        # A user's own set: every test image queries all the others. Giving each image a camera of its
        # own makes the same-camera rule remove exactly the query itself from its gallery.
        query_idx = gallery_idx = np.arange(len(dataset.y_test))
        cams = np.arange(len(dataset.y_test))
    else:
        is_query = dataset.is_query_test
        query_idx, gallery_idx = np.flatnonzero(is_query), np.flatnonzero(~is_query)
        cams = dataset.cam_test
    lists = rank_lists(emb[query_idx], dataset.y_test[query_idx], emb[gallery_idx], dataset.y_test[gallery_idx],
                       query_cams=None if cams is None else cams[query_idx],
                       gallery_cams=None if cams is None else cams[gallery_idx], k=k)
    return RunRankLists(lists, dataset, emb, query_idx, gallery_idx)
