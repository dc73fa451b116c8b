import os

import deepchem as dc
from deepchem.molnet import load_perovskite
from deepchem.molnet.load_function.molnet_loader import CGCNNPaperSplitter


def test_cgcnn_splitter_gives_the_papers_60_20_20_split():
    assets = os.path.join(
        os.path.dirname(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        "models", "tests", "assets")
    tasks, (train, valid,
            test), _ = load_perovskite(featurizer=dc.feat.DummyFeaturizer(),
                                       splitter="cgcnn",
                                       transformers=[],
                                       reload=False,
                                       data_dir=assets)
    n = len(train) + len(valid) + len(test)
    # RandomSplitter's cut-offs: int(0.6 n) and int((0.6 + 0.2) n)
    assert len(train) == int(
        0.6 * n) and len(valid) == int(0.8 * n) - int(0.6 * n)
    again = load_perovskite(featurizer=dc.feat.DummyFeaturizer(),
                            splitter=CGCNNPaperSplitter(),
                            transformers=[],
                            reload=False,
                            data_dir=assets)[1][0]
    assert list(train.ids) == list(again.ids)
