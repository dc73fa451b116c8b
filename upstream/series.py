"""The commits of the DeepChem pull request, in order (see build.py)."""

from build import FEAT, TEMPLATES, Commit, atom_table_source, render

MOLNET = "deepchem/molnet/load_function"
MATERIALS = f"{MOLNET}/material_datasets"
SPLITTER_DOC = """dc.molnet.splitters as a shortcut.  If this is None, all the data
        will be included in a single dataset."""
SPLITTER_DOC_CGCNN = """dc.molnet.splitters as a shortcut.  If this is None, all the data
        will be included in a single dataset. ``'cgcnn'`` is the CGCNN
        paper's split: random, 60/20/20, seed 123."""

SERIES = [
    Commit(
        subject="CGCNNFeaturizer: no download, fast neighbor search, the original tie rule",
        body="""The featurizer downloaded atom_init.json from S3 on every construction and,
offline, logged a warning and left the object without its atom table, so featurize()
then failed on every structure. The table (the CGCNN element embedding, 92 binary
features for Z = 1..100, MIT licence) now ships in cgcnn_atom_init.py.

Neighbors come from pymatgen's vectorized get_neighbor_list instead of
get_all_neighbors, sorted by distance with the original CGCNN code's rule for ties
and its padding of atoms with fewer than max_neighbors neighbors (atom 0 at
radius + 1), so the original checkpoints see the graphs they were trained on.
selection='complete' keeps every neighbor tied with the last one instead (no
padding): graphs that do not depend on site order.

A structure that cannot become a crystal graph (no sites, partial occupancy, an
element without an embedding, overlapping atoms) raises a ValueError that says
which sites and why; Featurizer.featurize() logs it and goes on with the others.
The output is still a GraphData (node_features, edge_index with the center atom in
row 0, edge_features), and GraphData.numpy_to_torch() works on it.""",
        generated={
            f"{FEAT}/cgcnn_atom_init.py": lambda: render(
                TEMPLATES / "cgcnn_atom_init.py.tmpl", atom_table_source()
            ),
            f"{FEAT}/cgcnn_featurizer.py": lambda: render(TEMPLATES / "cgcnn_featurizer.py.tmpl"),
        },
        added={"deepchem/feat/tests/test_cgcnn_featurizer.py": "test_cgcnn_featurizer.py"},
        edits={
            "docs/source/api_reference/featurizers.rst": [
                (
                    """CGCNNFeaturizer
***************
""",
                    """CGCNNFeaturizer
***************

The crystal graphs of CGCNN [Xie2018]_: no download (the atom table ships with
DeepChem), the original code's neighbor rule by default, so the original
checkpoints can be used (:meth:`deepchem.models.CGCNNModel.from_cgcnn_checkpoint`).

.. [Xie2018] T. Xie and J. C. Grossman, Phys. Rev. Lett. 120, 145301 (2018).
""",
                )
            ]
        },
    ),
    Commit(
        subject="CGCNNModel without DGL: the paper's gated convolution, from_cgcnn_checkpoint",
        body="""CGCNNModel needed DGL, which installs only against torch <= 2.2 and numpy < 2,
so DeepChem's CGCNN could not be used on a current stack. Its layer also differed
from the paper's Eq. 5 (one batch norm instead of two; each atom received the
messages of the atoms that have it as a neighbor instead of gathering from its own
neighbors), so the published CGCNN weights could not be loaded.

The model is now plain PyTorch: the original layer (two batch norms, messages
gathered at the center atom, parameter names of the original code), with the
edge linear factored so the (E, 2A + B) concatenation is never built; built-in
target normalization (fitted on the first fit, as the original's Normalizer;
NaN labels trained as missing); and CGCNNModel.from_cgcnn_checkpoint, which loads
the original code's .pth.tar files with weights_only=True and reproduces their
predictions. The constructor arguments keep their meaning.

For existing users: checkpoints of the DGL version cannot be restored (restore()
says so; the layers differ: retrain). The original classifier uses dropout 0.5
after pooling; the default stays 0 for now and classification without an explicit
dropout warns (FutureWarning) that it will become 0.5. test_cgcnn.py no longer
imports dgl in the try block that imports the model.""",
        generated={
            "deepchem/models/torch_models/cgcnn.py": lambda: render(TEMPLATES / "cgcnn.py.tmpl"),
        },
        added={"deepchem/models/tests/test_cgcnn_original.py": "test_cgcnn_original.py"},
        edits={
            "deepchem/models/tests/test_cgcnn.py": [("    import dgl  # noqa\n", "")],
            "docs/source/api_reference/models.rst": [
                (
                    """.. autoclass:: deepchem.models.CGCNNModel
  :members:
""",
                    """The model of [Xie2018]_ in plain PyTorch (no DGL): the original gated
convolution, targets normalized inside the model, and the original code's
checkpoints loaded by :meth:`~deepchem.models.CGCNNModel.from_cgcnn_checkpoint`.
Checkpoints of the DGL-based model of DeepChem 2.8 and earlier cannot be restored.

.. autoclass:: deepchem.models.CGCNNModel
  :members:

.. autoclass:: deepchem.models.CGCNN
  :members:
""",
                )
            ],
        },
    ),
    Commit(
        subject="molnet: splitter='cgcnn', the CGCNN paper's 60/20/20 split, for materials",
        body="""load_perovskite, load_mp_formation_energy and load_mp_metallicity (and any
molnet loader) accept splitter='cgcnn': a RandomSplitter with the CGCNN paper's
proportions, 60/20/20, and seed 123, so results can be compared with the paper's
and the original code's. The default stays 'random' (80/10/10).""",
        added={"deepchem/molnet/tests/test_cgcnn_split.py": "test_cgcnn_split.py"},
        edits={
            f"{MOLNET}/molnet_loader.py": [
                (
                    """splitters = {
    'index': dc.splits.IndexSplitter(),""",
                    '''
class CGCNNPaperSplitter(dc.splits.RandomSplitter):
    """A random split with the CGCNN paper's proportions and seed: 60/20/20, seed 123.

    ``dc.molnet`` loaders take it as ``splitter='cgcnn'``.

    Examples
    --------
    >>> import numpy as np
    >>> import deepchem as dc
    >>> dataset = dc.data.NumpyDataset(np.zeros((10, 1)))
    >>> [len(d) for d in CGCNNPaperSplitter().train_valid_test_split(dataset)]
    [6, 2, 2]
    """

    def train_valid_test_split(self,
                               dataset,
                               train_dir=None,
                               valid_dir=None,
                               test_dir=None,
                               frac_train: float = 0.6,
                               frac_valid: float = 0.2,
                               frac_test: float = 0.2,
                               seed: Optional[int] = 123,
                               log_every_n: int = 1000,
                               **kwargs):
        return super(CGCNNPaperSplitter,
                     self).train_valid_test_split(dataset, train_dir, valid_dir,
                                                  test_dir, frac_train,
                                                  frac_valid, frac_test, seed,
                                                  log_every_n, **kwargs)


splitters = {
    'cgcnn': CGCNNPaperSplitter(),
    'index': dc.splits.IndexSplitter(),''',
                )
            ],
            **{
                f"{MATERIALS}/{name}.py": [(SPLITTER_DOC, SPLITTER_DOC_CGCNN)]
                for name in ("load_perovskite", "load_mp_formation_energy", "load_mp_metallicity")
            },
            "docs/source/api_reference/moleculenet.rst": [
                (
                    """.. autofunction:: deepchem.molnet.load_bandgap
""",
                    """``splitter='cgcnn'`` gives the CGCNN paper's split (random, 60/20/20, seed 123)
for the crystal-structure datasets; the default stays ``'random'``.

.. autofunction:: deepchem.molnet.load_bandgap
""",
                )
            ],
        },
    ),
]
