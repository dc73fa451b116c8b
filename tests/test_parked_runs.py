"""dev/train_models.py parks a run longer than a session in the repository and resumes it
from there on a machine whose git-ignored work/ is empty."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dev"))

JOB = "mp-formation-energy-l1-e346"


def test_a_parked_run_folder_comes_back_whole_and_never_over_a_live_one(tmp_path):
    from train_models import park, unpark

    work, parked = tmp_path / "work", tmp_path / "parked"
    with pytest.raises(SystemExit, match="no run to park"):
        park(JOB, work, parked)
    run = work / JOB
    (run / "refit").mkdir(parents=True)
    (run / "record.json").write_text('{"epochs": [0, 1]}')
    (run / "last.pt").write_bytes(b"weights")
    (run / "refit" / "record.json").write_text("{}")
    assert park(JOB, work, parked) == parked / JOB
    (run / "last.pt").write_bytes(b"newer weights")
    park(JOB, work, parked)  # a second park replaces the first copy
    assert (parked / JOB / "last.pt").read_bytes() == b"newer weights"
    assert not unpark(JOB, work, parked)  # work/ has the run: it is never overwritten

    fresh = tmp_path / "fresh-machine-work"
    assert unpark(JOB, fresh, parked)
    assert (fresh / JOB / "refit" / "record.json").exists()
    assert (fresh / JOB / "last.pt").read_bytes() == b"newer weights"
    assert sorted(p.name for p in parked.iterdir()) == [JOB]  # no staging copy left behind
