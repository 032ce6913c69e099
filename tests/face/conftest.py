import pytest


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    """8 speakers (2 unseen) x 5 sentences on a 12 x 12 face: about 2 s to make."""
    from qwenkit.face.synthetic import SyntheticConfig, make_synthetic

    root = tmp_path_factory.mktemp("face-corpus")
    manifest = make_synthetic(SyntheticConfig(speakers=8, unseen_speakers=2, sentences=5, train_sentences=4, grid=12,
                                              seed=3), root, quiet=True)
    return root, manifest


@pytest.fixture(scope="session")
def corpus_splits(small_corpus):
    from qwenkit.face.data import load_split, read_region

    root, manifest = small_corpus
    splits = {name: load_split(root, split, fps=manifest["fps"]) for name, split in manifest["splits"].items()}
    return splits, read_region(root / "regions" / "lve.txt"), read_region(root / "regions" / "fdd.txt")
