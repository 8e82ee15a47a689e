"""A second writer of the same dataset and output folder is refused with a clear error."""

from pathlib import Path

import pytest

from neurosam3d.data.prepare import DatasetBusyError, dataset_lock, prepare_dataset


def test_second_prepare_of_a_dataset_is_refused_while_the_first_holds_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with dataset_lock(out, "SCTPaired"):  # another run of this dataset is under way
        with pytest.raises(DatasetBusyError, match=r"SCTPaired.*another process"):
            prepare_dataset("sample_amos_style_cord", out, workers=1)
        assert not (out / "SCTPaired").exists()  # nothing was written meanwhile
        other = prepare_dataset("sample_brats_style_t2", out, workers=1)  # other datasets may run
        assert other.rows == 4
    report = prepare_dataset("sample_amos_style_cord", out, workers=1)  # released: it runs
    assert report.prepared == 2
